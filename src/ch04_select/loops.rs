//! The two event loops of the chat server. They share everything in
//! [`super::chat`] and differ only in how they ask the kernel which fds are
//! ready: [`select(2)`](https://man7.org/linux/man-pages/man2/select.2.html)
//! with bit sets, or [`poll(2)`](https://man7.org/linux/man-pages/man2/poll.2.html)
//! with an array of `pollfd`.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::select::{FD_SETSIZE, FdSet, select};

use super::chat::Chat;
use crate::kit::{Error, Result};

// ANCHOR: ch04_select_loop
/// **Assignment 1 (the select loop).** Serve `chat` with `select(2)` until
/// `stop` is readable, then return `Ok(())`.
///
/// Each round:
/// 1. Build the sets afresh (select overwrites them with its answer):
///    `stop` and, if [`Chat::accepting`], [`Chat::listener`] in the read
///    set; every client that [`wants_read`](super::Client::wants_read) in
///    the read set and every client that
///    [`wants_write`](super::Client::wants_write) in the write set. Keep
///    the highest fd you insert: `nfds` is that plus one.
/// 2. `select(nfds, &mut read, &mut write, None, None)`: no timeout, the
///    stop fd is what ends the wait. `EINTR` means "try again"; any other
///    error is the server's error (name the call).
/// 3. If `stop` is in the read set, return. Collect the ready clients as
///    `(fd, readable, writable)` *before* changing anything (the sets borrow
///    the fds), then: listener readable → [`Chat::accept_ready`] with
///    `Some(FD_SETSIZE)`, so a connection select could not watch is refused;
///    each ready client → [`Chat::client_ready`].
///
/// `FdSet::insert` panics on an fd `>= FD_SETSIZE`: never insert one. The
/// listener and `stop` were checked before the loop and `accept_ready`
/// refuses larger client fds.
pub fn select_loop(chat: &mut Chat, stop: BorrowedFd<'_>) -> Result<()> {
    // BEGIN SOLUTION
    loop {
        let (listener_ready, ready) = {
            let mut read = FdSet::new();
            let mut write = FdSet::new();
            read.insert(stop);
            let mut max_fd = stop.as_raw_fd();
            let accepting = chat.accepting();
            if accepting {
                read.insert(chat.listener());
                max_fd = max_fd.max(chat.listener().as_raw_fd());
            }
            for client in chat.clients() {
                if client.raw_fd() as usize >= FD_SETSIZE {
                    continue; // cannot happen: accept_ready refused it
                }
                if client.wants_read() {
                    read.insert(client.fd());
                }
                if client.wants_write() {
                    write.insert(client.fd());
                }
                max_fd = max_fd.max(client.raw_fd());
            }
            let nfds = max_fd + 1;
            match select(nfds, &mut read, &mut write, None, None) {
                Ok(_) => {}
                Err(Errno::EINTR) => continue,
                Err(errno) => {
                    return Err(Error::sys(
                        format!("select(nfds {nfds}, {} clients)", chat.len()),
                        errno,
                    ));
                }
            }
            if read.contains(stop) {
                return Ok(());
            }
            let listener_ready = accepting && read.contains(chat.listener());
            let ready: Vec<(RawFd, bool, bool)> = chat
                .clients()
                .filter(|c| (c.raw_fd() as usize) < FD_SETSIZE)
                .map(|c| (c.raw_fd(), read.contains(c.fd()), write.contains(c.fd())))
                .filter(|&(_, r, w)| r || w)
                .collect();
            (listener_ready, ready)
        };
        for (fd, readable, writable) in ready {
            chat.client_ready(fd, readable, writable);
        }
        if listener_ready {
            chat.accept_ready(Some(FD_SETSIZE))?;
        }
    }
    // END SOLUTION
}
// ANCHOR_END: ch04_select_loop

// ANCHOR: ch04_poll_loop
/// **Assignment 3 (the poll loop).** The same server with `poll(2)`: serve
/// `chat` until `stop` is readable, then return `Ok(())`.
///
/// Each round:
/// 1. Build a `Vec<PollFd>`: `stop` with `POLLIN`, the listener with
///    `POLLIN` if [`Chat::accepting`], then one entry per client with
///    `POLLIN` if it wants to read and `POLLOUT` if it wants to write.
///    Remember where the clients start in the array.
/// 2. `poll(&mut fds, PollTimeout::NONE)`; `EINTR` means "try again".
/// 3. `revents` of `stop` not empty → return. Listener → accept with no fd
///    limit (`None`): poll has no `FD_SETSIZE`. For each client entry with
///    `revents`: readable if `POLLIN`, writable if `POLLOUT`; `POLLERR` or
///    `POLLHUP` count as both, so the `recv`/`send` that follows reports
///    what happened. Collect `(fd, readable, writable)` first, then call
///    [`Chat::client_ready`] for each.
pub fn poll_loop(chat: &mut Chat, stop: BorrowedFd<'_>) -> Result<()> {
    // BEGIN SOLUTION
    loop {
        let (listener_ready, ready) = {
            let mut fds = Vec::with_capacity(chat.len() + 2);
            fds.push(PollFd::new(stop, PollFlags::POLLIN));
            let accepting = chat.accepting();
            if accepting {
                fds.push(PollFd::new(chat.listener(), PollFlags::POLLIN));
            }
            let first_client = fds.len();
            for client in chat.clients() {
                let mut events = PollFlags::empty();
                if client.wants_read() {
                    events |= PollFlags::POLLIN;
                }
                if client.wants_write() {
                    events |= PollFlags::POLLOUT;
                }
                fds.push(PollFd::new(client.fd(), events));
            }
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) => {}
                Err(Errno::EINTR) => continue,
                Err(errno) => {
                    return Err(Error::sys(format!("poll({} fds, -1)", fds.len()), errno));
                }
            }
            let revents = |p: &PollFd| p.revents().unwrap_or(PollFlags::empty());
            if !revents(&fds[0]).is_empty() {
                return Ok(());
            }
            let listener_ready = accepting && !revents(&fds[1]).is_empty();
            let trouble = PollFlags::POLLERR | PollFlags::POLLHUP | PollFlags::POLLNVAL;
            let ready: Vec<(RawFd, bool, bool)> = fds[first_client..]
                .iter()
                .filter_map(|p| {
                    let r = revents(p);
                    if r.is_empty() {
                        return None;
                    }
                    let bad = r.intersects(trouble);
                    Some((
                        p.as_fd().as_raw_fd(),
                        bad || r.contains(PollFlags::POLLIN),
                        bad || r.contains(PollFlags::POLLOUT),
                    ))
                })
                .collect();
            (listener_ready, ready)
        };
        for (fd, readable, writable) in ready {
            chat.client_ready(fd, readable, writable);
        }
        if listener_ready {
            chat.accept_ready(None)?;
        }
    }
    // END SOLUTION
}
// ANCHOR_END: ch04_poll_loop
