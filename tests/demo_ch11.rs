//! Plain (ungraded) checks of the `ch11_raw` binary: the narrated demo and
//! each subcommand finish by themselves, exit 0 and print their key line.
//! Everything but `checksum` needs CAP_NET_RAW, which the binary gets in a
//! private user + network namespace: where the machine refuses one, those
//! checks report themselves skipped.

mod support;

use std::time::Duration;

use support::{DEADLINE, run_bin};

const BIN: &str = env!("CARGO_BIN_EXE_ch11_raw");

/// Run `ch11_raw ARGS`, require exit 0 and every `needle` in its output.
fn runs_and_says(args: &[&str], limit: Duration, needles: &[&str]) {
    let run = run_bin(BIN, args, limit);
    assert!(
        run.status.success(),
        "ch11_raw {args:?} exited {:?} (limit {limit:?})\nstderr:\n{}\nstdout:\n{}",
        run.status.code(),
        run.stderr,
        run.stdout
    );
    for needle in needles {
        assert!(
            run.stdout.contains(needle),
            "ch11_raw {args:?}: output lacks {needle:?}:\n{}",
            run.stdout
        );
    }
}

/// The reason the namespace parts cannot run here, if any.
fn refused() -> Option<&'static str> {
    sockbook::kit::lab::refusal()
}

#[test]
fn checksum_needs_no_privilege() {
    runs_and_says(
        &["checksum"],
        DEADLINE,
        &["The Internet checksum", "0xfbfd", "re-sums to 0"],
    );
}

#[test]
fn help_lists_the_subcommands() {
    runs_and_says(
        &["--help"],
        DEADLINE,
        &[
            "checksum",
            "ping",
            "packet",
            "bpf",
            "hdrincl",
            "traceroute",
            "sniff",
        ],
    );
}

#[test]
fn an_unknown_subcommand_is_a_usage_error() {
    let run = run_bin(BIN, &["tcpdump"], DEADLINE);
    assert_eq!(
        run.status.code(),
        Some(2),
        "ch11_raw tcpdump (no such subcommand) must exit 2 with the usage; stderr:\n{}",
        run.stderr
    );
}

#[test]
fn demo_narrates_every_part_in_time() {
    if let Some(why) = refused() {
        return support::skip(why);
    }
    runs_and_says(
        &[],
        Duration::from_secs(60),
        &[
            "private user + network namespace",
            "re-sums to 0",
            "echo reply from 127.0.0.1",
            "SOCK_DGRAM, IPPROTO_ICMP) = ",
            "pkttype outgoing",
            "pkttype host",
            "SO_ATTACH_FILTER",
            "SO_DETACH_FILTER) = -1 EPERM",
            "PACKET_RX_RING",
            "the source address is the one we wrote",
            "(port unreachable)",
        ],
    );
}

#[test]
fn each_subcommand_exits_0_with_its_key_line() {
    if let Some(why) = refused() {
        return support::skip(why);
    }
    let cases: &[(&[&str], &[&str])] = &[
        (
            &["ping", "--count", "2"],
            &["seq 2", "SOCK_DGRAM, IPPROTO_ICMP) = "],
        ),
        (&["packet"], &["SOCK_RAW: 54 bytes", "SOCK_DGRAM: 40 bytes"]),
        (
            &["bpf", "udp and dst port 9999"],
            &["ret #262144", "accepted: IP 127.0.0.1."],
        ),
        (&["bpf", "icmp or port 9"], &["jeq #0x1", "ret #0"]),
        (&["hdrincl"], &["from 127.0.0.42:4242"]),
        (
            &["ring"],
            &[
                "TPACKET_V3",
                "PACKET_STATISTICS dropped",
                "faster (this run)",
            ],
        ),
        (
            &["traceroute"],
            &["time exceeded in transit", "(port unreachable)"],
        ),
    ];
    for (args, needles) in cases {
        runs_and_says(args, Duration::from_secs(40), needles);
    }
}

#[test]
fn bad_input_is_refused_not_a_crash() {
    if let Some(why) = refused() {
        return support::skip(why);
    }
    let run = run_bin(BIN, &["bpf", "udp and port banana"], DEADLINE);
    assert!(
        !run.status.success() && run.stderr.contains("port needs a number"),
        "ch11_raw bpf 'udp and port banana' must fail with a message naming the problem; \
         got {:?}\nstderr:\n{}",
        run.status.code(),
        run.stderr
    );
    // Not loopback: refused outside the namespace, unreachable inside it
    // (its only interface is lo). Never sent anywhere real.
    let run = run_bin(
        BIN,
        &["ping", "--to", "192.0.2.1", "--count", "1"],
        DEADLINE,
    );
    assert!(
        !run.status.success(),
        "ch11_raw ping --to 192.0.2.1 must fail (traffic stays on this machine), got {:?}\n{}",
        run.status.code(),
        run.stdout
    );
}
