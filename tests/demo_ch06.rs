//! Plain (ungraded) checks that the chapter 6 binary runs: the demo and
//! its subcommands exit 0 in time, and the server/client pair works.

#[macro_use]
mod support;

use std::time::Duration;

use support::server_process::ServerProcess;

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
fn demo_captures_the_fins_in_a_private_namespace() {
    if let Some(why) = support::netns_refused() {
        return support::skip(why);
    }
    let out = support::run_bin(BIN, &["fourway", "--netns"], Duration::from_secs(30));
    assert!(
        out.status.success(),
        "ch06_close fourway --netns: {}",
        out.stderr
    );
    assert!(
        out.stdout
            .contains("packet capture: AF_PACKET on the lo of a private user+network namespace"),
        "--netns: the capture did not say it runs in the private namespace:\n{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("# packets:") && out.stdout.contains("FIN+ACK"),
        "--netns: capture on, but no FIN in the packets shown:\n{}",
        out.stdout
    );
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
    let mut server = ServerProcess::start(
        BIN,
        &["server", "--addr", "127.0.0.1:0"],
        Duration::from_secs(10),
    );
    let addr = support::std_addr(&server.addr).to_string();
    let out = support::run_bin(BIN, &["client", "--addr", &addr], Duration::from_secs(10));
    assert!(out.status.success(), "client: {}", out.stderr);
    assert!(
        out.stdout.contains("bye: 0 bytes"),
        "client got: {}",
        out.stdout
    );
    server.signal(libc::SIGINT);
    let (status, _) = server.wait_exit(Duration::from_secs(10));
    assert!(status.success(), "server exit status {status}");
}
