//! Plain (ungraded) checks of the `ch09_epoll` binary: the demo finishes by
//! itself, `--help`, every `server --design`, the idle-timeout server, and a
//! small `c10k`.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use support::server_process::ServerProcess;
use support::{DEADLINE, run_bin, std_addr};

const BIN: &str = env!("CARGO_BIN_EXE_ch09_epoll");

#[test]
fn demo_exits_zero_in_time() {
    support::run_demo(
        BIN,
        &[],
        Duration::from_secs(40),
        &[
            "EAGAIN",
            "ECONNREFUSED",
            "ETIMEDOUT",
            "THE edge-triggered bug",
            "EPOLLRDHUP",
            "EPOLLEXCLUSIVE",
            "reserve fd",
            "signalfd readable",
            "closed by the server's",
            "1048576 of 1048576 bytes echoed intact",
            "epoll/poll",
        ],
    );
}

#[test]
fn help_lists_the_subcommands() {
    let run = run_bin(BIN, &["--help"], DEADLINE);
    assert!(run.status.success());
    for needle in ["server", "--design", "c10k", "emfile", "herd", "--addr"] {
        assert!(run.stdout.contains(needle), "--help lacks {needle}");
    }
    let bad = run_bin(BIN, &["serve"], DEADLINE);
    assert_eq!(
        bad.status.code(),
        Some(2),
        "an unknown subcommand is a usage error"
    );
}

fn echo_once(server: &ServerProcess, msg: &[u8]) {
    let mut s = TcpStream::connect_timeout(&std_addr(&server.addr), DEADLINE).unwrap();
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    s.write_all(msg).unwrap();
    let mut got = vec![0u8; msg.len()];
    s.read_exact(&mut got).unwrap();
    assert_eq!(got, msg, "echo");
}

#[test]
fn every_server_design_echoes_and_stops_cleanly() {
    for design in ["single", "et", "reuseport", "exclusive", "poll"] {
        let mut server = ServerProcess::start(
            BIN,
            &[
                "server",
                "--design",
                design,
                "--threads",
                "3",
                "--addr",
                "127.0.0.1:0",
            ],
            DEADLINE,
        );
        for i in 0..6 {
            echo_once(&server, format!("{design} {i}\n").as_bytes());
        }
        server.signal(libc::SIGTERM);
        let (status, lines) = server.wait_exit(DEADLINE);
        assert!(
            status.success(),
            "{design}: exit {status:?}; printed {lines:?}"
        );
        assert!(
            lines.iter().any(|l| l.contains("stopped:")),
            "{design}: no closing line in {lines:?}"
        );
    }
}

#[test]
fn idle_server_closes_a_quiet_client() {
    let server = ServerProcess::start(
        BIN,
        &["server", "--idle-ms", "300", "--addr", "127.0.0.1:0"],
        DEADLINE,
    );
    echo_once(&server, b"hi\n");
    let mut quiet = TcpStream::connect_timeout(&std_addr(&server.addr), DEADLINE).unwrap();
    quiet.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut b = [0u8; 1];
    assert_eq!(
        quiet.read(&mut b).unwrap(),
        0,
        "a quiet client should see EOF"
    );
}

#[test]
fn c10k_prints_a_ratio() {
    let run = run_bin(
        BIN,
        &["c10k", "--ns", "50,500", "--busy", "4", "--secs", "1"],
        Duration::from_secs(60),
    );
    assert!(
        run.status.success(),
        "c10k failed: {}\n{}",
        run.stderr,
        run.stdout
    );
    assert!(run.stdout.contains("epoll/poll"), "{}", run.stdout);
}
