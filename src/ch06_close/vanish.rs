//! When the peer vanishes: no FIN, no RST, nothing. Three namespaces
//! (`kit::lab`): host `a`, router `r`, host `b`, joined by veth pairs. To make
//! `b` vanish, `r` gets `blackhole` routes for both hosts: it discards every
//! packet between them in silence (no ICMP), as a broken path or a peer
//! that lost power would. The links stay up, so `a`'s packets really leave
//! `a` (taking `a`'s own link down would instead fail them locally).
//!
//! - A blocked `read` has nothing to wake it: it would wait for ever.
//! - A `write` is retransmitted with a doubling timeout, for
//!   `net.ipv4.tcp_retries2` tries (minutes), before the socket fails with
//!   ETIMEDOUT. `TCP_USER_TIMEOUT` bounds that.
//! - Keepalive (`SO_KEEPALIVE` with `TCP_KEEPIDLE`, `TCP_KEEPINTVL`,
//!   `TCP_KEEPCNT`) probes an idle connection and fails the blocked read
//!   with ETIMEDOUT.
//!
//! Options: [`tcp(7)`](https://man7.org/linux/man-pages/man7/tcp.7.html),
//! [`socket(7)`](https://man7.org/linux/man-pages/man7/socket.7.html).

use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::PollFlags;
use nix::sys::socket::{self, sockopt};

use crate::ch05_handshake::proc::{show_sysctl, sysctl_num};
use crate::kit::error::errno_text;
use crate::kit::lab::{Lab, Node};
use crate::kit::narrate::{heading, note};
use crate::kit::tcp::tcp_info;
use crate::kit::{Call, Result, addr, net, wait};
use crate::say;

/// `TCP_USER_TIMEOUT` for the write part, in milliseconds.
const USER_TIMEOUT_MS: u32 = 1500;

/// The time a write keeps retrying on a silent path before ETIMEDOUT, as
/// tcp(7) describes it for `tcp_retries2`: the sum of the retransmission
/// timeouts, starting at `rto_min` seconds and doubling up to `rto_max`,
/// for `retries2 + 1` waits. (The kernel counts in the same way, from
/// `TCP_RTO_MIN`, in `retransmits_timed_out`; the real first RTO follows the
/// measured round trip, so this is the usual figure, not a promise.)
pub fn retries2_budget(retries2: u32, rto_min: f64, rto_max: f64) -> f64 {
    (0..=retries2)
        .map(|i| (rto_min * 2f64.powi(i as i32)).min(rto_max))
        .sum()
}

/// Host `a` (client), router `r`, host `b` (server).
struct Setup {
    a: Node,
    r: Node,
    b: Node,
}

const A_ADDR: &str = "10.0.6.1";
const B_ADDR: &str = "10.0.7.1";

fn build(lab: &Lab) -> Result<Setup> {
    let a = lab.host("a")?;
    let r = lab.router("r")?;
    let b = lab.host("b")?;
    lab.link(&a, "10.0.6.1/24", &r, "10.0.6.254/24")?;
    lab.link(&r, "10.0.7.254/24", &b, "10.0.7.1/24")?;
    lab.route(&a, "default", "10.0.6.254")?;
    lab.route(&b, "default", "10.0.7.254")?;
    say!(
        "lab",
        "a ({A_ADDR}) -- r -- b ({B_ADDR}): three network namespaces and two veth pairs, inside a private namespace"
    );
    Ok(Setup { a, r, b })
}

impl Setup {
    /// `r` silently discards everything between `a` and `b`.
    fn vanish(&self) -> Result<()> {
        for host in [A_ADDR, B_ADDR] {
            self.r
                .ip(&["route", "replace", "blackhole", &format!("{host}/32")])?;
        }
        say!(
            "lab",
            "in r: ip route add blackhole {A_ADDR}/32; ip route add blackhole {B_ADDR}/32   (the path now drops every packet, silently)"
        );
        Ok(())
    }

    /// The path works again.
    fn restore(&self) -> Result<()> {
        for host in [A_ADDR, B_ADDR] {
            self.r
                .ip(&["route", "del", "blackhole", &format!("{host}/32")])?;
        }
        Ok(())
    }
}

/// A listener in `b`, a client in `a` connected to it, the server's end
/// accepted: `(client, server, listener)`.
fn connect_pair(s: &Setup) -> Result<(OwnedFd, OwnedFd, OwnedFd)> {
    let (listener, bound) = s.b.run(|| {
        crate::kit::narrate::set_quiet(true);
        let r = net::tcp_listen("b", &addr::parse(&format!("{B_ADDR}:0"))?, 8);
        crate::kit::narrate::set_quiet(false);
        r
    })??;
    let client = s.a.run(|| -> Result<OwnedFd> {
        let fd = socket::socket(
            socket::AddressFamily::Inet,
            socket::SockType::Stream,
            socket::SockFlag::SOCK_CLOEXEC,
            None,
        )
        .call("socket")?;
        socket::connect(fd.as_raw_fd(), &bound).call(format!("connect({bound})"))?;
        Ok(fd)
    })??;
    let raw =
        socket::accept4(listener.as_raw_fd(), socket::SockFlag::SOCK_CLOEXEC).call("accept4")?;
    // SAFETY: accept4 just returned this fd; the OwnedFd is its only owner.
    let server = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raw) };
    say!(
        "a",
        "connect({}, {bound}) = 0; b accepted it",
        client.as_raw_fd()
    );
    Ok((client, server, listener))
}

/// Wait up to `limit` for `fd` to report an error (POLLERR/POLLHUP), then
/// read `SO_ERROR`. Returns the time it took and the error, if any.
fn wait_for_error(fd: &OwnedFd, limit: Duration) -> Result<(Duration, Option<Errno>)> {
    let start = Instant::now();
    let _ = wait::wait_for(fd, PollFlags::empty(), limit);
    let err = socket::getsockopt(fd, sockopt::SocketError).call("getsockopt(SO_ERROR)")?;
    Ok((start.elapsed(), (err != 0).then(|| Errno::from_raw(err))))
}

/// The `vanish` subcommand. Must run inside a private user+network
/// namespace (the binary's `main` enters it, before any thread).
pub fn demo() -> Result<()> {
    heading("When the peer vanishes: no FIN, no RST, silence");
    for s in [
        "net/ipv4/tcp_retries2",
        "net/ipv4/tcp_keepalive_time",
        "net/ipv4/tcp_keepalive_intvl",
        "net/ipv4/tcp_keepalive_probes",
    ] {
        note(show_sysctl(s));
    }
    let lab = Lab::new()?;
    let setup = build(&lab)?;

    note("1. b vanishes while a waits to read");
    let (client, _server, _listener) = connect_pair(&setup)?;
    setup.vanish()?;
    let start = Instant::now();
    let ready = wait::wait_readable(&client, Duration::from_millis(1500)).is_ok();
    say!(
        "a",
        "poll({}, POLLIN, 1500 ms) = {}   after {:.2} s: no FIN, no RST, nothing to read",
        client.as_raw_fd(),
        u8::from(ready),
        start.elapsed().as_secs_f64()
    );
    note(
        "a blocking read here would wait for ever: nothing will ever arrive to wake it, and TCP \
         sends nothing on an idle connection unless keepalive is on",
    );
    drop(client);
    setup.restore()?;

    note("2. a writes into the silence: retransmissions, then ETIMEDOUT");
    let retries2 = sysctl_num("net/ipv4/tcp_retries2").unwrap_or(15) as u32;
    let rto_max = sysctl_num("net/ipv4/tcp_rto_max_ms").map_or(120.0, |ms| ms as f64 / 1000.0);
    let budget = retries2_budget(retries2, 0.2, rto_max);
    note(format!(
        "with tcp_retries2 = {retries2}, an RTO starting at 200 ms (TCP_RTO_MIN) and doubling up to \
         {rto_max:.0} s (tcp_rto_max_ms, or 120 s where the kernel has no such sysctl), a write \
         retries for about {budget:.1} s ({:.1} min) before ETIMEDOUT. The demo does not wait that long:",
        budget / 60.0
    ));
    let (client, _server, _listener) = connect_pair(&setup)?;
    socket::setsockopt(&client, sockopt::TcpUserTimeout, &USER_TIMEOUT_MS)
        .call("setsockopt(TCP_USER_TIMEOUT)")?;
    say!(
        "a",
        "setsockopt({}, IPPROTO_TCP, TCP_USER_TIMEOUT, [{USER_TIMEOUT_MS}], 4) = 0   (ms)",
        client.as_raw_fd()
    );
    setup.vanish()?;
    let n = nix::unistd::write(&client, b"hello?").call("write")?;
    say!(
        "a",
        "write({}, \"hello?\") = {n}   (queued: write returns before anything is delivered)",
        client.as_raw_fd()
    );
    let (took, err) = wait_for_error(&client, Duration::from_secs(6))?;
    let info = tcp_info(&client)?;
    say!(
        "a",
        "after {:.2} s: SO_ERROR = {}; TCP_INFO retransmitted {} times",
        took.as_secs_f64(),
        err.map_or("0 (none yet)".to_string(), errno_text),
        info.total_retrans().unwrap_or(0)
    );
    match nix::unistd::write(&client, b"again") {
        Ok(n) => say!("a", "write({}) = {n}", client.as_raw_fd()),
        Err(e) => say!(
            "a",
            "write({}, \"again\") = -1 {}   (the connection is dead)",
            client.as_raw_fd(),
            errno_text(e)
        ),
    }
    note(format!(
        "TCP_USER_TIMEOUT = {USER_TIMEOUT_MS} ms: data unacknowledged that long kills the \
         connection with ETIMEDOUT, instead of after tcp_retries2 tries"
    ));
    drop(client);
    setup.restore()?;

    note("3. keepalive: a blocked reader finds out too");
    let (client, _server, _listener) = connect_pair(&setup)?;
    let (idle, intvl, cnt) = (1u32, 1u32, 2u32);
    socket::setsockopt(&client, sockopt::KeepAlive, &true).call("setsockopt(SO_KEEPALIVE)")?;
    socket::setsockopt(&client, sockopt::TcpKeepIdle, &idle).call("TCP_KEEPIDLE")?;
    socket::setsockopt(&client, sockopt::TcpKeepInterval, &intvl).call("TCP_KEEPINTVL")?;
    socket::setsockopt(&client, sockopt::TcpKeepCount, &cnt).call("TCP_KEEPCNT")?;
    say!(
        "a",
        "SO_KEEPALIVE 1, TCP_KEEPIDLE {idle} s, TCP_KEEPINTVL {intvl} s, TCP_KEEPCNT {cnt}   \
         (a dead peer is declared after about {} s idle)",
        idle + intvl * cnt
    );
    setup.vanish()?;
    let start = Instant::now();
    let woke = wait::wait_readable(&client, Duration::from_secs(8)).is_ok();
    let mut buf = [0u8; 16];
    let read = if woke {
        match nix::unistd::read(&client, &mut buf) {
            Ok(n) => format!("{n}"),
            Err(e) => format!("-1 {}", errno_text(e)),
        }
    } else {
        "(still waiting at the demo's 8 s limit)".to_string()
    };
    say!(
        "a",
        "read({}) = {read}   after {:.2} s",
        client.as_raw_fd(),
        start.elapsed().as_secs_f64()
    );
    note(
        "keepalive is off unless SO_KEEPALIVE is set, and the system-wide idle time \
         (tcp_keepalive_time, above; 7200 s by default) is long: set the three options per socket, \
         or use TCP_USER_TIMEOUT, or an application-level heartbeat with a read timeout",
    );
    Ok(())
}

/// One line saying why the part is skipped, if it must be: no private
/// namespace, or no `ip` command.
pub fn refusal() -> Option<&'static str> {
    crate::kit::lab::refusal()
}

/// States (`st`, hex) of the TCP entries on `port` in the calling
/// *thread's* network namespace (`/proc/thread-self/net/tcp`: a lab node's
/// thread sees its node's table).
fn states_on_port(port: u16) -> Vec<u8> {
    let text = std::fs::read_to_string("/proc/thread-self/net/tcp").unwrap_or_default();
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let local_port = u16::from_str_radix(cols.get(1)?.rsplit_once(':')?.1, 16).ok()?;
            let remote_port = u16::from_str_radix(cols.get(2)?.rsplit_once(':')?.1, 16).ok()?;
            (local_port == port || remote_port == port)
                .then(|| u8::from_str_radix(cols.get(3)?, 16).ok())
                .flatten()
        })
        .collect()
}

/// The `simclose` subcommand: both sides close at once, so each receives
/// the other's FIN while its own is still unacknowledged: CLOSING, and then
/// TIME_WAIT on *both* sides. Made deterministic with the lab's router:
/// both FINs are dropped, then only the a→b direction is let through.
pub fn simultaneous_close() -> Result<()> {
    heading("Simultaneous close: both FINs cross, CLOSING, and TIME_WAIT on both sides");
    let lab = Lab::new()?;
    let setup = build(&lab)?;
    let (client, server, listener) = connect_pair(&setup)?;
    let port = net::local_port(&listener)?;
    setup.vanish()?;
    socket::shutdown(client.as_raw_fd(), socket::Shutdown::Write).call("shutdown(a)")?;
    socket::shutdown(server.as_raw_fd(), socket::Shutdown::Write).call("shutdown(b)")?;
    say!(
        "a/b",
        "shutdown(SHUT_WR) on both ends: each sends a FIN, the path drops both; a is {}, b is {}",
        state_of(&client)?,
        state_of(&server)?
    );
    setup
        .r
        .ip(&["route", "del", "blackhole", &format!("{B_ADDR}/32")])?;
    say!(
        "lab",
        "in r: ip route del blackhole {B_ADDR}/32   (a's packets reach b again; b's still vanish)"
    );
    // a's FIN comes again at its next retransmission timeout: b reads EOF.
    wait::wait_readable(&server, Duration::from_secs(5))?;
    say!(
        "b",
        "poll: readable (a's FIN arrived); TCP_INFO: {}   (its own FIN still unacknowledged)",
        state_of(&server)?
    );
    setup
        .r
        .ip(&["route", "del", "blackhole", &format!("{A_ADDR}/32")])?;
    say!(
        "lab",
        "in r: ip route del blackhole {A_ADDR}/32   (the path works both ways)"
    );
    wait::wait_readable(&client, Duration::from_secs(5))?;
    // b leaves CLOSING when a's ACK of its FIN arrives; look, a bounded
    // number of times (no fd event marks that moment).
    let deadline = Instant::now() + Duration::from_secs(5);
    while state_of(&server)? == "CLOSING" && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    say!(
        "a/b",
        "a is {}, b is {}   (TCP_INFO on the fds we still hold)",
        state_of(&client)?,
        state_of(&server)?
    );
    let names = |v: Vec<u8>| {
        v.iter()
            .map(|s| crate::kit::tcp::state_name(*s))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let in_a = setup.a.run(|| states_on_port(port))?;
    let in_b = setup.b.run(|| states_on_port(port))?;
    say!(
        "a",
        "/proc/thread-self/net/tcp, port {port}: {}",
        names(in_a)
    );
    say!(
        "b",
        "/proc/thread-self/net/tcp, port {port}: {}",
        names(in_b)
    );
    note(
        "both sides closed first, so both are active closers: both pass through TIME_WAIT (the fd we \
         hold says CLOSE; the kernel keeps a small TIME_WAIT entry in its place)",
    );
    Ok(())
}

fn state_of(fd: &OwnedFd) -> Result<&'static str> {
    Ok(crate::kit::tcp::state_name(tcp_info(fd)?.state()))
}

#[cfg(test)]
mod tests {
    use super::retries2_budget;

    /// tcp(7) on tcp_retries2: "The default value of 15 yields a
    /// hypothetical timeout of 924.6 seconds".
    #[test]
    fn default_retries2_budget_is_tcp7s_924_6_seconds() {
        let t = retries2_budget(15, 0.2, 120.0);
        assert!(
            (t - 924.6).abs() < 0.05,
            "retries2_budget(15, 0.2 s, 120 s) = {t:.2} s; tcp(7) says 924.6 s"
        );
    }
}
