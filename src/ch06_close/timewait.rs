//! Part 4: TIME_WAIT (how long, why, and its link to EADDRINUSE) and the
//! FIN_WAIT2 limit, read from the kernel's own timers.

use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use nix::sys::socket::{self, AddressFamily, Backlog, sockopt};

use super::common::{clock_ticks, drain, entry, pair, show_ends};
use crate::ch05_handshake::opts;
use crate::ch05_handshake::proc::show_sysctl;
use crate::kit::error::errno_text;
use crate::kit::narrate::{heading, note};
use crate::kit::{Call, Result, addr, net};
use crate::say;

/// Part 4 of the demo. `linger2` is the FIN_WAIT2 limit to set with
/// `TCP_LINGER2` for the last step (seconds).
pub fn demo(linger2: i32) -> Result<()> {
    heading("4. TIME_WAIT and FIN_WAIT2: how long the closing states last");
    for s in [
        "net/ipv4/tcp_fin_timeout",
        "net/ipv4/tcp_max_tw_buckets",
        "net/ipv4/tcp_tw_reuse",
    ] {
        note(show_sysctl(s));
    }

    note(
        "4a. the server closes first, so the server's side goes to TIME_WAIT, on the listening port",
    );
    let p = pair(None)?;
    let port = p.port();
    let (c, s) = (p.client.as_raw_fd(), p.server.as_raw_fd());
    opts::set_tcp_int(&p.server, libc::TCP_LINGER2, "TCP_LINGER2", linger2)?;
    say!(
        "server",
        "setsockopt({s}, IPPROTO_TCP, TCP_LINGER2, [{linger2}], 4) = 0   (a FIN_WAIT2 limit: watch it not apply)"
    );
    drop(p.server);
    say!("server", "close({s}) = 0   (active close)");
    let (_, end) = drain(&p.client, Duration::from_secs(2));
    end?;
    drop(p.client);
    say!("client", "read({c}) = 0 (EOF); close({c}) = 0");
    show_ends(p.client_addr, p.server_addr)?;
    if let Some(e) = entry(p.server_addr, p.client_addr)? {
        note(format!(
            "TIME_WAIT's timer has {:.1} s to run, TCP_LINGER2 = {linger2} notwithstanding. That length is \
             TCP_TIMEWAIT_LEN, built into the kernel; no sysctl or socket option sets it",
            e.timer_when as f64 / clock_ticks()
        ));
    }

    note("4b. restart the server on the same port while that TIME_WAIT entry exists");
    drop(p.listener);
    say!("server", "close(listener) = 0");
    let bind_to = addr::parse(&format!("127.0.0.1:{port}"))?;
    for reuse in [false, true] {
        let fd = net::tcp_socket("server", AddressFamily::Inet)?;
        if reuse {
            socket::setsockopt(&fd, sockopt::ReuseAddr, &true).call("setsockopt(SO_REUSEADDR)")?;
            say!(
                "server",
                "setsockopt({}, SOL_SOCKET, SO_REUSEADDR, 1) = 0",
                fd.as_raw_fd()
            );
        }
        match socket::bind(fd.as_raw_fd(), &bind_to) {
            Ok(()) => {
                say!("server", "bind({}, {bind_to}) = 0", fd.as_raw_fd());
                socket::listen(&fd, Backlog::new(8).call("Backlog")?)
                    .call(format!("listen({})", fd.as_raw_fd()))?;
                say!("server", "listen({}, 8) = 0: serving again", fd.as_raw_fd());
            }
            Err(errno) => say!(
                "server",
                "bind({}, {bind_to}) = -1 {}",
                fd.as_raw_fd(),
                errno_text(errno)
            ),
        }
    }
    note(
        "SO_REUSEADDR lets a listener bind a port that TIME_WAIT entries still hold, here because the old \
         listener set it too (the entry keeps that flag; chapter 3's `reuseaddr` shows an old server without it: \
         EADDRINUSE even with the flag on the new socket); every server sets it from its first start",
    );

    note(format!(
        "4c. FIN_WAIT2 without end: the client closes, the server never does. Then the same with TCP_LINGER2 = {linger2}"
    ));
    let mut held = Vec::new();
    for limit in [None, Some(linger2)] {
        let p = pair(None)?;
        let c = p.client.as_raw_fd();
        if let Some(secs) = limit {
            opts::set_tcp_int(&p.client, libc::TCP_LINGER2, "TCP_LINGER2", secs)?;
            say!(
                "client",
                "setsockopt({c}, IPPROTO_TCP, TCP_LINGER2, [{secs}], 4) = 0"
            );
        }
        drop(p.client);
        say!(
            "client",
            "close({c}) = 0; the server keeps its socket open and says nothing"
        );
        // The server's ACK of the FIN may be a delayed one: wait for it.
        let until = Instant::now() + Duration::from_secs(1);
        while Instant::now() < until
            && entry(p.client_addr, p.server_addr)?.is_some_and(|e| e.state == 4)
        {
            std::thread::sleep(Duration::from_millis(10));
        }
        show_ends(p.client_addr, p.server_addr)?;
        held.push((p.client_addr, p.server_addr, p.server, p.listener));
    }
    if let Some((client, server, _, _)) = held.last() {
        let t = Instant::now();
        let deadline = t + Duration::from_secs(linger2.max(0) as u64 + 3);
        while Instant::now() < deadline {
            match entry(*client, *server)? {
                Some(e) => {
                    let left = e.timer_when as f64 / clock_ticks();
                    std::thread::sleep(Duration::from_secs_f64((left - 0.05).clamp(0.02, 0.25)));
                }
                None => {
                    note(format!(
                        "the TCP_LINGER2 client's FIN_WAIT2 entry vanished after {:.2} s; the other one stays \
                         for tcp_fin_timeout",
                        t.elapsed().as_secs_f64()
                    ));
                    break;
                }
            }
        }
        show_ends(*client, *server)?;
    }
    note(
        "a closed socket waiting in FIN_WAIT2 has no fd to wait on: the kernel gives up after tcp_fin_timeout \
          (or TCP_LINGER2), unlike TIME_WAIT, whose length is fixed",
    );
    Ok(())
}
