//! Plain (ungraded) checks of the `ch04_select` binary: the demo finishes
//! by itself, `--help`, the `server` subcommand on select and on poll, and
//! the `client` subcommand in batch mode.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::Duration;

use support::server_process::ServerProcess;
use support::{Background, DEADLINE, run_bin, std_addr};

const BIN: &str = env!("CARGO_BIN_EXE_ch04_select");

#[test]
fn demo_exits_zero_in_time() {
    support::run_demo(
        BIN,
        &[],
        Duration::from_secs(15),
        &[
            "FD_SETSIZE = ",
            "timeval now",
            "bob heard nothing",
            "output buffer full",
            "select cannot watch fd",
            "poll served carol",
            "identical: true",
        ],
    );
}

#[test]
fn help_lists_the_subcommands() {
    let run = run_bin(BIN, &["--help"], DEADLINE);
    assert!(run.status.success());
    for needle in ["server", "--poll", "client", "--addr"] {
        assert!(run.stdout.contains(needle), "--help lacks {needle}");
    }
    let bad = run_bin(BIN, &["serve"], DEADLINE);
    assert_eq!(
        bad.status.code(),
        Some(2),
        "an unknown subcommand is a usage error"
    );
}

/// Start `ch04_select` with `args` (a `server …` command line).
fn start(args: &[&str]) -> ServerProcess {
    ServerProcess::start(BIN, args, DEADLINE)
}

/// Its address as a `std` address, for `TcpStream` and the client.
fn addr(server: &ServerProcess) -> std::net::SocketAddr {
    std_addr(&server.addr)
}

/// SIGTERM; returns whether it exited 0 and what it printed after the
/// first line.
fn terminate(mut server: ServerProcess) -> (bool, String) {
    server.signal(libc::SIGTERM);
    let (status, lines) = server.wait_exit(DEADLINE);
    (status.success(), lines.join("\n"))
}

fn connect(addr: std::net::SocketAddr) -> (TcpStream, BufReader<TcpStream>) {
    let s = TcpStream::connect_timeout(&addr, DEADLINE).unwrap();
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    let r = BufReader::new(s.try_clone().unwrap());
    (s, r)
}

fn line(r: &mut BufReader<TcpStream>) -> String {
    let mut l = String::new();
    r.read_line(&mut l).unwrap();
    l
}

#[test]
fn server_subcommand_chats_and_stops_on_sigterm() {
    for args in [
        &["server", "--addr", "127.0.0.1:0"][..],
        &["server", "--poll", "--addr", "127.0.0.1:0"][..],
    ] {
        let server = start(args);
        let (mut a, mut ar) = connect(addr(&server));
        assert!(line(&mut ar).starts_with("* welcome "));
        let (b, mut br) = connect(addr(&server));
        assert!(line(&mut br).starts_with("* welcome "));
        a.write_all(b"hello over there\n").unwrap();
        let want = format!("{}: hello over there\n", a.local_addr().unwrap());
        assert_eq!(line(&mut br), want, "{args:?}");
        drop((a, b, ar, br));
        let (ok, log) = terminate(server);
        assert!(ok, "{args:?}: server did not exit 0 on SIGTERM:\n{log}");
        assert!(
            log.contains("stopped:"),
            "{args:?}: no closing line:\n{log}"
        );
    }
}

/// Run `client --addr A` with stdin from a file holding `input`; returns
/// its stdout.
fn client_batch(addr: std::net::SocketAddr, input: &[u8], name: &str) -> String {
    let path = std::env::temp_dir().join(format!("ch04-{name}-{}.txt", std::process::id()));
    std::fs::write(&path, input).unwrap();
    let stdin = std::fs::File::open(&path).unwrap();
    let mut child = Command::new(BIN)
        .args(["client", "--addr", &addr.to_string()])
        .stdin(Stdio::from(stdin))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let reader = Background::spawn("client stdout", move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let stdout = reader.join_within(DEADLINE, "client exit");
    let status = child.wait().unwrap();
    let _ = std::fs::remove_file(&path);
    assert!(status.success(), "client exit {status}");
    stdout
}

#[test]
fn client_batch_from_a_file_gets_every_reply() {
    let input: String = (0..5000).map(|i| format!("batch line {i}\n")).collect();
    // An echo peer that answers only after EOF: every reply comes after the
    // client's shutdown(SHUT_WR).
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let _peer = Background::spawn("echo", move || {
        let (mut s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(DEADLINE)).unwrap();
        let mut all = Vec::new();
        s.read_to_end(&mut all).unwrap();
        s.write_all(&all).unwrap();
    });
    assert_eq!(client_batch(addr, input.as_bytes(), "echo"), input);
}

#[test]
fn client_batch_through_the_chat_server() {
    let server = start(&["server", "--addr", "127.0.0.1:0"]);
    let (_l, mut lr) = connect(addr(&server));
    assert!(line(&mut lr).starts_with("* welcome "));
    let input: String = (0..500).map(|i| format!("from a file {i}\n")).collect();
    let out = client_batch(addr(&server), input.as_bytes(), "chat");
    // The client saw only its welcome (nobody else spoke), and the server
    // closed it after its EOF.
    assert!(out.starts_with("* welcome "), "{out:?}");
    assert_eq!(out.lines().count(), 1, "{out:?}");
    let prefix = out
        .trim()
        .strip_prefix("* welcome ")
        .and_then(|s| s.split(',').next())
        .unwrap()
        .to_string();
    for i in 0..500 {
        assert_eq!(line(&mut lr), format!("{prefix}: from a file {i}\n"));
    }
    let (ok, _) = terminate(server);
    assert!(ok);
}

#[test]
fn echo_mode_returns_each_clients_bytes_to_it() {
    for args in [
        &["server", "--echo", "--addr", "127.0.0.1:0"][..],
        &["server", "--echo", "--poll", "--addr", "127.0.0.1:0"][..],
    ] {
        let server = start(args);
        let (mut a, _) = connect(addr(&server));
        let (mut b, _) = connect(addr(&server));
        // Bytes without a newline, larger than one read: echo is unframed.
        let big: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        a.write_all(&big).unwrap();
        b.write_all(b"only mine").unwrap();
        let mut got = vec![0u8; big.len()];
        a.read_exact(&mut got).unwrap();
        assert!(got == big, "{args:?}: echo differs");
        let mut mine = [0u8; 9];
        b.read_exact(&mut mine).unwrap();
        assert_eq!(&mine, b"only mine", "{args:?}");
        let (ok, log) = terminate(server);
        assert!(ok, "{args:?}: server did not exit 0 on SIGTERM:\n{log}");
    }
}

/// Between readiness and accept, on Linux: a connection reset while queued
/// is still accepted and its first read fails with ECONNRESET; a rival
/// accepter leaves EAGAIN; EMFILE leaves the connection queued.
#[test]
fn accept_subcommand_shows_reset_rival_and_emfile() {
    support::run_demo(
        BIN,
        &["accept"],
        Duration::from_secs(15),
        &[
            "(no error: the reset connection was still in the queue)",
            "= -1 ECONNRESET",
            "= -1 EAGAIN",
            "= -1 EMFILE",
            "(the connection is still queued)",
            "(now it fits)",
        ],
    );
}

/// The kit's `accept` returns a connection the peer reset while it was
/// queued (Linux hands it over; `getpeername` on it would say ENOTCONN).
#[test]
fn kit_accept_survives_a_reset_in_the_queue() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("local_addr");
    let client = TcpStream::connect(addr).expect("connect");
    let fd = std::os::fd::OwnedFd::from(client);
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    nix::sys::socket::setsockopt(&fd, nix::sys::socket::sockopt::Linger, &linger)
        .expect("setsockopt(SO_LINGER)");
    drop(fd);
    sockbook::kit::wait::wait_readable(&listener, DEADLINE).expect("listener readable");
    let (conn, peer) = sockbook::kit::net::accept("test", &listener)
        .unwrap_or_else(|e| panic!("kit::net::accept on a reset, queued connection: {e}"));
    let mut buf = [0u8; 8];
    let got = nix::unistd::read(&conn, &mut buf);
    assert_eq!(
        got,
        Err(nix::errno::Errno::ECONNRESET),
        "first read on the accepted, reset connection from {peer}: expected ECONNRESET"
    );
}

/// signal(7) on this kernel: without SA_RESTART a signal ends a blocked
/// recv with EINTR; with it recv is restarted, unless the socket has
/// SO_RCVTIMEO; poll is never restarted.
#[test]
fn eintr_subcommand_shows_what_sa_restart_restarts() {
    let run = run_bin(BIN, &["eintr"], Duration::from_secs(15));
    assert!(
        run.status.success(),
        "eintr failed: {}\n{}",
        run.stderr,
        run.stdout
    );
    for (label, expect) in [
        ("no SA_RESTART, recv:", "recv() = -1 EINTR"),
        ("] SA_RESTART, recv:", "recv() = 1 "),
        (
            "] SA_RESTART, recv on a socket with SO_RCVTIMEO",
            "recv() = -1 EINTR",
        ),
        ("] SA_RESTART, poll(", "poll() = -1 EINTR"),
    ] {
        let line = run
            .stdout
            .lines()
            .find(|l| l.contains(label))
            .unwrap_or_else(|| panic!("no line for {label:?}:\n{}", run.stdout));
        assert!(
            line.contains(expect),
            "{label} expected {expect:?}, got: {line}"
        );
    }
}
