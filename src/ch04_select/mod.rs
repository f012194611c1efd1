#![doc = include_str!("../../chapters/04-select.md")]

pub mod acceptrace;
pub mod chat;
pub mod cli;
pub mod client;
pub mod demo;
pub mod eintr;
pub mod fdlimit;
pub mod frame;
pub mod loops;
pub mod naive;

use std::os::fd::{AsFd, AsRawFd, OwnedFd};

pub use chat::{Chat, Client, Config, Event, Stats, Why};
pub use client::{Copied, str_cli};
pub use frame::{LineTooLong, take_lines};
pub use loops::{poll_loop, select_loop};

use crate::kit::{Error, Result};

/// The chat server on [`select(2)`](https://man7.org/linux/man-pages/man2/select.2.html):
/// serve `listener` until `stop` becomes readable (a byte, EOF, or a
/// signal on a signalfd), then close every connection and return what
/// happened.
///
/// Both the listener and `stop` must be below `FD_SETSIZE`, or select cannot
/// watch them; that is checked here, before the loop starts.
pub fn serve_select(listener: OwnedFd, stop: impl AsFd, config: Config) -> Result<Stats> {
    let stop = stop.as_fd();
    for (what, fd) in [
        ("listening socket", listener.as_raw_fd()),
        ("stop fd", stop.as_raw_fd()),
    ] {
        if fd_beyond_select(fd) {
            return Err(Error::msg(format!(
                "select: the {what} is fd {fd}, but select can only watch fds below FD_SETSIZE ({})",
                libc::FD_SETSIZE
            )));
        }
    }
    let mut chat = Chat::new(listener, config, "select")?;
    loops::select_loop(&mut chat, stop)?;
    Ok(chat.finish())
}

/// The same chat server on [`poll(2)`](https://man7.org/linux/man-pages/man2/poll.2.html),
/// which has no `FD_SETSIZE` wall.
pub fn serve_poll(listener: OwnedFd, stop: impl AsFd, config: Config) -> Result<Stats> {
    let mut chat = Chat::new(listener, config, "poll")?;
    loops::poll_loop(&mut chat, stop.as_fd())?;
    Ok(chat.finish())
}

/// Is `fd` too large for an `fd_set`? (`FD_SET` on it would write past the
/// end of the set in C; nix and libc panic instead.)
pub fn fd_beyond_select(fd: std::os::fd::RawFd) -> bool {
    usize::try_from(fd).map_or(true, |fd| fd >= libc::FD_SETSIZE)
}
