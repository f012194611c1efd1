//! Plain (ungraded) checks that the chapter 5 binary runs: the demo and
//! its subcommands exit 0 in time, and say what they should.

#[macro_use]
mod support;

use std::time::Duration;

use support::server_process::ServerProcess;

const BIN: &str = env!("CARGO_BIN_EXE_ch05_handshake");

#[test]
fn demo_runs_every_part_and_exits_0() {
    let out = support::run_bin(BIN, &[], Duration::from_secs(60));
    assert!(out.status.success(), "stderr: {}", out.stderr);
    for part in [
        "1. The three-way handshake",
        "2. The backlog",
        "2b. The SYN queue",
        "3. The half-open queue",
        "4. When connect fails",
        "ECONNREFUSED",
        "ETIMEDOUT",
        "EINPROGRESS",
    ] {
        assert!(out.stdout.contains(part), "no {part:?} in:\n{}", out.stdout);
    }
    if out.stdout.contains("packet capture: AF_PACKET") {
        assert!(
            out.stdout.contains("seq=j="),
            "capture on, but no handshake numbers"
        );
    } else if let Some(why) = support::netns_refused() {
        // Neither CAP_NET_RAW here nor a private namespace: states only.
        support::skip(why);
    } else {
        panic!(
            "a private namespace is allowed here, yet the demo did not capture:\n{}",
            out.stdout
        );
    }
}

#[test]
fn demo_captures_in_a_private_namespace() {
    if let Some(why) = support::netns_refused() {
        return support::skip(why);
    }
    let out = support::run_bin(BIN, &["handshake", "--netns"], Duration::from_secs(30));
    assert!(
        out.status.success(),
        "ch05_handshake handshake --netns: {}",
        out.stderr
    );
    assert!(
        out.stdout
            .contains("packet capture: AF_PACKET on the lo of a private user+network namespace"),
        "--netns: the capture did not say it runs in the private namespace:\n{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("seq=j="),
        "--netns: capture on, but no handshake numbers:\n{}",
        out.stdout
    );
}

#[test]
fn handshake_subcommand_and_help() {
    let out = support::run_bin(BIN, &["handshake"], Duration::from_secs(20));
    assert!(out.status.success(), "stderr: {}", out.stderr);
    assert!(out.stdout.contains("ESTABLISHED"));
    let help = support::run_bin(BIN, &["--help"], Duration::from_secs(10));
    assert!(help.status.success());
    for sub in [
        "handshake",
        "backlog",
        "synqueue",
        "halfopen",
        "connect",
        "server",
    ] {
        assert!(help.stdout.contains(sub), "--help does not list {sub}");
    }
    let bad = support::run_bin(BIN, &["no-such-part"], Duration::from_secs(10));
    assert_eq!(bad.status.code(), Some(2));
}

#[test]
fn backlog_subcommand_admits_backlog_plus_one() {
    let out = support::run_bin(BIN, &["backlog", "--backlog", "2"], Duration::from_secs(30));
    assert!(out.status.success(), "stderr: {}", out.stderr);
    // The demo's own count, e.g. "3 of 6 connections completed with listen backlog 2".
    assert!(
        out.stdout
            .contains("connections completed with listen backlog 2")
    );
}

#[test]
fn server_counts_its_accept_queue_and_stops_on_sigint() {
    let mut server = ServerProcess::start(
        BIN,
        &["server", "--addr", "127.0.0.1:0", "--backlog", "1"],
        Duration::from_secs(10),
    );
    // Reachable from this process: the server stays in our network namespace.
    let clients: Vec<_> = (0..2).map(|_| support::std_client(&server.addr)).collect();
    server.wait_line(Duration::from_secs(5), |l| l.contains("accept queue 2 / 1"));
    server.signal(libc::SIGINT);
    let (status, _) = server.wait_exit(Duration::from_secs(10));
    assert!(status.success(), "server exit status {status}");
    drop(clients);
}

/// The SYN queue's limit follows the backlog: for backlogs 2 and 5, the
/// number of SYN_RECV entries the demo counted in /proc/net/tcp is the
/// backlog (kernels before 2025) or backlog + 1 (the check is "more than"),
/// and never tcp_max_syn_backlog.
#[test]
fn synqueue_half_open_entries_stop_at_the_backlog() {
    let out = support::run_bin(BIN, &["synqueue", "--netns"], Duration::from_secs(30));
    assert!(out.status.success(), "stderr: {}", out.stderr);
    for (backlog, clients) in [(2usize, 6usize), (5, 9)] {
        let lines: Vec<&str> = out
            .stdout
            .lines()
            .filter(|l| l.starts_with(&format!("# backlog {backlog} (tcp_syncookies")))
            .collect();
        assert!(
            !lines.is_empty(),
            "no summary for backlog {backlog}:\n{}",
            out.stdout
        );
        for line in lines {
            let held = line
                .split("half-open ")
                .nth(1)
                .and_then(|t| t.split(' ').next())
                .and_then(|n| n.parse::<usize>().ok())
                .unwrap_or_else(|| panic!("no count in {line:?}"));
            assert!(
                held == backlog || held == backlog + 1,
                "listen(fd, {backlog}) with {clients} clients held {held} half-open entries; \
                 expected the backlog or backlog + 1 ({line})"
            );
        }
    }
    if out
        .stdout
        .contains("echo 0 > /proc/sys/net/ipv4/tcp_syncookies")
    {
        assert!(
            out.stdout.contains("TCPReqQFullDrop +3"),
            "with cookies off the 3 extra SYNs should be dropped:\n{}",
            out.stdout
        );
    } else {
        eprintln!(
            "no private namespace here: only the round with this machine's tcp_syncookies ran"
        );
    }
}
