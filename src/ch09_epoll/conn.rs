//! One echo connection, as every epoll server of this chapter keeps it:
//! its nonblocking socket and an **output buffer** of bytes read but not
//! yet written back. Nothing here waits: a read or write that would block
//! says so ([`Read::WouldBlock`], [`Flush::Blocked`]) and the event loop
//! decides what to watch next.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::sys::socket::{self, MsgFlags};

/// How many bytes may wait in one connection's output buffer. While it is
/// this full the server stops reading that connection, so a client that
/// sends without reading fills its own socket buffers, not our memory.
pub const OUT_LIMIT: usize = 256 * 1024;
/// One `recv` takes at most this much.
pub const READ_CHUNK: usize = 16 * 1024;

/// What one `recv(2)` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Read {
    /// `n` bytes were read and appended to the output buffer.
    Data(usize),
    /// `EAGAIN`: nothing to read now (the socket is nonblocking).
    WouldBlock,
    /// The peer closed its side (`recv` returned 0).
    Eof,
    /// The connection failed (`ECONNRESET`…): close it.
    Failed(Errno),
}

/// What [`Conn::flush`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flush {
    /// The output buffer is empty.
    Done,
    /// The kernel's send buffer is full (`EAGAIN`); bytes still wait.
    Blocked,
    /// The connection failed (`EPIPE`, `ECONNRESET`…): close it.
    Failed(Errno),
}

/// A nonblocking echo connection.
#[derive(Debug)]
pub struct Conn {
    fd: OwnedFd,
    /// Bytes read and not yet echoed.
    pub out: Vec<u8>,
    /// The peer sent EOF: read no more; close once `out` is empty.
    pub eof: bool,
    /// The epoll events this connection is registered for right now (the
    /// level-triggered server changes them as `out` fills and empties).
    pub registered: nix::sys::epoll::EpollFlags,
}

impl Conn {
    /// Wrap a nonblocking connected socket.
    pub fn new(fd: OwnedFd) -> Conn {
        Conn {
            fd,
            out: Vec::new(),
            eof: false,
            registered: nix::sys::epoll::EpollFlags::empty(),
        }
    }

    /// The socket.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// The socket's number (also its epoll token in this chapter).
    pub fn raw(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Is the output buffer at its limit? (Then do not read.)
    pub fn full(&self) -> bool {
        self.out.len() >= OUT_LIMIT
    }

    /// One [`recv(2)`](https://man7.org/linux/man-pages/man2/recv.2.html)
    /// of at most [`READ_CHUNK`] bytes (less if the output buffer is nearly
    /// full), appended to the output buffer. Retries `EINTR`.
    pub fn read_once(&mut self) -> Read {
        let room = OUT_LIMIT.saturating_sub(self.out.len()).min(READ_CHUNK);
        if room == 0 {
            return Read::WouldBlock;
        }
        let mut chunk = [0u8; READ_CHUNK];
        loop {
            match socket::recv(self.raw(), &mut chunk[..room], MsgFlags::empty()) {
                Ok(0) => return Read::Eof,
                Ok(n) => {
                    self.out.extend_from_slice(&chunk[..n]);
                    return Read::Data(n);
                }
                Err(Errno::EINTR) => continue,
                Err(Errno::EAGAIN) => return Read::WouldBlock,
                Err(errno) => return Read::Failed(errno),
            }
        }
    }

    /// [`send(2)`](https://man7.org/linux/man-pages/man2/send.2.html) the
    /// output buffer until it is empty or the kernel takes no more
    /// (`EAGAIN`). `MSG_NOSIGNAL`: a reset peer is `EPIPE`, never `SIGPIPE`.
    pub fn flush(&mut self) -> Flush {
        let mut sent = 0;
        let result = loop {
            if sent == self.out.len() {
                break Flush::Done;
            }
            match socket::send(self.raw(), &self.out[sent..], MsgFlags::MSG_NOSIGNAL) {
                Ok(n) => sent += n,
                Err(Errno::EINTR) => continue,
                Err(Errno::EAGAIN) => break Flush::Blocked,
                Err(errno) => break Flush::Failed(errno),
            }
        };
        self.out.drain(..sent);
        result
    }
}
