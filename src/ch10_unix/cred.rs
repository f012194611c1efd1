//! Who is the peer? A Unix socket can answer with the kernel's authority:
//! `SO_PEERCRED` (the pid, uid and gid of whoever called `connect`, or
//! `socketpair`, recorded at that moment), `SO_PEERPIDFD` (the same process
//! as a pidfd, which cannot be recycled like a pid), and `SCM_CREDENTIALS`
//! messages (credentials attached to one message, checked by the kernel when
//! sent). [`unix(7)`](https://man7.org/linux/man-pages/man7/unix.7.html)
//! describes all three.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use nix::errno::Errno;
use nix::sys::socket::{
    self, ControlMessage, ControlMessageOwned, MsgFlags, UnixCredentials, sockopt,
};

use crate::kit::{Call, Error, Result};

/// A peer's identity as the kernel knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    /// Process id (of the process that connected).
    pub pid: i32,
    /// Effective user id at connect time.
    pub uid: u32,
    /// Effective group id at connect time.
    pub gid: u32,
}

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "uid={} gid={} pid={}", self.uid, self.gid, self.pid)
    }
}

/// `getsockopt(fd, SOL_SOCKET, SO_PEERCRED)` through nix: the credentials
/// of the process that connected (or called `socketpair`), as they were then.
pub fn peer_cred(fd: impl AsFd) -> Result<Peer> {
    let c = socket::getsockopt(&fd, sockopt::PeerCredentials).call(format!(
        "getsockopt({}, SO_PEERCRED)",
        fd.as_fd().as_raw_fd()
    ))?;
    Ok(Peer {
        pid: c.pid(),
        uid: c.uid(),
        gid: c.gid(),
    })
}

/// The same, the raw C way: a `struct ucred` and its length.
pub fn peer_cred_raw(fd: impl AsFd) -> Result<Peer> {
    let raw = fd.as_fd().as_raw_fd();
    // SAFETY: ucred is plain old data.
    let mut cred: libc::ucred = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: cred and len describe a ucred we own.
    let rc = unsafe {
        libc::getsockopt(
            raw,
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&raw mut cred).cast(),
            &mut len,
        )
    };
    if rc == -1 {
        return Err(Error::last_os(format!(
            "getsockopt({raw}, SOL_SOCKET, SO_PEERCRED)"
        )));
    }
    Ok(Peer {
        pid: cred.pid,
        uid: cred.uid,
        gid: cred.gid,
    })
}

/// `SO_PEERPIDFD` from `<asm-generic/socket.h>` (Linux 6.5); the libc crate
/// does not export it for every target yet.
pub const SO_PEERPIDFD: libc::c_int = 77;

/// `getsockopt(fd, SOL_SOCKET, SO_PEERPIDFD)`: a pidfd for the peer process,
/// or `None` when this kernel does not know the option (`ENOPROTOOPT`,
/// before Linux 6.5). Detected at run time.
pub fn peer_pidfd(fd: impl AsFd) -> Result<Option<OwnedFd>> {
    let raw = fd.as_fd().as_raw_fd();
    let mut pidfd: libc::c_int = -1;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: pidfd and len describe an int we own.
    let rc = unsafe {
        libc::getsockopt(
            raw,
            libc::SOL_SOCKET,
            SO_PEERPIDFD,
            (&raw mut pidfd).cast(),
            &mut len,
        )
    };
    if rc == -1 {
        let e = Error::last_os(format!("getsockopt({raw}, SOL_SOCKET, SO_PEERPIDFD)"));
        return if e.errno() == Some(Errno::ENOPROTOOPT) {
            Ok(None)
        } else {
            Err(e)
        };
    }
    // SAFETY: the kernel installed a new pidfd for us; we own it.
    Ok(Some(unsafe { OwnedFd::from_raw_fd(pidfd) }))
}

/// The pid a pidfd refers to, from its `Pid:` line in `/proc/self/fdinfo`
/// (-1 once the process has exited).
pub fn pidfd_pid(pidfd: impl AsFd) -> Option<i32> {
    let text =
        std::fs::read_to_string(format!("/proc/self/fdinfo/{}", pidfd.as_fd().as_raw_fd())).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("Pid:"))
        .and_then(|v| v.trim().parse().ok())
}

/// `setsockopt(fd, SO_PASSCRED, on)`: ask for an `SCM_CREDENTIALS` message
/// with every message received (and, on Linux, autobind an unbound socket).
pub fn set_passcred(fd: impl AsFd, on: bool) -> Result<()> {
    socket::setsockopt(&fd, sockopt::PassCred, &on).call(format!(
        "setsockopt({}, SO_PASSCRED, {on})",
        fd.as_fd().as_raw_fd()
    ))
}

/// Send `data` with an explicit `SCM_CREDENTIALS` message claiming `claim`.
/// The kernel checks the claim: a pid other than our own needs
/// `CAP_SYS_ADMIN`, a uid or gid other than our real, effective or saved one
/// needs `CAP_SETUID`/`CAP_SETGID`; otherwise `sendmsg` fails with `EPERM`.
pub fn send_with_credentials(fd: impl AsFd, data: &[u8], claim: Peer) -> Result<usize> {
    let raw = fd.as_fd().as_raw_fd();
    let cred = UnixCredentials::from(libc::ucred {
        pid: claim.pid,
        uid: claim.uid,
        gid: claim.gid,
    });
    let iov = [std::io::IoSlice::new(data)];
    socket::sendmsg::<()>(
        raw,
        &iov,
        &[ControlMessage::ScmCredentials(&cred)],
        MsgFlags::MSG_NOSIGNAL,
        None,
    )
    .call(format!("sendmsg({raw}, SCM_CREDENTIALS {claim})"))
}

/// Receive one message and the `SCM_CREDENTIALS` the kernel attached (the
/// receiver must have `SO_PASSCRED` on; without a claim from the sender the
/// kernel fills in the sender's own).
pub fn recv_with_credentials(fd: impl AsFd, buf: &mut [u8]) -> Result<(usize, Option<Peer>)> {
    let raw = fd.as_fd().as_raw_fd();
    let mut space = nix::cmsg_space!(libc::ucred);
    let mut iov = [std::io::IoSliceMut::new(buf)];
    let msg = socket::recvmsg::<()>(raw, &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC)
        .call(format!("recvmsg({raw})"))?;
    let mut peer = None;
    for c in msg.cmsgs().call("cmsgs")? {
        if let ControlMessageOwned::ScmCredentials(c) = c {
            peer = Some(Peer {
                pid: c.pid(),
                uid: c.uid(),
                gid: c.gid(),
            });
        }
    }
    Ok((msg.bytes, peer))
}

/// Our effective uid ([`geteuid(2)`](https://man7.org/linux/man-pages/man2/geteuid.2.html)).
pub fn my_uid() -> u32 {
    // SAFETY: geteuid cannot fail and touches no memory.
    unsafe { libc::geteuid() }
}

/// A server's decision about one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    /// Who the kernel says the peer is.
    pub peer: Peer,
    /// Serve it?
    pub allowed: bool,
    /// Did the peer's own claim (if it made one) match the kernel's word?
    /// `None` when it claimed nothing.
    pub claim_honest: Option<bool>,
}

/// Decide whether to serve the peer on `conn`: only a process running as
/// this server's own effective uid is served.
///
/// The task:
/// - Ask the kernel who the peer is: `SO_PEERCRED` ([`peer_cred`]).
/// - `allowed` is true exactly when the peer's uid equals ours
///   ([`my_uid`]); nothing else (gid, pid, what the peer says) counts.
/// - `claim` is what the peer *says* about itself, if anything: text like
///   `uid=1000 pid=4242` (words `uid=N`, `gid=N`, `pid=N`, in any order,
///   any of them absent). Never trust it for a decision; only compare:
///   `claim_honest` is `Some(true)` when every field it gives equals the
///   kernel's, `Some(false)` when one differs or the text does not parse,
///   `None` when `claim` is `None`.
pub fn authorise(conn: BorrowedFd<'_>, claim: Option<&[u8]>) -> Result<Verdict> {
    // BEGIN SOLUTION
    let peer = peer_cred(conn)?;
    let allowed = peer.uid == my_uid();
    let claim_honest = claim.map(|text| claim_matches(text, &peer));
    Ok(Verdict {
        peer,
        allowed,
        claim_honest,
    })
    // END SOLUTION
}

/// Does `text` (`uid=N pid=N gid=N`, any subset) agree with `peer`?
#[allow(dead_code)] // used by the reference solution of `authorise`
fn claim_matches(text: &[u8], peer: &Peer) -> bool {
    let Ok(text) = std::str::from_utf8(text) else {
        return false;
    };
    let mut fields = 0;
    for word in text.split_whitespace() {
        let Some((key, value)) = word.split_once('=') else {
            return false;
        };
        let ok = match key {
            "uid" => value.parse::<u32>().is_ok_and(|v| v == peer.uid),
            "gid" => value.parse::<u32>().is_ok_and(|v| v == peer.gid),
            "pid" => value.parse::<i32>().is_ok_and(|v| v == peer.pid),
            _ => false,
        };
        if !ok {
            return false;
        }
        fields += 1;
    }
    fields > 0
}

/// Our effective gid ([`getegid(2)`](https://man7.org/linux/man-pages/man2/getegid.2.html)).
pub fn my_gid() -> u32 {
    // SAFETY: getegid cannot fail and touches no memory.
    unsafe { libc::getegid() }
}
