//! Plain (ungraded) checks that the chapter 6 binary runs: the demo and
//! its subcommands exit 0 in time, and the server/client pair works.

#[macro_use]
mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_ch06_close");

#[test]
fn demo_runs_every_part_and_exits_0() {
    let out = support::run_bin(BIN, &[], Duration::from_secs(60));
    assert!(out.status.success(), "stderr: {}", out.stderr);
    for word in [
        "1. The four-way close",
        "FIN_WAIT1",
        "FIN_WAIT2",
        "CLOSE_WAIT",
        "LAST_ACK",
        "TIME_WAIT",
        "EADDRINUSE",
        "Reset",
        "EPIPE",
        "SIGPIPE",
    ] {
        assert!(out.stdout.contains(word), "no {word:?} in:\n{}", out.stdout);
    }
}

#[test]
fn each_subcommand_exits_0() {
    for sub in ["fourway", "linger", "unread", "epipe", "sigpipe"] {
        let out = support::run_bin(BIN, &[sub], Duration::from_secs(20));
        assert!(out.status.success(), "{sub}: {}", out.stderr);
    }
    let help = support::run_bin(BIN, &["--help"], Duration::from_secs(10));
    assert!(help.status.success());
    for sub in [
        "fourway",
        "steps",
        "halfclose",
        "timewait",
        "linger",
        "server",
        "client",
    ] {
        assert!(help.stdout.contains(sub), "--help does not list {sub}");
    }
}

#[test]
fn server_and_client_talk_and_server_stops_on_sigint() {
    let mut server = Command::new(BIN)
        .args(["server", "--addr", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = server.stdout.take().unwrap();
    let first = support::Background::spawn("first line", move || {
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        (line, reader)
    });
    let (line, reader) = first.join_within(Duration::from_secs(10), "listening line");
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("first line was {line:?}"))
        .to_string();
    let out = support::run_bin(BIN, &["client", "--addr", &addr], Duration::from_secs(10));
    assert!(out.status.success(), "client: {}", out.stderr);
    assert!(
        out.stdout.contains("bye: 0 bytes"),
        "client got: {}",
        out.stdout
    );
    // SAFETY: kill sends a signal to our own child, by its pid.
    unsafe { libc::kill(server.id() as i32, libc::SIGINT) };
    let rest = support::Background::spawn("rest", move || {
        let mut reader = reader;
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut reader, &mut s);
        s
    });
    rest.join_within(Duration::from_secs(10), "server exit");
    let status = server.wait().unwrap();
    assert!(status.success(), "server exit status {status}");
}
