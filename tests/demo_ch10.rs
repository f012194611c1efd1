//! Plain (ungraded) checks of the `ch10_unix` binary: the demo finishes by
//! itself; `server` works with our `client` and with `socat`, replaces a
//! stale socket file but not a live one, survives hostile peers, and leaves
//! no file behind; `tcp-server` hands its port over between processes.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::Duration;

use sockbook::ch10_unix::TempDir;
use support::server_process::ServerProcess;
use support::{DEADLINE, run_bin};

const BIN: &str = env!("CARGO_BIN_EXE_ch10_unix");

#[test]
fn demo_exits_zero_in_time_and_leaves_no_file() {
    // The demo makes its socket files under TMPDIR: point it at a fresh
    // directory and check that directory is empty afterwards.
    let tmp = TempDir::new("demo-run").unwrap();
    let out = Command::new(BIN)
        .env("TMPDIR", tmp.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let run = support::Background::spawn("demo", move || out.wait_with_output().unwrap())
        .join_within(Duration::from_secs(30), "the demo");
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "demo failed: {stderr}\n{stdout}");
    for needle in [
        "msg_flags has MSG_TRUNC: true",
        "addrlen 2 ",
        "(abstract; abstract",
        "a stale socket, nobody listens",
        "SO_PEERCRED) = {pid=",
        "got 2 fds, MSG_CTRUNC = true",
        "fail with EINVAL (SCM_MAX_FD)",
        "read end at EOF now: true",
        "ERR too long: 5005 bytes",
        " 0 refused, 0 unanswered",
        "control socket left behind: false",
        "max_dgram_qlen = ",
        "round trip",
    ] {
        assert!(
            stdout.contains(needle),
            "demo output lacks {needle:?}:\n{stdout}"
        );
    }
    assert!(
        is_empty(tmp.path()),
        "the demo left files in its TMPDIR: {:?}",
        std::fs::read_dir(tmp.path()).unwrap().collect::<Vec<_>>()
    );
}

#[test]
fn help_lists_the_subcommands() {
    let run = run_bin(BIN, &["--help"], DEADLINE);
    assert!(run.status.success());
    for needle in [
        "server",
        "client",
        "tcp-server",
        "--seqpacket",
        "--abstract",
        "socat",
    ] {
        assert!(run.stdout.contains(needle), "--help lacks {needle}");
    }
    assert_eq!(
        run_bin(BIN, &["serve"], DEADLINE).status.code(),
        Some(2),
        "unknown subcommand"
    );
}

/// `ch10_unix server ARGS`, its stdout lines on a channel.
struct Server {
    child: Child,
    lines: Receiver<String>,
}

impl Server {
    fn start(args: &[&str]) -> (Server, String) {
        let mut child = Command::new(BIN)
            .arg("server")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        let first = lines.recv_timeout(DEADLINE).expect("a first line");
        (Server { child, lines }, first)
    }

    fn stop(mut self) -> (bool, Vec<String>) {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let mut rest = Vec::new();
        while let Ok(l) = self.lines.recv_timeout(DEADLINE) {
            rest.push(l);
        }
        let ok = self.child.wait().unwrap().success();
        (ok, rest)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn client(args: &[&str]) -> String {
    let mut a = vec!["client"];
    a.extend_from_slice(args);
    let run = run_bin(BIN, &a, DEADLINE);
    assert!(run.status.success(), "client {args:?}: {}", run.stderr);
    run.stdout
}

fn connect(path: &Path) -> UnixStream {
    let s = UnixStream::connect(path).unwrap();
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    s
}

fn ask(s: &mut UnixStream, line: &str) -> String {
    s.write_all(format!("{line}\n").as_bytes()).unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut reply = String::new();
    r.read_line(&mut reply).unwrap();
    reply.trim_end().to_string()
}

fn is_empty(dir: &Path) -> bool {
    std::fs::read_dir(dir).unwrap().next().is_none()
}

#[test]
fn stream_server_serves_client_and_leaves_no_file() {
    let dir = TempDir::new("demo-test").unwrap();
    let path = dir.join("s.sock");
    let p = path.to_str().unwrap();
    let (server, first) = Server::start(&["--path", p]);
    assert_eq!(first, format!("listening on {p}"));
    let out = client(&["--path", p, "PING", "ECHO hi there", "WHO", "COUNT"]);
    let who = format!("uid={} ", unsafe { libc::geteuid() });
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[..2], ["PONG", "hi there"], "{out}");
    assert!(lines[2].starts_with(&who), "{out}");
    assert_eq!(lines[3], "3");
    // A second server on the same live path refuses to start.
    let second = run_bin(BIN, &["server", "--path", p], DEADLINE);
    assert!(
        !second.status.success() && second.stderr.contains("another server"),
        "{second:?}"
    );
    let (ok, _) = server.stop();
    assert!(ok, "server exits 0 on SIGTERM");
    assert!(is_empty(dir.path()), "the server removed its socket file");
}

#[test]
fn stale_socket_file_is_replaced() {
    let dir = TempDir::new("demo-stale").unwrap();
    let path = dir.join("s.sock");
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap()); // leaves the file
    assert!(path.exists());
    let (server, first) = Server::start(&["--path", path.to_str().unwrap()]);
    assert!(first.starts_with("listening on"), "{first}");
    assert_eq!(ask(&mut connect(&path), "PING"), "PONG");
    assert!(server.stop().0);
    assert!(is_empty(dir.path()));
}

#[test]
fn seqpacket_server_with_our_client() {
    let dir = TempDir::new("demo-seq").unwrap();
    let path = dir.join("q.sock");
    let p = path.to_str().unwrap();
    let (server, _) = Server::start(&["--path", p, "--seqpacket"]);
    let out = client(&["--path", p, "--seqpacket", "PING", "CLAIM uid=0 pid=1"]);
    assert!(out.starts_with("PONG\nlie: the kernel says"), "{out}");
    assert!(server.stop().0);
    assert!(is_empty(dir.path()));
}

/// A child process killed (and reaped) when dropped, also when a test fails.
struct KillOnDrop(Child);
impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Is `path` a listening Unix socket? `/proc/net/unix` (see unix(7)) lists
/// every Unix socket of the namespace; a listener's Flags column has
/// `__SO_ACCEPTCON` (0x10000) set, from the moment `listen(2)` returns.
fn unix_listening(path: &str) -> bool {
    std::fs::read_to_string("/proc/net/unix")
        .unwrap_or_default()
        .lines()
        .any(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            cols.len() >= 8
                && cols[7] == path
                && u32::from_str_radix(cols[3], 16).is_ok_and(|flags| flags & 0x10000 != 0)
        })
}

#[test]
fn socat_is_a_peer() {
    if Command::new("socat").arg("-V").output().is_err() {
        eprintln!("socat is not installed: skipping");
        return;
    }
    let dir = TempDir::new("demo-socat").unwrap();
    let path = dir.join("s.sock");
    let p = path.to_str().unwrap();
    let (server, _) = Server::start(&["--path", p]);
    let mut socat = Command::new("socat")
        .args(["-t", "2", "-", &format!("UNIX-CONNECT:{p}")])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    socat
        .stdin
        .take()
        .unwrap()
        .write_all(b"PING\nECHO via socat\n")
        .unwrap();
    let mut out = String::new();
    socat
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    let _ = socat.wait();
    assert_eq!(out, "PONG\nvia socat\n");
    // And our client against socat as the server.
    let path2 = dir.join("socat.sock");
    let p2 = path2.to_str().unwrap().to_string();
    // socat's stdout is not ours: a socat left behind by a failing test
    // must not hold the test binary's output open.
    let mut listener = KillOnDrop(
        Command::new("socat")
            .args([&format!("UNIX-LISTEN:{p2}"), "SYSTEM:echo hello from socat"])
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    // The file appears at bind(), before listen(): a connect in between is
    // refused. Wait until the kernel lists the socket as listening.
    assert!(
        support::server_process::eventually(DEADLINE, || unix_listening(&p2)),
        "socat did not listen on {p2} within {DEADLINE:?} (not in /proc/net/unix with __SO_ACCEPTCON)"
    );
    let out = client(&["--path", &p2]);
    assert_eq!(out.trim(), "hello from socat");
    let _ = listener.0.wait();
    assert!(server.stop().0);
    let _ = std::fs::remove_file(&path2);
    assert!(is_empty(dir.path()));
}

#[test]
fn stream_server_survives_hostile_peers() {
    let dir = TempDir::new("demo-hostile").unwrap();
    let path = dir.join("h.sock");
    let (server, _) = Server::start(&["--path", path.to_str().unwrap()]);
    // Garbage, then a normal request on the same connection.
    let mut g = connect(&path);
    assert_eq!(
        ask(&mut g, "\u{1}\u{2}\u{ff}garbage"),
        "ERR unknown request"
    );
    assert_eq!(ask(&mut g, "PING"), "PONG");
    // An endless line: cut off with ERR too long.
    let mut long = connect(&path);
    let _ = long.write_all(&vec![b'x'; 100_000]);
    let mut reply = String::new();
    let _ = BufReader::new(&long).read_line(&mut reply);
    assert!(reply.starts_with("ERR too long"), "{reply:?}");
    // A staller, a client that resets (closes with unread data), a flood
    // that never reads: none of them stops anyone else.
    let _staller = connect(&path);
    {
        let mut r = connect(&path);
        r.write_all(b"PING\nPING\nPING\n").unwrap();
    }
    let mut flood = connect(&path);
    flood.set_nonblocking(true).unwrap();
    for _ in 0..2000 {
        if flood.write_all(&b"PING\n".repeat(100)).is_err() {
            break;
        }
    }
    // Many connections at once.
    let many: Vec<UnixStream> = (0..50).map(|_| connect(&path)).collect();
    assert_eq!(
        ask(&mut connect(&path), "PING"),
        "PONG",
        "a fresh client is served beside them"
    );
    drop((many, flood));
    assert!(server.stop().0, "the server stops cleanly after all that");
    assert!(is_empty(dir.path()));
}

#[test]
fn tcp_server_hands_over_between_processes() {
    let dir = TempDir::new("demo-tcp").unwrap();
    let control = dir.join("control.sock");
    let c = control.to_str().unwrap();
    let mut old = ServerProcess::start(
        BIN,
        &["tcp-server", "--addr", "127.0.0.1:0", "--control", c],
        DEADLINE,
    );
    let ask_tcp = |port: u16| {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(DEADLINE)).unwrap();
        s.write_all(b"hi\n").unwrap();
        let mut r = String::new();
        s.read_to_string(&mut r).unwrap();
        r
    };
    assert_eq!(ask_tcp(old.port), format!("pid {} hi\n", old.pid));
    let mut new = ServerProcess::start(
        BIN,
        &["tcp-server", "--control", c, "--take-over"],
        DEADLINE,
    );
    assert_eq!(new.port, old.port, "the successor listens on the same port");
    let (status, _) = old.wait_exit(DEADLINE);
    assert!(status.success());
    assert_eq!(ask_tcp(new.port), format!("pid {} hi\n", new.pid));
    new.signal(libc::SIGTERM);
    let (status, _) = new.wait_exit(DEADLINE);
    assert!(status.success());
    assert!(
        is_empty(dir.path()),
        "the last server removed the control socket"
    );
}
