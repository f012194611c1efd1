//! The classic select-based client (UNIX Network Programming's `str_cli`,
//! sections 6.4 to 6.7 and 16.2): one thread watches the input and the
//! socket together, so a reply is printed the moment it arrives, whatever
//! the input is doing.
//!
//! The subtle part is the end. When the input ends, the client must not
//! close the socket (or return): replies to the last lines may still be on
//! their way, and a batch run (`client < file`) would lose them. It calls
//! `shutdown(SHUT_WR)` instead: the server reads EOF, the client can still
//! read, and the client is done when the *server* closes.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

use nix::errno::Errno;
use nix::sys::select::{FdSet, select};
use nix::sys::socket::{self, MsgFlags, Shutdown};
use nix::unistd;

use crate::kit::{Call, Error, Result, io, net};

/// What [`str_cli`] moved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Copied {
    /// Bytes read from the input and sent to the socket.
    pub sent: u64,
    /// Bytes received from the socket and written to the output.
    pub received: u64,
}

// ANCHOR: ch04_str_cli
/// **Assignment 4 (the select client).** Copy `input` to the socket `sock`
/// and `sock` to `output`, with one `select(2)` watching both, until the
/// peer closes the connection after the input has ended.
///
/// - Make `sock` nonblocking (`kit::net::set_nonblocking`) and keep the
///   bytes read from `input` but not yet sent in a buffer; read more input
///   only when that buffer is empty, and watch `sock` for *writing* only
///   while it is not. (A blocking send could wait for a peer that is itself
///   waiting for us to read its replies: a deadlock.)
/// - Bytes from `sock` go to `output` (`kit::io::writen`, blocking is fine:
///   the output is ours).
/// - `read(input) == 0`: the input ended. Once everything is sent,
///   `shutdown(sock, Shutdown::Write)` once, and stop watching `input`;
///   keep reading the socket.
/// - `read(sock) == 0`: the peer closed. After the shutdown that is the end
///   (`Ok`); before it, the peer quit early: an error that says so.
/// - `EINTR` and `EAGAIN` mean "go round again". Do not close `sock`: the
///   caller owns it.
///
/// All three fds must be below `FD_SETSIZE`; return an error if one is not.
pub fn str_cli(
    input: BorrowedFd<'_>,
    sock: BorrowedFd<'_>,
    output: BorrowedFd<'_>,
) -> Result<Copied> {
    // BEGIN SOLUTION
    for fd in [input, sock, output] {
        if super::fd_beyond_select(fd.as_raw_fd()) {
            return Err(Error::msg(format!(
                "str_cli: fd {} is beyond FD_SETSIZE ({})",
                fd.as_raw_fd(),
                libc::FD_SETSIZE
            )));
        }
    }
    net::set_nonblocking(sock, true)?;
    let raw = sock.as_raw_fd();
    let mut copied = Copied::default();
    let mut pending: Vec<u8> = Vec::new();
    let mut input_ended = false;
    let mut shut = false;
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        if input_ended && pending.is_empty() && !shut {
            socket::shutdown(raw, Shutdown::Write).call(format!("shutdown({raw}, SHUT_WR)"))?;
            shut = true;
        }
        let (sock_readable, sock_writable, input_readable) = {
            let mut read = FdSet::new();
            let mut write = FdSet::new();
            read.insert(sock);
            let watch_input = !input_ended && pending.is_empty();
            if watch_input {
                read.insert(input);
            }
            if !pending.is_empty() {
                write.insert(sock);
            }
            match select(None, &mut read, &mut write, None, None) {
                Ok(_) => {}
                Err(Errno::EINTR) => continue,
                Err(errno) => return Err(Error::sys("select(input, sock)", errno)),
            }
            (
                read.contains(sock),
                !pending.is_empty() && write.contains(sock),
                watch_input && read.contains(input),
            )
        };
        if sock_readable {
            match unistd::read(sock, &mut buf) {
                Ok(0) if shut => return Ok(copied),
                Ok(0) => {
                    return Err(Error::msg(format!(
                        "str_cli: the server closed the connection before the input ended ({} bytes sent, {} received)",
                        copied.sent, copied.received
                    )));
                }
                Ok(n) => {
                    io::writen(output, &buf[..n])?;
                    copied.received += n as u64;
                }
                Err(Errno::EINTR | Errno::EAGAIN) => {}
                Err(errno) => return Err(Error::sys(format!("read({raw})"), errno)),
            }
        }
        if sock_writable {
            match socket::send(raw, &pending, MsgFlags::MSG_NOSIGNAL) {
                Ok(n) => {
                    pending.drain(..n);
                    copied.sent += n as u64;
                }
                Err(Errno::EINTR | Errno::EAGAIN) => {}
                Err(errno) => return Err(Error::sys(format!("send({raw})"), errno)),
            }
        }
        if input_readable {
            match unistd::read(input, &mut buf) {
                Ok(0) => input_ended = true,
                Ok(n) => pending.extend_from_slice(&buf[..n]),
                Err(Errno::EINTR | Errno::EAGAIN) => {}
                Err(errno) => {
                    return Err(Error::sys(format!("read({})", input.as_raw_fd()), errno));
                }
            }
        }
    }
    // END SOLUTION
}
// ANCHOR_END: ch04_str_cli

/// `client --addr A`: connect, then run [`str_cli`] on stdin and stdout.
/// Diagnostics go to stderr, so stdout carries only what the server sent.
pub fn run_client(addr: &nix::sys::socket::SockaddrStorage) -> Result<Copied> {
    let sock = net::tcp_connect("client", addr)?;
    eprintln!(
        "[client] connected to {addr} from {} on fd {}",
        net::local_addr(&sock)?,
        sock.as_raw_fd()
    );
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    let copied = str_cli(stdin.as_fd(), sock.as_fd(), stdout.as_fd())?;
    eprintln!(
        "[client] input ended, shutdown(SHUT_WR) sent, server closed: {} bytes sent, {} received",
        copied.sent, copied.received
    );
    Ok(copied)
}
