//! Reading and writing a whole buffer over an fd: the loops every socket
//! program needs because `read(2)` and `write(2)` may move fewer bytes than
//! asked ("short" reads and writes) and may fail with `EINTR` when a signal
//! arrives. These are UNIX Network Programming's `readn`, `writen` and
//! `readline` (section 3.9).

use std::os::fd::AsFd;

use nix::errno::Errno;
use nix::unistd;

use super::error::{Error, Result};

/// [`read(2)`](https://man7.org/linux/man-pages/man2/read.2.html) until `buf`
/// is full or the peer has closed (EOF). Returns how many bytes were read:
/// less than `buf.len()` only at EOF. Retries on `EINTR`.
pub fn readn(fd: impl AsFd, buf: &mut [u8]) -> Result<usize> {
    let fd = fd.as_fd();
    let mut filled = 0;
    while filled < buf.len() {
        match unistd::read(fd, &mut buf[filled..]) {
            Ok(0) => break, // EOF
            Ok(n) => filled += n,
            Err(Errno::EINTR) => continue,
            Err(errno) => return Err(Error::sys(call_name("read", fd), errno)),
        }
    }
    Ok(filled)
}

/// [`write(2)`](https://man7.org/linux/man-pages/man2/write.2.html) until all
/// of `buf` is written, carrying on after short writes and retrying on
/// `EINTR`.
///
/// Writing to a connection the peer has reset fails with `ECONNRESET` the
/// first time and `EPIPE` after that; an `EPIPE` would also raise
/// `SIGPIPE`, which kills the process, but the Rust runtime ignores it
/// (chapter 6 shows both).
pub fn writen(fd: impl AsFd, buf: &[u8]) -> Result<()> {
    let fd = fd.as_fd();
    let mut done = 0;
    while done < buf.len() {
        match unistd::write(fd, &buf[done..]) {
            Ok(n) => done += n,
            Err(Errno::EINTR) => continue,
            Err(errno) => return Err(Error::sys(call_name("write", fd), errno)),
        }
    }
    Ok(())
}

/// Read one line, up to and including its `\n`, one byte per `read(2)`: slow,
/// but it never reads past the newline, so the fd can be handed on. Returns
/// `None` at EOF before any byte, the partial line at EOF after some. A line
/// longer than `max` bytes is an error, so a peer cannot make us buffer
/// without end. For many lines use [`LineReader`].
pub fn read_line(fd: impl AsFd, max: usize) -> Result<Option<Vec<u8>>> {
    let fd = fd.as_fd();
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        match unistd::read(fd, &mut byte) {
            Ok(0) => return Ok(if line.is_empty() { None } else { Some(line) }),
            Ok(_) => {
                line.push(byte[0]);
                if byte[0] == b'\n' {
                    return Ok(Some(line));
                }
                if line.len() >= max {
                    return Err(line_too_long(max));
                }
            }
            Err(Errno::EINTR) => continue,
            Err(errno) => return Err(Error::sys(call_name("read", fd), errno)),
        }
    }
}

/// A buffered line reader over an fd: one `read(2)` fetches many lines at
/// once, and bytes after a line wait in the buffer for the next call.
#[derive(Debug, Default)]
pub struct LineReader {
    buf: Vec<u8>,
    eof: bool,
}

impl LineReader {
    /// An empty reader.
    pub fn new() -> LineReader {
        LineReader::default()
    }

    /// A complete line already buffered, if there is one (no system call).
    pub fn buffered_line(&mut self) -> Option<Vec<u8>> {
        let end = self.buf.iter().position(|&b| b == b'\n')?;
        Some(self.buf.drain(..=end).collect())
    }

    /// The next line, including its `\n`; at EOF the unterminated rest, then
    /// `None`. A line longer than `max` bytes is an error.
    pub fn read_line(&mut self, fd: impl AsFd, max: usize) -> Result<Option<Vec<u8>>> {
        let fd = fd.as_fd();
        loop {
            if let Some(line) = self.buffered_line() {
                return Ok(Some(line));
            }
            if self.buf.len() >= max {
                return Err(line_too_long(max));
            }
            if self.eof {
                return Ok(if self.buf.is_empty() {
                    None
                } else {
                    Some(std::mem::take(&mut self.buf))
                });
            }
            self.fill(fd)?;
        }
    }

    /// One `read(2)` into the buffer (retrying `EINTR`); returns the byte
    /// count, 0 at EOF.
    pub fn fill(&mut self, fd: impl AsFd) -> Result<usize> {
        let fd = fd.as_fd();
        let mut chunk = [0u8; 4096];
        loop {
            match unistd::read(fd, &mut chunk) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(0);
                }
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    return Ok(n);
                }
                Err(Errno::EINTR) => continue,
                Err(errno) => return Err(Error::sys(call_name("read", fd), errno)),
            }
        }
    }

    /// How many bytes wait in the buffer.
    pub fn buffered_len(&self) -> usize {
        self.buf.len()
    }

    /// Is a complete line waiting in the buffer?
    pub fn has_line(&self) -> bool {
        self.buf.contains(&b'\n')
    }

    /// Has the peer closed its side?
    pub fn at_eof(&self) -> bool {
        self.eof
    }
}

fn call_name(call: &str, fd: impl AsFd) -> String {
    use std::os::fd::AsRawFd;
    format!("{call}({})", fd.as_fd().as_raw_fd())
}

fn line_too_long(max: usize) -> Error {
    Error::msg(format!("line longer than {max} bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kit::Call;
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, socketpair};
    use std::os::fd::OwnedFd;

    fn pair() -> Result<(OwnedFd, OwnedFd)> {
        socketpair(
            AddressFamily::Unix,
            SockType::Stream,
            None,
            SockFlag::empty(),
        )
        .call("socketpair")
    }

    #[test]
    fn lines_and_eof() -> Result<()> {
        let (a, b) = pair()?;
        writen(&a, b"one\ntwo\nthree")?;
        drop(a);
        let mut r = LineReader::new();
        assert_eq!(r.read_line(&b, 100)?.expect("a line"), b"one\n");
        assert_eq!(read_line(&b, 100)?, None, "LineReader took it all");
        assert_eq!(r.read_line(&b, 100)?.expect("a line"), b"two\n");
        assert_eq!(r.read_line(&b, 100)?.expect("a line"), b"three");
        assert_eq!(r.read_line(&b, 100)?, None);
        Ok(())
    }

    #[test]
    fn readn_stops_at_eof() -> Result<()> {
        let (a, b) = pair()?;
        writen(&a, b"abc")?;
        drop(a);
        let mut buf = [0u8; 8];
        assert_eq!(readn(&b, &mut buf)?, 3);
        assert_eq!(&buf[..3], b"abc");
        Ok(())
    }
}
