//! Plain (ungraded) checks of chapter 7's binary: the demo runs and exits
//! 0 in time, `--help` lists the subcommands, bad arguments are refused.

#![allow(unused_macros)] // support's graded! is for the graded file

mod support;

use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_ch07_threads");

#[test]
fn demo_runs_and_exits_zero() {
    let done = support::run_bin(BIN, &[], Duration::from_secs(15));
    assert!(done.status.success(), "demo failed: {}", done.stderr);
    for part in [
        "thread per connection",
        "thundering herd",
        "zombie",
        "SO_REUSEPORT",
        "graceful shutdown",
    ] {
        assert!(done.stdout.contains(part), "the demo shows {part:?}");
    }
}

#[test]
fn help_lists_the_designs() {
    let done = support::run_bin(BIN, &["--help"], support::DEADLINE);
    assert!(done.status.success());
    for word in [
        "server",
        "thread",
        "pool",
        "queue",
        "fork",
        "reuseport",
        "--max",
    ] {
        assert!(done.stdout.contains(word), "--help mentions {word}");
    }
}

#[test]
fn bad_arguments_are_refused() {
    let done = support::run_bin(BIN, &["server", "--design", "telepathy"], support::DEADLINE);
    assert!(!done.status.success());
    assert!(done.stderr.contains("unknown design"), "{}", done.stderr);
    let done = support::run_bin(BIN, &["server", "--bogus"], support::DEADLINE);
    assert_eq!(done.status.code(), Some(2));
    let done = support::run_bin(BIN, &["server", "--max", "many"], support::DEADLINE);
    assert!(!done.status.success());
    assert!(done.stderr.contains("--max"), "{}", done.stderr);
}

#[test]
fn server_stops_cleanly_on_sigint() {
    for design in ["thread", "pool", "queue", "fork", "reuseport"] {
        let mut srv = support::server_process::ServerProcess::start(
            BIN,
            &["server", "--design", design, "--addr", "127.0.0.1:0"],
            support::DEADLINE,
        );
        srv.signal(libc::SIGINT);
        let (status, lines) = srv.wait_exit(support::DEADLINE);
        assert_eq!(status.code(), Some(0), "{design}: {lines:?}");
    }
}

#[test]
fn server_survives_resets_and_garbage() {
    use std::io::{Read, Write};
    use std::os::fd::AsFd;
    for design in ["thread", "queue", "fork"] {
        let mut srv = support::server_process::ServerProcess::start(
            BIN,
            &[
                "server",
                "--design",
                design,
                "--addr",
                "127.0.0.1:0",
                "--grace-ms",
                "500",
            ],
            support::DEADLINE,
        );
        for i in 0..20u8 {
            let mut c = support::std_client(&srv.addr);
            let garbage: Vec<u8> = (0..200u8)
                .map(|b| b.wrapping_mul(i).wrapping_add(7))
                .collect();
            c.write_all(&garbage).unwrap();
            // SO_LINGER {on, 0}: close sends RST instead of FIN.
            nix::sys::socket::setsockopt(
                &c.as_fd(),
                nix::sys::socket::sockopt::Linger,
                &libc::linger {
                    l_onoff: 1,
                    l_linger: 0,
                },
            )
            .unwrap();
        }
        let mut ok = support::std_client(&srv.addr);
        ok.write_all(b"still alive?\n").unwrap();
        let mut back = [0u8; 13];
        ok.read_exact(&mut back).unwrap();
        assert_eq!(&back, b"still alive?\n", "{design}");
        drop(ok);
        srv.signal(libc::SIGTERM);
        let (status, lines) = srv.wait_exit(support::DEADLINE);
        assert_eq!(status.code(), Some(0), "{design}: {lines:?}");
    }
}
