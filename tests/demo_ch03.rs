//! Plain (ungraded) tests: chapter 3's binary runs its demos and exits 0 in
//! time, and prints a line of the table for every option.

#[allow(unused_macros)] // graded! is for the graded tests
mod support;

use std::time::Duration;

use sockbook::ch03_sockopts::OPTIONS;

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
    use std::io::{BufRead, BufReader, Read};
    use std::process::{Command, Stdio};
    /// Kills the server if the test fails before it stops it.
    struct Guard(std::process::Child);
    impl Drop for Guard {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut guard = Guard(
        Command::new(BIN)
            .args(["server", "--addr", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let child = &mut guard.0;
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let first = support::Background::spawn("first line", move || {
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        (line, out)
    });
    let (line, mut out) = first.join_within(support::DEADLINE, "the server's first line");
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("first line {line:?}"));
    let addr: std::net::SocketAddr = addr.parse().unwrap();
    for _ in 0..2 {
        let mut client = support::std_client(&nix::sys::socket::SockaddrStorage::from(addr));
        let mut text = String::new();
        client.read_to_string(&mut text).unwrap();
        assert!(text.contains("SO_RCVBUF: "), "{text}");
        assert!(text.contains("TCP_INFO: state ESTABLISHED"), "{text}");
    }
    // SAFETY: kill(2) with the pid of our own child and a valid signal.
    assert_eq!(
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) },
        0
    );
    let rest = support::Background::spawn("rest", move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let rest = rest.join_within(support::DEADLINE, "the server's exit");
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}\n{rest}");
}
