//! Batching: [`sendmmsg(2)`](https://man7.org/linux/man-pages/man2/sendmmsg.2.html)
//! and [`recvmmsg(2)`](https://man7.org/linux/man-pages/man2/recvmmsg.2.html)
//! move many datagrams per system call. Written with raw `libc` here, so
//! the C structures (`mmsghdr` wrapping `msghdr` wrapping `iovec`) are in
//! plain sight.

use std::os::fd::{AsFd, AsRawFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::socket::{MsgFlags, SockaddrLike, SockaddrStorage};

use super::dgram;
use crate::kit::{Error, Result, wait};

/// Send every datagram of `batch` to `to` with one `sendmmsg` call (or a
/// few, if the kernel takes fewer). Returns how many calls it took.
pub fn send_batch(fd: impl AsFd, batch: &[Vec<u8>], to: &SockaddrStorage) -> Result<usize> {
    let raw = fd.as_fd().as_raw_fd();
    let mut iovs: Vec<libc::iovec> = batch
        .iter()
        .map(|d| libc::iovec {
            iov_base: d.as_ptr() as *mut libc::c_void,
            iov_len: d.len(),
        })
        .collect();
    let mut headers: Vec<libc::mmsghdr> = iovs
        .iter_mut()
        .map(|iov| {
            // SAFETY: mmsghdr is plain old data; all-zero is valid.
            let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
            h.msg_hdr.msg_name = to.as_ptr() as *mut libc::c_void;
            h.msg_hdr.msg_namelen = to.len();
            h.msg_hdr.msg_iov = iov;
            h.msg_hdr.msg_iovlen = 1;
            h
        })
        .collect();
    let (mut done, mut calls) = (0, 0);
    while done < headers.len() {
        let left = &mut headers[done..];
        // SAFETY: every header points at a live iovec, a live buffer and the
        // live address `to`; `left.len()` headers follow the pointer.
        let n = unsafe { libc::sendmmsg(raw, left.as_mut_ptr(), left.len() as u32, 0) };
        calls += 1;
        if n == -1 {
            let e = Error::last_os(format!("sendmmsg({raw}, {} datagrams)", left.len()));
            if e.errno() == Some(Errno::EINTR) {
                continue;
            }
            return Err(e);
        }
        done += n as usize;
    }
    Ok(calls)
}

/// Receive up to `max` datagrams of up to `len` bytes each with one
/// `recvmmsg` call (`MSG_WAITFORONE`: wait for the first, take what else is
/// queued). Returns the lengths received.
pub fn recv_batch(fd: impl AsFd, max: usize, len: usize) -> Result<Vec<usize>> {
    let raw = fd.as_fd().as_raw_fd();
    let mut bufs = vec![vec![0u8; len]; max];
    let mut iovs: Vec<libc::iovec> = bufs
        .iter_mut()
        .map(|b| libc::iovec {
            iov_base: b.as_mut_ptr().cast(),
            iov_len: b.len(),
        })
        .collect();
    let mut headers: Vec<libc::mmsghdr> = iovs
        .iter_mut()
        .map(|iov| {
            // SAFETY: mmsghdr is plain old data; all-zero is valid.
            let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
            h.msg_hdr.msg_iov = iov;
            h.msg_hdr.msg_iovlen = 1;
            h
        })
        .collect();
    loop {
        // SAFETY: `max` headers, each pointing at a live iovec over a live
        // buffer; no name buffer (msg_name null), no timeout.
        let n = unsafe {
            libc::recvmmsg(
                raw,
                headers.as_mut_ptr(),
                max as u32,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        if n == -1 {
            let e = Error::last_os(format!("recvmmsg({raw}, {max}, MSG_WAITFORONE)"));
            if e.errno() == Some(Errno::EINTR) {
                continue;
            }
            return Err(e);
        }
        return Ok(headers[..n as usize]
            .iter()
            .map(|h| h.msg_len as usize)
            .collect());
    }
}

/// One measurement: `count` datagrams of `size` bytes from one socket to
/// another on loopback, one call per datagram or in batches of `batch`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    /// Datagrams that arrived.
    pub received: usize,
    /// System calls made: sends, receives, and the `poll` before each receive.
    pub calls: usize,
    /// Wall time.
    pub elapsed: Duration,
}

impl Rate {
    /// Datagrams per second.
    pub fn per_second(&self) -> f64 {
        self.received as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Send `count` datagrams of `size` bytes over loopback and receive them,
/// in lock-step rounds of `batch` (so the receive buffer never overflows):
/// with `batch == 1` one `sendto` and one `recv` per datagram, else one
/// `sendmmsg` and as few `recvmmsg` as it takes per round.
pub fn measure(count: usize, size: usize, batch: usize) -> Result<Rate> {
    let quiet = crate::kit::narrate::is_quiet();
    crate::kit::narrate::set_quiet(true);
    let rx = dgram::udp_bind("", &dgram::loopback_any());
    let tx = dgram::udp_bind("", &dgram::loopback_any());
    crate::kit::narrate::set_quiet(quiet);
    let ((rx, to), (tx, _)) = (rx?, tx?);
    let payload = vec![0x5au8; size];
    let round: Vec<Vec<u8>> = vec![payload.clone(); batch.max(1)];
    let start = Instant::now();
    let (mut received, mut calls) = (0, 0);
    while received < count {
        let n = batch.max(1).min(count - received);
        if batch <= 1 {
            dgram::send_to(&tx, &payload, &to)?;
            calls += 1;
            wait::wait_readable(&rx, Duration::from_secs(5))?;
            dgram::recv_datagram(&rx, size, MsgFlags::MSG_DONTWAIT)?;
            calls += 2;
            received += 1;
        } else {
            calls += send_batch(&tx, &round[..n], &to)?;
            let mut got = 0;
            while got < n {
                wait::wait_readable(&rx, Duration::from_secs(5))?;
                got += recv_batch(&rx, n - got, size)?.len();
                calls += 2;
            }
            received += got;
        }
    }
    Ok(Rate {
        received,
        calls,
        elapsed: start.elapsed(),
    })
}

/// The echo server again, batched: each wake-up takes up to `batch`
/// datagrams with one `recvmmsg` (`MSG_DONTWAIT`) and sends their echoes
/// with one `sendmmsg`. Not an assignment: the benchmark's contender
/// against [`super::serve_echo`] (one `recvmsg` and one `sendto` per
/// datagram). A datagram that did not fit its 65536-byte buffer is counted
/// and not echoed, as in the assignment.
pub fn serve_echo_batched(
    sock: std::os::fd::OwnedFd,
    stop: impl AsFd,
    batch: usize,
) -> Result<super::EchoStats> {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    let stop = stop.as_fd();
    let raw = sock.as_raw_fd();
    let batch = batch.clamp(1, 1024);
    let mut stats = super::EchoStats::default();
    let len = 65536;
    let mut bufs = vec![vec![0u8; len]; batch];
    // SAFETY: sockaddr_storage is plain old data; all-zero is valid.
    let mut names: Vec<libc::sockaddr_storage> = vec![unsafe { std::mem::zeroed() }; batch];
    loop {
        let mut fds = [
            PollFd::new(sock.as_fd(), PollFlags::POLLIN),
            PollFd::new(stop, PollFlags::POLLIN),
        ];
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(errno) => return Err(Error::sys(format!("poll({raw}, stop)"), errno)),
        }
        if fds[1].any().unwrap_or(false) {
            return Ok(stats);
        }
        let mut iovs: Vec<libc::iovec> = bufs
            .iter_mut()
            .map(|b| libc::iovec {
                iov_base: b.as_mut_ptr().cast(),
                iov_len: b.len(),
            })
            .collect();
        let mut headers: Vec<libc::mmsghdr> = iovs
            .iter_mut()
            .zip(names.iter_mut())
            .map(|(iov, name)| {
                // SAFETY: mmsghdr is plain old data; all-zero is valid.
                let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
                h.msg_hdr.msg_name = (name as *mut libc::sockaddr_storage).cast();
                h.msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as u32;
                h.msg_hdr.msg_iov = iov;
                h.msg_hdr.msg_iovlen = 1;
                h
            })
            .collect();
        // SAFETY: `batch` headers, each pointing at a live iovec over a live
        // buffer and at a live sockaddr_storage; no timeout.
        let n = unsafe {
            libc::recvmmsg(
                raw,
                headers.as_mut_ptr(),
                batch as u32,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n == -1 {
            let e = Error::last_os(format!("recvmmsg({raw}, {batch})"));
            match e.errno() {
                Some(Errno::EAGAIN | Errno::EINTR | Errno::ECONNREFUSED) => continue,
                _ => return Err(e),
            }
        }
        // Echo what arrived whole: reuse the headers, each iov cut to the
        // datagram's length.
        let mut out: Vec<libc::mmsghdr> = Vec::with_capacity(n as usize);
        for h in &mut headers[..n as usize] {
            if h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0 {
                stats.truncated += 1;
                continue;
            }
            // SAFETY: msg_iov points at one of `iovs`, alive for this loop.
            unsafe { (*h.msg_hdr.msg_iov).iov_len = h.msg_len as usize };
            out.push(*h);
        }
        let mut done = 0;
        while done < out.len() {
            let left = &mut out[done..];
            // SAFETY: as for recvmmsg; the names and lengths were filled in
            // by the kernel.
            let sent = unsafe {
                libc::sendmmsg(
                    raw,
                    left.as_mut_ptr(),
                    left.len() as u32,
                    libc::MSG_DONTWAIT,
                )
            };
            if sent <= 0 {
                // The first of the rest could not go (EAGAIN, ECONNREFUSED):
                // drop it and go on with the others.
                stats.send_failed += 1;
                done += 1;
            } else {
                stats.echoed += sent as u64;
                done += sent as usize;
            }
        }
    }
}
