//! A small HTTP/1.1 client: several GETs on one kept-alive connection, each
//! printed with its status, length and time. Used by the demo and by
//! `ch12_http get URL…`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use crate::kit::{Error, Result};

/// One response as read by [`get_all`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// Header lines, as received.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
    /// Time from sending the request to the last byte.
    pub elapsed: Duration,
}

impl Reply {
    /// First value of header `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Split `http://host:port/path` into (`host:port`, `/path`).
pub fn split_url(url: &str) -> Result<(String, String)> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| Error::msg(format!("{url}: only http:// URLs")))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let authority = if authority.contains(':') {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    Ok((authority, path.to_string()))
}

/// Read one response (head, then `Content-Length` bytes; no body for HEAD
/// or 304) from `stream`, `pending` holding bytes already read.
pub fn read_reply(stream: &mut TcpStream, pending: &mut Vec<u8>, head_only: bool) -> Result<Reply> {
    let started = Instant::now();
    let mut buf = [0u8; 64 * 1024];
    let end = loop {
        if let Some(i) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = stream
            .read(&mut buf)
            .map_err(|e| Error::msg(format!("read: {e}")))?;
        if n == 0 {
            return Err(Error::msg("the server closed before a whole response head"));
        }
        pending.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&pending[..end]).into_owned();
    pending.drain(..end);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| Error::msg(format!("bad status line {status_line:?}")))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.to_string(), v.trim().to_string()))
        .collect();
    let mut reply = Reply {
        status,
        headers,
        body: Vec::new(),
        elapsed: Duration::ZERO,
    };
    let length: usize = reply
        .header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let length = if head_only || status == 304 {
        0
    } else {
        length
    };
    while pending.len() < length {
        let n = stream
            .read(&mut buf)
            .map_err(|e| Error::msg(format!("read: {e}")))?;
        if n == 0 {
            return Err(Error::msg("the server closed in the middle of a body"));
        }
        pending.extend_from_slice(&buf[..n]);
    }
    reply.body = pending.drain(..length).collect();
    reply.elapsed = started.elapsed();
    Ok(reply)
}

/// GET each of `paths` from `addr` on one connection, one after another
/// (keep-alive, not pipelined).
pub fn get_all(addr: SocketAddr, host: &str, paths: &[String]) -> Result<Vec<Reply>> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .map_err(|e| Error::msg(format!("connect({addr}): {e}")))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| Error::msg(format!("SO_RCVTIMEO: {e}")))?;
    let mut pending = Vec::new();
    let mut replies = Vec::new();
    for path in paths {
        let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n");
        stream
            .write_all(request.as_bytes())
            .map_err(|e| Error::msg(format!("write: {e}")))?;
        replies.push(read_reply(&mut stream, &mut pending, false)?);
    }
    Ok(replies)
}

/// `get URL [URL…]`: fetch them on one connection (same host:port as the
/// first), print status, length and time of each.
pub fn run(urls: &[String]) -> Result<()> {
    let first = urls.first().ok_or_else(|| Error::msg("get: give a URL"))?;
    let (authority, _) = split_url(first)?;
    let addr = authority
        .to_socket_addrs()
        .map_err(|e| Error::msg(format!("{authority}: {e}")))?
        .next()
        .ok_or_else(|| Error::msg(format!("{authority}: no address")))?;
    let mut paths = Vec::new();
    for url in urls {
        let (a, path) = split_url(url)?;
        if a != authority {
            return Err(Error::msg(format!(
                "{url}: not on {authority} (one connection)"
            )));
        }
        paths.push(path);
    }
    let replies = get_all(addr, &authority, &paths)?;
    for (path, reply) in paths.iter().zip(&replies) {
        println!(
            "{} {} {} bytes in {:.3} ms ({})",
            reply.status,
            path,
            reply.body.len(),
            reply.elapsed.as_secs_f64() * 1e3,
            reply.header("content-type").unwrap_or("-")
        );
    }
    println!("{} requests on one connection", replies.len());
    Ok(())
}
