//! The backlog: what `listen(fd, N)` admits when nobody calls `accept`,
//! what the clients beyond it see, and what the listener's queues hold.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::socket::{self, SockaddrStorage};

use super::capture::{Access, Capture};
use super::header::flags;
use super::proc::{self as kproc, CounterDelta, SS_HEADER};
use super::{connect, opts};
use crate::kit::narrate::{heading, line, note};
use crate::kit::tcp::{state_name, tcp_info};
use crate::kit::{Error, Result, addr, net, wait};
use crate::say;

/// A listening socket's two queue numbers, the ones `ss -lnt` shows as
/// Recv-Q and Send-Q for a listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenQueues {
    /// Connections that finished the handshake and wait for `accept`
    /// (the accept queue, 全连接队列).
    pub ready: u32,
    /// The most the accept queue may hold: the backlog `listen` was given,
    /// capped at `net.core.somaxconn`.
    pub limit: u32,
}

// ANCHOR: ch05_listener_queues
/// Report how many connections wait in `listener`'s accept queue, and its
/// limit.
///
/// Task: read `TCP_INFO` from the listening socket with
/// `kit::tcp::tcp_info` (it copes with kernels that return a shorter
/// struct). For a socket in state LISTEN (10) Linux reuses two fields:
/// `tcpi_unacked` holds the number of connections ready for `accept`, and
/// `tcpi_sacked` the accept queue's limit. Return `Error::msg` if the socket
/// is not listening (check `tcpi_state`), since then the fields mean
/// something else.
pub fn listener_queues(listener: impl AsFd) -> Result<ListenQueues> {
    // BEGIN SOLUTION
    let info = tcp_info(listener)?;
    if info.state() != 10 {
        return Err(Error::msg(format!(
            "listener_queues: socket is {}, not LISTEN",
            state_name(info.state())
        )));
    }
    Ok(ListenQueues {
        ready: info.raw.tcpi_unacked,
        limit: info.raw.tcpi_sacked,
    })
    // END SOLUTION
}
// ANCHOR_END: ch05_listener_queues

/// How many half-open entries (SYN_RECV in `/proc/net/tcp`) a listener on
/// `port` has: the SYN queue (半连接队列) the seed describes.
pub fn half_open_count(port: u16) -> Result<usize> {
    Ok(kproc::entries_on_port(port)?
        .iter()
        .filter(|e| e.state == 3 && e.local.port() == port)
        .count())
}

/// Print the `/proc/net/tcp` entries for `port`, `ss -tan` style.
pub fn show_table(port: u16) -> Result<()> {
    line("", format_args!("  {SS_HEADER}"));
    let mut entries = kproc::entries_on_port(port)?;
    entries.sort_by_key(|e| (e.state != 10, e.local.port() != port, e.local, e.remote));
    for e in entries {
        line("", format_args!("  {}", e.ss_line()));
    }
    Ok(())
}

const COUNTERS: [&str; 5] = [
    "TcpExt:ListenOverflows",
    "TcpExt:ListenDrops",
    "TcpExt:TCPSynRetrans",
    "TcpExt:SyncookiesSent",
    "Tcp:ActiveOpens",
];

fn show_counters(delta: &CounterDelta, names: &[&str]) -> Result<()> {
    for (name, before, after) in delta.rises(names)? {
        line(
            "",
            format_args!(
                "  {name:<24} {before:>10} -> {after:<10} (+{})",
                after - before
            ),
        );
    }
    Ok(())
}

/// One client of the backlog demo.
struct Client {
    fd: OwnedFd,
    local: SocketAddr,
}

/// Part 2 of the demo: `listen(fd, backlog)` and no `accept`.
pub fn demo(access: &Access, backlog: i32, extra: usize) -> Result<()> {
    heading(format!(
        "2. The backlog: listen(fd, {backlog}) and nobody calls accept"
    ));
    for s in [
        "net/core/somaxconn",
        "net/ipv4/tcp_max_syn_backlog",
        "net/ipv4/tcp_syncookies",
        "net/ipv4/tcp_abort_on_overflow",
    ] {
        note(kproc::show_sysctl(s));
    }
    let (listener, laddr) = net::tcp_listen("server", &addr::parse("127.0.0.1:0")?, backlog)?;
    let port = net::local_port(&listener)?;
    let cap = if access.can_capture() {
        Some(Capture::start(&[port])?)
    } else {
        None
    };
    let counters = CounterDelta::start()?;
    let total = backlog.max(0) as usize + 1 + extra;
    let syncnt = 2;
    note(format!(
        "{total} clients connect without blocking (TCP_SYNCNT={syncnt} so none waits long)"
    ));
    let mut clients = Vec::new();
    for _ in 0..total {
        clients.push(start_client(&laddr, syncnt)?);
    }
    // A completed connection is writable at once; give the others a moment
    // to prove they are not.
    let settle = Instant::now() + Duration::from_millis(200);
    let mut done = vec![false; clients.len()];
    for (i, c) in clients.iter().enumerate() {
        let left = settle.saturating_duration_since(Instant::now());
        done[i] = wait::wait_writable(&c.fd, left).is_ok();
    }
    let mut established = 0;
    for c in &clients {
        let info = tcp_info(&c.fd)?;
        if info.state() == 1 {
            established += 1;
        }
        say!(
            "client",
            "fd {} {} : TCP_INFO state {}  retransmits {}",
            c.fd.as_raw_fd(),
            c.local,
            state_name(info.state()),
            info.total_retrans().unwrap_or(0)
        );
    }
    let q = listener_queues(&listener)?;
    say!(
        "server",
        "listener_queues({}) = ready {} / limit {}   (TCP_INFO tcpi_unacked / tcpi_sacked)",
        listener.as_raw_fd(),
        q.ready,
        q.limit
    );
    note(format!(
        "{established} of {total} connections completed with listen backlog {backlog} and no accept \
         (Linux admits backlog + 1 = {}); the other {} are still in SYN_SENT",
        backlog + 1,
        total - established
    ));
    note(
        "/proc/net/tcp (the listener's Recv-Q is its accept queue; the completed connections wait there with no fd):",
    );
    show_table(port)?;
    note(format!(
        "half-open (SYN_RECV) entries for port {port}: {} -- the dropped SYNs never made one",
        half_open_count(port)?
    ));
    note("counters since the clients started:");
    show_counters(&counters, &COUNTERS)?;

    // Wait for the first SYN retransmission of a waiting client.
    let waiting: Vec<&Client> = clients
        .iter()
        .zip(&done)
        .filter(|(c, _)| tcp_info(&c.fd).map(|i| i.state() == 2).unwrap_or(false))
        .map(|(c, _)| c)
        .collect();
    let t0 = Instant::now();
    if let Some(first) = waiting.first() {
        let deadline = t0 + Duration::from_secs(3);
        while tcp_info(&first.fd)?.total_retrans().unwrap_or(0) == 0 && Instant::now() < deadline {
            // Nothing to poll on: the kernel's timer moves the state. Check
            // often, briefly.
            std::thread::sleep(Duration::from_millis(20));
        }
        note(format!(
            "{:.2} s later: the waiting clients resent their SYN (TCP_INFO retransmits = {}); dropped again:",
            t0.elapsed().as_secs_f64(),
            tcp_info(&first.fd)?.total_retrans().unwrap_or(0)
        ));
        show_counters(&counters, &COUNTERS[..3])?;
    }

    // Drain the accept queue; the waiting clients get in on their next SYN.
    note("now accept drains the queue:");
    let mut accepted = Vec::new();
    loop {
        match socket::accept4(
            listener.as_raw_fd(),
            socket::SockFlag::SOCK_NONBLOCK | socket::SockFlag::SOCK_CLOEXEC,
        ) {
            Ok(raw) => {
                // SAFETY: accept4 just returned this fd; the OwnedFd is its only owner.
                let fd = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raw) };
                let peer = net::peer_addr(&fd)?;
                say!(
                    "server",
                    "accept({}) = {raw} peer={peer}",
                    listener.as_raw_fd()
                );
                accepted.push(fd);
            }
            Err(Errno::EAGAIN) => break,
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(Error::sys(format!("accept({})", listener.as_raw_fd()), e)),
        }
        // A nonblocking listener tells us when the queue is empty.
        if accepted.len() == 1 {
            net::set_nonblocking(&listener, true)?;
        }
        if accepted.len() > total {
            break;
        }
    }
    let q = listener_queues(&listener)?;
    say!(
        "server",
        "listener_queues = ready {} / limit {}",
        q.ready,
        q.limit
    );
    let t1 = Instant::now();
    let mut late = 0;
    for c in &waiting {
        match wait::wait_writable(&c.fd, Duration::from_secs(3)) {
            Ok(()) => {
                let info = tcp_info(&c.fd)?;
                say!(
                    "client",
                    "fd {} {} : {} after {:.2} s more (SYN retransmissions: {})",
                    c.fd.as_raw_fd(),
                    c.local,
                    state_name(info.state()),
                    t1.elapsed().as_secs_f64(),
                    info.total_retrans().unwrap_or(0)
                );
                if info.state() == 1 {
                    late += 1;
                }
            }
            Err(e) => say!("client", "fd {} {}: {e}", c.fd.as_raw_fd(), c.local),
        }
    }
    note(format!(
        "{late} waiting clients now see ESTABLISHED: a resent SYN found room in the queue"
    ));
    let half = half_open_count(port)?;
    if half > 0 {
        note(format!(
            "but {half} of them are SYN_RECV on the server's side: their final ACK arrived when the accept queue \
             was full again and was dropped (tcp_abort_on_overflow = 0); the server will resend its SYN+ACK:"
        ));
        show_table(port)?;
    }
    // Accept the late arrivals too, as they complete.
    let deadline = Instant::now() + Duration::from_secs(4);
    while accepted.len() < total && Instant::now() < deadline {
        let left = deadline.saturating_duration_since(Instant::now());
        if wait::wait_readable(&listener, left).is_err() {
            break;
        }
        match net::accept("server", &listener) {
            Ok((fd, _)) => accepted.push(fd),
            Err(e) if e.errno() == Some(Errno::EAGAIN) => continue,
            Err(e) => return Err(e),
        }
    }
    note(format!(
        "{} of {total} connections accepted in all, {:.2} s after the drain began",
        accepted.len(),
        t1.elapsed().as_secs_f64()
    ));
    if let Some(cap) = &cap {
        syn_timeline(cap, port)?;
    }
    note("counters over the whole part:");
    show_counters(&counters, &COUNTERS)?;
    let cookies = kproc::sysctl_num("net/ipv4/tcp_syncookies").unwrap_or(-1);
    note(format!(
        "tcp_syncookies = {cookies}: {}",
        match cookies {
            0 => "never use SYN cookies",
            1 => "send SYN cookies only when the SYN queue overflows",
            2 => "always send SYN cookies",
            _ => "unknown setting",
        }
    ));
    note(
        "a SYN cookie encodes the connection in the SYN+ACK's sequence number, so a server flooded with SYNs \
          keeps no half-open entry for them",
    );
    let rises = counters.rises(&["TcpExt:ListenOverflows", "TcpExt:SyncookiesSent"])?;
    let rise = |name: &str| {
        rises
            .iter()
            .find(|(n, _, _)| n == name)
            .map_or(0, |(_, b, a)| a - b)
    };
    let cookies_sent = rise("TcpExt:SyncookiesSent");
    if cookies_sent == 0 {
        note(format!(
            "here the accept queue was full, not the SYN queue: SYNs were dropped (ListenOverflows +{}) \
             and SyncookiesSent rose by 0",
            rise("TcpExt:ListenOverflows")
        ));
    } else {
        note(format!(
            "SyncookiesSent rose by {cookies_sent}: the SYN queue's limit follows the backlog, so with backlog \
             {backlog} it overflowed too and the kernel answered with cookies, keeping no entry"
        ));
    }
    if accepted.len() < total {
        note(format!(
            "{} clients believe they are connected, but the server has no connection for them: their final ACK \
             met a full accept queue and was dropped{}. They find out only when they send something",
            total - accepted.len(),
            if cookies_sent > 0 {
                ", and a cookie leaves nothing to retry from"
            } else {
                ""
            }
        ));
    }
    Ok(())
}

fn start_client(laddr: &SockaddrStorage, syncnt: i32) -> Result<Client> {
    let fd = connect::socket_with_syncnt("client", laddr, syncnt)?;
    net::set_nonblocking(&fd, true)?;
    match socket::connect(fd.as_raw_fd(), laddr) {
        Ok(()) | Err(Errno::EINPROGRESS) => {}
        Err(e) => {
            return Err(Error::sys(
                format!("connect({}, {laddr})", fd.as_raw_fd()),
                e,
            ));
        }
    }
    let local = addr::to_std(&net::local_addr(&fd)?)
        .ok_or_else(|| Error::msg("client has no IP address"))?;
    say!(
        "client",
        "connect({}, {laddr}) = -1 EINPROGRESS   (local {local})",
        fd.as_raw_fd()
    );
    Ok(Client { fd, local })
}

/// From the capture: each client's SYNs and when (if) the server answered.
fn syn_timeline(cap: &Capture, port: u16) -> Result<()> {
    let packets = cap.take(Duration::from_millis(30))?;
    let Some(t0) = packets.first().map(|p| p.at) else {
        return Ok(());
    };
    let mut per_client: BTreeMap<u16, Vec<String>> = BTreeMap::new();
    for p in &packets {
        let t = p.at.saturating_duration_since(t0).as_secs_f64();
        if p.tcp.dst_port == port && p.tcp.flags == flags::SYN {
            per_client
                .entry(p.tcp.src_port)
                .or_default()
                .push(format!("SYN@{t:.2}"));
        } else if p.tcp.src_port == port && p.tcp.has(flags::SYN | flags::ACK) {
            per_client
                .entry(p.tcp.dst_port)
                .or_default()
                .push(format!("SYN+ACK@{t:.2}"));
        }
    }
    note("packets, per client port (seconds from the first SYN):");
    for (client, events) in per_client {
        line("", format_args!("  :{client:<6} {}", events.join("  ")));
    }
    Ok(())
}

/// `server`: a listener that never accepts, for poking with `nc` and `ss`.
pub fn serve(
    stop: &crate::kit::stop::Stop,
    bind: &SockaddrStorage,
    backlog: i32,
    defer: Option<i32>,
) -> Result<()> {
    // `listening on IP:PORT` comes first: narrate the setup after it.
    crate::kit::narrate::set_quiet(true);
    let listening = net::tcp_listen("server", bind, backlog);
    crate::kit::narrate::set_quiet(false);
    let (listener, laddr) = listening?;
    println!("listening on {laddr}");
    say!(
        "server",
        "socket, bind({laddr}), listen({}, {backlog}) = 0",
        listener.as_raw_fd()
    );
    if let Some(secs) = defer {
        opts::set_defer_accept(&listener, secs)?;
        say!(
            "server",
            "setsockopt({}, IPPROTO_TCP, TCP_DEFER_ACCEPT, [{secs}], 4) = 0",
            listener.as_raw_fd()
        );
    }
    note(format!(
        "never calling accept: connect with `nc {} {}` a few times and watch `ss -lnt`",
        match addr::to_std(&laddr) {
            Some(a) => a.ip().to_string(),
            None => "127.0.0.1".into(),
        },
        net::local_port(&listener)?
    ));
    let port = net::local_port(&listener)?;
    let mut last = None;
    loop {
        let q = listener_queues(&listener)?;
        let half = half_open_count(port)?;
        if last != Some((q, half)) {
            say!(
                "server",
                "accept queue {} / {}   half-open (SYN_RECV) {half}",
                q.ready,
                q.limit
            );
            last = Some((q, half));
        }
        match wait::wait_readable(stop.fd(), Duration::from_millis(500)) {
            Ok(()) if stop.requested()? => break,
            Ok(()) => {}
            Err(e) if e.errno() == Some(Errno::ETIMEDOUT) => {}
            Err(e) => return Err(e),
        }
    }
    say!(
        "server",
        "stopping: close({}) resets every queued connection",
        listener.as_raw_fd()
    );
    Ok(())
}
