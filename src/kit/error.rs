//! The one error type of the workbook: it names the call that failed and the
//! errno the kernel returned, e.g.
//! `connect(127.0.0.1:9): ECONNREFUSED (Connection refused)`.

use std::fmt;

use nix::errno::Errno;

/// An error from the socket layer, or a plain message for everything else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// A system call failed: which call (with its arguments) and the errno.
    Sys { call: String, errno: Errno },
    /// Anything that is not a failed call: bad input, a protocol violation.
    Msg(String),
}

/// `Result` with the workbook's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// A failed call.
    pub fn sys(call: impl Into<String>, errno: Errno) -> Error {
        Error::Sys {
            call: call.into(),
            errno,
        }
    }

    /// A failed raw `libc` call: reads `errno` *now*, so call it right after
    /// the call returned -1, before anything else can overwrite `errno`.
    pub fn last_os(call: impl Into<String>) -> Error {
        let errno = Errno::last();
        Error::sys(call, errno)
    }

    /// A message that is not about a system call.
    pub fn msg(text: impl Into<String>) -> Error {
        Error::Msg(text.into())
    }

    /// The errno, if this error is a failed call. Tests compare codes, never
    /// the text.
    pub fn errno(&self) -> Option<Errno> {
        match self {
            Error::Sys { errno, .. } => Some(*errno),
            Error::Msg(_) => None,
        }
    }
}

/// `ECONNREFUSED (Connection refused)`: the symbolic name and the C library's
/// description. nix's own `Display` prints `ECONNREFUSED: Connection refused`;
/// this form reads like strace.
pub fn errno_text(errno: Errno) -> String {
    format!("{errno:?} ({})", errno.desc())
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Sys { call, errno } => write!(f, "{call}: {}", errno_text(*errno)),
            Error::Msg(text) => f.write_str(text),
        }
    }
}

impl std::error::Error for Error {}

impl From<Error> for std::io::Error {
    fn from(e: Error) -> std::io::Error {
        match e {
            Error::Sys { errno, .. } => std::io::Error::from_raw_os_error(errno as i32),
            Error::Msg(text) => std::io::Error::other(text),
        }
    }
}

/// Attach the name of the call to a `nix` result:
/// `listen(&fd, backlog).call("listen(3, 128)")?`.
pub trait Call<T> {
    /// Name the call (with its arguments) that produced this result.
    fn call(self, call: impl fmt::Display) -> Result<T>;
}

impl<T> Call<T> for nix::Result<T> {
    fn call(self, call: impl fmt::Display) -> Result<T> {
        self.map_err(|errno| Error::sys(call.to_string(), errno))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_call_and_errno() {
        let e = Error::sys("connect(127.0.0.1:9)", Errno::ECONNREFUSED);
        assert_eq!(
            e.to_string(),
            format!(
                "connect(127.0.0.1:9): ECONNREFUSED ({})",
                Errno::ECONNREFUSED.desc()
            )
        );
        assert_eq!(e.errno(), Some(Errno::ECONNREFUSED));
    }
}
