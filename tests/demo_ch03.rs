//! Plain (ungraded) tests: chapter 3's binary runs its demos and exits 0 in
//! time, and prints a line of the table for every option.

#[allow(unused_macros)] // graded! is for the graded tests
mod support;

use std::time::Duration;

use sockbook::ch03_sockopts::OPTIONS;
use support::server_process::ServerProcess;

const BIN: &str = env!("CARGO_BIN_EXE_ch03_sockopts");

#[test]
fn no_arguments_prints_the_table_and_runs_every_demo() {
    // The demo measures delays and waits for keepalive probes: a few seconds.
    let run = support::run_bin(BIN, &[], Duration::from_secs(30));
    assert!(
        run.status.success(),
        "exit {:?}\n{}\n{}",
        run.status,
        run.stdout,
        run.stderr
    );
    for opt in OPTIONS {
        assert!(
            run.stdout
                .lines()
                .any(|l| l.starts_with(&format!("{}: ", opt.name))),
            "no table line for {}:\n{}",
            opt.name,
            run.stdout
        );
    }
    for demo in [
        "== set:",
        "== reuseaddr:",
        "== rcvbuf:",
        "== sndbuf:",
        "== linger:",
        "== rcvtimeo:",
        "== nodelay:",
        "== keepalive:",
        "== error:",
        "== tcpinfo:",
    ] {
        assert!(run.stdout.contains(demo), "no {demo} section");
    }
}

#[test]
fn table_subcommand_prints_only_the_table() {
    let run = support::run_bin(BIN, &["table"], support::DEADLINE);
    assert!(run.status.success(), "{}", run.stderr);
    assert!(run.stdout.contains("SO_RCVBUF: default = "));
    assert!(!run.stdout.contains("== reuseaddr"));
}

#[test]
fn help_lists_the_subcommands_and_bad_input_exits_2() {
    let run = support::run_bin(BIN, &["--help"], support::DEADLINE);
    assert!(run.status.success());
    for cmd in [
        "server",
        "table",
        "reuseaddr",
        "rcvbuf",
        "sndbuf",
        "linger",
        "rcvtimeo",
        "nodelay",
        "keepalive",
        "error",
        "tcpinfo",
    ] {
        assert!(
            run.stdout.contains(&format!("  {cmd} ")),
            "--help lacks {cmd}:\n{}",
            run.stdout
        );
    }
    let run = support::run_bin(BIN, &["no-such-demo"], support::DEADLINE);
    assert_eq!(run.status.code(), Some(2), "{}", run.stderr);
}

#[test]
fn server_reports_options_to_each_client_and_stops_on_ctrl_c() {
    use std::io::Read;
    let mut server =
        ServerProcess::start(BIN, &["server", "--addr", "127.0.0.1:0"], support::DEADLINE);
    for _ in 0..2 {
        let mut client = support::std_client(&server.addr);
        let mut text = String::new();
        client.read_to_string(&mut text).unwrap();
        assert!(text.contains("SO_RCVBUF: "), "{text}");
        assert!(text.contains("TCP_INFO: state ESTABLISHED"), "{text}");
    }
    server.signal(libc::SIGINT);
    let (status, rest) = server.wait_exit(support::DEADLINE);
    assert!(status.success(), "{status:?}\n{rest:?}");
}

/// Linux: a TIME_WAIT entry keeps the SO_REUSEADDR flag of the socket it
/// came from; `bind` gets past it only when the old listener and the new
/// socket both set it (`inet_csk_bind_conflict`). Checked on this kernel.
#[test]
fn time_wait_keeps_the_old_listeners_reuse_flag() {
    let cases = sockbook::ch03_sockopts::demos::time_wait_bind_matrix()
        .unwrap_or_else(|e| panic!("setting up TIME_WAIT entries failed: {e}"));
    for (old, new, result) in cases {
        let expect_ok = old && new;
        assert_eq!(
            result.is_ok(),
            expect_ok,
            "old listener SO_REUSEADDR={old}, new socket SO_REUSEADDR={new}: bind past the \
             TIME_WAIT entry returned {result:?}; Linux lets it through only when both set the flag"
        );
        if !expect_ok {
            assert_eq!(
                result,
                Err(nix::errno::Errno::EADDRINUSE),
                "old={old} new={new}: expected EADDRINUSE"
            );
        }
    }
}
