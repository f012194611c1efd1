//! Plain (ungraded) tests of the chapter 1 binary: the tour runs by itself,
//! in time, and says what the chapter promises; `resolve` and `--help` work.

#[allow(unused_macros)] // graded! is for the graded tests
mod support;

use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_ch01_sockets");
const LIMIT: Duration = Duration::from_secs(10);

#[test]
fn the_tour_exits_0_and_narrates_its_calls() {
    let run = support::run_bin(BIN, &[], LIMIT);
    assert!(
        run.status.success(),
        "exit {:?}\n{}{}",
        run.status,
        run.stdout,
        run.stderr
    );
    let out = &run.stdout;
    for line in [
        "socket(AF_INET, SOCK_STREAM, 0) = ",
        "socket(AF_INET, SOCK_DGRAM, 0) = ",
        "socket(AF_UNIX, SOCK_STREAM, 0) = ",
        "SOL_SOCKET, SO_DOMAIN, [",
        "SOL_SOCKET, SO_PROTOCOL, [",
        "sin_port   = 8080, network byte order",
        "inet_pton(AF_INET, \"127.0.0.1\", &in_addr) = 1",
        "inet_ntop(AF_INET, 7f 00 00 01) = \"127.0.0.1\"",
        "getaddrinfo(\"localhost\", \"8080\"",
        "freeaddrinfo(0x",
        "= -1 ECONNREFUSED",
        "= -1 EADDRINUSE",
    ] {
        assert!(out.contains(line), "the tour should print {line:?}:\n{out}");
    }
    // The table of part 2 holds what the kernel said, by name.
    for name in [
        "AF_INET",
        "AF_UNIX",
        "SOCK_DGRAM",
        "IPPROTO_TCP",
        "IPPROTO_UDP",
    ] {
        assert!(out.contains(name), "the tour should name {name}:\n{out}");
    }
    // Every fd it opened it closed, and said so.
    assert!(out.contains("close("), "{out}");
    assert!(run.stderr.is_empty(), "nothing on stderr: {}", run.stderr);
}

#[test]
fn resolve_localhost_lists_its_addresses_and_frees_them() {
    let run = support::run_bin(BIN, &["resolve", "localhost", "80"], LIMIT);
    assert!(
        run.status.success(),
        "exit {:?}\n{}{}",
        run.status,
        run.stdout,
        run.stderr
    );
    // Whatever this machine's resolver says localhost is, every address
    // std finds must be listed.
    use std::net::ToSocketAddrs;
    for addr in ("localhost", 80).to_socket_addrs().unwrap() {
        assert!(
            run.stdout.contains(&addr.to_string()),
            "{addr} missing:\n{}",
            run.stdout
        );
    }
    assert!(run.stdout.contains("freeaddrinfo(0x"), "{}", run.stdout);
}

#[test]
fn resolve_reports_a_name_that_does_not_resolve() {
    // A 64-byte label: no DNS query can be built for it, so nothing is sent.
    let name = "a".repeat(64);
    let run = support::run_bin(BIN, &["resolve", &name], LIMIT);
    assert_eq!(run.status.code(), Some(1), "{}{}", run.stdout, run.stderr);
    assert!(run.stderr.contains("getaddrinfo("), "{}", run.stderr);
}

#[test]
fn help_lists_the_subcommands_and_bad_usage_exits_2() {
    let run = support::run_bin(BIN, &["--help"], LIMIT);
    assert!(run.status.success());
    assert!(run.stdout.contains("resolve HOST [PORT]"), "{}", run.stdout);

    for args in [
        &["nosuch"][..],
        &["--nosuch"],
        &["resolve"],
        &["resolve", "localhost", "99999"],
    ] {
        let run = support::run_bin(BIN, args, LIMIT);
        assert_eq!(
            run.status.code(),
            Some(2),
            "{args:?}: {}{}",
            run.stdout,
            run.stderr
        );
        assert!(run.stderr.contains("Usage:"), "{args:?}: {}", run.stderr);
    }
}

/// Dual stack on this kernel: a [::] listener with IPV6_V6ONLY off accepts
/// an IPv4 client as ::ffff:127.0.0.1 and holds 0.0.0.0:PORT too; with
/// IPV6_V6ONLY on, the IPv4 connect is refused and 0.0.0.0:PORT is free.
#[test]
fn dualstack_shows_v4_mapped_peer_and_v6only_refusal() {
    if !std::path::Path::new("/proc/sys/net/ipv6").exists() {
        support::skip("IPv6 is switched off in this kernel");
        return;
    }
    let run = support::run_bin(BIN, &["dualstack"], LIMIT);
    assert!(
        run.status.success(),
        "exit {:?}\n{}{}",
        run.status,
        run.stdout,
        run.stderr
    );
    let out = &run.stdout;
    for line in [
        "AI_PASSIVE, AF_UNSPEC, SOCK_STREAM}) = [",
        "peer=[::ffff:127.0.0.1]:",
        "getnameinfo(peer, NI_NUMERICHOST|NI_NUMERICSERV) = \"::ffff:127.0.0.1\"",
        "setsockopt(IPV6_V6ONLY, 1) = 0",
        "= -1 ECONNREFUSED",
        "= -1 EADDRINUSE",
    ] {
        assert!(
            out.contains(line),
            "`ch01_sockets dualstack` should print {line:?}:\n{out}"
        );
    }
    // The IPv4 connect refused is the one made while IPV6_V6ONLY = 1.
    let after = out.split("IPV6_V6ONLY = 1").nth(1).unwrap_or("");
    assert!(
        after.contains("connect(") && after.contains("127.0.0.1") && after.contains("ECONNREFUSED"),
        "with IPV6_V6ONLY = 1 the IPv4 connect should be refused:\n{out}"
    );
}
