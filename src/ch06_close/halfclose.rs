//! Part 3: the half-close. `shutdown(SHUT_WR)` ends our sending and keeps
//! our receiving; a client sends a whole input, half-closes, and collects
//! every reply, including the one the server sends after it saw EOF.
//! Also `SHUT_RD` on Linux, and the `server`/`client` subcommands.

use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::socket::{self, MsgFlags, Shutdown, SockaddrStorage};

use super::common::{pair, state};
use super::graceful::half_close_exchange;
use crate::ch05_handshake::capture::{Access, Capture, print_packets};
use crate::kit::accept::{self, AcceptError};
use crate::kit::narrate::{heading, note};
use crate::kit::stop::{Stop, Woke};
use crate::kit::{Call, Error, Result, addr, io, net, wait};
use crate::say;

/// The chapter's server, for one connection: read, upper-case, write back,
/// as the bytes come; at EOF send `bye: N bytes\n` and close. A client
/// silent for `idle` is dropped; a write blocked for `idle` (a client that
/// does not read) ends the connection with an error.
pub fn serve_upper(conn: OwnedFd, stop: Option<&Stop>, idle: Duration) -> Result<usize> {
    let raw = conn.as_raw_fd();
    let timeout = nix::sys::time::TimeVal::new(idle.as_secs() as i64, idle.subsec_micros() as i64);
    socket::setsockopt(&conn, socket::sockopt::SendTimeout, &timeout)
        .call(format!("setsockopt({raw}, SO_SNDTIMEO)"))?;
    let mut total = 0;
    let mut buf = [0u8; 16 * 1024];
    loop {
        let ready = match stop {
            Some(stop) => stop.wait(&conn, Some(idle))?,
            None => match wait::wait_readable(&conn, idle) {
                Ok(()) => Woke::Ready,
                Err(e) if e.errno() == Some(Errno::ETIMEDOUT) => Woke::Timeout,
                Err(e) => return Err(e),
            },
        };
        match ready {
            Woke::Ready => {}
            Woke::Stop => return Ok(total),
            Woke::Timeout => {
                return Err(Error::msg(format!(
                    "connection {raw}: silent for {} s, dropped",
                    idle.as_secs()
                )));
            }
        }
        let n = loop {
            match nix::unistd::read(&conn, &mut buf) {
                Ok(n) => break n,
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(Error::sys(format!("read({raw})"), e)),
            }
        };
        if n == 0 {
            say!(
                "server",
                "read({raw}) = 0: EOF, the client half-closed; I can still send"
            );
            io::writen(&conn, format!("bye: {total} bytes\n").as_bytes())?;
            say!(
                "server",
                "write({raw}, \"bye: {total} bytes\\n\"); close({raw})"
            );
            return Ok(total);
        }
        total += n;
        buf[..n].make_ascii_uppercase();
        io::writen(&conn, &buf[..n])?;
    }
}

/// `server`: the upper-case server, one client at a time, until Ctrl-C.
pub fn serve(stop: &Stop, bind: &SockaddrStorage) -> Result<()> {
    crate::kit::narrate::set_quiet(true);
    let listening = net::tcp_listen("server", bind, 16);
    crate::kit::narrate::set_quiet(false);
    let (listener, laddr) = listening?;
    println!("listening on {laddr}");
    note("send it text; it answers in upper case as it reads, and says bye after your EOF");
    loop {
        match stop.wait(&listener, None)? {
            Woke::Stop => break,
            Woke::Timeout => continue,
            Woke::Ready => {}
        }
        // A client that reset while it waited, or no fd to spare, costs
        // that connection (or a short pause), never the server.
        let (conn, peer) = match net::accept("server", &listener) {
            Ok(c) => c,
            Err(e) => match accept::triage("server", &e) {
                AcceptError::Again | AcceptError::Dropped => continue,
                AcceptError::OutOfFds => {
                    accept::back_off(stop.fd());
                    continue;
                }
                AcceptError::Fatal => return Err(e),
            },
        };
        match serve_upper(conn, Some(stop), Duration::from_secs(30)) {
            Ok(n) => say!("server", "{peer}: {n} bytes served"),
            Err(e) => say!("server", "{peer}: {e}"),
        }
        if stop.requested()? {
            break;
        }
    }
    say!("server", "stopping");
    Ok(())
}

/// `client`: send stdin to the server, half-close, print every reply.
pub fn client(server: &SockaddrStorage) -> Result<()> {
    use std::io::{Read, Write};
    let mut input = Vec::new();
    std::io::stdin()
        .read_to_end(&mut input)
        .map_err(|e| Error::msg(format!("read stdin: {e}")))?;
    let fd = net::tcp_connect("client", server)?;
    let replies = half_close_exchange(&fd, &input, Duration::from_secs(60))?;
    say!(
        "client",
        "sent {} bytes, half-closed, got {} bytes back",
        input.len(),
        replies.len()
    );
    std::io::stdout()
        .write_all(&replies)
        .map_err(|e| Error::msg(format!("write stdout: {e}")))
}

/// Part 3 of the demo.
pub fn demo(access: &Access, lines: usize) -> Result<()> {
    heading("3. Half-close: shutdown(SHUT_WR), and the peer can still answer");
    let (listener, laddr) = net::tcp_listen("server", &addr::parse("127.0.0.1:0")?, 8)?;
    let cap = if access.can_capture() {
        Some(Capture::start(&[net::local_port(&listener)?])?)
    } else {
        None
    };
    let server = std::thread::Builder::new()
        .name("upper-server".into())
        .spawn(move || -> Result<usize> {
            let (conn, _) = net::accept("server", &listener)?;
            serve_upper(conn, None, Duration::from_secs(10))
        })
        .map_err(|e| Error::msg(format!("spawn the server thread: {e}")))?;
    let input: Vec<u8> = (0..lines)
        .flat_map(|i| format!("line {i} of a file the client sends whole\n").into_bytes())
        .collect();
    let fd = net::tcp_connect("client", &laddr)?;
    note(format!(
        "the client sends {} bytes ({lines} lines) while reading replies, then shutdown(SHUT_WR), then reads to EOF",
        input.len()
    ));
    let t = Instant::now();
    let replies = half_close_exchange(&fd, &input, Duration::from_secs(20))?;
    let served = server
        .join()
        .map_err(|_| Error::msg("the server thread panicked"))??;
    say!(
        "client",
        "half_close_exchange({}, {} bytes) = {} bytes back in {:.1} ms",
        fd.as_raw_fd(),
        input.len(),
        replies.len(),
        t.elapsed().as_secs_f64() * 1e3
    );
    let body = &replies[..replies.len().min(input.len())];
    let trailer = String::from_utf8_lossy(&replies[body.len()..]);
    note(format!(
        "every byte came back upper-cased: {}; the server read {served} bytes; after our FIN it still sent {:?}",
        if body == input.to_ascii_uppercase().as_slice() {
            "yes"
        } else {
            "NO"
        },
        trailer.trim_end()
    ));
    say!("client", "TCP_INFO({}): {}", fd.as_raw_fd(), state(&fd)?);
    if let Some(cap) = &cap {
        let packets = cap.take(Duration::from_millis(30))?;
        let fins: Vec<_> = packets
            .iter()
            .filter(|p| p.tcp.has(crate::ch05_handshake::header::flags::FIN))
            .cloned()
            .collect();
        note(format!("{} packets in all; the two FINs:", packets.len()));
        print_packets(&fins, packets.first().map(|p| p.at));
    }
    drop(fd);
    shut_rd()?;
    Ok(())
}

/// What `shutdown(SHUT_RD)` does on Linux.
pub fn shut_rd() -> Result<()> {
    note("3b. shutdown(SHUT_RD) on Linux");
    let p = pair(None)?;
    let (c, s) = (p.client.as_raw_fd(), p.server.as_raw_fd());
    socket::send(s, b"before\n", MsgFlags::empty()).call(format!("send({s})"))?;
    say!("server", "send({s}, \"before\\n\") = 7");
    super::common::wait_until_queued(&p.client)?;
    socket::shutdown(c, Shutdown::Read).call(format!("shutdown({c}, SHUT_RD)"))?;
    say!(
        "client",
        "shutdown({c}, SHUT_RD) = 0   TCP_INFO: {}",
        state(&p.client)?
    );
    net::set_nonblocking(&p.client, true)?;
    let mut buf = [0u8; 64];
    let mut report = |what: &str| -> Result<()> {
        match nix::unistd::read(&p.client, &mut buf) {
            Ok(n) => say!(
                "client",
                "read({c}) = {n} {:?}  ({what})",
                String::from_utf8_lossy(&buf[..n])
            ),
            Err(e) => say!(
                "client",
                "read({c}) = -1 {}  ({what})",
                crate::kit::error::errno_text(e)
            ),
        }
        Ok(())
    };
    report("data queued before the shutdown")?;
    report("nothing queued")?;
    socket::send(s, b"after\n", MsgFlags::empty()).call(format!("send({s})"))?;
    say!(
        "server",
        "send({s}, \"after\\n\") = 6   (the peer is not told of SHUT_RD)"
    );
    let _ = wait::wait_readable(&p.client, Duration::from_millis(200));
    report("data sent after the shutdown")?;
    note(
        "SHUT_RD sends no packet; on Linux a read returns what is queued, then 0 while the queue is empty",
    );
    Ok(())
}
