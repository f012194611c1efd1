//! SO_REUSEPORT: several listening sockets bound to one port, each with its
//! own accept queue; the kernel spreads incoming connections over them by a
//! hash of the connection's addresses and ports. Each listener here gets its
//! own accept loop (chapter 7's thread-per-connection server), so no two
//! threads ever contend for one accept queue.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::Arc;
use std::thread;

use nix::sys::socket::{self, Backlog, SockaddrLike, SockaddrStorage};

use super::live::Live;
use super::{Limits, Report};
use crate::kit::net::{local_addr, tcp_socket};
use crate::kit::{Call, Error, Result};
use crate::say;

/// Set SO_REUSEPORT with the raw libc call, the way C does it:
/// `int one = 1; setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);`
/// (nix spells it `setsockopt(&fd, sockopt::ReusePort, &true)`).
pub fn set_reuseport(fd: impl AsFd) -> Result<()> {
    let raw = fd.as_fd().as_raw_fd();
    let one: libc::c_int = 1;
    // SAFETY: the pointer and length describe `one`, a c_int that outlives
    // the call; the kernel only reads it.
    let rc = unsafe {
        libc::setsockopt(
            raw,
            libc::SOL_SOCKET,
            libc::SO_REUSEPORT,
            (&raw const one).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == -1 {
        return Err(Error::last_os(format!(
            "setsockopt({raw}, SO_REUSEPORT, 1)"
        )));
    }
    Ok(())
}

/// `n` listening sockets on one address, each with SO_REUSEPORT set before
/// `bind`. With port 0 the first bind picks the port and the others bind
/// the port it got.
pub fn listeners(
    who: &str,
    addr: &SockaddrStorage,
    n: usize,
    backlog: i32,
) -> Result<Vec<OwnedFd>> {
    let family = addr
        .family()
        .ok_or_else(|| Error::msg(format!("{addr}: no address family")))?;
    let mut out: Vec<OwnedFd> = Vec::new();
    let mut at = *addr;
    for _ in 0..n.max(1) {
        let fd = tcp_socket(who, family)?;
        let raw = fd.as_raw_fd();
        set_reuseport(&fd)?;
        say!(who, "setsockopt({raw}, SOL_SOCKET, SO_REUSEPORT, 1) = 0");
        socket::bind(raw, &at).call(format!("bind({raw}, {at})"))?;
        let backlog_arg = Backlog::new(backlog)
            .map_err(|e| Error::sys(format!("listen(backlog {backlog})"), e))?;
        socket::listen(&fd, backlog_arg).call(format!("listen({raw}, {backlog})"))?;
        at = local_addr(&fd)?;
        say!(who, "bind({raw}, {at}) = 0; listen({raw}, {backlog}) = 0");
        out.push(fd);
    }
    Ok(out)
}

/// Serve on every listener at once, one accept loop (a
/// [`super::thread::serve`]) per listener, all sharing `live` and `stop`.
/// `on_ready` is called once every listener's thread has started. Returns
/// the total and each listener's own report, in listener order.
pub fn serve(
    listeners: Vec<OwnedFd>,
    stop: impl AsFd,
    limits: &Limits,
    live: &Arc<Live>,
    on_ready: impl FnOnce(),
) -> Result<(Report, Vec<Report>)> {
    let stop = stop.as_fd();
    let parts: Vec<Result<Report>> = thread::scope(|scope| {
        let loops: Vec<_> = listeners
            .into_iter()
            .enumerate()
            .map(|(i, listener)| {
                thread::Builder::new()
                    .name(format!("listener-{i}"))
                    .spawn_scoped(scope, move || {
                        super::thread::serve(listener, stop, limits, live)
                    })
            })
            .collect();
        on_ready();
        loops
            .into_iter()
            .map(|spawned| match spawned {
                Ok(handle) => handle
                    .join()
                    .unwrap_or_else(|_| Err(Error::msg("a listener thread panicked"))),
                Err(e) => Err(Error::msg(format!("spawn listener thread: {e}"))),
            })
            .collect()
    });
    let mut total = Report::default();
    let mut each = Vec::new();
    for part in parts {
        let part = part?;
        total.add(&part);
        each.push(part);
    }
    // Every loop drains the same shared `live` and each may cut the same
    // stragglers: the number cut is the largest any of them saw.
    total.cut = each.iter().map(|r| r.cut).max().unwrap_or(0);
    Ok((total, each))
}
