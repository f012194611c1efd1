#![doc = include_str!("../../chapters/05-handshake.md")]

pub mod backlog;
pub mod capture;
pub mod connect;
pub mod halfopen;
pub mod handshake;
pub mod header;
pub mod opts;
pub mod proc;
pub mod synqueue;

use std::time::Duration;

pub use backlog::{ListenQueues, listener_queues};
pub use capture::{Access, Capture, Packet};
pub use connect::connect_timeout;
pub use header::{TcpHeader, TcpOption, decode_tcp};
pub use proc::{ProcTcpEntry, parse_line, read_tcp_table};

use crate::kit::args::{Args, usage_error};
use crate::kit::narrate::note;
use crate::kit::{Error, Result};

/// `--help` text of `ch05_handshake`.
pub const USAGE: &str = "\
ch05_handshake: the TCP three-way handshake, the backlog, the half-open
queue and SYN-ACK retransmission, and how connect fails -- watched on this
machine's kernel (TCP_INFO, /proc/net/tcp, /proc/net/netstat, and packets
captured on lo where allowed).

usage: ch05_handshake [SUBCOMMAND] [OPTIONS]

  (none)                 run every part below, narrated (about 10 s;
                         part 3 with --defer 3)
  handshake              the three packets with their numbers, and each side's state
  backlog [--backlog N]  listen(fd, N), never accept: who gets in, who waits (default 4)
  synqueue               the SYN queue's limit: half-open entries held with
                         TCP_DEFER_ACCEPT, counted for backlogs 2 and 5 (with --netns
                         also with tcp_syncookies = 0, in the namespace only)
  halfopen [--defer S]   a connection held half-open (SYN_RECV) with TCP_DEFER_ACCEPT;
                         measure its SYN-ACK timer (default 7 s)
  connect [--syncnt N] [--timeout MS]
                         ECONNREFUSED, ETIMEDOUT (TCP_SYNCNT, default 1), nonblocking
                         connect, connect with a deadline (default 500 ms)
  server [--addr A] [--backlog N] [--defer S]
                         a listener that never accepts (default 127.0.0.1:5005,
                         backlog 2): poke it with nc, watch it with ss -lnt

options:
  --netns    run in a private user+network namespace even with root
             (its own lo: quiet counters, only the demo's packets)
  --help     this text

Packet capture needs CAP_NET_RAW. Without it the binary moves itself into a
private user+network namespace where the kernel allows that; otherwise it
says so and shows states only.
";

/// `TCP_DEFER_ACCEPT` seconds in the full demo: the shortest period
/// (3 s) in which the SYN-ACK timer fires twice.
const DEMO_DEFER: i32 = 3;

/// The two backlogs the SYN-queue part compares.
const SYN_QUEUE_BACKLOGS: [i32; 2] = [2, 5];

/// Options that take a value.
pub const VALUE_OPTIONS: &[&str] = &["--backlog", "--defer", "--syncnt", "--timeout", "--addr"];

/// Run the binary: the demo, or one part of it. `access` comes from
/// [`capture::prepare`], called in `main` before any thread started.
pub fn run(args: &Args, access: &Access, stop: Option<&crate::kit::stop::Stop>) -> Result<()> {
    let known = [
        "--netns",
        "--backlog",
        "--defer",
        "--syncnt",
        "--timeout",
        "--addr",
    ];
    if let Some(bad) = args.unknown_options(&known).first() {
        usage_error(USAGE, &format!("unknown option {bad}"));
    }
    let backlog = args.number("--backlog", 4, 0..=64)? as i32;
    let defer = args.number("--defer", 7, 3..=60)? as i32;
    let syncnt = args.number("--syncnt", 1, 1..=10)? as i32;
    let timeout = Duration::from_millis(args.number("--timeout", 500, 1..=60_000)? as u64);
    let command = args.command.as_deref();
    if command.is_none() {
        crate::say!(
            "",
            "Chapter 5: the TCP handshake, the backlog and the half-open queue. (`cargo run --bin ch05_handshake -- --help` for more)"
        );
    }
    if command != Some("server") {
        note(access.describe());
    }
    match command {
        None => {
            handshake::demo(access)?;
            backlog::demo(access, backlog, 3)?;
            synqueue::demo(access, &SYN_QUEUE_BACKLOGS, 3)?;
            // Two timer firings (1 s, then 2 s later) already show the
            // backoff; `halfopen` alone defers 7 s and sees a third.
            let defer = args.value("--defer").map_or(DEMO_DEFER, |_| defer);
            halfopen::demo(access, defer)?;
            connect::demo(access, syncnt, timeout)?;
            note("done");
            Ok(())
        }
        Some("handshake") => handshake::demo(access),
        Some("backlog") => backlog::demo(access, backlog, 3),
        Some("synqueue") => synqueue::demo(access, &SYN_QUEUE_BACKLOGS, 3).map(|_| ()),
        Some("halfopen") => halfopen::demo(access, defer),
        Some("connect") => connect::demo(access, syncnt, timeout),
        Some("server") => {
            let stop = stop.ok_or_else(|| Error::msg("server needs the Ctrl-C handler"))?;
            let bind = args.addr_or("127.0.0.1:5005")?;
            let backlog = args.number("--backlog", 2, 0..=4096)? as i32;
            let defer = args.value("--defer").map(|_| defer);
            backlog::serve(stop, &bind, backlog, defer)
        }
        Some(other) => usage_error(USAGE, &format!("unknown subcommand {other:?}")),
    }
}
