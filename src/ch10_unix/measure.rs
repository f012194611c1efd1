//! Two measurements: how many datagrams a Unix datagram socket queues
//! before the sender has to wait, and how a Unix stream compares with TCP
//! over loopback for latency and throughput.

use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::socket::{self, AddressFamily, MsgFlags, SockFlag, SockType, socketpair};

use super::addr::{self, Name};
use crate::kit::{Call, Error, Result, net};

/// `net.unix.max_dgram_qlen`, read from `/proc/sys/net/unix/max_dgram_qlen`.
pub fn max_dgram_qlen() -> Result<usize> {
    let text = std::fs::read_to_string("/proc/sys/net/unix/max_dgram_qlen")
        .map_err(|e| Error::msg(format!("read /proc/sys/net/unix/max_dgram_qlen: {e}")))?;
    text.trim()
        .parse()
        .map_err(|_| Error::msg(format!("max_dgram_qlen: {text:?}")))
}

/// Send `size`-byte datagrams with `MSG_DONTWAIT` until `EAGAIN`; how many
/// went (capped at `cap`).
pub fn fill(fd: &OwnedFd, size: usize, cap: usize) -> Result<usize> {
    let data = vec![b'd'; size];
    for sent in 0..cap {
        match socket::send(
            fd.as_raw_fd(),
            &data,
            MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL,
        ) {
            Ok(_) => {}
            Err(Errno::EAGAIN) => return Ok(sent),
            Err(e) => {
                return Err(Error::sys(
                    format!("send({}, MSG_DONTWAIT)", fd.as_raw_fd()),
                    e,
                ));
            }
        }
    }
    Ok(cap)
}

/// A bound datagram receiver (abstract name) and a sender `connect`ed to it.
pub fn dgram_pair_named() -> Result<(OwnedFd, OwnedFd)> {
    let name = Name::unique_abstract("dgram");
    let rx = addr::unix_socket("receiver", SockType::Datagram)?;
    addr::unix_bind("receiver", &rx, &name)?;
    let tx = addr::unix_connect("sender", SockType::Datagram, &name)?;
    Ok((rx, tx))
}

/// One measurement of a byte-stream connection.
#[derive(Debug, Clone, Copy)]
pub struct Speed {
    /// Mean round trip of a 1-byte ping-pong, in microseconds.
    pub rtt_us: f64,
    /// One-way throughput in MiB/s with 64 KiB writes.
    pub mib_per_s: f64,
}

/// A connected pair of stream sockets: a Unix `socketpair`, or a TCP
/// connection over 127.0.0.1.
pub fn stream_pair(unix: bool) -> Result<(OwnedFd, OwnedFd)> {
    if unix {
        return socketpair(
            AddressFamily::Unix,
            SockType::Stream,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .call("socketpair(AF_UNIX, SOCK_STREAM)");
    }
    let any = crate::kit::addr::parse("127.0.0.1:0")?;
    let (listener, bound) = net::tcp_listen("", &any, 1)?;
    let client = net::tcp_connect("", &bound)?;
    let (server, _) = net::accept("", &listener)?;
    socket::setsockopt(&client, socket::sockopt::TcpNoDelay, &true).call("TCP_NODELAY")?;
    socket::setsockopt(&server, socket::sockopt::TcpNoDelay, &true).call("TCP_NODELAY")?;
    Ok((client, server))
}

/// Measure a pair from [`stream_pair`]: `rounds` 1-byte round trips, then
/// `bytes` one way.
pub fn speed(unix: bool, rounds: usize, bytes: usize) -> Result<Speed> {
    let quiet = crate::kit::narrate::is_quiet();
    crate::kit::narrate::set_quiet(true);
    let pair = stream_pair(unix);
    crate::kit::narrate::set_quiet(quiet);
    let (a, b) = pair?;
    // The echo side: bounce `rounds` bytes, then swallow `bytes` bytes.
    let echo = std::thread::spawn(move || -> Result<()> {
        let mut one = [0u8; 1];
        for _ in 0..rounds {
            crate::kit::io::readn(&b, &mut one)?;
            crate::kit::io::writen(&b, &one)?;
        }
        let mut buf = vec![0u8; 1 << 16];
        let mut left = bytes;
        while left > 0 {
            let n = nix::unistd::read(&b, &mut buf).call("read")?;
            if n == 0 {
                break;
            }
            left -= n.min(left);
        }
        crate::kit::io::writen(&b, b"k")
    });
    let mut one = [b'p'; 1];
    let start = Instant::now();
    for _ in 0..rounds {
        crate::kit::io::writen(&a, &one)?;
        crate::kit::io::readn(&a, &mut one)?;
    }
    let rtt = start.elapsed();
    let chunk = vec![b't'; 1 << 16];
    let start = Instant::now();
    let mut left = bytes;
    while left > 0 {
        let n = left.min(chunk.len());
        crate::kit::io::writen(&a, &chunk[..n])?;
        left -= n;
    }
    crate::kit::io::readn(&a, &mut one)?; // the receiver has it all
    let took = start.elapsed().max(Duration::from_micros(1));
    echo.join()
        .map_err(|_| Error::msg("echo thread panicked"))??;
    Ok(Speed {
        rtt_us: rtt.as_secs_f64() * 1e6 / rounds.max(1) as f64,
        mib_per_s: bytes as f64 / (1 << 20) as f64 / took.as_secs_f64(),
    })
}
