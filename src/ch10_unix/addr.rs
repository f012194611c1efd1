//! Unix-domain addresses: `sockaddr_un` and its three kinds (a path, no
//! name at all, an abstract name), a private directory for socket files that
//! removes itself, and the narrated socket/bind/listen/connect of this
//! chapter. [`unix(7)`](https://man7.org/linux/man-pages/man7/unix.7.html)
//! is the reference for all of it.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use nix::sys::socket::{self, AddressFamily, Backlog, SockFlag, SockType, UnixAddr};

use crate::kit::{Call, Error, Result};
use crate::say;

/// Where a Unix socket lives: a file in the filesystem, or a name in the
/// abstract namespace (Linux only: no file, scoped to the network namespace).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Name {
    /// A filesystem path: `bind` creates a socket file there.
    Path(PathBuf),
    /// An abstract name: `sun_path[0] == 0`, then these bytes.
    Abstract(Vec<u8>),
}

impl Name {
    /// The nix address for `bind`/`connect`.
    pub fn to_addr(&self) -> Result<UnixAddr> {
        match self {
            Name::Path(p) => {
                UnixAddr::new(p.as_path()).call(format!("sockaddr_un({})", p.display()))
            }
            Name::Abstract(n) => UnixAddr::new_abstract(n)
                .call(format!("sockaddr_un(@{})", String::from_utf8_lossy(n))),
        }
    }

    /// A fresh abstract name no other test or demo uses: `sockbook-ch10-PID-N-what`.
    pub fn unique_abstract(what: &str) -> Name {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        Name::Abstract(format!("sockbook-ch10-{}-{n}-{what}", std::process::id()).into_bytes())
    }
}

impl std::fmt::Display for Name {
    /// A path as itself, an abstract name as `@name` (how `ss -x` and
    /// `/proc/net/unix` show it).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Name::Path(p) => write!(f, "{}", p.display()),
            Name::Abstract(n) => write!(f, "@{}", String::from_utf8_lossy(n)),
        }
    }
}

/// `SOCK_STREAM`, `SOCK_DGRAM` or `SOCK_SEQPACKET` by its C name.
pub fn type_name(ty: SockType) -> &'static str {
    match ty {
        SockType::Stream => "SOCK_STREAM",
        SockType::Datagram => "SOCK_DGRAM",
        SockType::SeqPacket => "SOCK_SEQPACKET",
        _ => "SOCK_?",
    }
}

/// [`socket(2)`](https://man7.org/linux/man-pages/man2/socket.2.html)
/// `(AF_UNIX, ty | SOCK_CLOEXEC, 0)`, narrated.
pub fn unix_socket(who: &str, ty: SockType) -> Result<OwnedFd> {
    let fd = socket::socket(AddressFamily::Unix, ty, SockFlag::SOCK_CLOEXEC, None)
        .call(format!("socket(AF_UNIX, {}, 0)", type_name(ty)))?;
    say!(
        who,
        "socket(AF_UNIX, {}, 0) = {}",
        type_name(ty),
        fd.as_raw_fd()
    );
    Ok(fd)
}

/// socket → bind(name) → listen, narrated. A path must not exist yet: see
/// [`bind_path_replacing_stale`] for a server that may find its own old file.
pub fn unix_listen(who: &str, ty: SockType, name: &Name, backlog: i32) -> Result<OwnedFd> {
    let fd = unix_socket(who, ty)?;
    unix_bind(who, &fd, name)?;
    let b = Backlog::new(backlog).map_err(|e| Error::sys("listen", e))?;
    socket::listen(&fd, b).call(format!("listen({}, {backlog})", fd.as_raw_fd()))?;
    say!(who, "listen({}, {backlog}) = 0", fd.as_raw_fd());
    Ok(fd)
}

/// [`bind(2)`](https://man7.org/linux/man-pages/man2/bind.2.html) to `name`.
pub fn unix_bind(who: &str, fd: impl AsFd, name: &Name) -> Result<()> {
    let fd = fd.as_fd().as_raw_fd();
    let addr = name.to_addr()?;
    socket::bind(fd, &addr).call(format!("bind({fd}, {name})"))?;
    say!(who, "bind({fd}, {name}) = 0");
    Ok(())
}

/// socket → [`connect(2)`](https://man7.org/linux/man-pages/man2/connect.2.html), narrated.
pub fn unix_connect(who: &str, ty: SockType, name: &Name) -> Result<OwnedFd> {
    let fd = unix_socket(who, ty)?;
    let addr = name.to_addr()?;
    socket::connect(fd.as_raw_fd(), &addr).call(format!("connect({}, {name})", fd.as_raw_fd()))?;
    say!(who, "connect({}, {name}) = 0", fd.as_raw_fd());
    Ok(fd)
}

/// What a server should do with an existing socket file at its path: try to
/// connect to it. `ECONNREFUSED` means nobody listens there any more (a
/// *stale* socket left by a process that died without `unlink`): remove it
/// and bind. A successful connect means another server is running: refuse to
/// start rather than steal its name.
pub fn bind_path_replacing_stale(who: &str, ty: SockType, path: &Path) -> Result<OwnedFd> {
    let name = Name::Path(path.to_path_buf());
    if std::fs::symlink_metadata(path).is_ok() {
        match unix_connect(who, ty, &name) {
            Ok(_) => {
                return Err(Error::msg(format!(
                    "{}: another server is listening there; not replacing it",
                    path.display()
                )));
            }
            Err(e) if e.errno() == Some(nix::errno::Errno::ECONNREFUSED) => {
                say!(
                    who,
                    "connect({}) refused: a stale socket file; unlink it",
                    path.display()
                );
                std::fs::remove_file(path)
                    .map_err(|e| Error::msg(format!("unlink({}): {e}", path.display())))?;
            }
            Err(e) => return Err(e),
        }
    }
    let fd = unix_socket(who, ty)?;
    unix_bind(who, &fd, &name)?;
    Ok(fd)
}

/// A private directory for socket files, `mkdtemp`'d under the system's temp
/// dir, removed with everything in it when dropped: no test or demo leaves a
/// socket file behind.
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// [`mkdtemp(3)`](https://man7.org/linux/man-pages/man3/mkdtemp.3.html):
    /// a new directory, mode 0700.
    pub fn new(what: &str) -> Result<TempDir> {
        let template = std::env::temp_dir().join(format!("sockbook-ch10-{what}-XXXXXX"));
        let mut bytes = template.as_os_str().as_encoded_bytes().to_vec();
        bytes.push(0);
        // SAFETY: `bytes` is a NUL-terminated template we own; mkdtemp
        // rewrites its XXXXXX in place and returns it or null.
        if unsafe { libc::mkdtemp(bytes.as_mut_ptr().cast()) }.is_null() {
            return Err(Error::last_os(format!("mkdtemp({})", template.display())));
        }
        bytes.pop();
        let path = PathBuf::from(std::ffi::OsString::from_vec(bytes));
        Ok(TempDir { path })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A path inside it.
    pub fn join(&self, file: &str) -> PathBuf {
        self.path.join(file)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// What `getsockname` says about a Unix socket, read with raw `libc` so the
/// *length* the kernel returns is visible: that length is what tells the
/// three kinds of address apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawName {
    /// `addrlen` after the call.
    pub len: usize,
    /// `sun_path`'s bytes within that length.
    pub path: Vec<u8>,
}

/// `offsetof(struct sockaddr_un, sun_path)`: the 2-byte `sun_family` before it.
pub const SUN_PATH_OFFSET: usize = std::mem::offset_of!(libc::sockaddr_un, sun_path);

/// [`getsockname(2)`](https://man7.org/linux/man-pages/man2/getsockname.2.html)
/// (or `getpeername` with `peer`) on a Unix socket, the raw C way.
pub fn raw_name(fd: impl AsFd, peer: bool) -> Result<RawName> {
    // SAFETY: sockaddr_un is plain old data; all-zero is a valid value.
    let mut sun: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
    let raw = fd.as_fd().as_raw_fd();
    let ptr = (&raw mut sun).cast::<libc::sockaddr>();
    // SAFETY: ptr and len describe `sun`, which we own and which outlives the call.
    let rc = unsafe {
        if peer {
            libc::getpeername(raw, ptr, &mut len)
        } else {
            libc::getsockname(raw, ptr, &mut len)
        }
    };
    if rc == -1 {
        return Err(Error::last_os(format!(
            "{}({raw})",
            if peer { "getpeername" } else { "getsockname" }
        )));
    }
    let len = len as usize;
    let path_len = len.saturating_sub(SUN_PATH_OFFSET).min(sun.sun_path.len());
    let path = sun.sun_path[..path_len].iter().map(|&c| c as u8).collect();
    Ok(RawName { len, path })
}

/// The kind of address a [`RawName`] is, by the rules of `unix(7)`.
pub fn kind_of(name: &RawName) -> &'static str {
    if name.len <= SUN_PATH_OFFSET {
        "unnamed (addrlen == sizeof(sa_family_t))"
    } else if name.path.first() == Some(&0) {
        "abstract (sun_path[0] == 0; the name is the next addrlen-3 bytes, no NUL)"
    } else {
        "pathname (addrlen = 2 + strlen(path) + 1)"
    }
}
