//! Graded tests for chapter 12: the incremental parser, the path resolver,
//! the response writer and the connection loop. The clients are independent
//! of the chapter's code: raw `std::net` sockets, a tiny reference parser
//! written here, and Python's `http.client`.

#[macro_use]
mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use sockbook::ch12_http::parse::{Limits, Parsed, Parser, Reject, Version};
use sockbook::ch12_http::resolve::{Refusal, resolve};
use sockbook::ch12_http::respond::respond;
use sockbook::ch12_http::server::{listeners, serve};
use sockbook::ch12_http::{Config, Request};
use support::{Background, DEADLINE};

// ---------------------------------------------------------------------------
// A tiny PRNG (xorshift64*), so the property tests need no crate and are
// reproducible: every failure prints its seed.

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

// ---------------------------------------------------------------------------
// The parser.

/// Well-formed requests of many shapes.
fn good_requests() -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = vec![
        b"GET / HTTP/1.1\r\nHost: a\r\n\r\n".to_vec(),
        b"HEAD /x/y.css?q=1 HTTP/1.1\r\nHost: example.test\r\nAccept: */*\r\nUser-Agent: t/1\r\n\r\n".to_vec(),
        b"GET /a%20b HTTP/1.0\r\n\r\n".to_vec(),
        b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n".to_vec(),
        b"\r\nGET /after-empty-line HTTP/1.1\r\nHost: h\r\n\r\n".to_vec(),
        b"GET /lf-only HTTP/1.1\nHost: h\nX-Tab:\tvalue with\ttab \n\n".to_vec(),
        b"OPTIONS * HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n".to_vec(),
        b"GET /v HTTP/1.9\r\nhost: lower\r\nX-Empty:\r\nX-Colon: a:b:c\r\n\r\n".to_vec(),
    ];
    let mut long = b"GET /".to_vec();
    long.extend(std::iter::repeat_n(b'z', 3000));
    long.extend(b" HTTP/1.1\r\nHost: h\r\n");
    for i in 0..40 {
        long.extend(format!("X-Field-{i}: {}\r\n", "v".repeat(i * 10)).as_bytes());
    }
    long.extend(b"\r\n");
    v.push(long);
    v
}

/// The reference: an independent whole-buffer parse of a well-formed head.
fn reference(bytes: &[u8]) -> (String, String, Version, Vec<(String, String)>) {
    let text = String::from_utf8(bytes.to_vec()).unwrap();
    let text = text.trim_start_matches(['\r', '\n']);
    let mut lines = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let start: Vec<&str> = lines.next().unwrap().split(' ').collect();
    let version = if start[2] == "HTTP/1.0" {
        Version::Http10
    } else {
        Version::Http11
    };
    let mut headers = Vec::new();
    for line in lines.take_while(|l| !l.is_empty()) {
        let (n, v) = line.split_once(':').unwrap();
        headers.push((n.to_string(), v.trim_matches([' ', '\t']).to_string()));
    }
    (start[0].to_string(), start[1].to_string(), version, headers)
}

fn as_tuple(r: &Request) -> (String, String, Version, Vec<(String, String)>) {
    (
        r.method.clone(),
        r.target.clone(),
        r.version,
        r.headers.clone(),
    )
}

/// Feed `chunks` in turn; collect every request and the final rejection.
fn feed_all(chunks: &[&[u8]]) -> (Vec<Request>, Option<Reject>) {
    let mut parser = Parser::default();
    let mut done = Vec::new();
    for chunk in chunks {
        let mut rest = *chunk;
        loop {
            let (used, parsed) = parser.feed(rest);
            assert!(
                used <= rest.len(),
                "Parser::feed({}) returned used = {used}, more than the {} bytes it was given",
                show(rest),
                rest.len()
            );
            rest = &rest[used..];
            match parsed {
                Parsed::Done(r) => done.push(r),
                Parsed::Rejected(why) => return (done, Some(why)),
                Parsed::Incomplete => {
                    assert!(
                        rest.is_empty(),
                        "Parser::feed returned Incomplete but left {} bytes unused ({}); Incomplete means \
                         it used (kept in self.line) all it was given",
                        rest.len(),
                        show(rest)
                    );
                    break;
                }
            }
            if rest.is_empty() {
                break;
            }
        }
    }
    (done, None)
}

fn show(bytes: &[u8]) -> String {
    let s = String::from_utf8_lossy(bytes);
    if s.len() > 120 {
        format!("{:?}… ({} bytes)", &s[..120], bytes.len())
    } else {
        format!("{s:?}")
    }
}

graded! {
    /// Each well-formed request, cut at every possible point into two reads
    /// (and fed one byte at a time), parses to the same request as an
    /// independent whole-buffer parse.
    points = 4;
    fn parser_every_split_gives_the_same_request() {
        for req in good_requests() {
            let want = reference(&req);
            for cut in 0..=req.len() {
                let (got, rejected) = feed_all(&[&req[..cut], &req[cut..]]);
                assert!(
                    rejected.is_none() && got.len() == 1,
                    "fed {} cut after byte {cut}: expected one request, got {} and rejection {rejected:?}",
                    show(&req), got.len()
                );
                assert_eq!(as_tuple(&got[0]), want, "fed {} cut after byte {cut} (two reads): (method, target, version, headers) from Parser::feed (left) vs an independent whole-buffer parse (right)", show(&req));
            }
            let bytes: Vec<&[u8]> = req.chunks(1).collect();
            let (got, rejected) = feed_all(&bytes);
            assert!(got.len() == 1 && rejected.is_none(), "fed {} one byte per read: {} requests, {rejected:?}", show(&req), got.len());
            assert_eq!(as_tuple(&got[0]), want, "fed {} one byte per read: (method, target, version, headers) from Parser::feed (left) vs an independent whole-buffer parse (right)", show(&req));
        }
    }
}

graded! {
    /// Many pipelined requests in one stream, cut into random reads (seeded
    /// PRNG): the parser stops at each head's end and yields them all, in
    /// order, for every cutting.
    points = 3;
    fn parser_pipelined_stream_in_random_reads() {
        let reqs = good_requests();
        let mut rng = Rng(0x1234_5678_9abc_def1);
        for round in 0..200 {
            let picks: Vec<usize> = (0..1 + rng.below(6)).map(|_| rng.below(reqs.len())).collect();
            let stream: Vec<u8> = picks.iter().flat_map(|&i| reqs[i].clone()).collect();
            let mut chunks = Vec::new();
            let mut at = 0;
            while at < stream.len() {
                let span = if rng.below(2) == 0 { 8 } else { 700 };
                let n = 1 + rng.below(span);
                let end = (at + n).min(stream.len());
                chunks.push(&stream[at..end]);
                at = end;
            }
            let (got, rejected) = feed_all(&chunks);
            assert!(rejected.is_none(), "round {round}: rejected {rejected:?} on {}", show(&stream));
            let got: Vec<_> = got.iter().map(as_tuple).collect();
            let want: Vec<_> = picks.iter().map(|&i| reference(&reqs[i])).collect();
            assert_eq!(got.len(), want.len(), "round {round}: {} pipelined requests in {} reads gave {}", want.len(), chunks.len(), got.len());
            assert_eq!(got, want, "round {round}: {} pipelined requests {} in {} reads: (method, target, version, headers) from Parser::feed (left) vs an independent parse of each (right): they differ or are out of order", want.len(), show(&stream), chunks.len());
        }
    }
}

/// Malformed requests and the status each must get.
fn bad_requests() -> Vec<(Vec<u8>, Reject)> {
    let mut v: Vec<(Vec<u8>, Reject)> = vec![
        (b"GET / HTTP/1.1\r\n\r\n".to_vec(), Reject::BadRequest), // no Host
        (
            b"GET  / HTTP/1.1\r\nHost: h\r\n\r\n".to_vec(),
            Reject::BadRequest,
        ),
        (b"GET /\r\nHost: h\r\n\r\n".to_vec(), Reject::BadRequest),
        (
            b"GET / HTTP/1.1 x\r\nHost: h\r\n\r\n".to_vec(),
            Reject::BadRequest,
        ),
        (
            b"G(T / HTTP/1.1\r\nHost: h\r\n\r\n".to_vec(),
            Reject::BadRequest,
        ),
        (
            b"GET / HTTQ/1.1\r\nHost: h\r\n\r\n".to_vec(),
            Reject::BadRequest,
        ),
        (
            b"GET / HTTP/1.1\r\nHost : h\r\n\r\n".to_vec(),
            Reject::BadRequest,
        ),
        (
            b"GET / HTTP/1.1\r\nHost: h\r\n folded\r\n\r\n".to_vec(),
            Reject::BadRequest,
        ),
        (
            b"GET / HTTP/1.1\r\nHost: h\rX: y\r\n\r\n".to_vec(),
            Reject::BadRequest,
        ),
        (
            b"GET / HTTP/1.1\r\nHost: h\0\r\n\r\n".to_vec(),
            Reject::BadRequest,
        ),
        (
            b"GET / HTTP/1.1\r\nno colon\r\n\r\n".to_vec(),
            Reject::BadRequest,
        ),
        (
            b"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: x\r\n\r\n".to_vec(),
            Reject::BadRequest,
        ),
        (
            b"GET / HTTP/2.0\r\nHost: h\r\n\r\n".to_vec(),
            Reject::VersionNotSupported,
        ),
        (
            b"GET / HTTP/3.0\r\n\r\n".to_vec(),
            Reject::VersionNotSupported,
        ),
        (
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\n".to_vec(),
            Reject::ContentTooLarge,
        ),
        (
            b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec(),
            Reject::NotImplemented,
        ),
    ];
    let limits = Limits::default();
    let mut long_uri = b"GET /".to_vec();
    long_uri.extend(std::iter::repeat_n(b'a', limits.max_request_line));
    long_uri.extend(b" HTTP/1.1\r\nHost: h\r\n\r\n");
    v.push((long_uri, Reject::UriTooLong));
    let mut long_field = b"GET / HTTP/1.1\r\nHost: h\r\nX: ".to_vec();
    long_field.extend(std::iter::repeat_n(b'b', limits.max_header_line));
    long_field.extend(b"\r\n\r\n");
    v.push((long_field, Reject::HeadersTooLarge));
    let mut many = b"GET / HTTP/1.1\r\nHost: h\r\n".to_vec();
    for i in 0..=limits.max_headers {
        many.extend(format!("X-{i}: 1\r\n").as_bytes());
    }
    many.extend(b"\r\n");
    v.push((many, Reject::HeadersTooLarge));
    let mut big_head = b"GET / HTTP/1.1\r\nHost: h\r\n".to_vec();
    while big_head.len() <= limits.max_head {
        big_head.extend(format!("X-Big: {}\r\n", "c".repeat(1000)).as_bytes());
    }
    big_head.extend(b"\r\n");
    v.push((big_head, Reject::HeadersTooLarge));
    v
}

graded! {
    /// Malformed or oversized heads are rejected with the right status
    /// (400, 413, 414, 431, 501, 505), whatever the split into reads.
    points = 3;
    fn parser_rejects_with_the_right_status_at_every_split() {
        for (req, want) in bad_requests() {
            let step = (req.len() / 64).max(1);
            for cut in (0..=req.len()).step_by(step).chain([req.len().saturating_sub(1), req.len() / 2]) {
                let (got, rejected) = feed_all(&[&req[..cut], &req[cut..]]);
                assert!(
                    got.is_empty() && rejected == Some(want),
                    "fed {} cut after byte {cut}: expected rejection {} ({want:?}), got {} requests and {rejected:?}",
                    show(&req), want.status(), got.len()
                );
            }
        }
    }
}

graded! {
    /// A line that never ends is refused once it passes the limit, not when
    /// (if ever) its LF arrives: 1 MiB without a newline, in 1 KiB reads,
    /// is rejected with 414 before the end, and the parser never holds more
    /// than the limit.
    points = 2;
    fn parser_bounds_a_line_before_its_newline() {
        for (prefix, want) in [(&b"GET /"[..], Reject::UriTooLong), (&b"GET / HTTP/1.1\r\nX: "[..], Reject::HeadersTooLarge)] {
            let mut parser = Parser::default();
            let mut fed = 0usize;
            let (_, first) = parser.feed(prefix);
            assert_eq!(first, Parsed::Incomplete, "Parser::feed({}) on a fresh parser: a start with no LF yet should be Incomplete", show(prefix));
            let chunk = [b'a'; 1024];
            let mut result = Parsed::Incomplete;
            while fed < 1 << 20 {
                let (_, parsed) = parser.feed(&chunk);
                fed += chunk.len();
                assert!(parser.line.len() <= Limits::default().max_request_line.max(Limits::default().max_header_line),
                    "{} then {fed} bytes of 'a' without LF: the parser holds a {}-byte line, more than the line limit ({} bytes); check the limit before the LF arrives",
                    show(prefix), parser.line.len(), Limits::default().max_request_line.max(Limits::default().max_header_line));
                if parsed != Parsed::Incomplete {
                    result = parsed;
                    break;
                }
            }
            assert_eq!(result, Parsed::Rejected(want), "{} then 1 MiB of 'a' with no LF: got {result:?} after {fed} bytes", show(prefix));
            assert!(fed <= 16 * 1024, "{} then 'a' in 1 KiB reads with no LF: rejected only after {fed} bytes; the line limit is {} bytes, so it should be refused within 16 KiB", show(prefix), Limits::default().max_request_line.max(Limits::default().max_header_line));
        }
    }
}

graded! {
    /// Random bytes and mutated requests (bytes flipped, inserted, deleted,
    /// cut), fed in random reads: no panic, and the outcome is the same as
    /// when the same bytes arrive in one read.
    points = 2;
    fn parser_survives_garbage_and_mutations() {
        let reqs = good_requests();
        let mut rng = Rng(0xdead_beef_cafe_f00d);
        for round in 0..3000 {
            let mut bytes = if round % 3 == 0 {
                (0..rng.below(400)).map(|_| rng.next() as u8).collect::<Vec<u8>>()
            } else {
                reqs[rng.below(reqs.len())].clone()
            };
            for _ in 0..1 + rng.below(4) {
                if bytes.is_empty() {
                    break;
                }
                let at = rng.below(bytes.len());
                match rng.below(4) {
                    0 => bytes[at] = rng.next() as u8,
                    1 => bytes.insert(at, [b'\r', b'\n', b' ', b':', 0, b'%'][rng.below(6)]),
                    2 => {
                        bytes.remove(at);
                    }
                    _ => bytes.truncate(at),
                }
            }
            let whole = feed_all(&[&bytes]);
            let mut chunks = Vec::new();
            let mut at = 0;
            while at < bytes.len() {
                let end = (at + 1 + rng.below(20)).min(bytes.len());
                chunks.push(&bytes[at..end]);
                at = end;
            }
            let split = feed_all(&chunks);
            let view = |r: &(Vec<Request>, Option<Reject>)| (r.0.iter().map(as_tuple).collect::<Vec<_>>(), r.1);
            assert_eq!(view(&split), view(&whole), "round {round}: (requests, rejection) from Parser::feed for {} in {} reads (left) vs in one read (right): any split must give the same outcome", show(&bytes), chunks.len());
        }
    }
}

// ---------------------------------------------------------------------------
// The resolver.

/// A temporary tree: `DIR/root` is served, `DIR/secret.txt` is outside.
struct Tree {
    dir: PathBuf,
    root: PathBuf,
}

impl Tree {
    fn new(tag: &str) -> Tree {
        let dir = std::env::temp_dir().join(format!("ch12-test-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let root = dir.join("root");
        std::fs::create_dir_all(root.join("sub/deeper")).unwrap();
        std::fs::create_dir_all(root.join("noindex")).unwrap();
        std::fs::write(dir.join("secret.txt"), "SECRET outside the root\n").unwrap();
        std::fs::write(root.join("index.html"), "<h1>root index</h1>\n").unwrap();
        std::fs::write(root.join("sub/index.html"), "<h1>sub index</h1>\n").unwrap();
        std::fs::write(root.join("sub/deeper/file.txt"), "deeper\n").unwrap();
        std::fs::write(root.join("a b.txt"), "space\n").unwrap();
        std::fs::write(root.join("a+b.txt"), "plus\n").unwrap();
        std::fs::write(root.join("100%.txt"), "percent\n").unwrap();
        std::fs::write(root.join("日本.txt"), "unicode\n").unwrap();
        std::fs::write(root.join("style.css"), "h1{color:red}\n").unwrap();
        std::fs::write(root.join("..hidden"), "dots in a name\n").unwrap();
        let big: Vec<u8> = (0..(1u32 << 20) + 12345)
            .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8)
            .collect();
        std::fs::write(root.join("big.bin"), big).unwrap();
        std::os::unix::fs::symlink(dir.join("secret.txt"), root.join("link-out")).unwrap();
        std::os::unix::fs::symlink(&dir, root.join("dir-out")).unwrap();
        std::os::unix::fs::symlink(root.join("style.css"), root.join("link-in.css")).unwrap();
        let root = std::fs::canonicalize(&root).unwrap();
        Tree { dir, root }
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

graded! {
    /// Traversal attacks are refused: `..` plain or percent-encoded (any
    /// case), encoded slashes, NUL, non-origin targets with `BadTarget`
    /// (400); symlinks out of the root with `Forbidden` (403).
    points = 4;
    fn resolver_refuses_traversal_attacks() {
        let tree = Tree::new("attacks");
        let attacks: &[(&str, Refusal)] = &[
            ("/../secret.txt", Refusal::BadTarget),
            ("/sub/../../secret.txt", Refusal::BadTarget),
            ("/%2e%2e/secret.txt", Refusal::BadTarget),
            ("/%2E%2E/secret.txt", Refusal::BadTarget),
            ("/.%2e/secret.txt", Refusal::BadTarget),
            ("/sub/%2e%2e/index.html", Refusal::BadTarget),
            ("/..%2fsecret.txt", Refusal::BadTarget),
            ("/..%2Fsecret.txt", Refusal::BadTarget),
            ("/sub%2f..%2f..%2fsecret.txt", Refusal::BadTarget),
            ("/%2e%2e%2fsecret.txt", Refusal::BadTarget),
            ("/index.html%00.txt", Refusal::BadTarget),
            ("/%00", Refusal::BadTarget),
            ("/bad%zzescape", Refusal::BadTarget),
            ("/bad%2", Refusal::BadTarget),
            ("secret.txt", Refusal::BadTarget),
            ("../secret.txt", Refusal::BadTarget),
            ("*", Refusal::BadTarget),
            ("/link-out", Refusal::Forbidden),
            ("/dir-out/secret.txt", Refusal::Forbidden),
            ("/dir-out/", Refusal::Forbidden),
            ("/missing.txt", Refusal::NotFound),
            ("/noindex", Refusal::NotFound),
        ];
        for (target, want) in attacks {
            let got = resolve(&tree.root, target);
            assert_eq!(got, Err(*want), "resolve(root={}, {target:?}): expected refusal {want:?} (status {})", tree.root.display(), want.status());
        }
    }
}

graded! {
    /// Legal odd names resolve to the right file under the root (compared
    /// with the path the test builds with `std::fs::canonicalize`): spaces
    /// and `%20`, `+`, `%25`, percent-encoded UTF-8, `..` inside a name,
    /// `.` and empty segments, queries and fragments, directories to their
    /// `index.html`, symlinks that stay inside.
    points = 3;
    fn resolver_serves_legal_odd_names() {
        let tree = Tree::new("legal");
        let real = |p: &str| std::fs::canonicalize(tree.root.join(p)).unwrap();
        let cases: &[(&str, &str)] = &[
            ("/", "index.html"),
            ("/index.html", "index.html"),
            ("/a%20b.txt", "a b.txt"),
            ("/a+b.txt", "a+b.txt"),
            ("/100%25.txt", "100%.txt"),
            ("/%E6%97%A5%E6%9C%AC.txt", "日本.txt"),
            ("/..hidden", "..hidden"),
            ("/sub", "sub/index.html"),
            ("/sub/", "sub/index.html"),
            ("/./sub//deeper/./file.txt", "sub/deeper/file.txt"),
            ("/style.css?v=3", "style.css"),
            ("/style.css#top", "style.css"),
            ("/index.html?a=../../secret.txt", "index.html"),
            ("/link-in.css", "style.css"),
        ];
        for (target, file) in cases {
            let got = resolve(&tree.root, target);
            assert_eq!(got, Ok(real(file)), "resolve(root={}, {target:?}): expected the file {file:?}", tree.root.display());
        }
    }
}

// ---------------------------------------------------------------------------
// A server under test on a background thread, stopped by closing a pipe.

struct Server {
    addr: SocketAddr,
    port: u16,
    stop: Option<std::io::PipeWriter>,
    thread: Option<Background<sockbook::kit::Result<sockbook::ch12_http::Stats>>>,
    _tree: Tree,
    root: PathBuf,
}

impl Server {
    fn start(tag: &str, tune: impl FnOnce(&mut Config)) -> Server {
        Server::start_with(tag, None, tune)
    }

    /// [`Server::start`]; with `sndbuf`, the listener's `SO_SNDBUF`, which
    /// every accepted socket inherits: a 1 MiB response then goes out in
    /// many pieces with EAGAIN between them, on any machine.
    fn start_with(tag: &str, sndbuf: Option<usize>, tune: impl FnOnce(&mut Config)) -> Server {
        sockbook::kit::narrate::set_quiet(true);
        let tree = Tree::new(tag);
        let mut config = Config::new(tree.root.clone());
        tune(&mut config);
        let (fds, bound) = listeners(&support::loopback_any(), 1, 128).unwrap();
        if let Some(size) = sndbuf {
            for fd in &fds {
                nix::sys::socket::setsockopt(fd, nix::sys::socket::sockopt::SndBuf, &size).unwrap();
            }
        }
        let addr = support::std_addr(&bound);
        let (stop_r, stop_w) = std::io::pipe().unwrap();
        let thread = Background::spawn("ch12 server", move || serve(fds, stop_r, &config));
        Server {
            addr,
            port: addr.port(),
            stop: Some(stop_w),
            thread: Some(thread),
            root: tree.root.clone(),
            _tree: tree,
        }
    }

    fn connect(&self) -> TcpStream {
        let s = TcpStream::connect_timeout(&self.addr, DEADLINE)
            .unwrap_or_else(|e| panic!("connect to the server under test at {}: {e}", self.addr));
        s.set_read_timeout(Some(DEADLINE)).unwrap();
        s
    }

    fn file(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.root.join(name)).unwrap()
    }

    /// Stop it; check it returned Ok and left no socket on its port.
    fn finish(mut self) {
        drop(self.stop.take());
        let result = self
            .thread
            .take()
            .unwrap()
            .join_within(DEADLINE, "server stop");
        assert!(
            result.is_ok(),
            "serve() should return Ok once its stop pipe is closed; it returned {result:?}"
        );
        let left = support::open_sockets_on_port(self.port);
        assert_eq!(
            left, 0,
            "after the server stopped, {left} sockets on port {} are still open in this process",
            self.port
        );
    }
}

/// One response read from a raw socket: status, headers, body.
#[derive(Debug)]
struct Raw {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Raw {
    /// The response as a student should see it in a failure message.
    fn describe(&self) -> String {
        let heads: Vec<String> = self
            .headers
            .iter()
            .map(|(n, v)| format!("{n}: {v}"))
            .collect();
        format!(
            "status {}, headers [{}], body {} bytes {}",
            self.status,
            heads.join("; "),
            self.body.len(),
            show(&self.body[..self.body.len().min(120)])
        )
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Read one response from `s` (bytes already read in `pending`); `what`
/// names the request it answers, for the failure messages.
fn read_response(s: &mut TcpStream, pending: &mut Vec<u8>, head_only: bool, what: &str) -> Raw {
    let mut buf = [0u8; 65536];
    let end = loop {
        if let Some(i) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = s.read(&mut buf).unwrap_or_else(|e| {
            let timeout = matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut);
            panic!(
                "{what}: reading the response head from the server under test failed: {e}{}; \
                 read so far {}",
                if timeout {
                    format!(" (no answer within {DEADLINE:?})")
                } else {
                    String::new()
                },
                show(pending)
            )
        });
        assert!(
            n > 0,
            "{what}: the server under test closed the connection (EOF) before a whole response \
             head (no blank line yet); read so far {}",
            show(pending)
        );
        pending.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&pending[..end]).into_owned();
    pending.drain(..end);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    assert!(
        status_line.starts_with("HTTP/1.1 "),
        "{what}: a response on this connection should start with `HTTP/1.1 NNN reason`; the \
         status line is {} (whole head {}); bytes left over from the response before (a body \
         longer than its Content-Length, or one sent after a HEAD)?",
        show(status_line.as_bytes()),
        show(head.as_bytes())
    );
    let status = status_of(status_line, &head);
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.to_string(), v.trim().to_string()))
        .collect();
    let mut raw = Raw {
        status,
        headers,
        body: Vec::new(),
    };
    let length: usize = if head_only || status == 304 {
        0
    } else {
        raw.header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{what}: a status {status} response to a GET needs a Content-Length (keep-alive: the client must know where the body ends); the head was {}", show(head.as_bytes())))
    };
    while pending.len() < length {
        let n = s.read(&mut buf).unwrap_or_else(|e| {
            panic!(
                "{what}: reading a body of {length} bytes (Content-Length) from the server under \
                 test failed: {e}{} after {} bytes; head {}",
                if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) {
                    format!(" (no more bytes within {DEADLINE:?})")
                } else {
                    String::new()
                },
                pending.len(),
                show(head.as_bytes())
            )
        });
        assert!(
            n > 0,
            "{what}: the server under test closed the connection (EOF) after {} of the {length} \
             body bytes its Content-Length promised; head {}",
            pending.len(),
            show(head.as_bytes())
        );
        pending.extend_from_slice(&buf[..n]);
    }
    raw.body = pending.drain(..length).collect();
    raw
}

/// The status code of a status line (`HTTP/1.1 200 OK`); `head` is the
/// whole head, for the message.
fn status_of(status_line: &str, head: &str) -> u16 {
    status_line
        .get(9..12)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| {
            panic!(
                "a response should start with `HTTP/1.x NNN reason`; the status line is \
                 {} (whole head {})",
                show(status_line.as_bytes()),
                show(head.as_bytes())
            )
        })
}

// ---------------------------------------------------------------------------
// The response writer.

/// `respond` then `write_to` on one end of a loopback TCP pair whose send
/// buffer is small and nonblocking, writing when poll says writable; the
/// other end is read by a thread. Returns the bytes the peer got.
fn respond_over_tcp(root: &Path, raw_request: &[u8]) -> Vec<u8> {
    let (_, parsed) = Parser::default().feed(raw_request);
    let Parsed::Done(request) = parsed else {
        panic!(
            "Parser::feed (assignment 1) did not parse the test's request {}: {parsed:?}; \
             the writer tests need a working parser",
            show(raw_request)
        )
    };
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (server, _) = listener.accept().unwrap();
    let reader = Background::spawn("peer", move || {
        let mut client = client;
        client.set_read_timeout(Some(DEADLINE)).unwrap();
        let mut all = Vec::new();
        client.read_to_end(&mut all).unwrap_or_else(|e| {
            panic!(
                "the peer reading the response until EOF: {e} after {} bytes {}",
                all.len(),
                show(&all[..all.len().min(200)])
            )
        });
        all
    });
    nix::sys::socket::setsockopt(&server, nix::sys::socket::sockopt::SndBuf, &4096).unwrap();
    server.set_nonblocking(true).unwrap();
    let what = show(raw_request);
    let mut response = respond(root, &request, true);
    let start = Instant::now();
    loop {
        match response.write_to(&server) {
            Ok(true) => break,
            Ok(false) => {
                sockbook::kit::wait::wait_writable(&server, DEADLINE).unwrap_or_else(|e| {
                    panic!(
                        "respond({what}) then write_to returned Ok(false) (not done), but the socket \
                         did not become writable within {DEADLINE:?}: {e}"
                    )
                })
            }
            Err(e) => panic!(
                "respond({what}) then write_to on a nonblocking socket with a 4 KiB send buffer \
                 failed: {e}{}",
                if e.errno() == Some(nix::errno::Errno::EAGAIN) {
                    " (a full socket buffer, EAGAIN, must be Ok(false), not an error)"
                } else {
                    ""
                }
            ),
        }
        assert!(
            start.elapsed() < DEADLINE,
            "respond({what}): write_to kept returning Ok(false) for {DEADLINE:?} without finishing"
        );
    }
    drop(server);
    reader.join_within(DEADLINE, "peer reads the response")
}

fn parse_all(bytes: &[u8], head_only: bool) -> Raw {
    // Reuse read_response through a loopback pair would be heavy: parse here.
    let end = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4)
        .unwrap_or_else(|| {
            panic!(
                "the response has no end of head (a blank line, CRLF CRLF); the peer read {}",
                show(bytes)
            )
        });
    let head = String::from_utf8_lossy(&bytes[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = status_of(lines.next().unwrap_or_default(), &head);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.to_string(), v.trim().to_string()))
        .collect();
    let raw = Raw {
        status,
        headers,
        body: bytes[end..].to_vec(),
    };
    if head_only {
        assert!(
            raw.body.is_empty(),
            "a HEAD response must carry no body; it carried {} body bytes after the head {}",
            raw.body.len(),
            show(head.as_bytes())
        );
    }
    raw
}

graded! {
    /// GET of a 1 MiB file through a 4 KiB send buffer (sendfile sends a
    /// little at a time, EAGAIN in between): every byte, in order, and the
    /// headers: Content-Length, Content-Type, Last-Modified (compared with
    /// the file's mtime read by `std::fs`). HEAD: the same head, no body.
    points = 4;
    fn writer_sends_files_with_sendfile_and_head() {
        let tree = Tree::new("writer");
        let want = std::fs::read(tree.root.join("big.bin")).unwrap();
        let got = parse_all(&respond_over_tcp(&tree.root, b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n"), false);
        assert_eq!(got.status, 200, "GET /big.bin (a 1 MiB file in the root): expected status 200; got {}", got.describe());
        assert_eq!(got.header("content-length"), Some(want.len().to_string().as_str()), "GET /big.bin: Content-Length vs the file size");
        assert!(got.body.len() == want.len() && got.body == want, "GET /big.bin: got {} body bytes, file has {}; first difference at {:?}",
            got.body.len(), want.len(), got.body.iter().zip(&want).position(|(a, b)| a != b));
        assert_eq!(got.header("content-type"), Some("application/octet-stream"), "GET /big.bin: Content-Type of a .bin file; headers {:?}", got.headers);
        let mtime = std::fs::metadata(tree.root.join("big.bin")).unwrap().modified().unwrap();
        let lm = got
            .header("last-modified")
            .unwrap_or_else(|| panic!("GET /big.bin: the response has no Last-Modified header; headers {:?}", got.headers));
        assert_eq!(sockbook::ch12_http::date::parse(lm), Some(std::time::UNIX_EPOCH + Duration::from_secs(mtime.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs())), "Last-Modified {lm:?} vs mtime");
        let css = parse_all(&respond_over_tcp(&tree.root, b"GET /style.css HTTP/1.1\r\nHost: t\r\n\r\n"), false);
        assert_eq!(css.header("content-type"), Some("text/css; charset=utf-8"), "Content-Type of style.css");
        let css_file = std::fs::read(tree.root.join("style.css")).unwrap();
        assert!(css.body == css_file, "GET /style.css: the body should be the file {}; got {}", show(&css_file), css.describe());
        let head = parse_all(&respond_over_tcp(&tree.root, b"HEAD /big.bin HTTP/1.1\r\nHost: t\r\n\r\n"), true);
        assert_eq!(head.status, 200, "HEAD /big.bin: expected status 200, as for GET; got {}", head.describe());
        assert_eq!(head.header("content-length"), Some(want.len().to_string().as_str()), "HEAD: Content-Length is the GET's");
        let head404 = parse_all(&respond_over_tcp(&tree.root, b"HEAD /nope HTTP/1.1\r\nHost: t\r\n\r\n"), true);
        assert_eq!(head404.status, 404, "HEAD /nope (no such file): expected 404; got {}", head404.describe());
    }
}

graded! {
    /// Conditional and partial GETs, and refused methods: If-Modified-Since
    /// at the mtime → 304 without body, before it → 200; `Range` → 206 with
    /// exactly those bytes and Content-Range, past the end → 416; POST →
    /// 405 with `Allow`, an unknown method → 501; traversal → 400.
    points = 4;
    fn writer_304_range_and_refusals() {
        let tree = Tree::new("cond");
        let file = std::fs::read(tree.root.join("big.bin")).unwrap();
        let mtime = std::fs::metadata(tree.root.join("big.bin")).unwrap().modified().unwrap();
        let at = sockbook::ch12_http::date::format(mtime);
        let before = sockbook::ch12_http::date::format(mtime - Duration::from_secs(3600));
        let r = parse_all(&respond_over_tcp(&tree.root, format!("GET /big.bin HTTP/1.1\r\nHost: t\r\nIf-Modified-Since: {at}\r\n\r\n").as_bytes()), false);
        assert_eq!((r.status, r.body.len()), (304, 0), "GET /big.bin with If-Modified-Since = its mtime ({at}): expected 304 and no body; got {}", r.describe());
        let r = parse_all(&respond_over_tcp(&tree.root, format!("GET /big.bin HTTP/1.1\r\nHost: t\r\nIf-Modified-Since: {before}\r\n\r\n").as_bytes()), false);
        assert_eq!((r.status, r.body.len()), (200, file.len()), "GET /big.bin with If-Modified-Since an hour before its mtime ({before}): expected 200 and the whole file ({} bytes); got {}", file.len(), r.describe());
        for (range, first, last) in [("bytes=0-99", 0, 99), ("bytes=1000-", 1000, file.len() - 1), ("bytes=-500", file.len() - 500, file.len() - 1), ("bytes=70000-70000", 70000, 70000)] {
            let r = parse_all(&respond_over_tcp(&tree.root, format!("GET /big.bin HTTP/1.1\r\nHost: t\r\nRange: {range}\r\n\r\n").as_bytes()), false);
            assert_eq!(r.status, 206, "GET /big.bin ({} bytes) with Range: {range}: expected 206 Partial Content; got {}", file.len(), r.describe());
            assert_eq!(r.header("content-range"), Some(format!("bytes {first}-{last}/{}", file.len()).as_str()), "GET /big.bin with Range: {range}: Content-Range; headers {:?}", r.headers);
            assert!(r.body == file[first..=last], "GET /big.bin with Range: {range}: expected bytes {first}..={last} of the file ({} bytes); got {} bytes, first difference at {:?}",
                last - first + 1, r.body.len(), r.body.iter().zip(&file[first..=last]).position(|(a, b)| a != b));
        }
        let r = parse_all(&respond_over_tcp(&tree.root, format!("GET /big.bin HTTP/1.1\r\nHost: t\r\nRange: bytes={}-\r\n\r\n", file.len()).as_bytes()), false);
        assert_eq!(r.status, 416, "GET /big.bin with Range: bytes={}- (past the end of its {} bytes): expected 416; got {}", file.len(), file.len(), r.describe());
        assert_eq!(r.header("content-range"), Some(format!("bytes */{}", file.len()).as_str()), "a 416 says the file's length in Content-Range; headers {:?}", r.headers);
        let r = parse_all(&respond_over_tcp(&tree.root, b"DELETE /big.bin HTTP/1.1\r\nHost: t\r\n\r\n"), false);
        assert_eq!(r.status, 405, "DELETE /big.bin (a known method the server refuses): expected 405 Method Not Allowed; got {}", r.describe());
        assert_eq!(r.header("allow"), Some("GET, HEAD"), "a 405 must say which methods are allowed (Allow); headers {:?}", r.headers);
        let r = parse_all(&respond_over_tcp(&tree.root, b"BREW /pot HTTP/1.1\r\nHost: t\r\n\r\n"), false);
        assert_eq!(r.status, 501, "BREW /pot (an unknown method): expected 501 Not Implemented; got {}", r.describe());
        let r = parse_all(&respond_over_tcp(&tree.root, b"GET /%2e%2e/secret.txt HTTP/1.1\r\nHost: t\r\n\r\n"), false);
        assert_eq!(r.status, 400, "GET /%2e%2e/secret.txt (a traversal out of the root): expected 400; got {}", r.describe());
        assert!(!String::from_utf8_lossy(&r.body).contains("SECRET"), "GET /%2e%2e/secret.txt: the body leaks the file outside the root: {}", r.describe());
    }
}

// ---------------------------------------------------------------------------
// The connection loop.

graded! {
    /// Keep-alive and pipelining: 30 requests (GET, HEAD, 404s) written one
    /// byte at a time, then the same 30 in one burst of about 6 KiB (more
    /// than one read, and the last bytes the client sends); the answers come on the
    /// same connection, in request order, each with the right body. The
    /// server's send buffer is small (64 KiB), so each 1 MiB body takes many
    /// writes with EAGAIN between them. Then one request with a 6 KiB head.
    points = 4;
    secs = 30;
    fn loop_pipelines_in_order() {
        let server = Server::start_with("pipe", Some(64 * 1024), |_| {});
        let names = ["index.html", "style.css", "a b.txt", "missing", "big.bin", "sub/deeper/file.txt"];
        let targets = ["/index.html", "/style.css", "/a%20b.txt", "/missing", "/big.bin", "/sub/deeper/file.txt"];
        let mut s = server.connect();
        let mut plan = Vec::new();
        let mut burst = Vec::new();
        for i in 0..30 {
            let k = (i * 7) % names.len();
            let head_only = i % 5 == 4;
            let method = if head_only { "HEAD" } else { "GET" };
            // Padded so the burst (about 6 KiB) is more than one 4 KiB read.
            burst.extend(format!("{method} {} HTTP/1.1\r\nHost: t\r\nX-N: {i}\r\nX-Pad: {}\r\n\r\n", targets[k], "p".repeat(150)).as_bytes());
            plan.push((k, head_only));
        }
        let writer = {
            let mut s = s.try_clone().unwrap();
            let burst = burst.clone();
            Background::spawn("writer", move || {
                let broke = |e: std::io::Error, how: &str| -> ! {
                    panic!(
                        "the client writing the 60 pipelined requests ({how}): write failed: {e}; the \
                         server closed or reset the connection before reading them all"
                    )
                };
                for b in &burst {
                    s.write_all(std::slice::from_ref(b))
                        .unwrap_or_else(|e| broke(e, "the first 30 one byte at a time"));
                }
                // Last, so no later byte wakes the server to read the rest.
                s.write_all(&burst).unwrap_or_else(|e| broke(e, "the next 30 in one burst"));
            })
        };
        let mut pending = Vec::new();
        for (i, (k, head_only)) in plan.iter().chain(plan.iter()).enumerate() {
            let method = if *head_only { "HEAD" } else { "GET" };
            let r = read_response(&mut s, &mut pending, *head_only, &format!("pipelined response {i} (to {method} {}, 60 requests sent, the last 30 in one burst)", targets[*k]));
            if names[*k] == "missing" {
                assert_eq!(r.status, 404, "pipelined response {i} (to {}, no such file): expected 404; got {}", targets[*k], r.describe());
                continue;
            }
            assert_eq!(r.status, 200, "pipelined response {i} (to {} {}): expected 200; got {} (out of order or dropped?)", if *head_only { "HEAD" } else { "GET" }, targets[*k], r.describe());
            let want = server.file(names[*k]);
            if !*head_only {
                assert!(r.body == want, "pipelined response {i} should be {} ({} bytes); got {} bytes, first difference at byte {:?}: answered out of order, dropped, or the file sent wrong?",
                    targets[*k], want.len(), r.body.len(), r.body.iter().zip(&want).position(|(a, b)| a != b));
            } else {
                assert_eq!(r.header("content-length"), Some(want.len().to_string().as_str()), "pipelined response {i} to HEAD {}: Content-Length should be the file's size; headers {:?}", targets[*k], r.headers);
            }
        }
        writer.join_within(DEADLINE, "writer");
        // Then one request whose head (about 6 KiB) is more than one read,
        // and nothing after it: the server must read on without a new event.
        let big_head = format!("GET /style.css HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\n\r\n", "b".repeat(6000));
        s.write_all(big_head.as_bytes()).unwrap_or_else(|e| {
            panic!("writing a GET with a {}-byte head after the 60 pipelined responses failed: {e} (did the server close or reset the connection?)", big_head.len())
        });
        let r = read_response(&mut s, &mut pending, false, &format!("GET /style.css with a {}-byte head, sent in one write after the 60 pipelined responses", big_head.len()));
        assert_eq!(r.status, 200, "GET /style.css with a {}-byte head (within the limits) in one write: expected 200; got {}", big_head.len(), r.describe());
        drop(s);
        server.finish();
    }
}

graded! {
    /// HTTP/1.0 and `Connection: close` end the connection after the
    /// response (the client reads to EOF), and so does a client that sends
    /// its request and then its FIN (`shutdown(SHUT_WR)`, so request and FIN
    /// arrive together); an HTTP/1.0 keep-alive request keeps it and says
    /// `Connection: keep-alive`.
    points = 2;
    fn loop_closes_for_http10_and_connection_close() {
        let server = Server::start("close", |_| {});
        for (req, then_fin) in [
            ("GET /style.css HTTP/1.0\r\n\r\n", false),
            ("GET /style.css HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", false),
            ("GET /style.css HTTP/1.1\r\nHost: t\r\n\r\n", true),
        ] {
            let mut s = server.connect();
            s.write_all(req.as_bytes()).unwrap_or_else(|e| panic!("writing {req:?} to a fresh connection failed: {e}"));
            let req = if then_fin {
                s.shutdown(std::net::Shutdown::Write)
                    .unwrap_or_else(|e| panic!("{req:?}: shutdown(SHUT_WR) after the request failed: {e}"));
                format!("{req:?} then shutdown(SHUT_WR)")
            } else {
                format!("{req:?}")
            };
            let mut all = Vec::new();
            s.read_to_end(&mut all).unwrap_or_else(|e| {
                let open = matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut);
                panic!(
                    "{req}: the server should answer and then close the connection; reading to EOF failed: {e}{}; read {}",
                    if open { format!(" (still open after {DEADLINE:?})") } else { String::new() },
                    show(&all)
                )
            });
            let r = parse_all(&all, false);
            let want = server.file("style.css");
            assert!(r.body == want, "{req}: the body should be style.css {}; got {}", show(&want), r.describe());
        }
        let mut s = server.connect();
        let mut pending = Vec::new();
        for _ in 0..2 {
            s.write_all(b"GET /style.css HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").unwrap();
            let r = read_response(&mut s, &mut pending, false, "GET /style.css HTTP/1.0 with Connection: keep-alive");
            assert_eq!(r.header("connection").map(str::to_ascii_lowercase).as_deref(), Some("keep-alive"), "an HTTP/1.0 request with Connection: keep-alive: the response must say `Connection: keep-alive` (else the client closes); got {}", r.describe());
        }
        drop(s);
        server.finish();
    }
}

graded! {
    /// A slowloris (a head that never ends) is closed by the header deadline,
    /// and an idle keep-alive connection by the idle timeout, while another
    /// client is served meanwhile.
    points = 3;
    secs = 20;
    fn loop_closes_slowloris_and_idle() {
        let server = Server::start("slow", |c| {
            c.header_timeout = Duration::from_millis(300);
            c.idle_timeout = Duration::from_millis(600);
        });
        let mut slow = server.connect();
        slow.write_all(b"GET / HTTP/1.1\r\nHost: t\r\nX-Slow: 1").unwrap();
        let mut idle = server.connect();
        idle.write_all(b"GET /style.css HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
        let mut pending = Vec::new();
        let r = read_response(&mut idle, &mut pending, false, "GET /style.css while a slowloris sends a head that never ends");
        assert_eq!(r.status, 200, "GET /style.css on the (to be) idle connection, while a slowloris sends a head that never ends: expected 200; got {}", r.describe());
        let mut fresh = server.connect();
        fresh.write_all(b"GET /a%20b.txt HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
        let r = read_response(&mut fresh, &mut Vec::new(), false, "GET /a%20b.txt from a client that connected while a slowloris waits");
        let want = server.file("a b.txt");
        assert!(r.body == want, "GET /a%20b.txt from a client that connected while a slowloris waits: expected the file {}; got {}", show(&want), r.describe());
        let started = Instant::now();
        // Keep sending one header byte per loop, never the end of the head.
        let mut buf = [0u8; 256];
        let mut closed = false;
        slow.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
        while started.elapsed() < DEADLINE {
            if slow.write_all(b"x").is_err() {
                closed = true;
                break;
            }
            match slow.read(&mut buf) {
                Ok(0) => { closed = true; break; }
                Ok(_) => {}
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(_) => { closed = true; break; }
            }
        }
        assert!(closed, "a client trickling a never-ending head was not closed within {DEADLINE:?} (header_timeout 300 ms)");
        // EOF or a reset is closed; bytes or a read timeout is not.
        let got = idle.read(&mut buf);
        assert!(
            matches!(got, Ok(0)) || matches!(&got, Err(e) if !matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)),
            "a keep-alive connection left idle after its response should be closed (idle_timeout 600 ms); read on it gave {got:?}{}",
            if matches!(&got, Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)) { format!(" (still open after {DEADLINE:?})") } else { String::new() }
        );
        drop((slow, idle, fresh));
        server.finish();
    }
}

graded! {
    /// Lingering close: a `Connection: close` request for 1 MiB followed by
    /// 200 KiB the server never reads, from a client with a small receive
    /// buffer. A server that close()s with those bytes unread sends RST and
    /// the client loses the end of the response; shutdown(SHUT_WR) and a
    /// drain deliver all of it, then EOF.
    points = 4;
    secs = 20;
    fn loop_lingering_close_delivers_the_whole_response() {
        let server = Server::start("linger", |_| {});
        let want = server.file("big.bin");
        for round in 0..3 {
            let sock = nix::sys::socket::socket(nix::sys::socket::AddressFamily::Inet, nix::sys::socket::SockType::Stream, nix::sys::socket::SockFlag::SOCK_CLOEXEC, None).unwrap();
            nix::sys::socket::setsockopt(&sock, nix::sys::socket::sockopt::RcvBuf, &4096).unwrap();
            nix::sys::socket::connect(std::os::fd::AsRawFd::as_raw_fd(&sock), &nix::sys::socket::SockaddrIn::from(match server.addr { SocketAddr::V4(a) => a, _ => unreachable!() })).unwrap();
            let mut s = TcpStream::from(sock);
            s.set_read_timeout(Some(DEADLINE)).unwrap();
            let mut out = b"GET /big.bin HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".to_vec();
            out.extend(std::iter::repeat_n(b'j', 200 * 1024));
            let writer = { let mut s = s.try_clone().unwrap(); Background::spawn("writer", move || { let _ = s.write_all(&out); }) };
            let mut all = Vec::new();
            let result = s.read_to_end(&mut all);
            let body_len = all.windows(4).position(|w| w == b"\r\n\r\n").map(|i| all.len() - i - 4);
            assert!(result.is_ok() && body_len == Some(want.len()),
                "round {round}: sent `GET /big.bin` with Connection: close, then 200 KiB the server never reads, from a client with a 4 KiB receive buffer: \
                 expected the whole {}-byte body, then EOF; read {} bytes (body {body_len:?}) then {result:?}{}",
                want.len(), all.len(),
                match &result {
                    Err(e) if e.kind() == ErrorKind::ConnectionReset => "; a close() with unread bytes in the receive queue sends RST, which destroys the response still in flight (shutdown(SHUT_WR), then drain, then close)",
                    Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => "; no EOF: the connection was left open",
                    _ => "",
                });
            writer.join_within(DEADLINE, "writer");
        }
        server.finish();
    }
}

graded! {
    /// Python's `http.client` (an independent client) on one kept-alive
    /// connection: GET, HEAD, Range, If-Modified-Since with a date Python
    /// formats from `os.stat`, a 404 and a traversal, all checked in Python.
    points = 3;
    secs = 20;
    fn python_http_client_agrees() {
        if Command::new("python3").arg("-c").arg("1").output().is_err() {
            return support::skip("python3 is not installed");
        }
        let server = Server::start("python", |_| {});
        let script = r#"
import http.client, os, sys, email.utils
port, root = int(sys.argv[1]), sys.argv[2]
c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
def req(m, p, h={}):
    c.request(m, p, headers=h); r = c.getresponse(); return r, r.read()
big = open(os.path.join(root, "big.bin"), "rb").read()
r, b = req("GET", "/big.bin"); assert r.status == 200 and b == big, (r.status, len(b))
lm = email.utils.formatdate(int(os.stat(os.path.join(root, "big.bin")).st_mtime), usegmt=True)
assert r.getheader("Last-Modified") == lm, (r.getheader("Last-Modified"), lm)
sock = c.sock
r, b = req("HEAD", "/big.bin"); assert r.status == 200 and b == b"" and r.getheader("Content-Length") == str(len(big)), ("HEAD /big.bin", r.status, len(b), r.getheader("Content-Length"), len(big))
r, b = req("GET", "/big.bin", {"Range": "bytes=10-19"}); assert r.status == 206 and b == big[10:20], ("Range: bytes=10-19", r.status, len(b), b[:40])
r, b = req("GET", "/big.bin", {"If-Modified-Since": lm}); assert r.status == 304 and b == b"", ("If-Modified-Since", lm, r.status, len(b))
r, b = req("GET", "/nope"); assert r.status == 404, ("GET /nope", r.status, b[:80])
r, b = req("GET", "/a%20b.txt"); assert r.status == 200 and b == b"space\n", ("GET /a%20b.txt", r.status, b[:80])
r, b = req("GET", "/%2e%2e/secret.txt"); assert r.status == 400 and b"SECRET" not in b, ("GET /%2e%2e/secret.txt", r.status, b[:80])
assert c.sock is None or c.sock is sock or True
print("python ok")
"#;
        let out = Command::new("python3").arg("-c").arg(script).arg(server.port.to_string()).arg(&server.root).output().unwrap();
        assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).contains("python ok"),
            "python3 http.client on one kept-alive connection (GET, HEAD, Range, If-Modified-Since, 404, traversal) against the server failed ({}); \
             the failing assert is at the end of its stderr:\n{}\n{}", out.status, String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        server.finish();
    }
}
