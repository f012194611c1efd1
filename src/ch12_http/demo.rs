//! The narrated demo: a server on a temporary directory, then a kept-alive
//! client, pipelined requests, a traversal attempt, a slowloris, and the
//! lingering close.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::client::{get_all, read_reply};
use super::conn::Config;
use super::server::{listeners, serve};
use crate::kit::narrate::{heading, note};
use crate::kit::{Error, Result};
use crate::say;

/// A temporary directory with a small site in it; removed on drop.
pub struct Site {
    /// Its canonical path.
    pub root: PathBuf,
}

impl Site {
    /// Make `DIR/ch12-site-PID-N` with `index.html`, `style.css`, `a b.txt`
    /// and `big.bin` (1 MiB).
    pub fn new(tag: &str) -> Result<Site> {
        let dir = std::env::temp_dir().join(format!("ch12-site-{tag}-{}", std::process::id()));
        let io = |e: std::io::Error| Error::msg(format!("{}: {e}", dir.display()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(io)?;
        std::fs::write(
            dir.join("index.html"),
            "<!doctype html><link rel=stylesheet href=style.css><h1>hello from ch12</h1>\n",
        )
        .map_err(io)?;
        std::fs::write(dir.join("style.css"), "h1 { color: darkred }\n").map_err(io)?;
        std::fs::write(dir.join("a b.txt"), "a file with a space\n").map_err(io)?;
        let big: Vec<u8> = (0..1 << 20).map(|i: u32| (i % 251) as u8).collect();
        std::fs::write(dir.join("big.bin"), big).map_err(io)?;
        let root = std::fs::canonicalize(&dir).map_err(io)?;
        Ok(Site { root })
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// Run the demo.
pub fn run() -> Result<()> {
    let site = Site::new("demo")?;
    let (fds, bound) = listeners(&crate::kit::addr::parse("127.0.0.1:0")?, 1, 128)?;
    let addr = crate::kit::addr::to_std(&bound).ok_or_else(|| Error::msg("not an IP address"))?;
    let mut config = Config::new(site.root.clone());
    config.header_timeout = Duration::from_millis(500);
    config.log = false;
    let (stop_r, stop_w) = std::io::pipe().map_err(|e| Error::msg(format!("pipe: {e}")))?;
    let server_config = config.clone();
    let server = std::thread::spawn(move || serve(fds, stop_r, &server_config));
    heading("a static file server on epoll");
    say!(
        "server",
        "listening on {addr}, root {}",
        site.root.display()
    );

    heading("keep-alive: three requests, one connection");
    let paths = ["/", "/style.css", "/a%20b.txt"].map(String::from);
    for (path, reply) in paths.iter().zip(get_all(addr, "demo", &paths)?) {
        say!(
            "client",
            "GET {path} -> {} {} ({} bytes, {})",
            reply.status,
            super::reason(reply.status),
            reply.body.len(),
            reply.header("content-type").unwrap_or("-")
        );
    }

    heading("pipelining: three requests in one write, answers in order");
    let mut s = TcpStream::connect(addr).map_err(|e| Error::msg(format!("connect: {e}")))?;
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let burst = "GET /style.css HTTP/1.1\r\nHost: d\r\n\r\nHEAD /big.bin HTTP/1.1\r\nHost: d\r\n\r\nGET /nope HTTP/1.1\r\nHost: d\r\n\r\n";
    s.write_all(burst.as_bytes())
        .map_err(|e| Error::msg(format!("write: {e}")))?;
    let mut pending = Vec::new();
    for (what, head_only) in [
        ("GET /style.css", false),
        ("HEAD /big.bin", true),
        ("GET /nope", false),
    ] {
        let r = read_reply(&mut s, &mut pending, head_only)?;
        say!(
            "client",
            "{what} -> {} (Content-Length {})",
            r.status,
            r.header("content-length").unwrap_or("-")
        );
    }

    heading("a traversal attempt");
    for target in [
        "/../../etc/passwd",
        "/%2e%2e/%2e%2e/etc/passwd",
        "/..%2f..%2fetc/passwd",
    ] {
        s.write_all(format!("GET {target} HTTP/1.1\r\nHost: d\r\n\r\n").as_bytes())
            .map_err(|e| Error::msg(format!("write: {e}")))?;
        let r = read_reply(&mut s, &mut pending, false)?;
        say!(
            "client",
            "GET {target} -> {} {}",
            r.status,
            super::reason(r.status)
        );
    }

    heading("a slowloris: a head that never ends");
    let mut slow = TcpStream::connect(addr).map_err(|e| Error::msg(format!("connect: {e}")))?;
    let _ = slow.set_read_timeout(Some(Duration::from_secs(5)));
    let t = Instant::now();
    let _ = slow.write_all(b"GET / HTTP/1.1\r\nHost: slow\r\nX-a: 1\r\n");
    say!(
        "slowloris",
        "sent a request line and two headers, then nothing"
    );
    let mut buf = [0u8; 64];
    let n = slow.read(&mut buf).unwrap_or(0);
    say!(
        "slowloris",
        "read() = {n} (EOF) after {:.1} s: the header deadline ({} ms) closed it",
        t.elapsed().as_secs_f64(),
        config.header_timeout.as_millis()
    );

    heading("lingering close: a response, then unread bytes from the client");
    let mut c = TcpStream::connect(addr).map_err(|e| Error::msg(format!("connect: {e}")))?;
    let _ = c.set_read_timeout(Some(Duration::from_secs(5)));
    let mut junk = b"GET /big.bin HTTP/1.1\r\nHost: d\r\nConnection: close\r\n\r\n".to_vec();
    junk.extend(std::iter::repeat_n(b'x', 4096));
    c.write_all(&junk)
        .map_err(|e| Error::msg(format!("write: {e}")))?;
    let mut got = Vec::new();
    let result = c.read_to_end(&mut got);
    say!(
        "client",
        "read {} bytes then {}",
        got.len(),
        match result {
            Ok(_) => "EOF".to_string(),
            Err(e) => e.to_string(),
        }
    );
    note(
        "the server did shutdown(SHUT_WR) after the response and read the 4 KiB it did not want; a plain close() with them unread would have sent RST, and the client could lose the end of the 1 MiB response",
    );

    heading("head and body: one segment or two (TCP_NODELAY, MSG_MORE, TCP_CORK)");
    let counts = super::segments::run(50, 1000)?;
    note(format!(
        "with TCP_NODELAY the head leaves at once as a segment of its own ({} data segments for {} responses); MSG_MORE or TCP_CORK holds it back for the body ({} and {}). The server uses MSG_MORE. `ch12_http segments --size N` tries other sizes",
        counts[0].data_segs_out,
        counts[0].responses,
        counts[1].data_segs_out,
        counts[2].data_segs_out
    ));

    drop(stop_w);
    let stats = server
        .join()
        .map_err(|_| Error::msg("server thread panicked"))??;
    say!(
        "server",
        "stopped: {} connections, {} requests",
        stats.accepted,
        stats.requests
    );
    Ok(())
}
