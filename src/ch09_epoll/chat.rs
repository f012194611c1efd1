//! Chapter 4's chat server, moved to epoll.
//!
//! Everything a connection needs stays in chapter 4's [`Chat`] (the input
//! and bounded output buffers, the framing, the broadcast, who is dropped
//! and why). Only the
//! waiting changes. `select` and `poll` are told the whole interest set on
//! every call; epoll keeps it in the kernel, so this loop must keep it *in
//! step*: add a client when it joins, change its events
//! (`EPOLL_CTL_MOD`) when what it wants changes, and take it out
//! (`EPOLL_CTL_DEL`) before its fd is closed.
//!
//! The loop learns about departures from
//! [`Chat::park_departures`](crate::ch04_select::Chat::park_departures):
//! a client that leaves (inside `client_ready`, or inside another client's
//! broadcast) is kept open until the loop calls
//! [`Chat::close_departed`](crate::ch04_select::Chat::close_departed),
//! which hands the loop each fd before it closes it. Without that, the
//! loop's own map of what it registered would still hold the old fd
//! number when `accept` hands the same number to a new client: the new
//! client would look registered already, and never be served.

use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};

use super::{LISTENER, STOP};
use crate::ch04_select::{Chat, Config, Stats};
use crate::kit::{Call, Error, Result};

// ANCHOR: ch09_epoll_loop
/// **Assignment 6 (chapter 4's chat on epoll).** Serve `chat` with
/// [`epoll(7)`](https://man7.org/linux/man-pages/man7/epoll.7.html) until
/// `stop` is readable, then return `Ok(())`. Level-triggered, like the
/// select and poll loops; the difference is that the kernel keeps the
/// interest list, so the loop keeps it in step with what `chat` wants.
///
/// Needs chapter 4's chat assignments solved: this loop only waits, the
/// `Chat` does the rest.
///
/// 1. `Epoll::new(EPOLL_CLOEXEC)`
///    ([`epoll_create1(2)`](https://man7.org/linux/man-pages/man2/epoll_create1.2.html));
///    add `stop` with `EPOLLIN` and token [`STOP`]
///    ([`epoll_ctl(2)`](https://man7.org/linux/man-pages/man2/epoll_ctl.2.html)).
///    Call [`Chat::park_departures`]. Keep a `HashMap<RawFd, EpollFlags>`
///    of what each client fd is registered for, and whether the listener
///    is in the set.
/// 2. Each round, before waiting:
///    - the listener (token [`LISTENER`], `EPOLLIN`) is in the set exactly
///      while [`Chat::accepting`] (out of fds it must leave the set, or the
///      readable listener wakes the loop for ever);
///    - for each client: the events it wants (`EPOLLIN` if
///      [`wants_read`](crate::ch04_select::Client::wants_read), `EPOLLOUT`
///      if [`wants_write`](crate::ch04_select::Client::wants_write)); not
///      in the map → `epoll.add` (token: its fd); in it with other events
///      → `epoll.modify`; the same → nothing. `EPOLLOUT` only while output
///      waits: an idle socket is always writable, and a standing
///      `EPOLLOUT` makes every `epoll_wait` return at once.
/// 3. `epoll.wait(&mut events, EpollTimeout::NONE)`
///    ([`epoll_wait(2)`](https://man7.org/linux/man-pages/man2/epoll_wait.2.html));
///    `EINTR` → wait again; another error is the server's (name the call).
/// 4. For each event: [`STOP`] → return; [`LISTENER`] → remember it; a
///    client → [`Chat::client_ready`] with readable = `EPOLLIN`, writable
///    = `EPOLLOUT`, `EPOLLERR`/`EPOLLHUP` counting as both.
/// 5. [`Chat::close_departed`]: for each fd, `epoll.delete` it and remove
///    it from the map, *before* the Chat closes it. Then, if the listener
///    was ready, [`Chat::accept_ready`] with `None`: epoll has no
///    `FD_SETSIZE`. (Departures first: `accept` may reuse their numbers.)
///
/// Wrong answers the tests catch: `EPOLLOUT` always on (a busy loop),
/// interest set once at `add` and never modified (a slow reader's queued
/// lines never go out), a departed fd left in the map (the next client
/// given its number is never served), the stop fd never added.
pub fn epoll_loop(chat: &mut Chat, stop: BorrowedFd<'_>) -> Result<()> {
    // BEGIN SOLUTION
    let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).call("epoll_create1(EPOLL_CLOEXEC)")?;
    epoll
        .add(stop, EpollEvent::new(EpollFlags::EPOLLIN, STOP))
        .call(format!(
            "epoll_ctl(ADD, stop {}, EPOLLIN)",
            stop.as_raw_fd()
        ))?;
    chat.park_departures();
    let mut registered: HashMap<RawFd, EpollFlags> = HashMap::new();
    let mut listening = false;
    let mut events = vec![EpollEvent::empty(); 256];
    loop {
        if chat.accepting() != listening {
            let lfd = chat.listener();
            if listening {
                epoll
                    .delete(lfd)
                    .call(format!("epoll_ctl(DEL, listener {})", lfd.as_raw_fd()))?;
            } else {
                epoll
                    .add(lfd, EpollEvent::new(EpollFlags::EPOLLIN, LISTENER))
                    .call(format!(
                        "epoll_ctl(ADD, listener {}, EPOLLIN)",
                        lfd.as_raw_fd()
                    ))?;
            }
            listening = !listening;
        }
        for client in chat.clients() {
            let mut want = EpollFlags::empty();
            if client.wants_read() {
                want |= EpollFlags::EPOLLIN;
            }
            if client.wants_write() {
                want |= EpollFlags::EPOLLOUT;
            }
            let fd = client.raw_fd();
            let mut event = EpollEvent::new(want, fd as u64);
            match registered.get(&fd) {
                None => epoll
                    .add(client.fd(), event)
                    .call(format!("epoll_ctl(ADD, {fd}, {want:?})"))?,
                Some(&had) if had != want => epoll
                    .modify(client.fd(), &mut event)
                    .call(format!("epoll_ctl(MOD, {fd}, {want:?})"))?,
                Some(_) => continue,
            }
            registered.insert(fd, want);
        }
        let n = match epoll.wait(&mut events, EpollTimeout::NONE) {
            Ok(n) => n,
            Err(Errno::EINTR) => continue,
            Err(errno) => {
                return Err(Error::sys(
                    format!("epoll_wait({} clients)", chat.len()),
                    errno,
                ));
            }
        };
        let mut listener_ready = false;
        for ev in &events[..n] {
            match ev.data() {
                STOP => return Ok(()),
                LISTENER => listener_ready = true,
                token => {
                    let ready = ev.events();
                    let trouble = ready.intersects(EpollFlags::EPOLLERR | EpollFlags::EPOLLHUP);
                    chat.client_ready(
                        token as RawFd,
                        trouble || ready.contains(EpollFlags::EPOLLIN),
                        trouble || ready.contains(EpollFlags::EPOLLOUT),
                    );
                }
            }
        }
        chat.close_departed(|fd| {
            let _ = epoll.delete(fd);
            registered.remove(&fd.as_raw_fd());
        });
        if listener_ready {
            chat.accept_ready(None)?;
        }
    }
    // END SOLUTION
}
// ANCHOR_END: ch09_epoll_loop

/// Chapter 4's chat server on epoll: serve `listener` until `stop` becomes
/// readable, then close every connection and return what happened. The
/// same protocol as [`serve_poll`](crate::ch04_select::serve_poll); the
/// loop is [`epoll_loop`].
pub fn serve_epoll(listener: OwnedFd, stop: impl AsFd, config: Config) -> Result<Stats> {
    let mut chat = Chat::new(listener, config, "epoll")?;
    epoll_loop(&mut chat, stop.as_fd())?;
    Ok(chat.finish())
}
