//! Graded tests for chapter 10: the seqpacket message server, send_fds and
//! recv_fds, authorisation by credentials, and the listener hand-over.
//!
//! The checks are independent of the chapter's code: pipes whose read end
//! must see EOF once every copy of the write end is gone (anywhere: in this
//! process, in a child, or in flight), `/proc/self/fd` links, a raw `libc`
//! probe of the kernel's fd-per-message limit, the pid of a child process
//! we started ourselves, and `std::net` clients.

#[macro_use]
mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::socket::{
    self, AddressFamily, Backlog, MsgFlags, SockFlag, SockType, UnixAddr, socketpair, sockopt,
};
use sockbook::ch10_unix::{
    authorise, hand_over, recv_fds, send_fds, serve_messages, serve_tcp, take_over,
};
use sockbook::kit::narrate;
use support::{Background, DEADLINE, open_sockets_on_port};

const BIN: &str = env!("CARGO_BIN_EXE_ch10_unix");

// ---------------------------------------------------------------------------
// Independent helpers

fn pair(ty: SockType) -> (OwnedFd, OwnedFd) {
    socketpair(AddressFamily::Unix, ty, None, SockFlag::SOCK_CLOEXEC)
        .unwrap_or_else(|e| panic!("socketpair(AF_UNIX, {ty:?}): {e}"))
}

fn pipe() -> (OwnedFd, OwnedFd) {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).expect("pipe2")
}

/// What /proc/self/fd/N links to (`pipe:[1234]`).
fn link(fd: impl AsFd) -> String {
    std::fs::read_link(format!("/proc/self/fd/{}", fd.as_fd().as_raw_fd()))
        .map(|t| t.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// How many of our fds link to `target`.
fn links_to(target: &str) -> usize {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|t| t.to_string_lossy() == target)
        .count()
}

/// Wait for EOF on a pipe's read end: true once every copy of its write end
/// is closed, everywhere.
fn sees_eof(read_end: &OwnedFd, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if sockbook::kit::wait::wait_readable(read_end, left).is_err() {
            return false;
        }
        let mut b = [0u8; 64];
        match nix::unistd::read(read_end, &mut b) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(Errno::EINTR) => continue,
            Err(_) => return false,
        }
    }
}

/// The kernel's fds-per-message limit, found by trying with raw libc:
/// the largest n for which sendmsg with n copies of one fd succeeds.
fn raw_fd_limit() -> usize {
    let (a, b) = pair(SockType::SeqPacket);
    let try_n = |n: usize| -> bool {
        let fds = vec![a.as_raw_fd(); n];
        let payload = (n * 4) as u32;
        // SAFETY: CMSG_SPACE only computes a size from its argument.
        let space = unsafe { libc::CMSG_SPACE(payload) } as usize;
        let mut control = vec![0u64; space.div_ceil(8)];
        let byte = [1u8];
        let mut iov = libc::iovec {
            iov_base: byte.as_ptr() as *mut _,
            iov_len: 1,
        };
        // SAFETY: msghdr is plain old data; all-zero is a valid value.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = space as _;
        // SAFETY: `control` holds CMSG_SPACE(payload) bytes, so the first header and n fds fit; `fds` holds n ints.
        unsafe {
            let c = libc::CMSG_FIRSTHDR(&msg);
            (*c).cmsg_level = libc::SOL_SOCKET;
            (*c).cmsg_type = libc::SCM_RIGHTS;
            (*c).cmsg_len = libc::CMSG_LEN(payload) as _;
            std::ptr::copy_nonoverlapping(fds.as_ptr().cast::<u8>(), libc::CMSG_DATA(c), n * 4);
        }
        // SAFETY: msg points at iov, byte and control, all alive across the call.
        let ok = unsafe { libc::sendmsg(a.as_raw_fd(), &msg, 0) } == 1;
        if ok {
            // Receive and close them: a raw recvmsg with room for all.
            let mut rcontrol = vec![0u64; space.div_ceil(8)];
            let mut rb = [0u8; 4];
            let mut riov = libc::iovec {
                iov_base: rb.as_mut_ptr().cast(),
                iov_len: 4,
            };
            // SAFETY: msghdr is plain old data; all-zero is a valid value.
            let mut r: libc::msghdr = unsafe { std::mem::zeroed() };
            r.msg_iov = &mut riov;
            r.msg_iovlen = 1;
            r.msg_control = rcontrol.as_mut_ptr().cast();
            r.msg_controllen = space as _;
            // SAFETY: r points at riov, rb and rcontrol, all alive across the call.
            let got = unsafe { libc::recvmsg(b.as_raw_fd(), &mut r, 0) };
            let err = std::io::Error::last_os_error();
            assert!(
                got == 1,
                "test scaffolding (finding the kernel's fds-per-message limit with raw libc): \
                 sendmsg of 1 byte with {n} fds (SCM_RIGHTS) succeeded, then recvmsg on the \
                 other end of the SOCK_SEQPACKET pair returned {got} (errno: {err}); expected the 1 byte"
            );
            // SAFETY: recvmsg returned 1 with room for every fd; the header is checked for null before it is read, and each fd read from it is ours to close.
            unsafe {
                let c = libc::CMSG_FIRSTHDR(&r);
                if !c.is_null() {
                    let count = ((*c).cmsg_len as usize - libc::CMSG_LEN(0) as usize) / 4;
                    let data = libc::CMSG_DATA(c);
                    for i in 0..count {
                        libc::close(data.add(i * 4).cast::<RawFd>().read_unaligned());
                    }
                }
            }
        }
        ok
    };
    let mut n = 1;
    while try_n(n + 1) {
        n += 1;
        assert!(
            n < 100_000,
            "test scaffolding: sendmsg with SCM_RIGHTS kept succeeding up to {n} fds per message; \
             expected the kernel to refuse (EINVAL) well before that (SCM_MAX_FD)"
        );
    }
    n
}

/// A fresh abstract name for this test.
fn abstract_name(what: &str) -> String {
    use std::sync::atomic::AtomicU32;
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "sockbook-ch10-test-{}-{}-{what}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn listen_abstract(name: &str, ty: SockType) -> OwnedFd {
    let fd = socket::socket(AddressFamily::Unix, ty, SockFlag::SOCK_CLOEXEC, None).unwrap();
    socket::bind(
        fd.as_raw_fd(),
        &UnixAddr::new_abstract(name.as_bytes()).unwrap(),
    )
    .unwrap();
    socket::listen(&fd, Backlog::new(16).unwrap()).unwrap();
    fd
}

/// accept with a deadline; `what` says which listener and who connects.
fn accept_within(listener: &OwnedFd, what: &str) -> OwnedFd {
    let raw = listener.as_raw_fd();
    sockbook::kit::wait::wait_readable(listener, DEADLINE).unwrap_or_else(|e| {
        panic!(
            "{what}: waited {DEADLINE:?} for a connection to accept on fd {raw}, none came ({e})"
        )
    });
    let fd = socket::accept4(raw, SockFlag::SOCK_CLOEXEC)
        .unwrap_or_else(|e| panic!("{what}: fd {raw} was readable, but accept4 failed: {e}"));
    // SAFETY: accept4 returned a new fd that nothing else owns.
    unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) }
}

/// A child process killed when dropped.
struct Kid(Child);
impl Drop for Kid {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Kid {
    /// Its stdout once it has exited (waiting at most DEADLINE).
    fn finish(mut self) -> String {
        let mut out = self.0.stdout.take().expect("piped stdout");
        let reader = Background::spawn("child stdout", move || {
            let mut s = String::new();
            let _ = out.read_to_string(&mut s);
            s
        });
        reader.join_within(DEADLINE, "the child's stdout (did it exit?)")
    }
}

/// `ch10_unix client ...` as a child, with `uid` if given (we must be root).
fn client_child(args: &[&str], uid: Option<u32>) -> Kid {
    let mut cmd = Command::new(BIN);
    cmd.arg("client")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if let Some(uid) = uid {
        cmd.uid(uid); // gid stays ours: only the uid differs
    }
    die_with_parent(&mut cmd);
    Kid(cmd.spawn().expect("spawn ch10_unix client"))
}

/// SIGKILL the child when the thread that spawned it dies (a test thread
/// stuck in a hanging solution is only ended with the test process).
fn die_with_parent(cmd: &mut Command) {
    // SAFETY: the closure only calls prctl, which is async-signal-safe, between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

fn my_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

fn my_gid() -> u32 {
    // SAFETY: getegid has no preconditions and cannot fail.
    unsafe { libc::getegid() }
}

/// recv one seqpacket message with a deadline; `what` says which reply.
fn recv_msg(fd: &OwnedFd, what: &str) -> Vec<u8> {
    sockbook::kit::wait::wait_readable(fd, DEADLINE).unwrap_or_else(|e| {
        panic!(
            "{what}: no reply message within {DEADLINE:?} (the server sent nothing, or hung): {e}"
        )
    });
    let mut buf = vec![0u8; 65536];
    let n = socket::recv(fd.as_raw_fd(), &mut buf, MsgFlags::MSG_DONTWAIT)
        .unwrap_or_else(|e| panic!("{what}: recv of the reply failed: {e}"));
    buf.truncate(n);
    buf
}

fn show(b: &[u8]) -> String {
    let s = String::from_utf8_lossy(b);
    if s.len() > 60 {
        format!("{:?}… ({} bytes)", &s[..40], b.len())
    } else {
        format!("{s:?}")
    }
}

// ---------------------------------------------------------------------------
// Assignment 1: the message server on SOCK_SEQPACKET

graded! {
    /// Each request message gets exactly one reply message: PING, ECHO,
    /// WHO (the peer's real pid and uid from SO_PEERCRED), COUNT, unknown.
    points = 3;
    fn seqpacket_server_answers_each_request() {
        narrate::set_quiet(true);
        let name = abstract_name("seq");
        let listener = listen_abstract(&name, SockType::SeqPacket);
        let kid = client_child(
            &["--seqpacket", "--abstract", &name, "PING", "ECHO two words", "WHO", "COUNT", "HELLO"],
            None,
        );
        let child_pid = kid.0.id() as i32;
        let conn = accept_within(&listener, "the test's SOCK_SEQPACKET listener, the client child connecting");
        let server = Background::spawn("serve_messages", move || serve_messages(conn.as_fd()));
        let out = kid.finish();
        let served = server.join_within(DEADLINE, "serve_messages after the client closed");
        let lines: Vec<&str> = out.lines().collect();
        let who = format!("uid={} gid={} pid={child_pid}", my_uid(), my_gid());
        let want = ["PONG", "two words", who.as_str(), "3", "ERR unknown request"];
        assert_eq!(
            lines, want,
            "`ch10_unix client --seqpacket` (pid {child_pid}) sent PING, ECHO two words, WHO, COUNT, HELLO \
             one message each; these replies came back (WHO must be the client's pid, from SO_PEERCRED)"
        );
        assert_eq!(
            served.as_ref().ok(), Some(&5),
            "serve_messages should return Ok(5) when the client closes after 5 requests; it returned {served:?}"
        );
    }
}

graded! {
    /// Boundaries are kept: requests sent back to back get one reply each;
    /// an over-long request gets `ERR too long` with its real length and
    /// does not leak into the next; exactly 4096 bytes is still served.
    points = 3;
    fn seqpacket_keeps_boundaries_and_reports_too_long() {
        let (mine, theirs) = pair(SockType::SeqPacket);
        let server = Background::spawn("serve_messages", move || serve_messages(theirs.as_fd()));
        let long = format!("ECHO {}", "y".repeat(9995));
        let max_ok = format!("ECHO {}", "z".repeat(4091));
        let requests: Vec<&[u8]> = vec![b"PING", b"ECHO a\n", b"COUNT", long.as_bytes(), b"PING", max_ok.as_bytes()];
        for r in &requests {
            socket::send(mine.as_raw_fd(), r, MsgFlags::empty()).expect("send a request");
        }
        let want: Vec<Vec<u8>> = vec![
            b"PONG".to_vec(),
            b"a".to_vec(),
            b"2".to_vec(),
            b"ERR too long: 10000 bytes, the limit is 4096".to_vec(),
            b"PONG".to_vec(),
            "z".repeat(4091).into_bytes(),
        ];
        for (i, (req, w)) in requests.iter().zip(&want).enumerate() {
            let got = recv_msg(&mine, &format!("request {i} {} (all 6 sent back to back)", show(req)));
            assert!(
                got == *w,
                "request {i} {} (all 6 sent back to back before reading): expected reply {}, got {}",
                show(req), show(w), show(&got)
            );
        }
        drop(mine);
        let served = server.join_within(DEADLINE, "serve_messages after the peer closed");
        assert_eq!(served.as_ref().ok(), Some(&6), "6 requests answered, then EOF: expected Ok(6), got {served:?}");
    }
}

// ---------------------------------------------------------------------------
// Assignment 2: send_fds / recv_fds

graded! {
    /// Any number of fds up to the kernel's limit (found by trying with raw
    /// libc) arrives whole, in order, close-on-exec; one more is refused
    /// with EINVAL; the sender's fds stay open and nothing is left anywhere.
    points = 3;
    secs = 20;
    fn fds_up_to_the_limit_arrive_whole() {
        let limit = raw_fd_limit();
        let (a, b) = pair(SockType::Stream);
        for n in [1usize, 2, 3, 7, limit] {
            let pipes: Vec<(OwnedFd, OwnedFd)> = (0..n).map(|_| pipe()).collect();
            let targets: Vec<String> = pipes.iter().map(|(_, w)| link(w)).collect();
            let ends: Vec<BorrowedFd> = pipes.iter().map(|(_, w)| w.as_fd()).collect();
            let sent = send_fds(&a, b"fds!", &ends);
            assert_eq!(sent.as_ref().ok(), Some(&4), "send_fds(4 bytes, {n} fds) should return Ok(4); got {sent:?}");
            for t in &targets[..1] {
                assert_eq!(links_to(t), 2, "after send_fds the sender's own fds must stay open, neither closed nor dup'ed: {t} should have 2 fds (read end, write end)");
            }
            let mut buf = [0u8; 16];
            let got = recv_fds(&b, &mut buf, n).unwrap_or_else(|e| panic!("recv_fds(max {n}) after {n} fds were sent: {e}"));
            assert_eq!(&buf[..got.len], b"fds!", "the data that came with {n} fds");
            assert!(!got.fds_truncated, "{n} fds sent, room for {n}: recv_fds reported MSG_CTRUNC (fds_truncated) with {} fds received; with room for all, nothing is truncated (control buffer sized with CMSG_SPACE(n * 4)?)", got.fds.len());
            let came: Vec<String> = got.fds.iter().map(link).collect();
            assert_eq!(came, targets, "{n} fds sent (pipe write ends, in order); /proc/self/fd says the received fds are these");
            for fd in &got.fds {
                assert!(
                    sockbook::ch10_unix::fds::is_cloexec(fd).unwrap_or(false),
                    "received fd {} lacks FD_CLOEXEC: receive with MSG_CMSG_CLOEXEC", fd.as_raw_fd()
                );
            }
            drop(got);
            for (i, (r, w)) in pipes.into_iter().enumerate() {
                drop(w);
                assert!(sees_eof(&r, DEADLINE), "{n} fds round trip: after closing the received copy and the original, pipe {i}'s read end never saw EOF: some copy of its write end leaked");
            }
        }
        let (_r, w) = pipe();
        let too_many = vec![w.as_fd(); limit + 1];
        let e = send_fds(&a, b"x", &too_many);
        assert_eq!(
            e.as_ref().err().and_then(|e| e.errno()), Some(Errno::EINVAL),
            "send_fds with {} fds (the limit, found with raw sendmsg, is {limit}) should fail with EINVAL; got {e:?}", limit + 1
        );
    }
}

graded! {
    /// More fds than room: the truncation is reported (MSG_CTRUNC), only
    /// `max_fds` arrive, and the kernel closed the rest (their pipes see EOF).
    points = 3;
    fn truncation_is_detected_and_nothing_leaks() {
        let (a, b) = pair(SockType::Stream);
        for (sent, room) in [(6usize, 1usize), (6, 2), (6, 3), (2, 1)] {
            let pipes: Vec<(OwnedFd, OwnedFd)> = (0..sent).map(|_| pipe()).collect();
            let targets: Vec<String> = pipes.iter().map(|(_, w)| link(w)).collect();
            let ends: Vec<BorrowedFd> = pipes.iter().map(|(_, w)| w.as_fd()).collect();
            send_fds(&a, b"many", &ends).unwrap_or_else(|e| panic!("send_fds({sent} fds): {e}"));
            let mut buf = [0u8; 16];
            let got = recv_fds(&b, &mut buf, room).unwrap_or_else(|e| panic!("recv_fds(max {room}) with {sent} sent must not fail: {e}"));
            assert!(got.fds_truncated, "{sent} fds sent, room for {room}: recv_fds must report the truncation (MSG_CTRUNC)");
            assert_eq!(got.fds.len(), room, "{sent} fds sent, room for {room}: exactly {room} should be returned");
            let came: Vec<String> = got.fds.iter().map(link).collect();
            assert_eq!(came, targets[..room].to_vec(), "the fds that fitted are the first {room} sent");
            drop(got);
            for (i, (r, w)) in pipes.into_iter().enumerate() {
                drop(w);
                assert!(sees_eof(&r, DEADLINE), "{sent} sent, room for {room}: pipe {i}'s write end is still open somewhere after every copy we hold was closed (a leak)");
            }
        }
    }
}

graded! {
    /// A message without fds brings none, even on a receiver with
    /// SO_PASSCRED (whose every message carries SCM_CREDENTIALS), and the
    /// fds of a later message still arrive whole.
    points = 2;
    fn a_message_without_fds_brings_none() {
        for ty in [SockType::Stream, SockType::SeqPacket] {
            let (a, b) = pair(ty);
            socket::setsockopt(&b, sockopt::PassCred, &true).expect("SO_PASSCRED");
            socket::send(a.as_raw_fd(), b"plain", MsgFlags::empty()).expect("test scaffolding: send 5 bytes on a fresh socketpair");
            let mut buf = [0u8; 16];
            let got = recv_fds(&b, &mut buf, 4).unwrap_or_else(|e| panic!("{ty:?}: recv_fds on a plain message: {e}"));
            assert_eq!((got.len, got.fds.len(), got.fds_truncated), (5, 0, false),
                "{ty:?}, receiver with SO_PASSCRED: a plain 5-byte message (no SCM_RIGHTS) should give (len 5, 0 fds, not truncated)");
            let pipes: Vec<(OwnedFd, OwnedFd)> = (0..3).map(|_| pipe()).collect();
            let targets: Vec<String> = pipes.iter().map(|(_, w)| link(w)).collect();
            let ends: Vec<BorrowedFd> = pipes.iter().map(|(_, w)| w.as_fd()).collect();
            send_fds(&a, b"three", &ends)
                .unwrap_or_else(|e| panic!("{ty:?}: send_fds(\"three\", 3 pipe write ends) after a plain message: {e}"));
            let got = recv_fds(&b, &mut buf, 3).unwrap_or_else(|e| {
                panic!("{ty:?}, receiver with SO_PASSCRED: recv_fds(max 3) of a message with 3 fds (SCM_RIGHTS) and SCM_CREDENTIALS failed: {e}")
            });
            let came: Vec<String> = got.fds.iter().map(link).collect();
            assert_eq!((came, got.fds_truncated), (targets, false),
                "{ty:?}, receiver with SO_PASSCRED (an SCM_CREDENTIALS message comes first): 3 fds sent, room for 3: \
                 (received fds, MSG_CTRUNC reported) from recv_fds (left) vs the 3 pipe write ends sent, not truncated (right); size the control buffer for the credentials too");
            drop(got);
            socket::send(a.as_raw_fd(), b"again", MsgFlags::empty()).expect("test scaffolding: send 5 bytes");
            let got = recv_fds(&b, &mut buf, 4)
                .unwrap_or_else(|e| panic!("{ty:?}: recv_fds(max 4) of a plain 5-byte message sent after one with fds: {e}"));
            assert_eq!(got.fds.len(), 0, "{ty:?}: a plain message \"again\" after one with fds must bring no fds; recv_fds returned {} fd(s), {} bytes {:?}", got.fds.len(), got.len, String::from_utf8_lossy(&buf[..got.len]));
            for (i, (r, w)) in pipes.into_iter().enumerate() {
                drop(w);
                assert!(sees_eof(&r, DEADLINE), "{ty:?}: pipe {i} still has a write end open somewhere: a leak");
            }
        }
    }
}

graded! {
    /// Across a process boundary: a child (`ch10_unix helper fd-echo`,
    /// built on the same recv_fds/send_fds) receives our fds and sends them
    /// back; it ends with as many fds open as it started with, and so do we.
    points = 2;
    secs = 20;
    fn fds_cross_processes_and_neither_side_leaks() {
        let (mine, theirs) = pair(SockType::Stream);
        let child_end = theirs.as_raw_fd();
        let mut cmd = Command::new(BIN);
        cmd.args(["helper", "fd-echo", "8"]).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::inherit());
        // SAFETY: between fork and exec the closure calls only fcntl and dup2 (async-signal-safe) on fds this process owns.
        unsafe {
            cmd.pre_exec(move || {
                if child_end == 3 {
                    let flags = libc::fcntl(3, libc::F_GETFD);
                    libc::fcntl(3, libc::F_SETFD, flags & !libc::FD_CLOEXEC);
                } else if libc::dup2(child_end, 3) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        die_with_parent(&mut cmd);
        let kid = Kid(cmd.spawn().expect("spawn ch10_unix helper fd-echo"));
        drop(theirs);
        for (n, expect) in [(1usize, "got 1 truncated false"), (8, "got 8 truncated false"), (11, "got 8 truncated true"), (0, "got 0 truncated false")] {
            let pipes: Vec<(OwnedFd, OwnedFd)> = (0..n).map(|_| pipe()).collect();
            let targets: Vec<String> = pipes.iter().map(|(_, w)| link(w)).collect();
            let ends: Vec<BorrowedFd> = pipes.iter().map(|(_, w)| w.as_fd()).collect();
            send_fds(&mine, b"take these", &ends).unwrap_or_else(|e| panic!("send_fds({n} fds) to the child: {e}"));
            sockbook::kit::wait::wait_readable(&mine, DEADLINE).unwrap_or_else(|e| {
                panic!("sent {n} fds to the child (`helper fd-echo 8`, built on recv_fds/send_fds): its report `got N truncated B` did not come within {DEADLINE:?}: {e}")
            });
            let mut buf = [0u8; 64];
            let got = recv_fds(&mine, &mut buf, 16)
                .unwrap_or_else(|e| panic!("sent {n} fds to the child: recv_fds(max 16) of its report and the fds it sent back failed: {e}"));
            let report = String::from_utf8_lossy(&buf[..got.len]).into_owned();
            assert_eq!(report, expect, "sent {n} fds to a child (`helper fd-echo 8`: recv_fds(max 8), then send_fds back): its report `got N truncated B` (left) vs expected (right)");
            let came: Vec<String> = got.fds.iter().map(link).collect();
            let kept = n.min(8);
            assert_eq!(came, targets[..kept].to_vec(), "the child sent back the {kept} fds it received");
            drop(got);
            for (i, (r, w)) in pipes.into_iter().enumerate() {
                drop(w);
                assert!(sees_eof(&r, DEADLINE), "{n} fds to the child and back: pipe {i}'s write end is still open somewhere (here, in the child, or in flight)");
            }
        }
        drop(mine);
        let out = kid.finish();
        let counts: Vec<&str> = out.split_whitespace().filter(|w| w.chars().all(|c| c.is_ascii_digit())).collect();
        assert!(
            counts.len() == 2 && counts[0] == counts[1],
            "the child should end with as many open fds as it started with; it printed {out:?}"
        );
    }
}

// ---------------------------------------------------------------------------
// Assignment 3: authorise by credentials

graded! {
    /// Our own uid is served; the verdict's pid and uid are the kernel's
    /// (the child we started), never what the peer claims.
    points = 3;
    fn authorise_trusts_the_kernel_not_the_claim() {
        let name = abstract_name("auth");
        let listener = listen_abstract(&name, SockType::Stream);
        let kid = client_child(&["--abstract", &name], None);
        let pid = kid.0.id() as i32;
        let conn = accept_within(&listener, "the test's listener, a client child of our uid connecting");
        let (uid, gid) = (my_uid(), my_gid());
        let v = authorise(conn.as_fd(), Some(b"uid=4242 pid=1"))
            .unwrap_or_else(|e| panic!("authorise(conn from child pid {pid}, claim `uid=4242 pid=1`) should give a verdict, it failed: {e}"));
        assert_eq!(
            (v.allowed, v.peer.pid, v.peer.uid, v.peer.gid, v.claim_honest),
            (true, pid, uid, gid, Some(false)),
            "a child (pid {pid}) of our own uid {uid} connected and claimed `uid=4242 pid=1`: \
             want (allowed, pid, uid, gid, claim_honest) from SO_PEERCRED"
        );
        let honest = format!("pid={pid} uid={uid}");
        let v = authorise(conn.as_fd(), Some(honest.as_bytes()))
            .unwrap_or_else(|e| panic!("authorise(conn from child pid {pid}, claim {honest:?}) failed: {e}"));
        assert_eq!((v.allowed, v.claim_honest), (true, Some(true)),
            "child pid {pid} of our uid {uid} claimed {honest:?}, which SO_PEERCRED confirms: want (allowed, claim_honest); verdict {v:?}");
        let lying = format!("pid={pid} uid={uid} gid=77777");
        let v = authorise(conn.as_fd(), Some(lying.as_bytes()))
            .unwrap_or_else(|e| panic!("authorise(conn from child pid {pid}, claim {lying:?}) failed: {e}"));
        assert_eq!(v.claim_honest, Some(false),
            "claim {lying:?}: pid and uid right, gid wrong (ours is {gid}); one wrong field makes it not honest; verdict {v:?}");
        let v = authorise(conn.as_fd(), None)
            .unwrap_or_else(|e| panic!("authorise(conn from child pid {pid}, no claim) failed: {e}"));
        assert_eq!((v.allowed, v.claim_honest), (true, None),
            "no claim from child pid {pid} of our uid: want (allowed, claim_honest) = (true, None); verdict {v:?}");
        drop(conn);
        let _ = kid.finish();
    }
}

graded! {
    /// A process of another uid is refused, even when it claims ours.
    /// Needs root, to start a child with another uid; skipped otherwise.
    points = 3;
    fn authorise_refuses_another_uid() {
        if my_uid() != 0 {
            return support::skip("starting a client with another uid needs root (CAP_SETUID); this test runs as a normal user");
        }
        let other = 65534;
        let name = abstract_name("auth-other");
        let listener = listen_abstract(&name, SockType::Stream);
        let kid = client_child(&["--abstract", &name], Some(other));
        let pid = kid.0.id() as i32;
        let conn = accept_within(&listener, "the test's listener, a client child of uid 65534 connecting");
        let claim = format!("uid=0 pid={}", std::process::id());
        let v = authorise(conn.as_fd(), Some(claim.as_bytes()))
            .unwrap_or_else(|e| panic!("authorise(conn from child pid {pid} of uid {other}, claim {claim:?}) should give a verdict, it failed: {e}"));
        assert_eq!(
            (v.allowed, v.peer.uid, v.peer.pid, v.peer.gid, v.claim_honest),
            (false, other, pid, my_gid(), Some(false)),
            "a child (pid {pid}) running as uid {other} (gid {} like ours) connected to a server of uid 0 and claimed {claim:?}: \
             want (allowed, uid, pid, gid, claim_honest)", my_gid()
        );
        drop(conn);
        let _ = kid.finish();

        // The same through the chapter's server: the child is told it is refused.
        narrate::set_quiet(true);
        let name = abstract_name("auth-server");
        let listener = listen_abstract(&name, SockType::Stream);
        let (stop_r, stop_w) = pipe();
        let (tx, verdicts) = std::sync::mpsc::channel();
        let config = sockbook::ch10_unix::message::ServeConfig { verdicts: Some(tx), ..Default::default() };
        let server = Background::spawn("serve", move || sockbook::ch10_unix::serve(listener, stop_r.as_fd(), config));
        let kid = client_child(&["--abstract", &name], Some(other));
        let out = kid.finish();
        let mine = client_child(&["--abstract", &name, "PING"], None).finish();
        drop(stop_w);
        let stats = server
            .join_within(DEADLINE, "serve after stop")
            .unwrap_or_else(|e| panic!("serve (which calls authorise for each client) returned an error after the stop: {e}"));
        let v: Vec<_> = verdicts.try_iter().map(|v| (v.peer.uid, v.allowed)).collect();
        assert_eq!(v, vec![(other, false), (0, true)], "verdicts for a uid {other} client then a uid 0 client");
        assert!(out.starts_with("refused"), "the uid {other} client should read a `refused …` line; it printed {out:?}");
        assert_eq!(mine.trim(), "PONG", "a client of our own uid (0) sent PING through serve; it printed {mine:?}");
        assert_eq!(stats.refused, 1, "one client of uid {other}, one of uid 0: serve's stats should count 1 refused; stats {stats:?}");
    }
}

// ---------------------------------------------------------------------------
// Assignment 4: the hand-over

fn tcp_listener() -> (OwnedFd, u16) {
    narrate::set_quiet(true);
    let (fd, _) = sockbook::kit::net::tcp_listen("", &support::loopback_any(), 1024).unwrap();
    let port = sockbook::kit::net::local_port(&fd).unwrap();
    (fd, port)
}

graded! {
    /// take_over receives the very same listening sockets; once hand_over
    /// returns Ok the old copies are closed and the port still accepts.
    points = 3;
    fn take_over_holds_the_same_listeners() {
        let (tcp, port) = tcp_listener();
        let unix = listen_abstract(&abstract_name("ctl"), SockType::Stream);
        let links = [link(&tcp), link(&unix)];
        let (old_end, new_end) = pair(SockType::Stream);
        let successor = Background::spawn("take_over", move || (take_over(new_end.as_fd(), 4), new_end));
        let handed = hand_over(vec![tcp, unix], old_end.as_fd(), DEADLINE);
        assert!(handed.is_ok(), "hand_over(TCP listener, unix listener) to a successor running take_over(max 4) should return Ok; it returned Err: {}",
            handed.err().map(|(back, e)| format!("{e} (and gave back {} fds)", back.len())).unwrap_or_default());
        let (taken, _new_end) = successor.join_within(DEADLINE, "take_over");
        let taken = taken.unwrap_or_else(|e| panic!("the successor's take_over(max 4) of the 2 listeners hand_over sent failed: {e}"));
        let got: Vec<String> = taken.iter().map(link).collect();
        assert_eq!(got, links.to_vec(), "the successor's fds should be the same two sockets, in order");
        assert_eq!(links_to(&links[0]), 1, "after hand_over returned Ok, exactly one fd (the successor's) should hold the TCP listener; /proc/self/fd has {}", links_to(&links[0]));
        assert_eq!(open_sockets_on_port(port), 1, "sockets on port {port}");
        let client = std::net::TcpStream::connect(("127.0.0.1", port))
            .unwrap_or_else(|e| panic!("after the hand-over, connect to 127.0.0.1:{port} (the listener take_over returned) failed: {e}"));
        let conn = accept_within(&taken[0], "the TCP listener take_over returned, a client connecting after the hand-over");
        drop((client, conn));
    }
}

graded! {
    /// A successor that dies with the fds (or never reads them, or says
    /// no) gets nothing: hand_over returns the listeners, still open, and
    /// the port keeps accepting.
    points = 3;
    fn failed_hand_over_keeps_the_port_open() {
        for how in [
            "receives the fds, closes them, never confirms",
            "never reads, closes the channel",
            "replies NO",
            "keeps the fds and the channel, never replies",
        ] {
            let (tcp, port) = tcp_listener();
            let before = link(&tcp);
            let (old_end, new_end) = pair(SockType::Stream);
            let successor = Background::spawn("bad successor", {
                let how = how.to_string();
                move || {
                    if !how.starts_with("never") {
                        sockbook::kit::wait::wait_readable(&new_end, DEADLINE).unwrap_or_else(|e| {
                            panic!("a successor that {how}: hand_over sent nothing on the channel within {DEADLINE:?} (expected the listener's fd in SCM_RIGHTS): {e}")
                        });
                        let mut buf = [0u8; 64];
                        let mut control = vec![0u64; 64];
                        let mut iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: 64 };
                        // SAFETY: msghdr is plain old data; all-zero is a valid value.
                        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
                        msg.msg_iov = &mut iov;
                        msg.msg_iovlen = 1;
                        msg.msg_control = control.as_mut_ptr().cast();
                        msg.msg_controllen = 512;
                        // SAFETY: msg points at iov, buf and control, all alive across the call; controllen (512) is control's size in bytes.
                        let n = unsafe { libc::recvmsg(new_end.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
                        let err = std::io::Error::last_os_error();
                        assert!(
                            n > 0,
                            "a successor that {how}: the channel was readable, but recvmsg of hand_over's message returned {n} \
                             (0: hand_over closed the channel without sending; errno: {err}); expected a message with the listener's fd"
                        );
                        let mut got = Vec::new();
                        // SAFETY: recvmsg filled msg's control; the header is checked for null, and each fd in it is new and ours to own.
                        unsafe {
                            let c = libc::CMSG_FIRSTHDR(&msg);
                            if !c.is_null() {
                                let count = ((*c).cmsg_len as usize - libc::CMSG_LEN(0) as usize) / 4;
                                for i in 0..count {
                                    let fd = libc::CMSG_DATA(c).add(i * 4).cast::<RawFd>().read_unaligned();
                                    got.push(<OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd));
                                }
                            }
                        }
                        if how.starts_with("replies") {
                            socket::send(new_end.as_raw_fd(), b"NO\n", MsgFlags::empty()).unwrap();
                            return (Some(new_end), Vec::new());
                        }
                        if how.starts_with("keeps") {
                            // held until after hand_over has given up
                            return (Some(new_end), got);
                        }
                    }
                    (None, Vec::new())
                }
            });
            let result = hand_over(vec![tcp], old_end.as_fd(), Duration::from_secs(2));
            drop(successor.join_within(DEADLINE, "the bad successor"));
            let Err((back, e)) = result else {
                panic!("a successor that {how}: hand_over returned Ok, but nobody else holds the listener now");
            };
            assert_eq!(back.len(), 1, "a successor that {how}: hand_over should give back the 1 listener ({e})");
            assert_eq!(link(&back[0]), before, "a successor that {how}: the listener hand_over gives back should be the original socket (/proc/self/fd link), not a new one");
            let client = std::net::TcpStream::connect(("127.0.0.1", port));
            assert!(client.is_ok(), "a successor that {how}: after the failed hand-over, connect to port {port}: {client:?}");
            let conn = accept_within(&back[0], &format!("a successor that {how}: the listener hand_over gave back, a client connecting"));
            drop((client, conn, back));
            assert_eq!(open_sockets_on_port(port), 0, "after closing everything, no socket on port {port} is left open");
        }
    }
}

/// What the hammering client saw.
#[derive(Debug, Default)]
struct Tally {
    old: u64,
    new: u64,
    refused: Vec<String>,
    unanswered: Vec<String>,
}

graded! {
    /// A client hammering the port while the old server hands over to a
    /// new one: no connection refused, every request answered, by both.
    points = 4;
    secs = 40;
    fn hand_over_under_load_loses_nothing() {
        let (tcp, port) = tcp_listener();
        let control_name = abstract_name("ctl-load");
        let control = listen_abstract(&control_name, SockType::Stream);
        let (old_stop_r, _old_stop_w) = pipe();
        let old = Background::spawn("old server", move || serve_tcp(tcp, control, "old", old_stop_r.as_fd()));
        // The client's tally, and a condvar it signals after each request,
        // so the test waits on it instead of polling.
        let tally = Arc::new((std::sync::Mutex::new(Tally::default()), std::sync::Condvar::new()));
        let done = Arc::new(AtomicBool::new(false));
        let client = {
            let (tally, done) = (Arc::clone(&tally), Arc::clone(&done));
            Background::spawn("hammer", move || {
                let mut i = 0u64;
                while !done.load(Ordering::Relaxed) {
                    i += 1;
                    let req = format!("request {i}\n");
                    let mut s = match std::net::TcpStream::connect(("127.0.0.1", port)) {
                        Ok(s) => s,
                        Err(e) => {
                            tally.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).refused.push(format!("{req:?}: {e}"));
                            tally.1.notify_all();
                            continue;
                        }
                    };
                    s.set_read_timeout(Some(DEADLINE)).unwrap();
                    let mut reply = String::new();
                    let r = s.write_all(req.as_bytes()).and_then(|_| BufReader::new(&s).read_line(&mut reply));
                    // Not unwrap: a failed assertion in the test thread poisons the
                    // lock, and this thread's panic would only add noise.
                    let mut t = tally.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                    match (r, reply.strip_suffix(&req)) {
                        (Ok(_), Some("old ")) => t.old += 1,
                        (Ok(_), Some("new ")) => t.new += 1,
                        (r, _) => t.unanswered.push(format!("{req:?}: {r:?} reply {reply:?}")),
                    }
                    drop(t);
                    tally.1.notify_all();
                }
            })
        };
        let wait_for = |what: &str, cond: &dyn Fn(&Tally) -> bool| {
            let (lock, changed) = &*tally;
            let (t, waited) = changed
                .wait_timeout_while(lock.lock().unwrap(), Duration::from_secs(15), |t| !cond(t))
                .unwrap();
            assert!(!waited.timed_out(), "waited 15 s for {what}; tally {:?}", *t);
        };
        wait_for("50 answers from the old server", &|t| t.old >= 50);
        let (new_stop_r, new_stop_w) = pipe();
        let new = Background::spawn("new server", move || {
            let channel = socket::socket(AddressFamily::Unix, SockType::Stream, SockFlag::SOCK_CLOEXEC, None).unwrap();
            socket::connect(channel.as_raw_fd(), &UnixAddr::new_abstract(control_name.as_bytes()).unwrap()).unwrap();
            let mut fds = take_over(channel.as_fd(), 4)
                .unwrap_or_else(|e| panic!("the new server's take_over(max 4) from the old server's control socket failed: {e}"));
            assert_eq!(fds.len(), 2, "the old server (serve_tcp, via hand_over) hands over 2 listeners (tcp, control); take_over(max 4) returned {} fds", fds.len());
            let control = fds.pop().unwrap();
            let tcp = fds.pop().unwrap();
            serve_tcp(tcp, control, "new", new_stop_r.as_fd())
        });
        let old_outcome = old.join_within(Duration::from_secs(15), "the old server after the hand-over");
        let old_outcome = old_outcome.unwrap_or_else(|e| panic!("old serve_tcp: {e}"));
        assert!(old_outcome.handed_over, "the old server should report the hand-over: {old_outcome:?}");
        wait_for("50 answers from the new server", &|t| t.new >= 50);
        done.store(true, Ordering::Relaxed);
        client.join_within(DEADLINE, "the hammering client");
        drop(new_stop_w);
        let new_outcome = new
            .join_within(DEADLINE, "the new server after stop")
            .unwrap_or_else(|e| panic!("the new server's serve_tcp (on the sockets take_over received) returned an error after the stop: {e}"));
        let t = tally.0.lock().unwrap();
        assert!(
            t.refused.is_empty() && t.unanswered.is_empty(),
            "during the hand-over: {} answered by old, {} by new; refused {:?}; unanswered {:?}",
            t.old, t.new, t.refused, t.unanswered
        );
        assert_eq!(old_outcome.served + new_outcome.served, t.old + t.new,
            "requests served as counted by the servers (old {} + new {}) should equal the answers the client read (old {} + new {})",
            old_outcome.served, new_outcome.served, t.old, t.new);
        assert_eq!(open_sockets_on_port(port), 0, "port {port}: no socket left open after both servers are done");
    }
}

graded! {
    /// take_over refuses what it cannot hold whole: more listeners than
    /// room (MSG_CTRUNC), a socket that is not listening, a message without
    /// fds. It confirms none of them, so hand_over gets its sockets back.
    points = 2;
    fn take_over_rejects_what_it_cannot_hold() {
        // Three listeners, room for two.
        let three: Vec<(OwnedFd, u16)> = (0..3).map(|_| tcp_listener()).collect();
        let links: Vec<String> = three.iter().map(|(fd, _)| link(fd)).collect();
        let (old_end, new_end) = pair(SockType::Stream);
        let successor = Background::spawn("take_over(2)", move || take_over(new_end.as_fd(), 2).map(|v| v.len()));
        let handed = hand_over(three.into_iter().map(|(fd, _)| fd).collect(), old_end.as_fd(), Duration::from_secs(3));
        let taken = successor.join_within(DEADLINE, "take_over");
        assert!(taken.is_err(), "3 listeners sent, take_over(max 2): it must fail (MSG_CTRUNC: the third was closed in flight); it returned {taken:?}");
        let back = handed.err().map(|(back, _)| back.iter().map(link).collect::<Vec<_>>());
        assert_eq!(back, Some(links), "the successor failed: hand_over must return Err and give back all 3 listeners, the same sockets (left: what it gave back, None if it returned Ok)");

        // A connected socket is not a listener.
        let (listener, port) = tcp_listener();
        let stray = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let conn = accept_within(&listener, "test scaffolding: a TCP listener, a stray client connecting");
        let (old_end, new_end) = pair(SockType::Stream);
        let successor = Background::spawn("take_over", move || take_over(new_end.as_fd(), 2).map(|v| v.len()));
        let handed = hand_over(vec![conn], old_end.as_fd(), Duration::from_secs(3));
        let taken = successor.join_within(DEADLINE, "take_over");
        assert!(taken.is_err(), "take_over of a connected (not listening) TCP socket must fail (SO_ACCEPTCONN is 0); got {taken:?}");
        assert!(handed.is_err(), "take_over refused a connected (not listening) TCP socket: hand_over must then fail too and give it back; it returned Ok");
        drop((stray, listener));

        // A message without fds.
        let (old_end, new_end) = pair(SockType::Stream);
        socket::send(old_end.as_raw_fd(), b"LISTENERS\n", MsgFlags::empty()).unwrap();
        let taken = Background::spawn("take_over", move || take_over(new_end.as_fd(), 2).map(|v| v.len()))
            .join_within(DEADLINE, "take_over");
        assert!(taken.is_err(), "a LISTENERS message without fds: take_over must fail; got {taken:?}");
    }
}
