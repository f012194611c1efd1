//! Small helpers the chapter's parts share: a connected pair on loopback,
//! state lines, and filling a peer's buffers.

use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::socket::{self, AddressFamily, sockopt};

use crate::ch05_handshake::proc as kproc;
use crate::kit::narrate::line;
use crate::kit::tcp::{state_name, tcp_info};
use crate::kit::{Call, Error, Result, addr, net, wait};
use crate::say;

/// A TCP connection on loopback: the listener, the client's fd, the
/// server's accepted fd, and both addresses.
pub struct Pair {
    pub listener: OwnedFd,
    pub client: OwnedFd,
    pub server: OwnedFd,
    pub client_addr: SocketAddr,
    pub server_addr: SocketAddr,
}

impl Pair {
    /// The listener's port: every packet of the connection has it.
    pub fn port(&self) -> u16 {
        self.server_addr.port()
    }
}

/// Listen on 127.0.0.1:0, connect, accept. `bufs` (bytes), if given, is
/// set as SO_RCVBUF and SO_SNDBUF on both sides before the handshake (the
/// accepted socket inherits the listener's), so buffers fill quickly.
pub fn pair(bufs: Option<usize>) -> Result<Pair> {
    let (listener, laddr) = net::tcp_listen("server", &addr::parse("127.0.0.1:0")?, 8)?;
    let client = net::tcp_socket("client", AddressFamily::Inet)?;
    if let Some(n) = bufs {
        for fd in [&listener, &client] {
            socket::setsockopt(fd, sockopt::RcvBuf, &n).call("setsockopt(SO_RCVBUF)")?;
            socket::setsockopt(fd, sockopt::SndBuf, &n).call("setsockopt(SO_SNDBUF)")?;
        }
        say!(
            "",
            "(SO_RCVBUF and SO_SNDBUF set to {n} on both sides: small buffers fill fast)"
        );
    }
    socket::connect(client.as_raw_fd(), &laddr)
        .call(format!("connect({}, {laddr})", client.as_raw_fd()))?;
    say!("client", "connect({}, {laddr}) = 0", client.as_raw_fd());
    let (server, _) = net::accept("server", &listener)?;
    let client_addr = addr::to_std(&net::local_addr(&client)?)
        .ok_or_else(|| Error::msg("client without an IP address"))?;
    let server_addr =
        addr::to_std(&laddr).ok_or_else(|| Error::msg("listener without an IP address"))?;
    Ok(Pair {
        listener,
        client,
        server,
        client_addr,
        server_addr,
    })
}

/// `TCP_INFO` state of a socket we hold, by name.
pub fn state(fd: impl AsFd) -> Result<&'static str> {
    Ok(state_name(tcp_info(fd)?.state()))
}

/// Print both ends of the connection as `/proc/net/tcp` has them, with
/// the timer and inode (0: no process holds it).
pub fn show_ends(client: SocketAddr, server: SocketAddr) -> Result<()> {
    let table = kproc::read_tcp_table()?;
    for (who, local, remote) in [("client", client, server), ("server", server, client)] {
        match table
            .iter()
            .find(|e| e.local == local && e.remote == remote)
        {
            Some(e) => line(
                "",
                format_args!(
                    "  /proc: {who} side {:<12} send-q {:<6} timer={}{} inode {}",
                    state_name(e.state),
                    e.tx_queue,
                    kproc::timer_name(e.timer),
                    if e.timer != 0 {
                        format!(" ({:.1} s left)", e.timer_when as f64 / clock_ticks())
                    } else {
                        String::new()
                    },
                    e.inode
                ),
            ),
            None => line("", format_args!("  /proc: {who} side gone (CLOSED)")),
        }
    }
    Ok(())
}

/// The clock tick `/proc/net/tcp` counts `tm->when` in (USER_HZ).
pub fn clock_ticks() -> f64 {
    // SAFETY: sysconf only reads a configuration value.
    unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64
}

/// The `/proc/net/tcp` entry for `local` → `remote`, if any.
pub fn entry(local: SocketAddr, remote: SocketAddr) -> Result<Option<kproc::ProcTcpEntry>> {
    kproc::find_connection(local, remote)
}

/// Write to `fd` without blocking until the kernel takes no more (both the
/// sender's and the receiver's buffers are full). Returns the bytes taken.
pub fn fill(fd: impl AsFd) -> Result<usize> {
    let fd = fd.as_fd();
    net::set_nonblocking(fd, true)?;
    let chunk = [b'x'; 4096];
    let mut total = 0;
    loop {
        match nix::unistd::write(fd, &chunk) {
            Ok(n) => total += n,
            Err(Errno::EAGAIN) => {
                // Let the receiver's window close, then try once more.
                if wait::wait_writable(fd, Duration::from_millis(50)).is_err() {
                    break;
                }
            }
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(Error::sys(format!("write({})", fd.as_raw_fd()), e)),
        }
    }
    net::set_nonblocking(fd, false)?;
    Ok(total)
}

/// Read until EOF (or an error), at most `timeout`; returns the byte count
/// and how it ended (`Ok(())` for EOF).
pub fn drain(fd: impl AsFd, timeout: Duration) -> (usize, Result<()>) {
    let fd = fd.as_fd();
    let deadline = std::time::Instant::now() + timeout;
    let mut buf = [0u8; 65536];
    let mut total = 0;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if let Err(e) = wait::wait_readable(fd, left) {
            return (total, Err(e));
        }
        match nix::unistd::read(fd, &mut buf) {
            Ok(0) => return (total, Ok(())),
            Ok(n) => total += n,
            Err(Errno::EINTR | Errno::EAGAIN) => continue,
            Err(e) => {
                return (
                    total,
                    Err(Error::sys(format!("read({})", fd.as_raw_fd()), e)),
                );
            }
        }
    }
}

/// Wait (at most 2 s) until data has arrived in `fd`'s receive queue.
pub fn wait_until_queued(fd: impl AsFd) -> Result<()> {
    wait::wait_readable(fd, Duration::from_secs(2))
}
