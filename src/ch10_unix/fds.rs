//! Passing open file descriptors with `SCM_RIGHTS`: the one thing a Unix
//! socket can carry that no network socket can. The fds travel as a
//! *control message* ([`cmsg(3)`](https://man7.org/linux/man-pages/man3/cmsg.3.html))
//! beside ordinary data, through
//! [`sendmsg(2)`](https://man7.org/linux/man-pages/man2/sendmsg.2.html) and
//! [`recvmsg(2)`](https://man7.org/linux/man-pages/man2/recvmsg.2.html).
//! This file writes the `msghdr` and `cmsghdr` out with raw `libc`, the way
//! C does, so every length is visible.

use std::mem::size_of;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;

use crate::kit::{Error, Result};

/// What [`recv_fds`] received.
#[derive(Debug, Default)]
pub struct Received {
    /// Bytes of ordinary data placed in the buffer (0 with no fds: EOF on a
    /// stream socket).
    pub len: usize,
    /// The descriptors that arrived, each already owned (closed on drop).
    pub fds: Vec<OwnedFd>,
    /// `MSG_CTRUNC`: more control data was sent than fitted; the kernel
    /// closed the fds that did not fit.
    pub fds_truncated: bool,
    /// `MSG_TRUNC`: a datagram or seqpacket message was longer than the buffer.
    pub data_truncated: bool,
}

/// Send `data` with `fds` attached as one `SCM_RIGHTS` control message, in
/// one [`sendmsg(2)`](https://man7.org/linux/man-pages/man2/sendmsg.2.html)
/// (with `MSG_NOSIGNAL`). Returns the bytes of `data` sent.
///
/// The task:
/// - `data` must not be empty (on a stream socket the fds ride on a byte;
///   with no byte nothing is sent): return an error then.
/// - With no fds, send no control message at all (`msg_control` null,
///   `msg_controllen` 0).
/// - Otherwise size the control buffer with `CMSG_SPACE(n * sizeof(int))`,
///   in memory aligned for a `cmsghdr` (a `Vec<u64>` will do), fill one
///   header through `CMSG_FIRSTHDR` (`SOL_SOCKET`, `SCM_RIGHTS`,
///   `cmsg_len = CMSG_LEN(n * sizeof(int))`) and copy the fds to `CMSG_DATA`.
/// - Retry on `EINTR`; any other failure is an [`Error`] naming `sendmsg`
///   and the errno (more than the kernel's per-message limit is `EINVAL`).
/// - The caller's fds stay open and owned by the caller: the kernel takes its
///   own references. Do not close or `dup` them.
pub fn send_fds(sock: impl AsFd, data: &[u8], fds: &[BorrowedFd<'_>]) -> Result<usize> {
    let sock = sock.as_fd().as_raw_fd();
    // BEGIN SOLUTION
    if data.is_empty() {
        return Err(Error::msg(
            "send_fds: send at least one byte of data with the fds",
        ));
    }
    let raw: Vec<RawFd> = fds.iter().map(|fd| fd.as_raw_fd()).collect();
    let payload = (raw.len() * size_of::<RawFd>()) as libc::c_uint;
    // SAFETY: CMSG_SPACE is arithmetic on its argument.
    let space = if raw.is_empty() {
        0
    } else {
        unsafe { libc::CMSG_SPACE(payload) as usize }
    };
    let mut control = vec![0u64; space.div_ceil(size_of::<u64>())];
    let mut iov = libc::iovec {
        iov_base: data.as_ptr() as *mut libc::c_void,
        iov_len: data.len(),
    };
    // SAFETY: msghdr is plain old data; all-zero is a valid value.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if space > 0 {
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = space as _;
        // SAFETY: msg_control points at `space` bytes, enough for one header
        // and `payload` bytes of data (that is what CMSG_SPACE computed), and
        // is aligned for cmsghdr (u64). CMSG_FIRSTHDR is non-null because
        // msg_controllen >= sizeof(cmsghdr).
        unsafe {
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = libc::CMSG_LEN(payload) as _;
            std::ptr::copy_nonoverlapping(
                raw.as_ptr().cast::<u8>(),
                libc::CMSG_DATA(cmsg),
                payload as usize,
            );
        }
    }
    loop {
        // SAFETY: msg and everything it points to (iov, data, control) are
        // alive for the call; sendmsg only reads them.
        let n = unsafe { libc::sendmsg(sock, &msg, libc::MSG_NOSIGNAL) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = Error::last_os(format!(
            "sendmsg({sock}, {} bytes, SCM_RIGHTS {:?})",
            data.len(),
            if raw.len() > 8 {
                format!("{} fds", raw.len())
            } else {
                format!("{raw:?}")
            }
        ));
        if e.errno() != Some(Errno::EINTR) {
            return Err(e);
        }
    }
    // END SOLUTION
}

/// Receive one message into `buf` and up to `max_fds` descriptors with one
/// [`recvmsg(2)`](https://man7.org/linux/man-pages/man2/recvmsg.2.html).
///
/// The task:
/// - Size the control buffer `CMSG_SPACE(max_fds * sizeof(int))`, aligned
///   for `cmsghdr`. If the socket has `SO_PASSCRED` on
///   (`getsockopt(SO_PASSCRED)`), add `CMSG_SPACE(sizeof(struct ucred))`:
///   such a receiver gets an `SCM_CREDENTIALS` message with *every*
///   message, before the fds.
/// - Return at most `max_fds` fds. `CMSG_SPACE` rounds up to 8 bytes, so
///   for an odd `max_fds` the kernel may fit one more: close any extra and
///   report it as truncated.
/// - Pass `MSG_CMSG_CLOEXEC`, so the fds that arrive are close-on-exec from
///   the first instant (no race with a `fork`+`exec` in another thread).
/// - Walk every control message (`CMSG_FIRSTHDR`, `CMSG_NXTHDR`); take fds
///   only from `SOL_SOCKET`/`SCM_RIGHTS` ones; their count is
///   `(cmsg_len - CMSG_LEN(0)) / sizeof(int)`. Wrap each in an `OwnedFd` at
///   once. A message that came without fds yields none, whatever the buffer
///   held before.
/// - Report `MSG_CTRUNC` (fds lost: the kernel closed them) and `MSG_TRUNC`
///   in [`Received`]; never fail because of them.
/// - Retry on `EINTR`; other failures are an [`Error`] naming `recvmsg`.
pub fn recv_fds(sock: impl AsFd, buf: &mut [u8], max_fds: usize) -> Result<Received> {
    let sock = sock.as_fd().as_raw_fd();
    // BEGIN SOLUTION
    let passcred =
        nix::sys::socket::getsockopt(&sock_fd(sock), nix::sys::socket::sockopt::PassCred)
            .map_err(|e| Error::sys(format!("getsockopt({sock}, SO_PASSCRED)"), e))?;
    let payload = (max_fds * size_of::<RawFd>()) as libc::c_uint;
    // SAFETY: CMSG_SPACE is arithmetic on its argument.
    let mut space = unsafe { libc::CMSG_SPACE(payload) as usize };
    if passcred {
        // SAFETY: as above.
        space += unsafe { libc::CMSG_SPACE(size_of::<libc::ucred>() as libc::c_uint) as usize };
    }
    let mut control = vec![0u64; space.div_ceil(size_of::<u64>())];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: msghdr is plain old data; all-zero is a valid value.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = space as _;
    let n = loop {
        // SAFETY: msg points at iov (-> buf) and control, both alive and
        // writable for their stated lengths during the call.
        let n = unsafe { libc::recvmsg(sock, &mut msg, libc::MSG_CMSG_CLOEXEC) };
        if n >= 0 {
            break n as usize;
        }
        let e = Error::last_os(format!(
            "recvmsg({sock}, {} bytes, {max_fds} fds)",
            buf.len()
        ));
        if e.errno() != Some(Errno::EINTR) {
            return Err(e);
        }
    };
    let mut got = Received {
        len: n.min(buf.len()),
        fds: Vec::new(),
        fds_truncated: msg.msg_flags & libc::MSG_CTRUNC != 0,
        data_truncated: msg.msg_flags & libc::MSG_TRUNC != 0,
    };
    // SAFETY: the kernel set msg_controllen to the control bytes it wrote;
    // CMSG_FIRSTHDR/NXTHDR stay within them and return null past the end.
    let mut cmsg = unsafe { libc::CMSG_FIRSTHDR(&msg) };
    while !cmsg.is_null() {
        // SAFETY: cmsg is non-null and points at a header inside `control`.
        let (level, kind, len) = unsafe {
            (
                (*cmsg).cmsg_level,
                (*cmsg).cmsg_type,
                (*cmsg).cmsg_len as usize,
            )
        };
        if level == libc::SOL_SOCKET && kind == libc::SCM_RIGHTS {
            // SAFETY: CMSG_LEN is arithmetic.
            let header = unsafe { libc::CMSG_LEN(0) as usize };
            let count = len.saturating_sub(header) / size_of::<RawFd>();
            // SAFETY: CMSG_DATA points at `count` ints within this message.
            let data = unsafe { libc::CMSG_DATA(cmsg) };
            for i in 0..count {
                // SAFETY: i < count, inside the message; the data may be
                // unaligned for an int, so read it unaligned.
                let fd = unsafe {
                    data.add(i * size_of::<RawFd>())
                        .cast::<RawFd>()
                        .read_unaligned()
                };
                // SAFETY: the kernel just installed `fd` in our table for us:
                // nothing else owns it.
                got.fds.push(unsafe { OwnedFd::from_raw_fd(fd) });
            }
        }
        // SAFETY: msg and cmsg are valid (see above).
        cmsg = unsafe { libc::CMSG_NXTHDR(&msg, cmsg) };
    }
    if got.fds.len() > max_fds {
        got.fds.truncate(max_fds); // the extra ones are closed here
        got.fds_truncated = true;
    }
    Ok(got)
    // END SOLUTION
}

/// Borrow a raw fd for a nix call that wants `AsFd`.
fn sock_fd(raw: RawFd) -> BorrowedFd<'static> {
    // SAFETY: only used for the duration of one call while the caller's
    // `impl AsFd` keeps the fd open.
    unsafe { BorrowedFd::borrow_raw(raw) }
}

/// How many fds this process has open that refer to the same open file
/// (`/proc/self/fd/N` links to the same target, e.g. `pipe:[1234]`) as `fd`,
/// `fd` itself included. Parallel-safe: the inode is unique to its file.
pub fn copies_of(fd: impl AsFd) -> usize {
    let Ok(target) = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_fd().as_raw_fd())) else {
        return 0;
    };
    count_links_to(&target.to_string_lossy())
}

/// How many entries of `/proc/self/fd` link to `target` (`pipe:[1234]`).
pub fn count_links_to(target: &str) -> usize {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return 0;
    };
    dir.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|t| t.to_string_lossy() == target)
        .count()
}

/// What `/proc/self/fd/N` links to (`pipe:[1234]`, `socket:[99]`, a path).
pub fn link_of(fd: impl AsFd) -> String {
    std::fs::read_link(format!("/proc/self/fd/{}", fd.as_fd().as_raw_fd()))
        .map(|t| t.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Is `FD_CLOEXEC` set on `fd`? ([`fcntl(2)`](https://man7.org/linux/man-pages/man2/fcntl.2.html) `F_GETFD`)
pub fn is_cloexec(fd: impl AsFd) -> Result<bool> {
    let raw = fd.as_fd().as_raw_fd();
    // SAFETY: F_GETFD reads the flags of an fd we borrow.
    let flags = unsafe { libc::fcntl(raw, libc::F_GETFD) };
    if flags == -1 {
        return Err(Error::last_os(format!("fcntl({raw}, F_GETFD)")));
    }
    Ok(flags & libc::FD_CLOEXEC != 0)
}

/// Send `count` copies of `fd` in one message on `sock`, with raw `libc`
/// (independent of [`send_fds`]): `Ok` or the errno. For probing the limit.
fn raw_send_copies(
    sock: BorrowedFd<'_>,
    fd: BorrowedFd<'_>,
    count: usize,
) -> std::result::Result<(), Errno> {
    let fds = vec![fd.as_raw_fd(); count];
    let payload = std::mem::size_of_val(fds.as_slice()) as libc::c_uint;
    // SAFETY: CMSG_SPACE is arithmetic.
    let space = unsafe { libc::CMSG_SPACE(payload) } as usize;
    let mut control = vec![0u64; space.div_ceil(8)];
    let byte = [b'x'];
    let mut iov = libc::iovec {
        iov_base: byte.as_ptr() as *mut libc::c_void,
        iov_len: 1,
    };
    // SAFETY: msghdr is plain old data.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = space as _;
    // SAFETY: as in send_fds: the buffer holds one header and the payload.
    unsafe {
        let c = libc::CMSG_FIRSTHDR(&msg);
        (*c).cmsg_level = libc::SOL_SOCKET;
        (*c).cmsg_type = libc::SCM_RIGHTS;
        (*c).cmsg_len = libc::CMSG_LEN(payload) as _;
        std::ptr::copy_nonoverlapping(
            fds.as_ptr().cast::<u8>(),
            libc::CMSG_DATA(c),
            payload as usize,
        );
    }
    // SAFETY: msg and what it points to live through the call.
    if unsafe { libc::sendmsg(sock.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) } == -1 {
        return Err(Errno::last());
    }
    Ok(())
}

/// The kernel's limit on fds per `SCM_RIGHTS` message (`SCM_MAX_FD` in
/// `include/net/scm.h`), found by trying: send n copies of one fd over a
/// fresh `SOCK_SEQPACKET` pair, read them back (closing them), and bisect
/// to the largest n that is not refused with `EINVAL`. Uses raw `libc`, not
/// the assignment.
pub fn probe_scm_max_fd() -> Result<usize> {
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, socketpair};
    let (a, b) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(|e| Error::sys("socketpair(AF_UNIX, SOCK_SEQPACKET)", e))?;
    let fits = |n: usize| -> Result<bool> {
        match raw_send_copies(a.as_fd(), a.as_fd(), n) {
            Ok(()) => {
                // Read it back so nothing stays in flight: a plain recvmsg
                // with a large enough buffer, the fds wrapped and dropped.
                drain_one(b.as_fd(), n)?;
                Ok(true)
            }
            Err(Errno::EINVAL) => Ok(false),
            Err(e) => Err(Error::sys(format!("sendmsg({n} fds)"), e)),
        }
    };
    let (mut lo, mut hi) = (1usize, 2usize);
    while fits(hi)? {
        lo = hi;
        hi *= 2;
        if hi > 1 << 16 {
            return Err(Error::msg("no per-message fd limit below 65536?"));
        }
    }
    while hi - lo > 1 {
        let mid = (lo + hi) / 2;
        if fits(mid)? { lo = mid } else { hi = mid }
    }
    Ok(lo)
}

/// Receive one message with up to `n` fds on `sock` and close them (raw).
fn drain_one(sock: BorrowedFd<'_>, n: usize) -> Result<()> {
    let payload = (n * size_of::<RawFd>()) as libc::c_uint;
    // SAFETY: CMSG_SPACE is arithmetic.
    let space = unsafe { libc::CMSG_SPACE(payload) } as usize;
    let mut control = vec![0u64; space.div_ceil(8)];
    let mut byte = [0u8; 16];
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: byte.len(),
    };
    // SAFETY: msghdr is plain old data.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = space as _;
    // SAFETY: msg points at buffers we own for the call.
    if unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) } == -1 {
        return Err(Error::last_os("recvmsg"));
    }
    // SAFETY: walking the control bytes the kernel wrote, as in recv_fds.
    unsafe {
        let c = libc::CMSG_FIRSTHDR(&msg);
        if !c.is_null() && (*c).cmsg_type == libc::SCM_RIGHTS {
            let count = ((*c).cmsg_len as usize - libc::CMSG_LEN(0) as usize) / size_of::<RawFd>();
            let data = libc::CMSG_DATA(c);
            for i in 0..count {
                let fd = data.add(i * 4).cast::<RawFd>().read_unaligned();
                drop(OwnedFd::from_raw_fd(fd));
            }
        }
    }
    Ok(())
}
