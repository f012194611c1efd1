//! The response writer: from a request to a status line, headers and a
//! body, and from those to the socket with
//! [`sendmsg(2)`](https://man7.org/linux/man-pages/man2/sendmsg.2.html)
//! (a `writev` that takes flags) for the head and
//! [`sendfile(2)`](https://man7.org/linux/man-pages/man2/sendfile.2.html)
//! for the file, which the kernel copies from the page cache to the socket
//! without passing through this process.

use std::fs::File;
use std::io::IoSlice;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::FileExt;
use std::path::Path;

use nix::errno::Errno;
use nix::sys::socket::{MsgFlags, sendmsg};

use super::parse::Request;

/// `MSG_MORE` (nix has no name for it): more data follows, so TCP holds a
/// partial segment back for it, as `TCP_CORK` does for one call.
const MSG_MORE: MsgFlags = MsgFlags::from_bits_retain(libc::MSG_MORE);
use super::resolve::{open_under, resolve};
use super::{content_type, date, reason};
use crate::kit::{Error, Result};

/// What follows the head.
#[derive(Debug)]
pub enum Body {
    /// Nothing (HEAD, 304).
    Empty,
    /// A few bytes made here (an error page).
    Bytes(Vec<u8>),
    /// `len` bytes of `file` from `offset`, sent with sendfile.
    File {
        /// The open file.
        file: File,
        /// Where the next byte to send is.
        offset: u64,
        /// How many bytes are left to send.
        len: u64,
    },
}

/// A response on its way out.
#[derive(Debug)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// Status line and headers, ending with the empty line.
    pub head: Vec<u8>,
    /// How much of `head` has been sent.
    pub head_sent: usize,
    /// The body.
    pub body: Body,
    /// Close the connection after this response?
    pub close: bool,
}

impl Response {
    /// A response with `status`, the `extra` header lines (each ending in
    /// CRLF), `Content-Length: length`, and `body`.
    ///
    /// The head is built in one buffer of the right size: one allocation per
    /// response (the `Date` is appended from a per-second cache).
    pub fn new(status: u16, extra: &str, length: u64, body: Body, close: bool) -> Response {
        use std::fmt::Write;
        let mut head = String::with_capacity(128 + extra.len());
        let _ = write!(head, "HTTP/1.1 {status} {}\r\n", reason(status));
        head.push_str("Server: sockbook-ch12\r\nDate: ");
        date::now_into(&mut head);
        head.push_str("\r\n");
        head.push_str(extra);
        let _ = write!(head, "Content-Length: {length}\r\n");
        if close {
            head.push_str("Connection: close\r\n");
        }
        head.push_str("\r\n");
        Response {
            status,
            head: head.into_bytes(),
            head_sent: 0,
            body,
            close,
        }
    }

    /// An error page for `status` (a small HTML body, or none for HEAD).
    pub fn error(status: u16, extra: &str, head_only: bool, close: bool) -> Response {
        let page = format!(
            "<!doctype html><title>{status} {0}</title><h1>{status} {0}</h1>\n",
            reason(status)
        );
        let length = page.len() as u64;
        let extra = format!("{extra}Content-Type: text/html; charset=utf-8\r\n");
        let body = if head_only {
            Body::Empty
        } else {
            Body::Bytes(page.into_bytes())
        };
        Response::new(status, &extra, length, body, close)
    }

    /// Bytes of body still to send.
    pub fn body_left(&self) -> u64 {
        match &self.body {
            Body::Empty => 0,
            Body::Bytes(b) => b.len() as u64,
            Body::File { len, .. } => *len,
        }
    }

    // ANCHOR: ch12_write_to
    /// Send as much as the socket takes now. `Ok(true)`: all sent;
    /// `Ok(false)`: the socket is full (EAGAIN), call again when writable.
    ///
    /// **Assignment.** While head bytes remain, send the rest of the head
    /// with `sendmsg` (gather it with an in-memory body, if any, into one
    /// call), flags `MSG_NOSIGNAL` (no SIGPIPE: EPIPE instead), and
    /// `MSG_MORE` when a file body follows (so head and file leave in the
    /// same segments). A short send is normal: count what went. Then send
    /// the file with `sendfile(2)` from `offset`, advancing `offset` and
    /// shrinking `len` by what it sent, until `len` is 0. EAGAIN means
    /// "not now" (`Ok(false)`), EINTR means "again", anything else is the
    /// connection's error. sendfile returning 0 with bytes left means the
    /// file shrank: an error (the length was promised).
    pub fn write_to(&mut self, socket: impl AsFd) -> Result<bool> {
        // BEGIN SOLUTION
        let socket = socket.as_fd();
        while self.head_sent < self.head.len() {
            let head = &self.head[self.head_sent..];
            let sent = match &self.body {
                Body::Bytes(bytes) => {
                    let iov = [IoSlice::new(head), IoSlice::new(bytes)];
                    sendmsg::<()>(socket.as_raw_fd(), &iov, &[], MsgFlags::MSG_NOSIGNAL, None)
                }
                Body::File { .. } => sendmsg::<()>(
                    socket.as_raw_fd(),
                    &[IoSlice::new(head)],
                    &[],
                    MsgFlags::MSG_NOSIGNAL | MSG_MORE,
                    None,
                ),
                Body::Empty => sendmsg::<()>(
                    socket.as_raw_fd(),
                    &[IoSlice::new(head)],
                    &[],
                    MsgFlags::MSG_NOSIGNAL,
                    None,
                ),
            };
            match sent {
                Ok(n) => {
                    let of_head = n.min(head.len());
                    self.head_sent += of_head;
                    if let Body::Bytes(bytes) = &mut self.body {
                        bytes.drain(..n - of_head);
                    }
                }
                Err(Errno::EAGAIN) => return Ok(false),
                Err(Errno::EINTR) => {}
                Err(e) => return Err(Error::sys(format!("sendmsg({socket:?})"), e)),
            }
        }
        match &mut self.body {
            Body::Empty => Ok(true),
            Body::Bytes(bytes) => {
                while !bytes.is_empty() {
                    match nix::sys::socket::send(socket.as_raw_fd(), bytes, MsgFlags::MSG_NOSIGNAL)
                    {
                        Ok(n) => {
                            bytes.drain(..n);
                        }
                        Err(Errno::EAGAIN) => return Ok(false),
                        Err(Errno::EINTR) => {}
                        Err(e) => return Err(Error::sys("send", e)),
                    }
                }
                Ok(true)
            }
            Body::File { file, offset, len } => {
                while *len > 0 {
                    let mut off = *offset as libc::off_t;
                    let count = (*len).min(1 << 30) as usize;
                    // SAFETY: both fds are open for the duration of the
                    // call and `off` is a valid, writable off_t.
                    let n = unsafe {
                        libc::sendfile(socket.as_raw_fd(), file.as_raw_fd(), &mut off, count)
                    };
                    match n {
                        0 => return Err(Error::msg("sendfile: the file shrank while being sent")),
                        n if n > 0 => {
                            *offset += n as u64;
                            *len -= n as u64;
                        }
                        _ => match Errno::last() {
                            Errno::EAGAIN => return Ok(false),
                            Errno::EINTR => {}
                            e => return Err(Error::sys("sendfile", e)),
                        },
                    }
                }
                Ok(true)
            }
        }
        // END SOLUTION
    }
    // ANCHOR_END: ch12_write_to
}

/// A range that starts past the end of the file (416).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unsatisfiable;

/// A `Range: bytes=…` header for a file of `size` bytes: `Ok(None)` to
/// ignore it (absent, not bytes, several ranges), `Ok(Some((first,
/// last)))` inclusive, `Err(Unsatisfiable)` when it cannot be (416).
pub fn byte_range(
    header: Option<&str>,
    size: u64,
) -> std::result::Result<Option<(u64, u64)>, Unsatisfiable> {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return Ok(None);
    };
    let (a, b) = (a.trim(), b.trim());
    let range = if a.is_empty() {
        // bytes=-N: the last N bytes.
        let Ok(n) = b.parse::<u64>() else {
            return Ok(None);
        };
        if n == 0 || size == 0 {
            return Err(Unsatisfiable);
        }
        (size - n.min(size), size - 1)
    } else {
        let Ok(first) = a.parse::<u64>() else {
            return Ok(None);
        };
        let last = if b.is_empty() {
            size.saturating_sub(1)
        } else {
            match b.parse::<u64>() {
                Ok(last) if last >= first => last.min(size.saturating_sub(1)),
                _ => return Ok(None),
            }
        };
        if first >= size {
            return Err(Unsatisfiable);
        }
        (first, last)
    };
    Ok(Some(range))
}

/// A file body this small (one page) is read into memory with
/// [`pread(2)`](https://man7.org/linux/man-pages/man2/pread.2.html) and
/// leaves with the head in one `sendmsg`: one call into TCP instead of
/// `sendmsg` plus `sendfile`, at the price of a copy that is cheap for a few
/// hundred bytes. Larger bodies go by `sendfile`, which does not copy.
pub const SMALL_BODY: u64 = 4096;

/// The methods this server allows, for `Allow`.
pub const ALLOW: &str = "GET, HEAD";

/// Methods RFC 9110 defines that a static server does not allow (405);
/// any other token is unknown (501).
pub const KNOWN_METHODS: [&str; 7] = [
    "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
];

// ANCHOR: ch12_respond
/// The response to `request` for files under `root` (canonical).
///
/// **Assignment.** GET and HEAD only: another RFC 9110 method
/// ([`KNOWN_METHODS`]) is 405 with `Allow: GET, HEAD`, any other 501.
/// [`resolve`] the target (its refusal's status is the answer). Open the
/// file and read its metadata (`fstat`). Headers: `Content-Type` from the
/// extension, `Last-Modified` (its mtime as an HTTP date), `Accept-Ranges:
/// bytes`, `Content-Length`. If `If-Modified-Since` parses and the file is
/// not newer (compare whole seconds), 304 with no body. A single satisfiable
/// `Range` ([`byte_range`]) is 206 with `Content-Range: bytes a-b/size` and
/// only those bytes; an unsatisfiable one 416 with `Content-Range:
/// bytes */size`. HEAD sends the same head as GET, and no body. The body
/// is the open file ([`Body::File`], for `sendfile`), or, when it is at most
/// [`SMALL_BODY`] bytes, those bytes read with `pread` ([`Body::Bytes`]; a
/// read that fails or comes up short is a 500). `close` goes into the
/// response (`Connection: close`).
pub fn respond(root: &Path, request: &Request, close: bool) -> Response {
    // BEGIN SOLUTION
    let head_only = request.method == "HEAD";
    if request.method != "GET" && !head_only {
        if KNOWN_METHODS.contains(&request.method.as_str()) {
            return Response::error(405, &format!("Allow: {ALLOW}\r\n"), false, close);
        }
        return Response::error(501, "", false, close);
    }
    let path = match resolve(root, &request.target) {
        Ok(path) => path,
        Err(refusal) => return Response::error(refusal.status(), "", head_only, close),
    };
    let opened = open_under(root, &path).and_then(|f| f.metadata().map(|m| (f, m)));
    let Ok((file, meta)) = opened else {
        return Response::error(404, "", head_only, close);
    };
    let size = meta.len();
    let mtime = meta.modified().unwrap_or(std::time::UNIX_EPOCH);
    let mut extra = String::with_capacity(128);
    extra.push_str("Content-Type: ");
    extra.push_str(content_type(&path));
    extra.push_str("\r\nLast-Modified: ");
    date::format_into(&mut extra, mtime);
    extra.push_str("\r\nAccept-Ranges: bytes\r\n");
    if let Some(since) = request.header("if-modified-since").and_then(date::parse)
        && date::unix_secs(mtime) <= date::unix_secs(since)
    {
        let mut r = Response::new(304, &extra, 0, Body::Empty, close);
        // A 304 has no body and no Content-Length of the (absent) body.
        let text = String::from_utf8_lossy(&r.head).replace("Content-Length: 0\r\n", "");
        r.head = text.into_bytes();
        return r;
    }
    let (status, offset, len) = match byte_range(request.header("range"), size) {
        Ok(None) => (200, 0, size),
        Ok(Some((first, last))) => {
            extra += &format!("Content-Range: bytes {first}-{last}/{size}\r\n");
            (206, first, last - first + 1)
        }
        Err(Unsatisfiable) => {
            return Response::error(
                416,
                &format!("Content-Range: bytes */{size}\r\n"),
                head_only,
                close,
            );
        }
    };
    let body = if head_only || len == 0 {
        Body::Empty
    } else if len <= SMALL_BODY {
        // pread(2): copied once here, then sent with the head in one sendmsg.
        let mut bytes = vec![0u8; len as usize];
        match file.read_exact_at(&mut bytes, offset) {
            Ok(()) => Body::Bytes(bytes),
            Err(_) => return Response::error(500, "", head_only, close),
        }
    } else {
        Body::File { file, offset, len }
    };
    Response::new(status, &extra, len, body, close)
    // END SOLUTION
}
// ANCHOR_END: ch12_respond
