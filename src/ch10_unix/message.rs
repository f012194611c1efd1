//! The chapter's little request/response protocol, served over
//! `SOCK_SEQPACKET` (one request per message, the kernel keeps the
//! boundaries) and over `SOCK_STREAM` (one request per line, for `socat`).
//!
//! | request | reply |
//! |---|---|
//! | `PING` | `PONG` |
//! | `ECHO text` | `text` |
//! | `WHO` | `uid=U gid=G pid=P`: who the kernel says *you* are (`SO_PEERCRED`) |
//! | `COUNT` | how many requests this connection made before this one |
//! | `CLAIM uid=U pid=P` | `honest`, or `lie: the kernel says uid=… gid=… pid=…` |
//! | anything else | `ERR unknown request` (the connection stays open) |
//!
//! A trailing `\n` (or `\r\n`) is not part of a request. A request longer
//! than [`MAX_REQUEST`] bytes gets `ERR too long: N bytes, the limit is 4096`.

use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::socket::{self, MsgFlags, Shutdown, SockFlag, SockType, sockopt};
use nix::sys::time::{TimeVal, TimeValLike};

use super::cred::{self, Verdict};
use crate::kit::accept::{self, AcceptError};
use crate::kit::io::LineReader;
use crate::kit::stop::Woke;
use crate::kit::{Call, Error, Result};
use crate::say;

/// The longest request a server accepts, in bytes.
pub const MAX_REQUEST: usize = 4096;

/// The reply to one request (without a line end). `served` is how many
/// requests this connection made before; `conn` is asked who the peer is.
pub fn answer(request: &[u8], served: u64, conn: BorrowedFd<'_>) -> Vec<u8> {
    let request = request
        .strip_suffix(b"\n")
        .map(|r| r.strip_suffix(b"\r").unwrap_or(r))
        .unwrap_or(request);
    let (word, rest) = match request.iter().position(|&b| b == b' ') {
        Some(i) => (&request[..i], &request[i + 1..]),
        None => (request, &b""[..]),
    };
    match word {
        b"PING" => b"PONG".to_vec(),
        b"ECHO" => rest.to_vec(),
        b"COUNT" => served.to_string().into_bytes(),
        b"WHO" => match cred::peer_cred(conn) {
            Ok(peer) => peer.to_string().into_bytes(),
            Err(e) => format!("ERR {e}").into_bytes(),
        },
        b"CLAIM" => match cred::authorise(conn, Some(rest)) {
            Ok(Verdict {
                claim_honest: Some(true),
                ..
            }) => b"honest".to_vec(),
            Ok(v) => format!("lie: the kernel says {}", v.peer).into_bytes(),
            Err(e) => format!("ERR {e}").into_bytes(),
        },
        _ => b"ERR unknown request".to_vec(),
    }
}

/// Serve the protocol on one connected `SOCK_SEQPACKET` socket until the
/// peer closes it; return how many requests were answered.
///
/// The task:
/// - One [`recv(2)`](https://man7.org/linux/man-pages/man2/recv.2.html) is
///   one whole request: the kernel keeps message boundaries. Receive into a
///   buffer of [`MAX_REQUEST`] bytes with `MSG_TRUNC`, which makes `recv`
///   return the message's *real* length even when it did not fit (the rest
///   of that message is discarded, never read as the next request).
/// - A request longer than [`MAX_REQUEST`]: reply
///   `ERR too long: N bytes, the limit is 4096` (N its real length) and go on.
/// - Otherwise reply [`answer`]`(request, served, conn)`, in one `send`
///   (with `MSG_NOSIGNAL`): one message per reply, nothing else.
/// - `recv` returning 0 is the end: return the count. Retry on `EINTR`;
///   any other error is an [`Error`] naming the call.
pub fn serve_messages(conn: BorrowedFd<'_>) -> Result<u64> {
    let raw = conn.as_raw_fd();
    // BEGIN SOLUTION
    let mut buf = vec![0u8; MAX_REQUEST];
    let mut served = 0u64;
    loop {
        let n = match socket::recv(raw, &mut buf, MsgFlags::MSG_TRUNC) {
            Ok(0) => return Ok(served),
            Ok(n) => n,
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(Error::sys(format!("recv({raw}, MSG_TRUNC)"), e)),
        };
        let reply = if n > MAX_REQUEST {
            format!("ERR too long: {n} bytes, the limit is {MAX_REQUEST}").into_bytes()
        } else {
            answer(&buf[..n], served, conn)
        };
        loop {
            match socket::send(raw, &reply, MsgFlags::MSG_NOSIGNAL) {
                Ok(_) => break,
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(Error::sys(format!("send({raw}, {} bytes)", reply.len()), e)),
            }
        }
        served += 1;
    }
    // END SOLUTION
}

/// The same protocol on a connected `SOCK_STREAM` socket: one request per
/// line, one reply line each. A line longer than [`MAX_REQUEST`] gets
/// `ERR too long` and the connection is closed (there is no way to find the
/// next request in a byte stream without reading the rest of the line).
pub fn serve_lines(conn: BorrowedFd<'_>) -> Result<u64> {
    let mut reader = LineReader::new();
    let mut served = 0u64;
    loop {
        let line = match reader.read_line(conn, MAX_REQUEST) {
            Ok(Some(line)) => line,
            Ok(None) => return Ok(served),
            Err(Error::Msg(_)) => {
                let reply = format!("ERR too long: the limit is {MAX_REQUEST} bytes\n");
                crate::kit::io::writen(conn, reply.as_bytes())?;
                return Ok(served);
            }
            Err(e) => return Err(e),
        };
        let mut reply = answer(&line, served, conn);
        reply.push(b'\n');
        crate::kit::io::writen(conn, &reply)?;
        served += 1;
    }
}

/// How a [`serve`] loop behaves.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// `SOCK_STREAM` (lines) or `SOCK_SEQPACKET` (messages).
    pub kind: SockType,
    /// Connections served at once; more are told `ERR busy` and closed.
    pub max_clients: usize,
    /// `SO_RCVTIMEO`/`SO_SNDTIMEO` on each connection: a peer that stalls
    /// (sends nothing, or stops reading our replies) this long is dropped.
    pub idle: Duration,
    /// Every verdict of [`cred::authorise`], for a test to inspect.
    pub verdicts: Option<mpsc::Sender<Verdict>>,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            kind: SockType::Stream,
            max_clients: 64,
            idle: Duration::from_secs(30),
            verdicts: None,
        }
    }
}

/// What a [`serve`] loop did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Stats {
    /// Connections accepted.
    pub accepted: u64,
    /// Refused: another uid.
    pub refused: u64,
    /// Refused: too many at once.
    pub busy: u64,
    /// Requests answered.
    pub requests: u64,
    /// Connections that ended with an error (reset, timeout…).
    pub dropped: u64,
}

/// Serve the protocol on a listening Unix socket until `stop` is readable:
/// accept, authorise by `SO_PEERCRED` (own uid only; others get one
/// `refused …` reply), and serve each connection on its own thread. At the
/// end every connection is shut down and every thread joined.
pub fn serve(listener: OwnedFd, stop: BorrowedFd<'_>, config: ServeConfig) -> Result<Stats> {
    let who = "server";
    let live: Arc<Mutex<HashMap<u64, Arc<OwnedFd>>>> = Arc::default();
    let requests = Arc::new(AtomicU64::new(0));
    let dropped = Arc::new(AtomicU64::new(0));
    let mut threads = Vec::new();
    let mut stats = Stats::default();
    let mut next_id = 0u64;
    loop {
        match wait_two(&listener, stop)? {
            Woke::Stop => break,
            Woke::Timeout => continue,
            Woke::Ready => {}
        }
        let conn = match socket::accept4(listener.as_raw_fd(), SockFlag::SOCK_CLOEXEC) {
            // SAFETY: accept4 returned a new fd that nothing else owns.
            Ok(fd) => unsafe { OwnedFd::from_raw_fd(fd) },
            Err(e) => {
                let err = Error::sys(format!("accept4({})", listener.as_raw_fd()), e);
                match accept::triage(who, &err) {
                    AcceptError::Again | AcceptError::Dropped => continue,
                    // Out of fds: the connection stays queued and the
                    // listener readable; pause instead of spinning.
                    AcceptError::OutOfFds => {
                        accept::back_off(stop);
                        continue;
                    }
                    AcceptError::Fatal => return Err(err),
                }
            }
        };
        stats.accepted += 1;
        let verdict = match cred::authorise(conn.as_fd(), None) {
            Ok(v) => v,
            Err(_) => continue, // the peer is already gone
        };
        if let Some(tx) = &config.verdicts {
            let _ = tx.send(verdict);
        }
        say!(
            who,
            "accept4({}) = {} peer {} allowed={}",
            listener.as_raw_fd(),
            conn.as_raw_fd(),
            verdict.peer,
            verdict.allowed
        );
        if !verdict.allowed {
            stats.refused += 1;
            let text = format!(
                "refused: uid {} is not this server's uid {}\n",
                verdict.peer.uid,
                cred::my_uid()
            );
            let _ = socket::send(
                conn.as_raw_fd(),
                text.as_bytes(),
                MsgFlags::MSG_NOSIGNAL | MsgFlags::MSG_DONTWAIT,
            );
            continue;
        }
        if live.lock().map(|l| l.len()).unwrap_or(0) >= config.max_clients {
            stats.busy += 1;
            let _ = socket::send(
                conn.as_raw_fd(),
                b"ERR busy\n",
                MsgFlags::MSG_NOSIGNAL | MsgFlags::MSG_DONTWAIT,
            );
            continue;
        }
        let idle = TimeVal::milliseconds(config.idle.as_millis() as i64);
        let _ = socket::setsockopt(&conn, sockopt::ReceiveTimeout, &idle);
        let _ = socket::setsockopt(&conn, sockopt::SendTimeout, &idle);
        let conn = Arc::new(conn);
        let id = next_id;
        next_id += 1;
        if let Ok(mut l) = live.lock() {
            l.insert(id, Arc::clone(&conn));
        }
        let (live, requests, dropped, kind) = (
            Arc::clone(&live),
            Arc::clone(&requests),
            Arc::clone(&dropped),
            config.kind,
        );
        threads.push(std::thread::spawn(move || {
            let result = if kind == SockType::SeqPacket {
                serve_messages(conn.as_fd())
            } else {
                serve_lines(conn.as_fd())
            };
            match result {
                Ok(n) => requests.fetch_add(n, Ordering::Relaxed),
                Err(_) => dropped.fetch_add(1, Ordering::Relaxed),
            };
            if let Ok(mut l) = live.lock() {
                l.remove(&id);
            }
        }));
        threads.retain(|t| !t.is_finished());
    }
    if let Ok(l) = live.lock() {
        for conn in l.values() {
            let _ = socket::shutdown(conn.as_raw_fd(), Shutdown::Both);
        }
    }
    for t in threads {
        let _ = t.join();
    }
    stats.requests = requests.load(Ordering::Relaxed);
    stats.dropped = dropped.load(Ordering::Relaxed);
    Ok(stats)
}

/// poll the listener and the stop fd together.
fn wait_two(listener: &OwnedFd, stop: BorrowedFd<'_>) -> Result<Woke> {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    let mut fds = [
        PollFd::new(listener.as_fd(), PollFlags::POLLIN),
        PollFd::new(stop, PollFlags::POLLIN),
    ];
    match poll(&mut fds, PollTimeout::NONE) {
        Ok(_) => {}
        Err(Errno::EINTR) => return Ok(Woke::Timeout),
        Err(e) => return Err(Error::sys("poll(listener, stop)", e)),
    }
    if fds[1].any().unwrap_or(false) {
        return Ok(Woke::Stop);
    }
    Ok(if fds[0].any().unwrap_or(false) {
        Woke::Ready
    } else {
        Woke::Timeout
    })
}

/// `client`: connect to `name`, send each request (a line on a stream, a
/// message on seqpacket), print each reply. With no requests, read what the
/// server sends until it closes. Returns the replies.
pub fn run_client(
    kind: SockType,
    name: &super::addr::Name,
    requests: &[String],
    print: bool,
) -> Result<Vec<String>> {
    let fd = super::addr::unix_connect("client", kind, name)?;
    let mut replies = Vec::new();
    let mut reader = LineReader::new();
    let mut show = |text: String| {
        if print {
            println!("{text}");
        }
        replies.push(text);
    };
    for req in requests {
        if kind == SockType::SeqPacket {
            socket::send(fd.as_raw_fd(), req.as_bytes(), MsgFlags::MSG_NOSIGNAL).call("send")?;
            crate::kit::wait::wait_readable(&fd, Duration::from_secs(10))?;
            let mut buf = vec![0u8; 65536];
            let n = socket::recv(fd.as_raw_fd(), &mut buf, MsgFlags::empty()).call("recv")?;
            if n == 0 {
                break;
            }
            show(String::from_utf8_lossy(&buf[..n]).into_owned());
        } else {
            crate::kit::io::writen(&fd, format!("{req}\n").as_bytes())?;
            match crate::kit::wait::read_line_within(
                &fd,
                &mut reader,
                1 << 20,
                Duration::from_secs(10),
            )? {
                Some(line) => show(String::from_utf8_lossy(&line).trim_end().to_string()),
                None => break,
            }
        }
    }
    if requests.is_empty() {
        loop {
            let mut buf = vec![0u8; 65536];
            match socket::recv(fd.as_raw_fd(), &mut buf, MsgFlags::empty()) {
                Ok(0) => break,
                Ok(n) => show(String::from_utf8_lossy(&buf[..n]).trim_end().to_string()),
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(Error::sys("recv", e)),
            }
        }
    }
    Ok(replies)
}
