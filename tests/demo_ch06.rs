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

/// After an RST on an ESTABLISHED connection: the first send returns
/// ECONNRESET without a signal, the later ones EPIPE with SIGPIPE; and the
/// reader's own read gets ECONNRESET once, then 0.
#[test]
fn send_and_read_after_rst_report_what_the_kernel_does() {
    support::run_demo(
        BIN,
        &["rst-send"],
        Duration::from_secs(20),
        &[
            "= -1 ECONNRESET (Connection reset by peer)   (send #1; no signal)",
            "= -1 EPIPE (Broken pipe)   (send #2; SIGPIPE)",
        ],
    );
    let out = support::run_bin(BIN, &["linger"], Duration::from_secs(20));
    assert!(out.status.success(), "linger: {}", out.stderr);
    assert!(
        out.stdout.contains("read(5, 64) = -1 ECONNRESET")
            || out.stdout.contains("= -1 ECONNRESET"),
        "the reader's read should print ECONNRESET:\n{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("= 0   (reported once; after that, end of file)"),
        "the second read should return 0:\n{}",
        out.stdout
    );
}

/// The peer vanishes (a router on the path discards everything, silently):
/// a reader hears nothing; TCP_USER_TIMEOUT fails a write with ETIMEDOUT
/// in seconds; keepalive fails a blocked read with ETIMEDOUT. Skipped
/// where no private namespace (or no `ip` command) is available.
#[test]
fn vanish_shows_silence_user_timeout_and_keepalive() {
    if let Some(why) = sockbook::kit::lab::refusal() {
        support::skip(why);
        return;
    }
    support::run_demo(
        BIN,
        &["vanish"],
        Duration::from_secs(40),
        &[
            "POLLIN, 1500 ms) = 0",
            "SO_ERROR = ETIMEDOUT",
            "(the connection is dead)",
            "= -1 ETIMEDOUT (Connection timed out)   after",
        ],
    );
}

/// Simultaneous close: b receives a's FIN while its own is unacknowledged
/// (CLOSING), and both sides end in TIME_WAIT. Skipped without a private
/// namespace.
#[test]
fn simclose_shows_closing_and_time_wait_on_both_sides() {
    if let Some(why) = sockbook::kit::lab::refusal() {
        support::skip(why);
        return;
    }
    let out = support::run_bin(BIN, &["simclose"], Duration::from_secs(30));
    assert!(
        out.status.success(),
        "simclose: {}\n{}",
        out.stderr,
        out.stdout
    );
    assert!(
        out.stdout.contains("TCP_INFO: CLOSING"),
        "b should be seen in CLOSING:\n{}",
        out.stdout
    );
    for side in [
        "[a] /proc/thread-self/net/tcp",
        "[b] /proc/thread-self/net/tcp",
    ] {
        let line = out
            .stdout
            .lines()
            .find(|l| l.starts_with(side))
            .unwrap_or_else(|| panic!("no {side:?} line:\n{}", out.stdout));
        assert!(
            line.contains("TIME_WAIT"),
            "{side}: expected a TIME_WAIT entry: {line}"
        );
    }
}
