//! Graded tests for chapter 4: the select loop, framing, the poll loop and
//! the select client. The clients here are independent of the chapter's
//! code: `std::net` streams, read with `poll(2)` where there are many.

#[macro_use]
mod support;

/// What the shared chat harness (`support/chat.rs`) runs here: chapter 4's
/// chat types and its two loops.
mod chat_server {
    use std::io::PipeReader;
    use std::os::fd::OwnedFd;

    pub use sockbook::ch04_select::{Config, Event, Stats, Why};
    use sockbook::ch04_select::{serve_poll, serve_select};

    /// The loops of this chapter.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Kind {
        Select,
        Poll,
    }

    /// Serve chat with `kind` until `stop` is readable.
    pub fn serve(
        kind: Kind,
        listener: OwnedFd,
        stop: PipeReader,
        config: Config,
    ) -> sockbook::kit::Result<Stats> {
        match kind {
            Kind::Select => serve_select(listener, stop, config),
            Kind::Poll => serve_poll(listener, stop, config),
        }
    }
}

#[path = "support/chat.rs"]
mod chat;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use nix::sys::socket::{self, sockopt};
use sockbook::ch04_select::{LineTooLong, str_cli, take_lines};

use chat::{Child, Swarm, basic_chat, crowd};
use chat_server::Kind;
use support::{Background, DEADLINE};

const BOTH: [Kind; 2] = [Kind::Select, Kind::Poll];

graded! {
    /// The select loop accepts, reads, splits lines and broadcasts them to
    /// every other client, prefixed with the sender's address.
    points = 3;
    fn select_loop_accepts_reads_splits_broadcasts() {
        basic_chat(Kind::Select);
    }
}

graded! {
    /// The poll loop serves the same chat.
    points = 3;
    fn poll_loop_serves_the_same_chat() {
        basic_chat(Kind::Poll);
    }
}

// ---------------------------------------------------------------------------
// Framing, against std's own line splitting.

/// What `take_lines` must produce for `input` in one piece: the complete
/// lines (std's `split_inclusive`) and the unfinished rest.
fn reference_lines(input: &[u8]) -> (Vec<Vec<u8>>, Vec<u8>) {
    let mut lines: Vec<Vec<u8>> = input
        .split_inclusive(|&b| b == b'\n')
        .map(<[u8]>::to_vec)
        .collect();
    let rest = match lines.last() {
        Some(last) if !last.ends_with(b"\n") => lines.pop().unwrap(),
        _ => Vec::new(),
    };
    (lines, rest)
}

/// Feed `input` cut at `cuts` and collect the lines; `Err` if any call failed.
fn feed(
    input: &[u8],
    cuts: &[usize],
    max_line: usize,
) -> Result<(Vec<Vec<u8>>, Vec<u8>), LineTooLong> {
    let mut pending = Vec::new();
    let mut lines = Vec::new();
    let mut start = 0;
    for &end in cuts.iter().chain(std::iter::once(&input.len())) {
        lines.extend(take_lines(&mut pending, &input[start..end], max_line)?);
        start = end;
    }
    Ok((lines, pending))
}

graded! {
    /// Framing survives partial lines and many lines per read: the result
    /// does not depend on how the bytes were cut, and overlong lines are
    /// refused however they arrive.
    points = 3;
    fn framing_survives_partial_lines_and_many_lines_per_read() {
        let input = b"alpha\nbe\n\nta\r\ngamma delta\nepsilon".to_vec();
        let expected = reference_lines(&input);
        assert_eq!(expected.0.len(), 5, "test scaffolding: the reference framing of {input:?} should give 5 lines");
        assert_eq!(feed(&input, &[], 100), Ok(expected.clone()), "one read");
        for i in 0..=input.len() {
            for j in i..=input.len() {
                assert_eq!(feed(&input, &[i, j], 100), Ok(expected.clone()), "cut at {i} and {j}");
            }
        }
        let bytes: Vec<usize> = (1..input.len()).collect();
        assert_eq!(feed(&input, &bytes, 100), Ok(expected), "one byte per read");

        // Many lines in one read.
        let many: Vec<u8> = (0..10_000).flat_map(|i| format!("line {i}\n").into_bytes()).collect();
        let (lines, rest) = feed(&many, &[], 100).unwrap();
        assert_eq!((lines, rest), reference_lines(&many), "take_lines fed 10,000 lines in one read: (lines, what is left in pending) on the left, the reference on the right");

        // The limit: content of exactly max_line bytes is fine, one more is not,
        // in one read, byte by byte, or unfinished.
        let max = 16;
        let ok = format!("{}\n", "x".repeat(max)).into_bytes();
        let long = format!("ok\n{}\n", "y".repeat(max + 1)).into_bytes();
        assert_eq!(feed(&ok, &[], max), Ok(reference_lines(&ok)), "take_lines with max_line {max}: a line of exactly {max} bytes in one read is allowed");
        let cuts: Vec<usize> = (1..ok.len()).collect();
        assert_eq!(feed(&ok, &cuts, max), Ok(reference_lines(&ok)), "take_lines with max_line {max}: a line of exactly {max} bytes, fed one byte per read, is allowed");
        assert_eq!(feed(&long, &[], max), Err(LineTooLong { max_line: max }), "take_lines with max_line {max}: a line of {} bytes in one read must be refused with LineTooLong", max + 1);
        let cuts: Vec<usize> = (1..long.len()).collect();
        assert_eq!(feed(&long, &cuts, max), Err(LineTooLong { max_line: max }), "take_lines with max_line {max}: a line of {} bytes fed one byte per read must be refused with LineTooLong", max + 1);
        let unfinished = "z".repeat(max + 1).into_bytes();
        assert_eq!(feed(&unfinished, &[], max), Err(LineTooLong { max_line: max }), "take_lines with max_line {max}: {} bytes with no newline yet must be refused already (else a client that never sends a newline grows the buffer without end)", max + 1);
        let mut pending = Vec::new();
        assert_eq!(take_lines(&mut pending, &unfinished[..max], max), Ok(vec![]), "take_lines with max_line {max}: {max} bytes with no newline yet are not too long: no line yet, and no error");
        assert_eq!(pending.len(), max, "an unfinished line of max_line bytes waits");
    }
}

// ---------------------------------------------------------------------------
// Clients that misbehave.

graded! {
    /// A client that sends half a line and stalls blocks nobody; its line
    /// goes out whole when it finishes it (select and poll).
    points = 2;
    fn stalled_client_blocks_nobody() {
        for kind in BOTH {
            chat::stalled_client_blocks_nobody(kind);
        }
    }
}

graded! {
    /// A client that never reads is disconnected when its output buffer is
    /// full, with the reason logged; everyone else is served meanwhile.
    points = 2;
    fn non_reader_is_disconnected_and_blocks_nobody() {
        for kind in BOTH {
            chat::non_reader_is_disconnected_and_blocks_nobody(kind);
        }
    }
}

graded! {
    /// A slow reader gets every line once it reads: what the kernel would
    /// not take at once waits in its output buffer and goes out when the
    /// loop sees its socket writable again (select's write set, POLLOUT).
    points = 2;
    fn slow_reader_gets_every_line_once_it_reads() {
        for kind in BOTH {
            chat::slow_reader_gets_every_line_once_it_reads(kind);
        }
    }
}

graded! {
    /// A client that half-closes (`shutdown(SHUT_WR)`) while lines still
    /// wait in its output buffer gets every one of them before the server
    /// closes it: the server stops reading from it, not writing to it.
    points = 2;
    fn half_closed_client_still_gets_its_queued_lines() {
        for kind in BOTH {
            chat::half_closed_client_still_gets_its_queued_lines(kind);
        }
    }
}

graded! {
    /// While output waits for a client that does not read, the loop sleeps:
    /// it watches that client for writing only while output is pending, so
    /// the other, idle clients' always-writable sockets do not wake it (its
    /// CPU time is compared with a thread that spins beside it). When the
    /// client reads while new lines keep coming, it gets them all in order.
    points = 3;
    secs = 30;
    fn pending_output_sleeps_and_keeps_order() {
        for kind in BOTH {
            chat::pending_output_sleeps_and_keeps_order(kind);
        }
    }
}

graded! {
    /// A flood is served whole and in order, interleaved only at line
    /// boundaries; a flooder that sends a line past the limit is dropped.
    points = 2;
    fn flood_is_served_whole_and_overlong_line_dropped() {
        for kind in BOTH {
            chat::flood_is_served_whole_and_overlong_line_dropped(kind);
        }
    }
}

graded! {
    /// Clients that reset (RST) at any moment are dropped and closed; the
    /// server goes on serving the others.
    points = 2;
    fn abrupt_resets_are_survived() {
        for kind in BOTH {
            chat::abrupt_resets_are_survived(kind);
        }
    }
}

graded! {
    /// 200 clients connect at once; every one is welcomed, every line
    /// reaches the 199 others, and every socket is closed after (select and
    /// poll).
    points = 2;
    secs = 15;
    fn two_hundred_clients_at_once() {
        for kind in BOTH {
            chat::two_hundred_clients_at_once(kind);
        }
    }
}

graded! {
    /// The select server serves 1,000 clients and refuses the ones whose fd
    /// would be >= FD_SETSIZE: a line naming FD_SETSIZE, closed, logged.
    points = 3;
    secs = 20;
    fn select_server_serves_1000_and_refuses_past_fd_setsize() {
        let clients = crowd(1100);
        let wall = clients > libc::FD_SETSIZE;
        let server = Child::start(env!("CARGO_BIN_EXE_ch04_select"), &["server", "--addr", "127.0.0.1:0"]);
        let deadline = Instant::now() + Duration::from_secs(14);
        let mut swarm = Swarm::new();
        swarm.connect(server.addr, clients, 100, deadline);
        let served = swarm.served();
        let refused: Vec<usize> = (0..clients).filter(|i| !served.contains(i)).collect();
        if wall {
            assert!(served.len() >= 1000, "only {} of {clients} served", served.len());
            assert!(!refused.is_empty(), "{clients} clients should pass FD_SETSIZE");
        } else {
            assert_eq!(served.len(), clients, "all {clients} should be served");
        }
        for &i in &refused {
            let first = &swarm.peers[i].lines[0];
            assert!(first.starts_with("* refused") && first.contains("FD_SETSIZE"), "refusal {first:?}");
        }
        swarm.pump(deadline, |sw| refused.iter().all(|&i| sw.peers[i].eof));
        // Independently, from /proc: the server holds every fd below the
        // wall, none above it, and a socket for the listener and each client.
        let sockets = server.socket_fds();
        assert!(sockets.iter().all(|&fd| fd < libc::FD_SETSIZE), "a socket fd past FD_SETSIZE: {sockets:?}");
        assert_eq!(sockets.len(), served.len() + 1, "listener + served clients");
        if wall {
            assert_eq!(server.fd_count_below(libc::FD_SETSIZE), libc::FD_SETSIZE, "refused before the table was full");
        }
        let mut senders: Vec<usize> = served.iter().copied().step_by(50).collect();
        senders.extend(served.iter().rev().take(10));
        senders.sort_unstable();
        senders.dedup();
        swarm.broadcast_check(&served, &senders, deadline);
        drop(swarm);
        server.check_all_closed(deadline);
        let (status, log) = server.terminate();
        assert!(status.success(), "server exit: {status}");
        let refusals = log.iter().filter(|l| l.starts_with("[select] refused ") && l.contains("FD_SETSIZE")).count();
        assert_eq!(refusals, refused.len(), "one log line per refusal, naming FD_SETSIZE");
    }
}

graded! {
    /// The poll server serves 1,500 clients: no FD_SETSIZE wall.
    points = 2;
    secs = 20;
    fn poll_server_serves_1500() {
        chat::child_serves_many(
            Kind::Poll,
            env!("CARGO_BIN_EXE_ch04_select"),
            &["server", "--poll", "--addr", "127.0.0.1:0"],
            1500,
        );
    }
}

// ---------------------------------------------------------------------------
// The select client.

/// Run str_cli with `input` against a peer served by `serve`, return what
/// came out.
fn through_str_cli(
    input: Vec<u8>,
    serve: fn(TcpStream),
) -> (Vec<u8>, sockbook::ch04_select::Copied) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    // A small receive window at the peer (inherited by the accepted socket)
    // and a small send buffer at the client make short sends certain, not a
    // matter of load: str_cli's 16 KiB chunks cannot all fit at once.
    socket::setsockopt(&listener, sockopt::RcvBuf, &4096)
        .unwrap_or_else(|e| panic!("setsockopt(SO_RCVBUF, 4096) on the peer's listener: {e}"));
    let addr = listener.local_addr().unwrap();
    let _peer = Background::spawn("peer", move || {
        let (s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(DEADLINE)).unwrap();
        serve(s);
    });
    let (in_r, mut in_w) = std::io::pipe().unwrap();
    let (mut out_r, out_w) = std::io::pipe().unwrap();
    let feeder = Background::spawn("feeder", move || in_w.write_all(&input).unwrap());
    let drain = Background::spawn("drain", move || {
        let mut all = Vec::new();
        out_r.read_to_end(&mut all).unwrap();
        all
    });
    let sock = TcpStream::connect_timeout(&addr, DEADLINE).unwrap();
    socket::setsockopt(&sock, sockopt::SndBuf, &4096)
        .unwrap_or_else(|e| panic!("setsockopt(SO_SNDBUF, 4096) on the client socket: {e}"));
    let copied = str_cli(in_r.as_fd(), sock.as_fd(), out_w.as_fd()).unwrap_or_else(|e| {
        panic!("str_cli(in_r.as_fd(), sock.as_fd(), out_w.as_fd()) returned an error: {e}")
    });
    drop(out_w);
    feeder.join_within(DEADLINE, "feeder");
    (drain.join_within(DEADLINE, "output"), copied)
}

fn echo_as_it_comes(mut s: TcpStream) {
    let mut buf = [0u8; 65536];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return, // EOF: dropping s closes it
            Ok(n) => s.write_all(&buf[..n]).unwrap(),
        }
    }
}

fn echo_after_eof(mut s: TcpStream) {
    let mut all = Vec::new();
    s.read_to_end(&mut all).unwrap();
    s.write_all(&all).unwrap();
}

graded! {
    /// The select client sends all its input, half-closes at its end, and
    /// prints every reply: against a line echo and against a peer that
    /// answers only after EOF.
    points = 2;
    fn select_client_half_closes_and_gets_every_reply() {
        let input: Vec<u8> = (0..40_000).flat_map(|i| format!("line {i:05} of the batch\n").into_bytes()).collect();
        for serve in [echo_as_it_comes as fn(TcpStream), echo_after_eof] {
            let (output, copied) = through_str_cli(input.clone(), serve);
            assert_eq!(output.len(), input.len(), "every reply must arrive");
            assert!(output == input, "the replies differ from the input");
            assert_eq!(copied.sent, input.len() as u64, "str_cli's count of bytes sent (left) should be the whole input (right)");
            assert_eq!(copied.received, input.len() as u64, "str_cli's count of bytes received (left) should be every reply byte (right)");
        }
    }
}
