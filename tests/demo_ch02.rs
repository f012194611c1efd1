//! Plain (ungraded) tests of the `ch02_tcp` binary: the demo finishes by
//! itself, the servers print `listening on` first, serve an independent
//! `std::net` client and stop cleanly on SIGINT, and the client subcommand
//! half-closes at the end of its input.

#[allow(unused_macros)]
mod support;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener};
use std::process::{Command, Stdio};
use std::time::Duration;

use support::server_process::ServerProcess;
use support::{DEADLINE, run_bin, std_client};

const BIN: &str = env!("CARGO_BIN_EXE_ch02_tcp");

/// Start `ch02_tcp args...` and read its `listening on` line.
fn start(args: &[&str]) -> ServerProcess {
    ServerProcess::start(BIN, args, DEADLINE)
}

/// SIGINT, then a bounded wait for the exit: the status and the lines
/// printed after the interrupt.
fn interrupt(server: &mut ServerProcess) -> (std::process::ExitStatus, Vec<String>) {
    server.signal(libc::SIGINT);
    server.wait_exit(DEADLINE)
}

/// Any child, killed and reaped however the test ends.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn demo_runs_and_exits_zero() {
    let done = run_bin(BIN, &[], Duration::from_secs(15));
    assert!(done.status.success(), "demo failed: {}", done.stderr);
    for expected in [
        "socket(AF_INET, SOCK_STREAM",
        "bind(",
        "listen(",
        "accept4(",
        "connect(",
        "read(",
        "write(",
        "close(",
        "getsockname(",
        "getpeername(",
        "MSG_PEEK",
        "MSG_WAITALL",
        "MSG_DONTWAIT",
        "MSG_NOSIGNAL",
        "ECONNREFUSED",
        "EADDRINUSE",
        "(EOF)",
    ] {
        assert!(
            done.stdout.contains(expected),
            "demo output lacks {expected:?}"
        );
    }
}

#[test]
fn help_lists_the_subcommands() {
    let done = run_bin(BIN, &["--help"], DEADLINE);
    assert!(done.status.success());
    for sub in ["server", "client", "daytime-server", "daytime-client"] {
        assert!(done.stdout.contains(sub), "--help lacks {sub}");
    }
}

#[test]
fn echo_server_talks_to_a_std_client_and_stops_on_sigint() {
    let mut server = start(&["server", "--addr", "127.0.0.1:0"]);
    for message in [&b"hello\n"[..], b"\x00binary\xff", b"third client"] {
        let mut client = std_client(&server.addr);
        client.write_all(message).unwrap();
        client.shutdown(Shutdown::Write).unwrap();
        let mut back = Vec::new();
        client.read_to_end(&mut back).unwrap();
        assert_eq!(back, message);
    }
    let (status, rest) = interrupt(&mut server);
    assert!(
        status.success(),
        "Ctrl-C should stop the server cleanly: {status}"
    );
    assert!(
        rest.iter().any(|l| l.contains("stopped: connections 3")),
        "a summary after Ctrl-C: {rest:?}"
    );
}

#[test]
fn quiet_echo_server_prints_only_its_first_and_last_lines() {
    let mut server = start(&["server", "--addr", "127.0.0.1:0", "--quiet"]);
    let mut client = std_client(&server.addr);
    client.write_all(b"shh\n").unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    let mut back = Vec::new();
    client.read_to_end(&mut back).unwrap();
    assert_eq!(back, b"shh\n");
    let (status, rest) = interrupt(&mut server);
    assert!(status.success(), "{status}");
    assert_eq!(
        rest,
        ["# stopped: connections 1, bytes echoed 4, ended in an error 0"],
        "--quiet: nothing but the summary after `listening on`"
    );
}

#[test]
fn client_half_closes_and_prints_the_echo() {
    // An independent echo server: echo until EOF, then close.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = support::Background::spawn("std echo", move || {
        let (mut s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(DEADLINE)).unwrap();
        let mut buf = [0u8; 1024];
        loop {
            let n = s.read(&mut buf).unwrap();
            if n == 0 {
                break; // the client's shutdown(SHUT_WR)
            }
            s.write_all(&buf[..n]).unwrap();
        }
    });
    let mut child = KillOnDrop(
        Command::new(BIN)
            .args(["client", "--addr", &addr.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let input = b"one line\nanother line\n";
    child.0.stdin.take().unwrap().write_all(input).unwrap(); // then closed: EOF
    let mut out = child.0.stdout.take().unwrap();
    let reader = support::Background::spawn("client stdout", move || {
        let mut s = Vec::new();
        let _ = out.read_to_end(&mut s);
        s
    });
    // On a timeout this panics, and the guard kills the child.
    let got = reader.join_within(DEADLINE, "the client's output up to EOF");
    let status = child.0.wait().unwrap();
    server.join_within(DEADLINE, "std echo server");
    assert!(status.success());
    assert_eq!(got, input);
}

#[test]
fn daytime_pair_answers_one_line() {
    let mut server = start(&["daytime-server", "--addr", "127.0.0.1:0"]);
    let addr = support::std_addr(&server.addr);
    // An independent client first: one line, CRLF, then EOF.
    let mut raw = std_client(&server.addr);
    let mut text = String::new();
    raw.read_to_string(&mut text).unwrap();
    assert!(text.ends_with("-UTC\r\n"), "RFC 867 line: {text:?}");
    assert_eq!(text.matches('\n').count(), 1);
    // Then our own client.
    let done = run_bin(
        BIN,
        &["daytime-client", "--addr", &addr.to_string()],
        DEADLINE,
    );
    assert!(done.status.success(), "{}", done.stderr);
    assert!(done.stdout.contains("-UTC"), "{}", done.stdout);
    let (status, _) = interrupt(&mut server);
    assert!(status.success(), "{status}");
}
