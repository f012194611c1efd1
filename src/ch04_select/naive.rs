//! The naive select server, kept to be broken: the demo shows one client
//! stopping it for everyone.
//!
//! It watches every client with `select`, which is right, and then, when a
//! client is readable, reads *a whole line* from it with a blocking
//! `read_line`, which is wrong. "Readable" promises one byte, not a line: a
//! client that sends half a line and goes quiet leaves the server blocked
//! inside `read(2)` on that client, and nobody else is served until that
//! client finishes the line or goes away. Its writes block the same way on
//! a client that does not read. [`super::serve_select`] is the fix.

use std::collections::BTreeMap;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::sys::select::{FD_SETSIZE, FdSet, select};

use super::chat::MAX_LINE;
use crate::kit::{Error, Result, io, net};
use crate::say;

/// Serve the chat the naive way until `stop` is readable (checked only when
/// the loop gets back to `select`, which is the point).
pub fn serve_naive(listener: OwnedFd, stop: impl AsFd) -> Result<()> {
    let stop = stop.as_fd();
    let lfd = listener.as_raw_fd();
    if super::fd_beyond_select(lfd) || super::fd_beyond_select(stop.as_raw_fd()) {
        return Err(Error::msg("naive: listener or stop fd beyond FD_SETSIZE"));
    }
    let mut clients: BTreeMap<RawFd, (OwnedFd, String)> = BTreeMap::new();
    loop {
        let (stop_now, listener_ready, readable) = {
            let mut read = FdSet::new();
            read.insert(stop);
            read.insert(listener.as_fd());
            for (fd, _) in clients.values() {
                read.insert(fd.as_fd());
            }
            match select(None, &mut read, None, None, None) {
                Ok(_) => {}
                Err(Errno::EINTR) => continue,
                Err(errno) => return Err(Error::sys("select", errno)),
            }
            let readable: Vec<RawFd> = clients
                .iter()
                .filter(|(_, (fd, _))| read.contains(fd.as_fd()))
                .map(|(&fd, _)| fd)
                .collect();
            (
                read.contains(stop),
                read.contains(listener.as_fd()),
                readable,
            )
        };
        if stop_now {
            return Ok(());
        }
        if listener_ready {
            let (fd, peer) = net::accept("naive", &listener)?;
            let raw = fd.as_raw_fd();
            if raw as usize >= FD_SETSIZE {
                say!("naive", "fd {raw} >= FD_SETSIZE ({FD_SETSIZE}): closed");
            } else {
                let online = clients.len() + 1;
                let welcome = format!("* welcome {peer}, {online} online\n");
                // Blocking write: fine for a fresh socket, wrong in general.
                if io::writen(&fd, welcome.as_bytes()).is_ok() {
                    clients.insert(raw, (fd, peer.to_string()));
                }
            }
        }
        for fd in readable {
            let Some((sock, peer)) = clients.get(&fd) else {
                continue;
            };
            say!(
                "naive",
                "fd {fd} is readable: read(fd {fd}) byte by byte until '\\n' (blocking)"
            );
            match io::read_line(sock, MAX_LINE) {
                Ok(Some(line)) => {
                    say!("naive", "got a whole line from {peer}");
                    let mut msg = format!("{peer}: ").into_bytes();
                    msg.extend_from_slice(&line);
                    if !msg.ends_with(b"\n") {
                        msg.push(b'\n');
                    }
                    for (other, (osock, _)) in &clients {
                        if *other != fd {
                            // Blocking write: a client that does not read
                            // would stop us here, too.
                            let _ = io::writen(osock, &msg);
                        }
                    }
                }
                Ok(None) => {
                    say!("naive", "close({fd}): {peer} left");
                    clients.remove(&fd);
                }
                Err(e) => {
                    say!("naive", "close({fd}): dropped {peer}: {e}");
                    clients.remove(&fd);
                }
            }
        }
    }
}
