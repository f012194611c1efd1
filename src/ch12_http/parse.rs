//! The incremental request parser: a state machine fed whatever bytes
//! `read(2)` returned, in any split, that says "need more", "here is a
//! request", or "this is malformed: answer with status N and close".
//!
//! A request head (RFC 9112 §2–§5) is a request line, header lines, and an
//! empty line, every line ending in CRLF (a bare LF is accepted, as RFC 9112
//! §2.2 allows; a bare CR is not). This server takes no request bodies.

use std::fmt;

/// What the parser bounds, and the status it answers when a bound is passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest request line, CRLF excluded (longer: 414 URI Too Long).
    pub max_request_line: usize,
    /// Longest header line (longer: 431 Request Header Fields Too Large).
    pub max_header_line: usize,
    /// Most header fields (more: 431).
    pub max_headers: usize,
    /// Most bytes in the whole head (more: 431).
    pub max_head: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_request_line: 8192,
            max_header_line: 8192,
            max_headers: 100,
            max_head: 32 * 1024,
        }
    }
}

/// The protocol version of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// `HTTP/1.0`: the connection closes after the response unless the
    /// client asked `Connection: keep-alive`.
    Http10,
    /// `HTTP/1.1` (and `HTTP/1.x`, x > 1, which RFC 9112 §2.6 says to treat
    /// as 1.1): persistent unless `Connection: close`.
    Http11,
}

/// A parsed request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The method token, as sent (`GET`, `HEAD`, …).
    pub method: String,
    /// The request target, as sent (`/a%20b.txt?x=1`).
    pub target: String,
    /// The version.
    pub version: Version,
    /// Header fields in order: name (as sent) and value (trimmed of
    /// surrounding spaces and tabs).
    pub headers: Vec<(String, String)>,
}

impl Request {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Does the connection stay open after this request's response?
    /// (RFC 9112 §9.3: 1.1 persists unless `close`; 1.0 only with
    /// `keep-alive`.)
    pub fn keep_alive(&self) -> bool {
        let has = |token: &str| {
            self.headers
                .iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case("connection"))
                .flat_map(|(_, v)| v.split(','))
                .any(|t| t.trim().eq_ignore_ascii_case(token))
        };
        match self.version {
            Version::Http11 => !has("close"),
            Version::Http10 => has("keep-alive"),
        }
    }
}

/// Why a request was refused: the status to answer, then close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reject {
    /// 400: malformed syntax.
    BadRequest,
    /// 413: a body was announced (this server takes none).
    ContentTooLarge,
    /// 414: the request line is longer than the limit.
    UriTooLong,
    /// 431: a header line, the header count or the head is too large.
    HeadersTooLarge,
    /// 501: a method or transfer coding this server does not know.
    NotImplemented,
    /// 505: an HTTP major version other than 1.
    VersionNotSupported,
}

impl Reject {
    /// The status code.
    pub fn status(self) -> u16 {
        match self {
            Reject::BadRequest => 400,
            Reject::ContentTooLarge => 413,
            Reject::UriTooLong => 414,
            Reject::HeadersTooLarge => 431,
            Reject::NotImplemented => 501,
            Reject::VersionNotSupported => 505,
        }
    }
}

impl fmt::Display for Reject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status(), super::reason(self.status()))
    }
}

/// What one call to [`Parser::feed`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// The head is not complete yet: feed more bytes.
    Incomplete,
    /// A whole request head; the parser is ready for the next one.
    Done(Request),
    /// Malformed or too large: answer this status and close. The parser
    /// stays in this state.
    Rejected(Reject),
}

/// Where the state machine is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Before the request line (empty lines here are skipped).
    Start,
    /// Inside the request line.
    RequestLine,
    /// Inside the header lines.
    Headers,
    /// Refused; stays here.
    Failed(Reject),
}

/// The incremental parser of request heads.
///
/// ```
/// use sockbook::ch12_http::parse::{Parser, Parsed};
/// let mut p = Parser::default();
/// assert_eq!(p.feed(b"GET / HT").1, Parsed::Incomplete);
/// let (used, parsed) = p.feed(b"TP/1.1\r\nHost: x\r\n\r\nGET /next");
/// assert_eq!(used, 19, "stops at the end of the first head");
/// assert!(matches!(parsed, Parsed::Done(r) if r.target == "/"));
/// ```
#[derive(Debug, Clone)]
pub struct Parser {
    /// The bounds.
    pub limits: Limits,
    /// The state.
    pub state: State,
    /// The bytes of the line not yet ended (without its LF).
    pub line: Vec<u8>,
    /// Bytes of this head consumed so far (for `max_head`).
    pub head_bytes: usize,
    /// The request line once parsed: method, target, version.
    pub request: Option<(String, String, Version)>,
    /// The headers parsed so far.
    pub headers: Vec<(String, String)>,
}

impl Default for Parser {
    fn default() -> Parser {
        Parser::new(Limits::default())
    }
}

impl Parser {
    /// A parser at the start of a request, with these bounds.
    pub fn new(limits: Limits) -> Parser {
        Parser {
            limits,
            state: State::Start,
            line: Vec::new(),
            head_bytes: 0,
            request: None,
            headers: Vec::new(),
        }
    }

    // ANCHOR: ch12_feed
    /// Feed the next bytes of the stream. Returns how many bytes of `input`
    /// were used and what was found. On [`Parsed::Done`] the bytes after the
    /// head (the next pipelined request) are not used: feed them again.
    ///
    /// **Assignment.** Work line by line, but remember a line may be cut
    /// anywhere: keep the unfinished part in `self.line` between calls, so
    /// that any split of the same bytes gives the same result. Bound every
    /// line *before* its LF arrives (a client that never sends one must not
    /// grow the buffer): too long a request line is 414, too long a header
    /// line or too many bytes or headers is 431. A line ends at LF; drop one
    /// CR before it; a CR anywhere else is 400. Then:
    /// - request line: `METHOD SP TARGET SP HTTP/1.x` (single spaces, a
    ///   token method, a target with no control bytes) or 400; major
    ///   version ≠ 1 is 505; empty lines before it are skipped;
    /// - header line: `name: value`, a token name with no space before the
    ///   colon, value trimmed, no control bytes but tab; a line starting with
    ///   space or tab (obsolete folding) is 400;
    /// - the empty line ends the head: HTTP/1.1 without `Host` is 400; a
    ///   `Transfer-Encoding` is 501; a `Content-Length` other than 0 is 413,
    ///   not a number is 400; then return the request and reset.
    pub fn feed(&mut self, input: &[u8]) -> (usize, Parsed) {
        // BEGIN SOLUTION
        let mut used = 0;
        loop {
            if let State::Failed(why) = self.state {
                return (used, Parsed::Rejected(why));
            }
            let rest = &input[used..];
            let (limit, too_long) = self.line_limit();
            let Some(lf) = rest.iter().position(|&b| b == b'\n') else {
                // No line end yet: keep it, but never beyond the limits.
                if self.line.len() + rest.len() > limit {
                    return (input.len(), self.fail(too_long));
                }
                if self.head_bytes + rest.len() > self.limits.max_head {
                    return (input.len(), self.fail(Reject::HeadersTooLarge));
                }
                self.line.extend_from_slice(rest);
                self.head_bytes += rest.len();
                return (input.len(), Parsed::Incomplete);
            };
            // A CR at the end of a line is part of its terminator.
            let mut content = self.line.len() + lf;
            let ends_in_cr = if lf > 0 {
                rest[lf - 1] == b'\r'
            } else {
                self.line.last() == Some(&b'\r')
            };
            if ends_in_cr {
                content -= 1;
            }
            if content > limit {
                return (used + lf + 1, self.fail(too_long));
            }
            if self.head_bytes + lf + 1 > self.limits.max_head {
                return (used + lf + 1, self.fail(Reject::HeadersTooLarge));
            }
            self.line.extend_from_slice(&rest[..lf]);
            self.head_bytes += lf + 1;
            used += lf + 1;
            let mut line = std::mem::take(&mut self.line);
            line.truncate(content);
            if let Some(done) = self.end_of_line(&line) {
                return (used, done);
            }
            self.line = line;
            self.line.clear();
        }
        // END SOLUTION
    }
    // ANCHOR_END: ch12_feed

    /// The limit on the current line and the status for passing it.
    fn line_limit(&self) -> (usize, Reject) {
        match self.state {
            State::Start | State::RequestLine => (self.limits.max_request_line, Reject::UriTooLong),
            _ => (self.limits.max_header_line, Reject::HeadersTooLarge),
        }
    }

    /// Enter the failed state.
    fn fail(&mut self, why: Reject) -> Parsed {
        self.state = State::Failed(why);
        self.line = Vec::new();
        Parsed::Rejected(why)
    }

    /// One whole line (terminator removed) arrived: a result, or `None` to
    /// go on.
    fn end_of_line(&mut self, line: &[u8]) -> Option<Parsed> {
        if line.contains(&b'\r') {
            return Some(self.fail(Reject::BadRequest));
        }
        match self.state {
            State::Start if line.is_empty() => {
                self.head_bytes = 0;
                None
            }
            State::Start | State::RequestLine => match request_line(line) {
                Ok(parts) => {
                    self.request = Some(parts);
                    self.state = State::Headers;
                    None
                }
                Err(why) => Some(self.fail(why)),
            },
            State::Headers if line.is_empty() => Some(self.finish()),
            State::Headers => {
                if self.headers.len() >= self.limits.max_headers {
                    return Some(self.fail(Reject::HeadersTooLarge));
                }
                match header_line(line) {
                    Ok(field) => {
                        self.headers.push(field);
                        None
                    }
                    Err(why) => Some(self.fail(why)),
                }
            }
            State::Failed(why) => Some(Parsed::Rejected(why)),
        }
    }

    /// The empty line: check the head as a whole, return it, reset.
    fn finish(&mut self) -> Parsed {
        let Some((method, target, version)) = self.request.take() else {
            return self.fail(Reject::BadRequest);
        };
        let request = Request {
            method,
            target,
            version,
            headers: std::mem::take(&mut self.headers),
        };
        if version == Version::Http11 && request.header("host").is_none() {
            return self.fail(Reject::BadRequest);
        }
        if request.header("transfer-encoding").is_some() {
            return self.fail(Reject::NotImplemented);
        }
        if let Some(length) = request.header("content-length") {
            match length.parse::<u64>() {
                Ok(0) => {}
                Ok(_) => return self.fail(Reject::ContentTooLarge),
                Err(_) => return self.fail(Reject::BadRequest),
            }
        }
        self.state = State::Start;
        self.head_bytes = 0;
        Parsed::Done(request)
    }
}

/// RFC 9110 §5.6.2 `tchar`.
pub fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// `METHOD SP TARGET SP HTTP/x.y`.
fn request_line(line: &[u8]) -> Result<(String, String, Version), Reject> {
    let mut parts = line.split(|&b| b == b' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Reject::BadRequest);
    };
    if method.is_empty() || !method.iter().all(|&b| is_tchar(b)) {
        return Err(Reject::BadRequest);
    }
    if target.is_empty() || target.iter().any(|&b| b <= b' ' || b == 0x7f) {
        return Err(Reject::BadRequest);
    }
    let version = match version {
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
            if major.is_ascii_digit() && minor.is_ascii_digit() =>
        {
            match (major, minor) {
                (b'1', b'0') => Version::Http10,
                (b'1', _) => Version::Http11,
                _ => return Err(Reject::VersionNotSupported),
            }
        }
        _ => return Err(Reject::BadRequest),
    };
    // Bytes ≥ 0x80 are not URI characters (they should be percent-encoded);
    // they are let through when they are UTF-8, refused otherwise.
    let target = String::from_utf8(target.to_vec()).map_err(|_| Reject::BadRequest)?;
    let method = String::from_utf8_lossy(method).into_owned();
    Ok((method, target, version))
}

/// `name: value`.
fn header_line(line: &[u8]) -> Result<(String, String), Reject> {
    let colon = line
        .iter()
        .position(|&b| b == b':')
        .ok_or(Reject::BadRequest)?;
    let (name, value) = (&line[..colon], &line[colon + 1..]);
    if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
        return Err(Reject::BadRequest);
    }
    if value.iter().any(|&b| (b < b' ' && b != b'\t') || b == 0x7f) {
        return Err(Reject::BadRequest);
    }
    let value = value.trim_ascii();
    Ok((
        String::from_utf8_lossy(name).into_owned(),
        String::from_utf8_lossy(value).into_owned(),
    ))
}
