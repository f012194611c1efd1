//! When `connect` fails, and how not to wait for it: ECONNREFUSED (an RST
//! from a port nobody listens on), ETIMEDOUT (SYNs nobody answers),
//! nonblocking connect (EINPROGRESS → poll for writable → SO_ERROR), and a
//! connect with a deadline of your choosing.

use std::os::fd::{AsFd, AsRawFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::socket::{self, SockaddrStorage, sockopt};

use super::capture::{Access, Capture, print_packets};
use super::opts;
use crate::kit::narrate::{heading, note};
use crate::kit::{Call, Error, Result, net, wait};
use crate::say;

// ANCHOR: ch05_connect_timeout
/// Connect `fd` (a fresh TCP socket) to `addr`, giving up after `timeout`.
///
/// Task: the classic nonblocking connect (UNP section 16.3).
/// 1. Turn on `O_NONBLOCK` (`kit::net::set_nonblocking`).
/// 2. `connect`: `Ok` means connected at once; `EINPROGRESS` means the SYN
///    is out and the handshake goes on without you; any other errno is the
///    answer (return it as `Error::sys("connect(…)", errno)`).
/// 3. Wait until the socket is writable, at most `timeout`
///    (`kit::wait::wait_writable`, which reports an expired wait as
///    `ETIMEDOUT`). On time-out return an error whose errno is `ETIMEDOUT`.
/// 4. Writable means the handshake is *over*, not that it worked: read
///    `SO_ERROR` (`getsockopt(fd, sockopt::SocketError)`): 0 is success;
///    anything else is the errno the blocking `connect` would have returned
///    (`ECONNREFUSED`, `ETIMEDOUT`, …): return it as an error.
/// 5. Turn `O_NONBLOCK` off again before returning `Ok`, so the caller gets
///    an ordinary blocking socket.
pub fn connect_timeout(fd: impl AsFd, addr: &SockaddrStorage, timeout: Duration) -> Result<()> {
    // BEGIN SOLUTION
    let fd = fd.as_fd();
    let raw = fd.as_raw_fd();
    let call = format!("connect({raw}, {addr})");
    net::set_nonblocking(fd, true)?;
    match socket::connect(raw, addr) {
        Ok(()) => {}
        Err(Errno::EINPROGRESS) => {
            wait::wait_writable(fd, timeout).map_err(|e| {
                Error::sys(
                    format!("{call} within {timeout:?}"),
                    e.errno().unwrap_or(Errno::ETIMEDOUT),
                )
            })?;
            let err = socket::getsockopt(&fd, sockopt::SocketError)
                .call(format!("getsockopt({raw}, SO_ERROR)"))?;
            if err != 0 {
                return Err(Error::sys(call, Errno::from_raw(err)));
            }
        }
        Err(errno) => return Err(Error::sys(call, errno)),
    }
    net::set_nonblocking(fd, false)
    // END SOLUTION
}
// ANCHOR_END: ch05_connect_timeout

/// A TCP socket for `addr`'s family with `TCP_SYNCNT` set, narrated, shown
/// in its raw C form.
pub fn socket_with_syncnt(
    who: &str,
    addr: &SockaddrStorage,
    syncnt: i32,
) -> Result<std::os::fd::OwnedFd> {
    let family = if addr.as_sockaddr_in6().is_some() {
        socket::AddressFamily::Inet6
    } else {
        socket::AddressFamily::Inet
    };
    let fd = net::tcp_socket(who, family)?;
    opts::set_syncnt(&fd, syncnt)?;
    say!(
        who,
        "setsockopt({}, IPPROTO_TCP, TCP_SYNCNT, [{syncnt}], 4) = 0",
        fd.as_raw_fd()
    );
    Ok(fd)
}

/// A TCP socket for `addr`'s family with `TCP_SYNCNT` set, not narrated
/// (for demos that open many).
pub fn socket_quiet_syncnt(addr: &SockaddrStorage, syncnt: i32) -> Result<std::os::fd::OwnedFd> {
    let family = if addr.as_sockaddr_in6().is_some() {
        socket::AddressFamily::Inet6
    } else {
        socket::AddressFamily::Inet
    };
    let fd = socket::socket(
        family,
        socket::SockType::Stream,
        socket::SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(|e| Error::sys("socket(SOCK_STREAM)", e))?;
    opts::set_syncnt(&fd, syncnt)?;
    Ok(fd)
}

/// A listener whose accept queue is full, so its SYNs go unanswered: a
/// `listen(fd, 0)` socket holding the one connection (0 + 1) Linux admits.
/// Returns the listener, the connection that fills it (client side) and the
/// address. Nothing here leaves the loopback interface.
pub fn full_listener(
    who: &str,
) -> Result<(std::os::fd::OwnedFd, std::os::fd::OwnedFd, SockaddrStorage)> {
    let (listener, addr) = net::tcp_listen(who, &crate::kit::addr::parse("127.0.0.1:0")?, 0)?;
    let filler = net::tcp_connect("filler", &addr)?;
    Ok((listener, filler, addr))
}

/// Part 4 of the demo: the ways `connect` fails.
pub fn demo(access: &Access, syncnt: i32, timeout: Duration) -> Result<()> {
    heading("4. When connect fails");
    refused(access)?;
    timed_out(access, syncnt)?;
    nonblocking(access)?;
    with_deadline(timeout)?;
    Ok(())
}

fn start_capture(access: &Access, ports: &[u16]) -> Result<Option<Capture>> {
    if !access.can_capture() {
        return Ok(None);
    }
    Capture::start(ports).map(Some)
}

fn show_capture(cap: &Option<Capture>, quiet: Duration) -> Result<()> {
    if let Some(cap) = cap {
        note("packets:");
        print_packets(&cap.take(quiet)?, None);
    }
    Ok(())
}

/// ECONNREFUSED: a port with no listener answers a SYN with RST.
pub fn refused(access: &Access) -> Result<()> {
    note("4a. ECONNREFUSED: a port where nobody listens");
    // A bound socket that never calls listen() holds the port, so no other
    // program can be listening there while we try.
    let holder = net::tcp_socket("holder", socket::AddressFamily::Inet)?;
    let any = crate::kit::addr::parse("127.0.0.1:0")?;
    socket::bind(holder.as_raw_fd(), &any).call("bind(127.0.0.1:0)")?;
    let addr = net::local_addr(&holder)?;
    say!(
        "holder",
        "bind({}, 127.0.0.1:0) = 0  -> {addr}, no listen()",
        holder.as_raw_fd()
    );
    let port = net::local_port(&holder)?;
    let cap = start_capture(access, &[port])?;
    let fd = net::tcp_socket("client", socket::AddressFamily::Inet)?;
    let t = Instant::now();
    match socket::connect(fd.as_raw_fd(), &addr) {
        Ok(()) => {
            return Err(Error::msg(format!(
                "connect to {addr} worked: who listens there?"
            )));
        }
        Err(errno) => say!(
            "client",
            "connect({}, {addr}) = -1 {} after {:.1} ms",
            fd.as_raw_fd(),
            crate::kit::error::errno_text(errno),
            t.elapsed().as_secs_f64() * 1e3
        ),
    }
    show_capture(&cap, Duration::from_millis(30))?;
    note(
        "the SYN was answered at once by RST+ACK: \"nobody here\". connect fails with ECONNREFUSED.",
    );
    Ok(())
}

/// ETIMEDOUT: SYNs nobody answers, shortened with TCP_SYNCNT.
pub fn timed_out(access: &Access, syncnt: i32) -> Result<()> {
    note(format!(
        "4b. ETIMEDOUT: SYNs that get no answer. {}, {}; TCP_SYNCNT={syncnt} shortens the wait",
        super::proc::show_sysctl("net/ipv4/tcp_syn_retries"),
        super::proc::show_sysctl("net/ipv4/tcp_syn_linear_timeouts"),
    ));
    let (_listener, _filler, addr) = full_listener("server")?;
    note(
        "the listener's queue is full (listen backlog 0 admits 1): it drops new SYNs without a word",
    );
    let port = crate::kit::addr::port(&addr).unwrap_or(0);
    let cap = start_capture(access, &[port])?;
    let fd = socket_with_syncnt("client", &addr, syncnt)?;
    let t = Instant::now();
    say!(
        "client",
        "connect({}, {addr}) ... (blocking)",
        fd.as_raw_fd()
    );
    let result = socket::connect(fd.as_raw_fd(), &addr);
    let took = t.elapsed();
    match result {
        Ok(()) => return Err(Error::msg("connect to a full listener succeeded")),
        Err(errno) => say!(
            "client",
            "connect({}, {addr}) = -1 {} after {:.2} s",
            fd.as_raw_fd(),
            crate::kit::error::errno_text(errno),
            took.as_secs_f64()
        ),
    }
    if let Some(cap) = &cap {
        let packets = cap.take(Duration::from_millis(30))?;
        let syns: Vec<_> = packets
            .iter()
            .filter(|p| p.tcp.flags == super::header::flags::SYN && p.tcp.dst_port == port)
            .filter(|p| Some(p.tcp.src_port) == net::local_port(&fd).ok())
            .collect();
        note("packets:");
        print_packets(&packets, None);
        let gaps: Vec<String> = syns
            .windows(2)
            .map(|w| {
                format!(
                    "{:.2}",
                    w[1].at.saturating_duration_since(w[0].at).as_secs_f64()
                )
            })
            .collect();
        let series: Vec<String> = (0..=syncnt).map(|i| (1u64 << i).to_string()).collect();
        let model = (1u64 << (syncnt + 1)) - 1;
        let resent = syns.len().saturating_sub(1);
        note(format!(
            "TCP_SYNCNT={syncnt}: {} SYNs went out ({resent} retransmissions), gaps {} s; connect gave up {:.2} s after the first",
            syns.len(),
            gaps.join(", "),
            took.as_secs_f64()
        ));
        note(format!(
            "a SYN timer that doubles from 1 s would resend {syncnt} times and give up after {} = {model} s",
            series.join(" + ")
        ));
        let near = (took.as_secs_f64() - model as f64).abs() < 0.15 * model as f64;
        if near && resent > syncnt as usize {
            note(
                "here: the give-up time matches that budget, but the SYNs went out at a constant interval \
                  (tcp_syn_linear_timeouts), so more of them fit in it than TCP_SYNCNT says",
            );
        } else if near {
            note("here: the count and the time both match the doubling timer");
        }
    }
    Ok(())
}

/// Nonblocking connect: EINPROGRESS, poll for writable, then SO_ERROR.
pub fn nonblocking(access: &Access) -> Result<()> {
    note("4c. nonblocking connect: EINPROGRESS -> poll(POLLOUT) -> getsockopt(SO_ERROR)");
    let (listener, addr) = net::tcp_listen("server", &crate::kit::addr::parse("127.0.0.1:0")?, 8)?;
    let holder = net::tcp_socket("holder", socket::AddressFamily::Inet)?;
    socket::bind(holder.as_raw_fd(), &crate::kit::addr::parse("127.0.0.1:0")?)
        .call("bind(127.0.0.1:0)")?;
    let closed = net::local_addr(&holder)?;
    let _ = access;
    for (label, target) in [("a listener", &addr), ("a closed port", &closed)] {
        let fd = net::tcp_socket("client", socket::AddressFamily::Inet)?;
        let raw = fd.as_raw_fd();
        net::set_nonblocking(&fd, true)?;
        say!("client", "fcntl({raw}, F_SETFL, O_NONBLOCK) = 0");
        let t = Instant::now();
        match socket::connect(raw, target) {
            Ok(()) => say!(
                "client",
                "connect({raw}, {target}) = 0 ({label}: done at once)"
            ),
            Err(Errno::EINPROGRESS) => {
                say!(
                    "client",
                    "connect({raw}, {target}) = -1 EINPROGRESS ({label})"
                );
                let revents =
                    wait::wait_for(&fd, nix::poll::PollFlags::POLLOUT, Duration::from_secs(2))?;
                say!(
                    "client",
                    "poll([{raw} POLLOUT]) -> {revents:?} after {:.2} ms",
                    t.elapsed().as_secs_f64() * 1e3
                );
                let err = socket::getsockopt(&fd, sockopt::SocketError)
                    .call(format!("getsockopt({raw}, SO_ERROR)"))?;
                let text = if err == 0 {
                    "0 (connected)".to_string()
                } else {
                    crate::kit::error::errno_text(Errno::from_raw(err))
                };
                say!("client", "getsockopt({raw}, SOL_SOCKET, SO_ERROR) = {text}");
            }
            Err(errno) => say!(
                "client",
                "connect({raw}, {target}) = -1 {}",
                crate::kit::error::errno_text(errno)
            ),
        }
    }
    drop(listener);
    note("writable means the handshake is over, not that it worked: SO_ERROR says which");
    Ok(())
}

/// The assignment at work: connect with a deadline of our choosing.
pub fn with_deadline(timeout: Duration) -> Result<()> {
    note(format!(
        "4d. connect_timeout(): a deadline of {} ms instead of the kernel's SYN retries",
        timeout.as_millis()
    ));
    let (_listener, _filler, full) = full_listener("server")?;
    let (_ok_listener, ok) =
        net::tcp_listen("server", &crate::kit::addr::parse("127.0.0.1:0")?, 8)?;
    for (label, target) in [("a listener", &ok), ("the full listener", &full)] {
        let fd = net::tcp_socket("client", socket::AddressFamily::Inet)?;
        let t = Instant::now();
        let result = connect_timeout(&fd, target, timeout);
        let took = t.elapsed().as_secs_f64() * 1e3;
        match result {
            Ok(()) => say!(
                "client",
                "connect_timeout({}, {target}, {} ms) = ok in {took:.2} ms ({label}); state {}",
                fd.as_raw_fd(),
                timeout.as_millis(),
                opts::state_of(&fd)?
            ),
            Err(e) => say!(
                "client",
                "connect_timeout({}, {target}, {} ms) failed after {took:.0} ms ({label}): {e}",
                fd.as_raw_fd(),
                timeout.as_millis()
            ),
        }
    }
    Ok(())
}
