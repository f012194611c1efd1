//! Plain (ungraded) checks of the `ch08_udp` binary and of the relay: the
//! demo finishes by itself, `--help`, the `server`, `client`, `relay`,
//! `send` and `receive` subcommands with `std` peers, hostile datagrams and
//! floods against the servers, and the relay's determinism.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, UdpSocket};
use std::process::{Command, Stdio};
use std::time::Duration;

use sockbook::ch08_udp::relay::{Fates, Impairment};
use support::server_process::ServerProcess;
use support::{Background, DEADLINE, run_bin, std_addr};

const BIN: &str = env!("CARGO_BIN_EXE_ch08_udp");

#[test]
fn demo_exits_zero_in_time() {
    support::run_demo(
        BIN,
        &[],
        Duration::from_secs(40),
        &[
            "each returned exactly one datagram",
            "came out of one read",
            "msg_flags MSG_TRUNC",
            "ECONNREFUSED",
            "ICMP type 3 code 3",
            "dropped on this socket so far",
            "EMSGSIZE",
            "EACCES",
            "copy at the member",
            "batches of 32",
            "8b. Multicast between two namespaces",
            "Truncated",
            "intact: true",
        ],
    );
}

#[test]
fn veth_part_shows_loop_and_ttl_or_says_why_not() {
    let run = run_bin(BIN, &["demo", "veth"], Duration::from_secs(30));
    assert!(
        run.status.success(),
        "demo veth failed: {}\n{}",
        run.stderr,
        run.stdout
    );
    if let Some(why) = sockbook::kit::lab::refusal() {
        assert!(
            run.stdout.contains("skipped"),
            "refused ({why}) but no skip line:\n{}",
            run.stdout
        );
        return;
    }
    for needle in [
        "TTL 1, LOOP 1: sendto(239.255.8.8",
        "-> 1 at b, 1 at a's own member",
        "-> 1 at b, 0 at a's own member",
        "-> 0 at b, 1 at a's own member",
    ] {
        assert!(
            run.stdout.contains(needle),
            "demo veth lacks {needle:?}:\n{}",
            run.stdout
        );
    }
}

#[test]
fn help_lists_the_subcommands() {
    let run = run_bin(BIN, &["--help"], DEADLINE);
    assert!(run.status.success());
    for needle in [
        "server", "client", "relay", "--loss", "--seed", "bench", "send", "receive",
    ] {
        assert!(run.stdout.contains(needle), "--help lacks {needle}");
    }
    let bad = run_bin(BIN, &["serve"], DEADLINE);
    assert_eq!(
        bad.status.code(),
        Some(2),
        "an unknown subcommand is a usage error"
    );
    let bad = run_bin(
        BIN,
        &[
            "relay",
            "--listen",
            "127.0.0.1:0",
            "--to",
            "127.0.0.1:9",
            "--loss",
            "2",
        ],
        DEADLINE,
    );
    assert_eq!(
        bad.status.code(),
        Some(1),
        "--loss 2 is not a probability: {}",
        bad.stderr
    );
}

fn udp(timeout: Duration) -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(timeout)).unwrap();
    s
}

fn terminate(mut server: ServerProcess) -> String {
    server.signal(libc::SIGTERM);
    let (status, lines) = server.wait_exit(DEADLINE);
    let log = lines.join("\n");
    assert!(status.success(), "did not exit 0 on SIGTERM:\n{log}");
    log
}

#[test]
fn server_echoes_and_survives_garbage_floods_and_oversized_datagrams() {
    let server = ServerProcess::start(
        BIN,
        &["server", "--addr", "127.0.0.1:0", "--buf", "2000"],
        DEADLINE,
    );
    let addr = std_addr(&server.addr);
    let c = udp(DEADLINE);
    let mut buf = [0u8; 70_000];
    // Hostile: empty, binary junk, too long for the buffer, a flood from a
    // socket that never reads, a peer that closes at once.
    let rude = udp(DEADLINE);
    rude.send_to(b"", addr).unwrap();
    rude.send_to(&[0xff; 1999], addr).unwrap();
    rude.send_to(&[0u8; 65_507], addr).unwrap();
    for _ in 0..5000 {
        let _ = rude.send_to(&[1u8; 1000], addr);
    }
    let gone = udp(DEADLINE);
    gone.send_to(b"bye", addr).unwrap();
    drop(gone);
    // A polite client is still served. (The flood may fill the server's
    // receive buffer, and then the kernel drops datagrams: UDP. So the
    // client retries, as a UDP client must.)
    c.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    for i in 0..20 {
        let msg = format!("hello {i}");
        let echoed = (0..25).any(|_| {
            c.send_to(msg.as_bytes(), addr).unwrap();
            matches!(c.recv_from(&mut buf), Ok((n, _)) if &buf[..n] == msg.as_bytes())
        });
        assert!(
            echoed,
            "no echo of {msg:?} in 25 tries after the hostile traffic"
        );
    }
    let log = terminate(server);
    assert!(
        log.contains("Truncated"),
        "the 65507-byte datagram into a 2000-byte buffer was not reported:\n{log}"
    );
    assert!(log.contains("stopped:"), "no closing line:\n{log}");
}

#[test]
fn batched_server_echoes_every_datagram_whole() {
    let server = ServerProcess::start(
        BIN,
        &["server", "--addr", "127.0.0.1:0", "--batch", "8"],
        DEADLINE,
    );
    let addr = std_addr(&server.addr);
    let clients: Vec<UdpSocket> = (0..20).map(|_| udp(DEADLINE)).collect();
    let mut buf = vec![0u8; 70_000];
    for size in [0usize, 1, 1400, 65_507] {
        for (i, c) in clients.iter().enumerate() {
            let msg: Vec<u8> = (0..size).map(|k| (k + i) as u8).collect();
            c.send_to(&msg, addr).unwrap();
            let (n, _) = c
                .recv_from(&mut buf)
                .unwrap_or_else(|e| panic!("client {i}, {size} bytes: no echo ({e})"));
            assert!(buf[..n] == msg[..], "client {i}: {n} bytes back for {size}");
        }
    }
    let log = terminate(server);
    assert!(log.contains("stopped: 80 echoed"), "{log}");
}

/// A std echo server on a thread that answers until `quit` arrives.
fn std_echo() -> (SocketAddr, Background<usize>) {
    let s = udp(Duration::from_secs(20));
    let addr = s.local_addr().unwrap();
    let thread = Background::spawn("echo", move || {
        let mut buf = [0u8; 65_536];
        let mut n_echoed = 0;
        while let Ok((n, from)) = s.recv_from(&mut buf) {
            if &buf[..n] == b"quit" {
                break;
            }
            let _ = s.send_to(&buf[..n], from);
            n_echoed += 1;
        }
        n_echoed
    });
    (addr, thread)
}

#[test]
fn relay_subcommand_relays_both_ways_and_counts() {
    let (echo, echo_thread) = std_echo();
    let relay = ServerProcess::start(
        BIN,
        &[
            "relay",
            "--listen",
            "127.0.0.1:0",
            "--to",
            &echo.to_string(),
            "--dup",
            "1",
        ],
        DEADLINE,
    );
    let raddr = std_addr(&relay.addr);
    let c = udp(DEADLINE);
    let mut buf = [0u8; 2048];
    for i in 0..10 {
        let msg = format!("through the relay {i}");
        c.send_to(msg.as_bytes(), raddr).unwrap();
        // --dup 1: every datagram is duplicated each way: 4 copies come back.
        for copy in 0..4 {
            let (n, from) = c
                .recv_from(&mut buf)
                .unwrap_or_else(|e| panic!("copy {copy} of {i}: {e}"));
            assert_eq!(from, raddr, "replies come from the relay's address");
            assert_eq!(&buf[..n], msg.as_bytes());
        }
    }
    // Garbage and a flood do not stop it.
    for _ in 0..3000 {
        let _ = c.send_to(&[9u8; 512], raddr);
    }
    let log = terminate(relay);
    assert!(
        log.contains("forward:") && log.contains("duplicated"),
        "no counts:\n{log}"
    );
    let quit = udp(DEADLINE);
    quit.send_to(b"quit", echo).unwrap();
    let echoed = echo_thread.join_within(DEADLINE, "echo");
    assert!(echoed >= 20, "the echo server saw {echoed} datagrams");
}

#[test]
fn relay_fates_are_deterministic_and_near_their_rates() {
    let how = Impairment {
        loss: 0.1,
        dup: 0.05,
        reorder: 0.2,
        ..Impairment::default()
    };
    let run = |seed| {
        let mut f = Fates::new(seed);
        (0..10_000).map(|_| f.next(&how, &[])).collect::<Vec<_>>()
    };
    assert_eq!(run(7), run(7), "same seed, same fates");
    assert_ne!(run(7), run(8), "another seed, other fates");
    let fates = run(7);
    let dropped = fates.iter().filter(|f| f.dropped).count();
    assert!(
        (800..1200).contains(&dropped),
        "loss 0.1 over 10000: {dropped} dropped"
    );
}

#[test]
fn client_subcommand_asks_each_line() {
    let (echo, echo_thread) = std_echo();
    let mut child = Command::new(BIN)
        .args(["client", "--addr", &echo.to_string(), "--timeout", "200"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"first line\nsecond line\n")
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let reader = Background::spawn("client stdout", move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let stdout = reader.join_within(DEADLINE, "client exit");
    assert!(child.wait().unwrap().success());
    let bodies: Vec<&str> = stdout.lines().filter(|l| !l.starts_with('[')).collect();
    assert_eq!(bodies, ["first line", "second line"], "{stdout}");
    udp(DEADLINE).send_to(b"quit", echo).unwrap();
    echo_thread.join_within(DEADLINE, "echo");
}

#[test]
fn send_and_receive_subcommands_through_a_lossy_relay() {
    let dir = std::env::temp_dir();
    let input = dir.join(format!("ch08-send-{}.bin", std::process::id()));
    let output = dir.join(format!("ch08-recv-{}.bin", std::process::id()));
    let data: Vec<u8> = (0..200_000u32).map(|i| (i * 31 % 257) as u8).collect();
    std::fs::write(&input, &data).unwrap();
    let mut receiver = ServerProcess::start(
        BIN,
        &[
            "receive",
            "--addr",
            "127.0.0.1:0",
            "--out",
            output.to_str().unwrap(),
        ],
        DEADLINE,
    );
    let relay = ServerProcess::start(
        BIN,
        &[
            "relay",
            "--listen",
            "127.0.0.1:0",
            "--to",
            &std_addr(&receiver.addr).to_string(),
            "--loss",
            "0.1",
            "--reorder",
            "0.1",
            "--seed",
            "3",
        ],
        DEADLINE,
    );
    let sent = run_bin(
        BIN,
        &[
            "send",
            "--to",
            &std_addr(&relay.addr).to_string(),
            input.to_str().unwrap(),
        ],
        Duration::from_secs(30),
    );
    assert!(
        sent.status.success(),
        "send: {}\n{}",
        sent.stderr,
        sent.stdout
    );
    let (status, _) = receiver.wait_exit(Duration::from_secs(10));
    assert!(status.success());
    let got = std::fs::read(&output).unwrap();
    let _ = std::fs::remove_file(&input);
    let _ = std::fs::remove_file(&output);
    assert!(
        got == data,
        "received {} bytes of {}",
        got.len(),
        data.len()
    );
    terminate(relay);
}
