//! The narrated demo: every part of the chapter, on this machine, in a few
//! seconds. Each part is also a subcommand (`ch10_unix kinds`, …).

use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::socket::{self, AddressFamily, MsgFlags, SockFlag, SockType, socketpair};

use super::addr::{self, Name, TempDir};
use super::cred::{self, Peer};
use super::fds::{self, recv_fds, send_fds};
use super::measure;
use super::message::{self, ServeConfig};
use crate::kit::narrate::{heading, note};
use crate::kit::{Call, Error, Result, wait};
use crate::say;

/// The uid a demo drops to when it needs "another user": `nobody`.
pub const OTHER_UID: u32 = 65534;

/// Every part, in the chapter's order.
pub fn run() -> Result<()> {
    println!("ch10_unix: Unix domain sockets, credentials and passing descriptors");
    kinds()?;
    addresses()?;
    filesystem()?;
    abstract_names()?;
    credentials()?;
    passing_fds()?;
    seqpacket_server()?;
    handover()?;
    dgram_queue()?;
    speed()?;
    note("done");
    Ok(())
}

fn pair(ty: SockType) -> Result<(OwnedFd, OwnedFd)> {
    let p = socketpair(AddressFamily::Unix, ty, None, SockFlag::SOCK_CLOEXEC)
        .call(format!("socketpair(AF_UNIX, {})", addr::type_name(ty)))?;
    say!(
        "",
        "socketpair(AF_UNIX, {}, 0, [{}, {}]) = 0",
        addr::type_name(ty),
        p.0.as_raw_fd(),
        p.1.as_raw_fd()
    );
    Ok(p)
}

fn send_all(fd: &OwnedFd, msgs: &[&[u8]]) -> Result<()> {
    for m in msgs {
        socket::send(fd.as_raw_fd(), m, MsgFlags::MSG_NOSIGNAL).call("send")?;
    }
    Ok(())
}

/// recvmsg into `cap` bytes: the bytes, and whether MSG_TRUNC came back.
fn recv_flags(fd: &OwnedFd, cap: usize, flags: MsgFlags) -> Result<(Vec<u8>, usize, bool)> {
    let mut buf = vec![0u8; cap];
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let msg = socket::recvmsg::<()>(
        fd.as_raw_fd(),
        &mut iov,
        None,
        flags | MsgFlags::MSG_DONTWAIT,
    )
    .call("recvmsg")?;
    let (n, trunc) = (msg.bytes, msg.flags.contains(MsgFlags::MSG_TRUNC));
    Ok((buf[..n.min(cap)].to_vec(), n, trunc))
}

/// Part 1: the three types, boundaries, MSG_TRUNC.
pub fn kinds() -> Result<()> {
    heading("1. AF_UNIX with SOCK_STREAM, SOCK_DGRAM and SOCK_SEQPACKET");
    for ty in [SockType::Stream, SockType::Datagram, SockType::SeqPacket] {
        let (a, b) = pair(ty)?;
        send_all(&a, &[b"ab", b"cd", b"ef"])?;
        say!(
            "",
            "send({0}, \"ab\"); send({0}, \"cd\"); send({0}, \"ef\")",
            a.as_raw_fd()
        );
        let (got, _, _) = recv_flags(&b, 100, MsgFlags::empty())?;
        say!(
            "",
            "recv({}, 100) = {} {:?}",
            b.as_raw_fd(),
            got.len(),
            String::from_utf8_lossy(&got)
        );
    }
    note(
        "a stream is bytes: one recv took all three sends; SOCK_DGRAM and SOCK_SEQPACKET keep each send a message",
    );
    let (a, b) = pair(SockType::SeqPacket)?;
    send_all(&a, &[b"0123456789", b"next"])?;
    let (got, n, trunc) = recv_flags(&b, 4, MsgFlags::empty())?;
    say!(
        "",
        "recvmsg({}, 4-byte buffer) = {n} {:?} msg_flags has MSG_TRUNC: {trunc}",
        b.as_raw_fd(),
        String::from_utf8_lossy(&got)
    );
    let (got, n, _) = recv_flags(&b, 4, MsgFlags::empty())?;
    say!(
        "",
        "recvmsg({}, 4-byte buffer) = {n} {:?}",
        b.as_raw_fd(),
        String::from_utf8_lossy(&got)
    );
    note(
        "a message that does not fit is cut, the rest of it discarded: the next recv starts the next message",
    );
    send_all(&a, &[b"0123456789"])?;
    let (_, n, _) = recv_flags(&b, 4, MsgFlags::MSG_TRUNC)?;
    say!(
        "",
        "recv({}, 4-byte buffer, MSG_TRUNC) = {n}: with the flag, recv returns the message's real length",
        b.as_raw_fd()
    );
    Ok(())
}

/// Part 2: sockaddr_un and its length rules.
pub fn addresses() -> Result<()> {
    heading("2. sockaddr_un: pathname, unnamed, abstract");
    // SAFETY: sockaddr_un is plain old data.
    let sun: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    note(format_args!(
        "sizeof(struct sockaddr_un) = {}: sun_family at 0 (2 bytes), sun_path at {} ({} bytes)",
        std::mem::size_of::<libc::sockaddr_un>(),
        addr::SUN_PATH_OFFSET,
        sun.sun_path.len()
    ));
    let dir = TempDir::new("addr")?;
    let path = dir.join("s");
    let l = addr::unix_listen("", SockType::Stream, &Name::Path(path.clone()), 4)?;
    show_name("pathname", &l)?;
    let (a, _b) = socketpair(
        AddressFamily::Unix,
        SockType::Stream,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .call("socketpair")?;
    show_name("socketpair end", &a)?;
    let name = Name::unique_abstract("addr");
    let ab = addr::unix_listen("", SockType::Stream, &name, 4)?;
    show_name("abstract", &ab)?;
    let c = addr::unix_connect("", SockType::Stream, &Name::Path(path.clone()))?;
    show_name("a client that never bound", &c)?;
    note(
        "a client that does not bind stays unnamed; its server sees the same (accept and getpeername give length 2)",
    );
    let long = "x".repeat(sun.sun_path.len());
    match nix::sys::socket::UnixAddr::new(long.as_str()) {
        Ok(_) => note("a 108-byte path was accepted"),
        Err(e) => say!(
            "",
            "nix's UnixAddr::new of a {}-byte path: {e:?}: it keeps room for the NUL (the kernel itself would take 108 bytes without one; portable code does not count on it)",
            long.len()
        ),
    }
    drop((l, ab, c));
    Ok(())
}

fn show_name(what: &str, fd: &OwnedFd) -> Result<()> {
    let n = addr::raw_name(fd, false)?;
    say!(
        "",
        "getsockname({}) -> addrlen {} sun_path {:?}  ({what}; {})",
        fd.as_raw_fd(),
        n.len,
        String::from_utf8_lossy(&n.path).replace('\0', "\\0"),
        addr::kind_of(&n)
    );
    Ok(())
}

/// Run this binary's hidden `helper` subcommand as uid/gid `OTHER_UID`.
/// `None` when we are not root (only root may switch uid).
pub fn as_other_uid(args: &[&str]) -> Result<Option<String>> {
    if cred::my_uid() != 0 {
        return Ok(None);
    }
    let exe = std::env::current_exe().map_err(|e| Error::msg(format!("current_exe: {e}")))?;
    let out = Command::new(exe)
        .arg("helper")
        .args(args)
        .uid(OTHER_UID)
        .gid(OTHER_UID)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| Error::msg(format!("spawn helper as uid {OTHER_UID}: {e}")))?;
    Ok(Some(
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
    ))
}

/// Part 3: filesystem names: permissions and stale sockets.
pub fn filesystem() -> Result<()> {
    heading("3. Filesystem names: permissions decide who may connect; stale sockets");
    let dir = TempDir::new("fs")?;
    let path = dir.join("server.sock");
    let name = Name::Path(path.clone());
    let l = addr::unix_listen("server", SockType::Stream, &name, 4)?;
    let meta = std::fs::symlink_metadata(&path).map_err(|e| Error::msg(e.to_string()))?;
    note(format_args!(
        "{} is a socket file: {} mode {:o} (0777 minus the umask)",
        path.display(),
        meta.file_type().is_socket(),
        meta.permissions().mode() & 0o777
    ));
    let chmod = |p: &std::path::Path, mode: u32| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
            .map_err(|e| Error::msg(format!("chmod {}: {e}", p.display())))
    };
    chmod(dir.path(), 0o711)?;
    let p = path.to_string_lossy().into_owned();
    for mode in [0o600, 0o666] {
        chmod(&path, mode)?;
        match as_other_uid(&["connect", &p])? {
            Some(result) => say!(
                "nobody",
                "chmod {mode:o}: connect({p}) as uid {OTHER_UID}: {result}"
            ),
            None => note(format_args!(
                "(not root: cannot start a process of another uid; try `sudo -u nobody socat - UNIX-CONNECT:PATH` yourself)"
            )),
        }
    }
    note(
        "connect needs write permission on the socket file (and search permission on its directories); root ignores both",
    );
    drop(l);
    say!(
        "server",
        "close(listener): the file stays: {}",
        path.exists()
    );
    match addr::unix_connect("client", SockType::Stream, &name) {
        Err(e) => say!("client", "{e}: a stale socket, nobody listens"),
        Ok(_) => note("connected?!"),
    }
    let fd = addr::unix_socket("server", SockType::Stream)?;
    if let Err(e) = addr::unix_bind("server", &fd, &name) {
        say!("server", "{e}: bind will not replace a file");
    }
    drop(fd);
    let fd = addr::bind_path_replacing_stale("server", SockType::Stream, &path)?;
    note(
        "the fix: at startup, connect first; ECONNREFUSED means stale: unlink it, then bind. On a clean exit, unlink it yourself",
    );
    drop(fd);
    std::fs::remove_file(&path).map_err(|e| Error::msg(e.to_string()))?;
    say!("server", "unlink({}) = 0", path.display());
    Ok(())
}

/// Part 4: the abstract namespace.
pub fn abstract_names() -> Result<()> {
    heading("4. The abstract namespace: no file, scoped to the network namespace");
    let name = Name::unique_abstract("abstract");
    let l = addr::unix_listen("server", SockType::Stream, &name, 4)?;
    let inode = std::fs::read_link(format!("/proc/self/fd/{}", l.as_raw_fd()))
        .map(|t| t.to_string_lossy().into_owned())
        .unwrap_or_default();
    let text = std::fs::read_to_string("/proc/net/unix").unwrap_or_default();
    let shown = name.to_string();
    if let Some(line) = text.lines().find(|line| line.ends_with(&shown)) {
        say!(
            "",
            "/proc/net/unix: {}",
            line.split_whitespace().collect::<Vec<_>>().join(" ")
        );
    }
    note(format_args!(
        "{inode}: listed with a leading @, and no file anywhere to unlink; it vanishes with its last fd"
    ));
    let Name::Abstract(bytes) = &name else {
        unreachable!()
    };
    let printable = String::from_utf8_lossy(bytes).into_owned();
    let exe = std::env::current_exe().map_err(|e| Error::msg(e.to_string()))?;
    let out = Command::new(exe)
        .args(["helper", "netns-connect", &printable])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| Error::msg(e.to_string()))?;
    say!(
        "other netns",
        "{}",
        String::from_utf8_lossy(&out.stdout).trim()
    );
    let c = addr::unix_connect("client", SockType::Stream, &name)?;
    note(
        "same name, other network namespace: not found. Anyone in this namespace may connect: check who with SO_PEERCRED",
    );
    drop((c, l));
    Ok(())
}

/// Part 5: SO_PEERCRED, SO_PEERPIDFD, SCM_CREDENTIALS.
pub fn credentials() -> Result<()> {
    heading("5. Who is the peer: SO_PEERCRED, SO_PEERPIDFD, SCM_CREDENTIALS");
    let name = Name::unique_abstract("cred");
    let l = addr::unix_listen("server", SockType::SeqPacket, &name, 4)?;
    let c = addr::unix_connect("client", SockType::SeqPacket, &name)?;
    let (s, _) = crate::kit::net::accept("server", &l)?;
    let p = cred::peer_cred(&s)?;
    say!(
        "server",
        "getsockopt({}, SOL_SOCKET, SO_PEERCRED) = {{pid={}, uid={}, gid={}}} (we are pid {})",
        s.as_raw_fd(),
        p.pid,
        p.uid,
        p.gid,
        std::process::id()
    );
    let raw = cred::peer_cred_raw(&c)?;
    say!(
        "client",
        "getsockopt({}, SO_PEERCRED) the raw libc way = {raw}: works both ways",
        c.as_raw_fd()
    );
    match cred::peer_pidfd(&s)? {
        Some(pidfd) => say!(
            "server",
            "getsockopt({}, SO_PEERPIDFD) = {} (a pidfd; /proc/self/fdinfo says Pid: {})",
            s.as_raw_fd(),
            pidfd.as_raw_fd(),
            cred::pidfd_pid(&pidfd).unwrap_or(-1)
        ),
        None => say!(
            "server",
            "getsockopt(SO_PEERPIDFD): ENOPROTOOPT: this kernel is older than 6.5"
        ),
    }
    cred::set_passcred(&s, true)?;
    say!(
        "server",
        "setsockopt({}, SO_PASSCRED, 1) = 0",
        s.as_raw_fd()
    );
    socket::send(c.as_raw_fd(), b"plain", MsgFlags::MSG_NOSIGNAL).call("send")?;
    let mut buf = [0u8; 64];
    let (_, got) = cred::recv_with_credentials(&s, &mut buf)?;
    say!(
        "server",
        "recvmsg: a plain message arrives with SCM_CREDENTIALS {:?}: the kernel filled in the sender",
        got.map(|p| p.to_string())
    );
    let me = Peer {
        pid: std::process::id() as i32,
        uid: cred::my_uid(),
        gid: cred::my_gid(),
    };
    let claim = Peer {
        uid: OTHER_UID,
        gid: OTHER_UID,
        ..me
    };
    match cred::send_with_credentials(&c, b"claim", claim) {
        Ok(_) => {
            let (_, got) = cred::recv_with_credentials(&s, &mut buf)?;
            say!(
                "client",
                "sendmsg(SCM_CREDENTIALS {claim}) = ok; the server got {:?}: root (CAP_SETUID) may claim any uid",
                got.map(|p| p.to_string())
            );
        }
        Err(e) => say!("client", "{e}: not root, so it may claim only its own ids"),
    }
    let printable = match &name {
        Name::Abstract(b) => String::from_utf8_lossy(b).into_owned(),
        Name::Path(_) => unreachable!(),
    };
    if let Some(out) = as_other_uid(&["claim", &printable, "0"])? {
        say!("nobody", "{out}");
        let (t, _) = crate::kit::net::accept("server", &l)?;
        let p = cred::peer_cred(&t)?;
        say!(
            "server",
            "SO_PEERCRED of that connection: {p}: the kernel's word, whatever the message says"
        );
    }
    Ok(())
}

fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).call("pipe2")
}

/// Part 6: SCM_RIGHTS.
pub fn passing_fds() -> Result<()> {
    heading("6. Passing descriptors: SCM_RIGHTS");
    // SAFETY: CMSG_SPACE/CMSG_LEN are arithmetic.
    let (space1, len1) = unsafe { (libc::CMSG_SPACE(4), libc::CMSG_LEN(4)) };
    note(format_args!(
        "sizeof(struct cmsghdr) = {}; one fd needs CMSG_LEN(4) = {len1}, CMSG_SPACE(4) = {space1} bytes of control buffer, not sizeof(int) = 4",
        std::mem::size_of::<libc::cmsghdr>()
    ));
    let (a, b) = pair(SockType::Stream)?;
    let (r, w) = pipe()?;
    let n = send_fds(&a, b"here", &[w.as_fd()])?;
    say!(
        "sender",
        "sendmsg({}, \"here\", SCM_RIGHTS [{}]) = {n}",
        a.as_raw_fd(),
        w.as_raw_fd()
    );
    let mut buf = [0u8; 16];
    let got = recv_fds(&b, &mut buf, 4)?;
    let fd = &got.fds[0];
    say!(
        "receiver",
        "recvmsg({}, MSG_CMSG_CLOEXEC) = {} bytes + fds {:?}; {} is {} like {} ({} fds on that pipe now: read end, write end, the received copy)",
        b.as_raw_fd(),
        got.len,
        got.fds.iter().map(|f| f.as_raw_fd()).collect::<Vec<_>>(),
        fd.as_raw_fd(),
        fds::link_of(fd),
        w.as_raw_fd(),
        fds::copies_of(fd)
    );
    nix::unistd::write(fd, b"via the passed fd").call("write")?;
    let n = nix::unistd::read(&r, &mut [0u8; 64]).call("read")?;
    say!(
        "receiver",
        "write({}, 17 bytes); the pipe's read end got {n}: the same open file, a new number",
        fd.as_raw_fd()
    );
    say!(
        "receiver",
        "FD_CLOEXEC on the received fd: {} (MSG_CMSG_CLOEXEC)",
        fds::is_cloexec(fd)?
    );
    drop(got);

    // MSG_CTRUNC
    let pipes: Vec<(OwnedFd, OwnedFd)> = (0..5).map(|_| pipe()).collect::<Result<_>>()?;
    let ends: Vec<_> = pipes.iter().map(|(_, w)| w.as_fd()).collect();
    send_fds(&a, b"five", &ends)?;
    say!("sender", "sendmsg(SCM_RIGHTS, 5 pipe write ends)");
    let got = recv_fds(&b, &mut buf, 2)?;
    say!(
        "receiver",
        "recvmsg with room for 2 fds: got {} fds, MSG_CTRUNC = {}",
        got.fds.len(),
        got.fds_truncated
    );
    // Both ends of a pipe link to the same pipe:[inode]: subtract the read end.
    let counts: Vec<usize> = pipes.iter().map(|(_, w)| fds::copies_of(w) - 1).collect();
    say!(
        "receiver",
        "write ends open on each of the 5 pipes, from /proc/self/fd: {counts:?}"
    );
    note(
        "the 2 that fitted are here twice (sender's and receiver's copy); the kernel closed the other 3 in flight, never installed: nothing to leak, nothing to use",
    );
    drop(got);
    drop(pipes);

    let max = fds::probe_scm_max_fd()?;
    say!(
        "",
        "sendmsg with n copies of one fd, bisecting: {max} fds go, {} fail with EINVAL (SCM_MAX_FD)",
        max + 1
    );

    // In flight
    let (r, w) = pipe()?;
    send_fds(&a, b"x", &[w.as_fd()])?;
    drop(w);
    let eof_now = wait::wait_readable(&r, Duration::from_millis(50)).is_ok();
    say!(
        "sender",
        "sent the pipe's only write end and closed it: read end at EOF? {eof_now} (the fd is in flight, held by the message)"
    );
    drop(b);
    let eof = wait::wait_readable(&r, Duration::from_secs(2)).is_ok()
        && nix::unistd::read(&r, &mut [0u8; 4]) == Ok(0);
    say!(
        "receiver",
        "close the receiving socket without reading: read end at EOF now: {eof} (the queued message and its fd were freed)"
    );
    Ok(())
}

/// Part 7: the seqpacket message server.
pub fn seqpacket_server() -> Result<()> {
    heading("7. A message server on SOCK_SEQPACKET");
    let name = Name::unique_abstract("msg");
    let l = addr::unix_listen("server", SockType::SeqPacket, &name, 16)?;
    let (stop_r, stop_w) = pipe()?;
    let config = ServeConfig {
        kind: SockType::SeqPacket,
        ..ServeConfig::default()
    };
    let server = std::thread::spawn(move || {
        crate::kit::narrate::set_quiet(false);
        message::serve(l, stop_r.as_fd(), config)
    });
    let long = format!("ECHO {}", "y".repeat(5000));
    let reqs: Vec<String> = [
        "PING",
        "ECHO hello",
        "WHO",
        "CLAIM uid=1000 pid=1",
        "COUNT",
        "HELLO",
        &long,
        "PING",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let replies = message::run_client(SockType::SeqPacket, &name, &reqs, false)?;
    for (q, a) in reqs.iter().zip(&replies) {
        let q = if q.len() > 40 {
            format!("{}… ({} bytes)", &q[..12], q.len())
        } else {
            q.clone()
        };
        say!("client", "{q:<24} -> {a}");
    }
    drop(stop_w);
    let stats = server.join().map_err(|_| Error::msg("server panicked"))??;
    say!("server", "stopped: {stats:?}");
    Ok(())
}

/// Part 8: zero-downtime restart with real processes.
pub fn handover() -> Result<()> {
    heading("8. Zero-downtime restart: handing the listening socket to a new process");
    let dir = TempDir::new("handover")?;
    let control = dir.join("control.sock");
    let c = control.to_string_lossy().into_owned();
    let exe = std::env::current_exe().map_err(|e| Error::msg(e.to_string()))?;
    let spawn =
        |extra: &[&str]| -> Result<(std::process::Child, std::sync::mpsc::Receiver<String>)> {
            let mut child = Command::new(&exe)
                .args(["tcp-server", "--addr", "127.0.0.1:0", "--control", &c])
                .args(extra)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .map_err(|e| Error::msg(format!("spawn tcp-server: {e}")))?;
            let out = child.stdout.take().ok_or_else(|| Error::msg("no stdout"))?;
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                for line in BufReader::new(out)
                    .lines()
                    .map_while(std::result::Result::ok)
                {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
            Ok((child, rx))
        };
    let first_line = |rx: &std::sync::mpsc::Receiver<String>| -> Result<String> {
        rx.recv_timeout(Duration::from_secs(10))
            .map_err(|_| Error::msg("tcp-server printed nothing"))
    };
    let (mut old, old_out) = spawn(&[])?;
    let line = first_line(&old_out)?;
    let port_addr = line
        .strip_prefix("listening on ")
        .ok_or_else(|| Error::msg(format!("first line {line:?}")))?
        .to_string();
    say!("old", "pid {}: {line}", old.id());
    let target: std::net::SocketAddr = port_addr.parse().map_err(|_| Error::msg("bad address"))?;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = std::sync::Arc::clone(&stop);
    let hammer = std::thread::spawn(move || hammer(target, &stop2));
    std::thread::sleep(Duration::from_millis(150));
    let (mut new, new_out) = spawn(&["--take-over"])?;
    let line = first_line(&new_out)?;
    say!("new", "pid {}: {line}", new.id());
    let status = old.wait().map_err(|e| Error::msg(e.to_string()))?;
    for l in old_out.try_iter() {
        say!("old", "{l}");
    }
    say!("old", "exited: {status}");
    std::thread::sleep(Duration::from_millis(150));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let h = hammer.join().map_err(|_| Error::msg("hammer panicked"))?;
    // SAFETY: kill sends a signal to our own child.
    unsafe { libc::kill(new.id() as i32, libc::SIGTERM) };
    let status = new.wait().map_err(|e| Error::msg(e.to_string()))?;
    say!("new", "SIGTERM: exited {status}");
    say!(
        "client",
        "{} requests: {} answered by the old pid, {} by the new, {} refused, {} unanswered",
        h.sent,
        h.by_first,
        h.by_second,
        h.refused,
        h.unanswered
    );
    note(format_args!(
        "control socket left behind: {}",
        control.exists()
    ));
    Ok(())
}

/// What [`hammer`] saw.
#[derive(Debug, Default, Clone, Copy)]
pub struct Hammered {
    /// Requests attempted.
    pub sent: u64,
    /// Answered by the first server name seen.
    pub by_first: u64,
    /// Answered by any other.
    pub by_second: u64,
    /// `connect` refused.
    pub refused: u64,
    /// Connected, but no (or a wrong) answer.
    pub unanswered: u64,
}

/// Connect, send `req N`, read `NAME req N`, again and again until `stop`.
pub fn hammer(target: std::net::SocketAddr, stop: &std::sync::atomic::AtomicBool) -> Hammered {
    use std::io::Read;
    let mut h = Hammered::default();
    let mut first: Option<String> = None;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        h.sent += 1;
        let mut s = match std::net::TcpStream::connect_timeout(&target, Duration::from_secs(5)) {
            Ok(s) => s,
            Err(_) => {
                h.refused += 1;
                continue;
            }
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        let req = format!("req {}\n", h.sent);
        let mut reply = String::new();
        let ok = s.write_all(req.as_bytes()).is_ok() && s.read_to_string(&mut reply).is_ok();
        match reply
            .strip_suffix(req.as_str())
            .and_then(|r| r.strip_suffix(' '))
        {
            Some(name) if ok => {
                if first.get_or_insert_with(|| name.to_string()) == name {
                    h.by_first += 1;
                } else {
                    h.by_second += 1;
                }
            }
            _ => h.unanswered += 1,
        }
    }
    h
}

/// Part 9: datagram queue limits.
pub fn dgram_queue() -> Result<()> {
    heading("9. Unix datagram queue limits");
    let qlen = measure::max_dgram_qlen()?;
    note(format_args!(
        "net.unix.max_dgram_qlen = {qlen} (/proc/sys/net/unix/max_dgram_qlen)"
    ));
    let (rx, tx) = dgram_pair_quiet()?;
    let n = measure::fill(&tx, 16, 100_000)?;
    say!(
        "sender",
        "send(16 bytes, MSG_DONTWAIT) to a bound receiver that does not read: {n} sent, then EAGAIN"
    );
    let (a, _b) = socketpair(
        AddressFamily::Unix,
        SockType::Datagram,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .call("socketpair")?;
    let m = measure::fill(&a, 16, 100_000)?;
    say!(
        "sender",
        "the same on a socketpair (each end connected to the other): {m} sent before EAGAIN: the queue-length limit does not apply, the send buffer does"
    );
    let started = Instant::now();
    let blocked = std::thread::spawn(move || {
        let r = socket::send(tx.as_raw_fd(), b"blocking", MsgFlags::MSG_NOSIGNAL);
        (r, started.elapsed())
    });
    std::thread::sleep(Duration::from_millis(200));
    let mut buf = [0u8; 64];
    socket::recv(rx.as_raw_fd(), &mut buf, MsgFlags::empty()).call("recv")?;
    let read_at = started.elapsed();
    let (r, at) = blocked.join().map_err(|_| Error::msg("sender panicked"))?;
    say!(
        "sender",
        "a blocking send on the full queue returned {:?} after {} ms; the receiver read one datagram at {} ms",
        r.map_err(|e: Errno| e),
        at.as_millis(),
        read_at.as_millis()
    );
    note(
        "a full queue blocks the sender (or EAGAIN with MSG_DONTWAIT): nothing is dropped, unlike UDP",
    );
    Ok(())
}

fn dgram_pair_quiet() -> Result<(OwnedFd, OwnedFd)> {
    let q = crate::kit::narrate::is_quiet();
    crate::kit::narrate::set_quiet(true);
    let r = measure::dgram_pair_named();
    crate::kit::narrate::set_quiet(q);
    r
}

/// Part 10: Unix stream vs TCP loopback.
pub fn speed() -> Result<()> {
    heading("10. Local throughput and latency: Unix stream vs TCP over loopback");
    let (rounds, bytes) = (5000, 64 << 20);
    let u = measure::speed(true, rounds, bytes)?;
    let t = measure::speed(false, rounds, bytes)?;
    say!(
        "",
        "unix socketpair : round trip {:6.1} us, {:7.0} MiB/s",
        u.rtt_us,
        u.mib_per_s
    );
    say!(
        "",
        "tcp 127.0.0.1   : round trip {:6.1} us, {:7.0} MiB/s",
        t.rtt_us,
        t.mib_per_s
    );
    note(format_args!(
        "one run: Unix round trips {:.1}x as fast, throughput {:.1}x (no TCP/IP headers, checksums, acks or congestion control)",
        t.rtt_us / u.rtt_us,
        u.mib_per_s / t.mib_per_s
    ));
    Ok(())
}
