//! Graded tests for chapter 8: the echo server, the request/response
//! client, reliable transfer through the lossy relay, and connected UDP.
//! The peers here are independent of the chapter's code: `std::net`
//! sockets, timed with `Instant`; the relay is the chapter's own tool (not
//! an assignment), run on a thread of the test with a fixed seed.

#[macro_use]
mod support;

use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::socket::SockaddrStorage;
use sockbook::ch08_udp::relay::{Impairment, spawn_relay};
use sockbook::ch08_udp::transfer::{self, TransferConfig};
use sockbook::ch08_udp::{
    Backoff, EchoConfig, EchoEvent, EchoStats, ask_connected, receive_file, request, send_file,
    serve_echo,
};
use sockbook::kit::narrate;
use support::{Background, DEADLINE, std_addr};

// ---------------------------------------------------------------------------
// Helpers.

fn nix(addr: SocketAddr) -> SockaddrStorage {
    SockaddrStorage::from(addr)
}

/// A `std` UDP socket on a free loopback port that never waits longer than
/// `timeout` for a datagram.
fn std_udp(timeout: Duration) -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    s.set_read_timeout(Some(timeout)).unwrap();
    s
}

/// The chapter's UDP socket (an `OwnedFd`) on a free loopback port.
fn own_udp() -> (std::os::fd::OwnedFd, SockaddrStorage) {
    narrate::set_quiet(true);
    sockbook::ch08_udp::dgram::udp_bind("", &support::loopback_any()).expect("udp_bind")
}

/// An echo server under test, on a background thread.
struct Echo {
    addr: SocketAddr,
    stop: Option<std::io::PipeWriter>,
    events: Receiver<EchoEvent>,
    thread: Background<sockbook::kit::Result<EchoStats>>,
}

impl Echo {
    fn start(buf_len: usize) -> Echo {
        let (sock, addr) = own_udp();
        let (tx, events) = mpsc::channel();
        let config = EchoConfig {
            buf_len,
            events: Some(tx),
        };
        let (stop_r, stop_w) = std::io::pipe().unwrap();
        let thread = Background::spawn("echo server", move || serve_echo(sock, stop_r, config));
        Echo {
            addr: std_addr(&addr),
            stop: Some(stop_w),
            events,
            thread,
        }
    }

    /// Close the stop pipe; the server must return its counts in time.
    fn stop(mut self) -> EchoStats {
        drop(self.stop.take());
        self.thread
            .join_within(DEADLINE, "serve_echo after its stop fd became readable (does it poll the stop fd, or block in recvmsg?)")
            .unwrap_or_else(|e| panic!("serve_echo returned an error: {e}"))
    }

    /// The next event the server reported, within DEADLINE.
    fn event(&self, what: &str) -> EchoEvent {
        self.events.recv_timeout(DEADLINE).unwrap_or_else(|_| {
            panic!("the echo server reported no event ({what}) within {DEADLINE:?}")
        })
    }
}

/// Bytes that differ from position to position (and from client to client).
fn pattern(len: usize, salt: u32) -> Vec<u8> {
    let mut x = 0x2545_F491u32 ^ salt.wrapping_mul(0x9E37_79B9);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// FNV-1a, 64 bits: the integrity hash of the transfer tests.
fn fnv1a(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

// ---------------------------------------------------------------------------
// Assignment 1: the echo server.

graded! {
    /// Datagrams of every size up to 65507 bytes come back whole and unchanged.
    points = 1;
    fn echo_returns_every_size_whole() {
        let server = Echo::start(EchoConfig::default().buf_len);
        let client = std_udp(DEADLINE);
        let mut buf = vec![0u8; 70_000];
        for (i, len) in [0usize, 1, 100, 1472, 9000, 65_000, 65_507].into_iter().enumerate() {
            let sent = pattern(len, i as u32);
            client.send_to(&sent, server.addr).unwrap();
            let (n, from) = client.recv_from(&mut buf).unwrap_or_else(|e| {
                panic!("sent a {len}-byte datagram to the echo server at {}: no echo ({e})", server.addr)
            });
            assert_eq!(from, server.addr, "the echo of {len} bytes came from {from}, not the server");
            assert!(
                n == len && buf[..n] == sent[..],
                "sent a {len}-byte datagram to the echo server at {}, got back {n} bytes{}",
                server.addr,
                if n == len {
                    format!(
                        " that differ, first at byte {:?}",
                        buf[..n].iter().zip(&sent).position(|(a, b)| a != b)
                    )
                } else {
                    String::new()
                }
            );
        }
        let stats = server.stop();
        assert_eq!(stats.echoed, 7, "7 datagrams echoed, the server counted {stats:?}");
        assert_eq!(stats.truncated, 0, "no datagram was too long for a 65528-byte buffer: {stats:?}");
    }
}

graded! {
    /// A datagram longer than the buffer is reported with its real length (MSG_TRUNC), not echoed cut.
    points = 1;
    fn echo_reports_truncation_instead_of_echoing_a_stump() {
        let server = Echo::start(1000);
        let client = std_udp(DEADLINE);
        client.send_to(&pattern(1500, 1), server.addr).unwrap();
        match server.event("after a 1500-byte datagram into a 1000-byte buffer") {
            EchoEvent::Truncated { len, buf_len, .. } => {
                assert_eq!(
                    (len, buf_len),
                    (1500, 1000),
                    "Truncated should carry the datagram's real length (recvmsg with MSG_TRUNC returns it) and the buffer's"
                );
            }
            other => panic!("a 1500-byte datagram into a 1000-byte buffer: want EchoEvent::Truncated, got {other:?}"),
        }
        // Then a datagram that fits: it, and only it, comes back.
        let fits = pattern(1000, 2);
        client.send_to(&fits, server.addr).unwrap();
        let mut buf = [0u8; 4096];
        let (n, _) = client.recv_from(&mut buf).unwrap_or_else(|e| {
            panic!("after a truncated 1500-byte datagram, sent a 1000-byte one (fits the 1000-byte buffer): no echo within {DEADLINE:?} ({e})")
        });
        assert!(
            n == 1000 && buf[..n] == fits[..],
            "after the truncated 1500-byte datagram and a 1000-byte one, the first echo was {n} bytes: the cut stump was echoed (check msg_flags for MSG_TRUNC)"
        );
        let stats = server.stop();
        assert_eq!(
            (stats.echoed, stats.truncated),
            (1, 1),
            "one echoed, one truncated; the server counted {stats:?}"
        );
    }
}

graded! {
    /// Fifty clients at once each get their own datagrams back; garbage and vanished peers do not stop the server.
    points = 1;
    fn echo_serves_many_clients_and_survives_hostile_peers() {
        let server = Echo::start(EchoConfig::default().buf_len);
        // A peer that sends and closes before its echo comes back, and some garbage.
        let gone = std_udp(DEADLINE);
        gone.send_to(b"I will not wait", server.addr).unwrap();
        drop(gone);
        let rude = std_udp(DEADLINE);
        for len in [0usize, 1, 3, 65_507] {
            rude.send_to(&pattern(len, 99), server.addr).unwrap();
        }
        let clients: Vec<UdpSocket> = (0..50).map(|_| std_udp(DEADLINE)).collect();
        for round in 0..3u32 {
            for (i, c) in clients.iter().enumerate() {
                c.send_to(&pattern(64 + i, round * 100 + i as u32), server.addr).unwrap();
            }
            for (i, c) in clients.iter().enumerate() {
                let mut buf = [0u8; 512];
                let (n, _) = c.recv_from(&mut buf).unwrap_or_else(|e| {
                    panic!("client {i} of 50, round {round}: no echo within {DEADLINE:?} ({e})")
                });
                assert!(
                    buf[..n] == pattern(64 + i, round * 100 + i as u32)[..],
                    "client {i} of 50, round {round}: got back {n} bytes that are not its own"
                );
            }
        }
        let stats = server.stop();
        assert!(stats.echoed >= 150, "150 echoes to the 50 clients at least; counted {stats:?}");
    }
}

// ---------------------------------------------------------------------------
// Assignment 2: the request/response client.

/// What a test server saw: when each datagram arrived, and its bytes.
type Arrivals = Vec<(Instant, Vec<u8>)>;

/// A server (std) that records when each request arrives and answers with
/// `answer(n, request)` (n = 1 for the first): a list of (from which
/// socket: 0 = itself, 1 = a stranger, datagram) to send back.
fn request_server(
    answer: impl Fn(usize, &[u8]) -> Vec<(usize, Vec<u8>)> + Send + 'static,
    quit_after: Duration,
) -> (SocketAddr, Background<Arrivals>) {
    let server = std_udp(Duration::from_millis(50));
    let stranger = std_udp(DEADLINE);
    let addr = server.local_addr().unwrap();
    let thread = Background::spawn("request server", move || {
        let mut seen = Vec::new();
        let end = Instant::now() + quit_after;
        let mut buf = [0u8; 2048];
        while Instant::now() < end {
            let (n, from) = match server.recv_from(&mut buf) {
                Ok(got) => got,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    continue;
                }
                Err(e) => panic!("request server: recv_from: {e}"),
            };
            seen.push((Instant::now(), buf[..n].to_vec()));
            for (who, datagram) in answer(seen.len(), &buf[..n]) {
                let sock = if who == 0 { &server } else { &stranger };
                sock.send_to(&datagram, from).unwrap();
            }
        }
        seen
    });
    (addr, thread)
}

graded! {
    /// Each retry waits longer than the one before (exponential backoff), measured at the server.
    points = 2;
    secs = 15;
    fn request_backs_off_exponentially() {
        // Silent for three tries, then it answers.
        let (addr, server) = request_server(
            |n, req| {
                if n < 4 {
                    return vec![];
                }
                let id = req.split(|&b| b == b' ').next().unwrap_or(b"").to_vec();
                vec![(0, [id, b" fourth time lucky".to_vec()].concat())]
            },
            Duration::from_millis(2500),
        );
        let (sock, _) = own_udp();
        let backoff = Backoff { first_timeout: Duration::from_millis(100), factor: 2, tries: 5 };
        let reply = request(&sock, &nix(addr), 31, b"are you there?", backoff)
            .unwrap_or_else(|e| panic!("the server answers the 4th try of 5; request returned {e}"));
        assert!(
            reply.body == b"fourth time lucky",
            "the server answered the 4th try with \"31 fourth time lucky\": Reply::body should be the bytes after the id \"31 \"; got {:?}",
            String::from_utf8_lossy(&reply.body)
        );
        assert_eq!(reply.sends, 4, "the server was silent for 3 tries and answered the 4th: Reply::sends should be 4; the reply had sends {}, ignored {}, body {:?}", reply.sends, reply.ignored, String::from_utf8_lossy(&reply.body));
        let seen = server.join_within(DEADLINE * 2, "request server");
        assert_eq!(seen.len(), 4, "the server saw {} requests, want 4 (3 unanswered + 1)", seen.len());
        for (_, d) in &seen {
            assert!(
                d == b"31 are you there?",
                "every try resends the same request with the same id, \"31 are you there?\"; the server received {:?}",
                String::from_utf8_lossy(d)
            );
        }
        // Lower bounds only (a loaded machine makes waits longer, never shorter).
        for (k, want_ms) in [(1usize, 100u64), (2, 200), (3, 400)] {
            let gap = seen[k].0 - seen[k - 1].0;
            let floor = Duration::from_millis(want_ms * 8 / 10);
            assert!(
                gap >= floor,
                "try {} came {gap:?} after try {k}: with a first timeout of 100 ms doubling, that wait should be {want_ms} ms (at least {floor:?}); gaps: {:?}",
                k + 1,
                seen.windows(2).map(|w| w[1].0 - w[0].0).collect::<Vec<_>>()
            );
        }
    }
}

graded! {
    /// With no answer, the client sends exactly `tries` times and fails with ETIMEDOUT.
    points = 1;
    secs = 15;
    fn request_gives_up_after_the_retry_limit() {
        let (addr, server) = request_server(|_, _| vec![], Duration::from_millis(1500));
        let (sock, _) = own_udp();
        let backoff = Backoff { first_timeout: Duration::from_millis(50), factor: 2, tries: 3 };
        let t0 = Instant::now();
        let result = request(&sock, &nix(addr), 5, b"hello?", backoff);
        let took = t0.elapsed();
        match result {
            Err(e) => assert_eq!(e.errno(), Some(Errno::ETIMEDOUT), "a silent server: want ETIMEDOUT, got {e}"),
            Ok(r) => panic!("a silent server, yet request returned {r:?}"),
        }
        assert!(
            took >= Duration::from_millis(280),
            "3 tries waiting 50 + 100 + 200 ms take 350 ms; request gave up after {took:?}"
        );
        let seen = server.join_within(DEADLINE, "request server");
        assert_eq!(seen.len(), 3, "a silent server, Backoff {{ tries: 3 }}: request should send exactly 3 times; the server received {} datagrams {:?}", seen.len(), seen.iter().map(|(_, d)| String::from_utf8_lossy(d).into_owned()).collect::<Vec<_>>());
    }
}

graded! {
    /// Stale replies (another id), duplicates of an earlier reply, strangers' datagrams and garbage are ignored.
    points = 2;
    fn request_ignores_stale_duplicate_and_stray_replies() {
        let (addr, server) = request_server(
            |n, _| match n {
                // Request 7: answered twice (the network duplicated it).
                1 => vec![(0, b"7 first".to_vec()), (0, b"7 first".to_vec())],
                // Request 8: a stale reply to 7, a stranger using the right
                // id, garbage, then the answer.
                _ => vec![
                    (0, b"7 stale".to_vec()),
                    (1, b"8 from a stranger".to_vec()),
                    (0, b"no id at all".to_vec()),
                    (0, b"".to_vec()),
                    (0, b"8 second".to_vec()),
                ],
            },
            Duration::from_millis(1500),
        );
        let (sock, _) = own_udp();
        let backoff = Backoff { first_timeout: Duration::from_millis(1000), factor: 2, tries: 2 };
        let first = request(&sock, &nix(addr), 7, b"q", backoff)
            .unwrap_or_else(|e| panic!("request(id 7, \"q\"): the server answers \"7 first\" (twice); request returned {e}"));
        assert_eq!(String::from_utf8_lossy(&first.body), "first", "request(id 7): the server answered \"7 first\" (twice): Reply::body should be \"first\"");
        let second = request(&sock, &nix(addr), 8, b"q", backoff).unwrap_or_else(|e| {
            panic!("request(id 8, \"q\") on the same socket: after stale, stray and garbage datagrams the server answers \"8 second\"; request returned {e}")
        });
        assert_eq!(
            String::from_utf8_lossy(&second.body),
            "second",
            "request 8: before \"8 second\" came the duplicate \"7 first\", \"7 stale\", \"8 from a stranger\" (another address), \"no id at all\" and an empty datagram"
        );
        assert_eq!(second.sends, 1, "request(id 8): the answer came in time for the first try (timeout 1 s): Reply::sends should be 1; the reply had sends {}, ignored {}, body {:?}", second.sends, second.ignored, String::from_utf8_lossy(&second.body));
        assert!(second.ignored >= 5, "5 datagrams were not the answer; ignored counts {}", second.ignored);
        let _ = server.join_within(DEADLINE, "request server");
    }
}

// ---------------------------------------------------------------------------
// Assignment 3: reliable transfer through the relay.

/// Send `data` with the chapter's sender through a relay impaired by `how`
/// to the chapter's receiver; returns what arrived and the sender's stats.
fn transfer_through(
    data: &[u8],
    how: Impairment,
    config: TransferConfig,
    garbage_first: bool,
) -> (Vec<u8>, transfer::Sent, sockbook::ch08_udp::RelayStats) {
    let (rx, rx_addr) = own_udp();
    let (tx, _) = own_udp();
    if garbage_first {
        let rude = std_udp(DEADLINE);
        for g in [
            &b""[..],
            b"D",
            b"Dxx",
            b"A\0\0\0\x05",
            b"hello, receiver",
            &[0xffu8; 2000][..],
        ] {
            rude.send_to(g, std_addr(&rx_addr)).unwrap();
        }
    }
    let relay = spawn_relay(rx_addr, how.clone()).expect("start the relay");
    let receiver = Background::spawn("receive_file", move || receive_file(&rx, config));
    let sent = send_file(&tx, &relay.addr, data, config).unwrap_or_else(|e| {
        panic!(
            "send_file of {} bytes through a relay with {how:?}: {e}",
            data.len()
        )
    });
    let got = receiver
        .join_within(config.give_up + DEADLINE, "receive_file")
        .unwrap_or_else(|e| {
            panic!(
                "receive_file ({} bytes sent, relay {how:?}): {e}",
                data.len()
            )
        });
    let stats = relay.stop().expect("relay");
    (got.data, sent, stats)
}

fn assert_intact(sent: &[u8], got: &[u8], what: &str) {
    assert!(
        got.len() == sent.len() && fnv1a(got) == fnv1a(sent),
        "{what}: sent {} bytes (FNV-1a {:016x}), received {} bytes (FNV-1a {:016x}){}",
        sent.len(),
        fnv1a(sent),
        got.len(),
        fnv1a(got),
        got.iter()
            .zip(sent)
            .position(|(a, b)| a != b)
            .map(|i| format!(
                "; first difference at byte {i} (packet {})",
                i / transfer::CHUNK
            ))
            .unwrap_or_default()
    );
}

graded! {
    /// Files arrive byte-for-byte intact through loss, duplication and reordering, at several seeds.
    points = 3;
    secs = 45;
    fn transfer_is_intact_through_loss_dup_and_reorder() {
        let config = TransferConfig::default();
        let cases = [
            (0.0, 0.0, 0.0, 1u64, 20_000usize),
            (0.05, 0.05, 0.1, 2, 150_000),
            (0.05, 0.02, 0.3, 3, 100_000),
            (0.2, 0.1, 0.2, 4, 60_000),
        ];
        for (i, (loss, dup, reorder, seed, len)) in cases.into_iter().enumerate() {
            let how = Impairment {
                loss,
                dup,
                reorder,
                delay: Duration::from_millis(1),
                seed,
                ..Impairment::default()
            };
            let data = pattern(len, seed as u32);
            let (got, _, stats) = transfer_through(&data, how, config, i == 1);
            assert_intact(&data, &got, &format!(
                "loss {loss}, dup {dup}, reorder {reorder}, seed {seed} (the relay did: forward {}; back {})",
                stats.forward, stats.back
            ));
        }
    }
}

/// (what, file, forward datagrams to drop, ACKs to drop)
type EndCase = (&'static str, Vec<u8>, Vec<u64>, Vec<u64>);

graded! {
    /// A lost last packet, a lost final ACK, an empty file: the transfer still completes.
    points = 2;
    secs = 30;
    fn transfer_recovers_the_end_of_the_file() {
        let config = TransferConfig { give_up: Duration::from_secs(3), ..TransferConfig::default() };
        let three = pattern(3 * transfer::CHUNK - 10, 7);
        // (what, file, forward datagrams to drop, ACKs to drop)
        let cases: [EndCase; 5] = [
            ("a one-packet file whose packet is lost twice", pattern(300, 5), vec![1, 2], vec![]),
            ("a three-packet file whose last packet is lost", three.clone(), vec![3], vec![]),
            ("a three-packet file whose last two packets are lost", three.clone(), vec![2, 3], vec![]),
            ("a three-packet file whose last ACK is lost", three, vec![], vec![3]),
            ("an empty file whose one packet is lost", Vec::new(), vec![1], vec![]),
        ];
        for (what, data, drop_forward, drop_back) in cases {
            let how = Impairment { drop_forward, drop_back, ..Impairment::default() };
            let (got, sent, stats) = transfer_through(&data, how, config, false);
            assert_intact(&data, &got, what);
            assert!(
                sent.datagrams > sent.packets,
                "{what}: something was lost, so something must have been sent again; sent {} datagrams for {} packets (relay: forward {}; back {})",
                sent.datagrams, sent.packets, stats.forward, stats.back
            );
        }
    }
}

graded! {
    /// At 5 % loss each way the sliding window moves a file at least twice as fast as stop-and-wait, measured side by side.
    points = 2;
    secs = 45;
    fn transfer_beats_stop_and_wait_at_five_percent_loss() {
        let data = pattern(96 * 1024, 11);
        let how = Impairment {
            loss: 0.05,
            delay: Duration::from_millis(5),
            seed: 1005,
            ..Impairment::default()
        };
        let config = TransferConfig::default();
        // The baseline: the chapter's stop-and-wait sender and in-order receiver.
        let (rx, rx_addr) = own_udp();
        let (tx, _) = own_udp();
        let relay = spawn_relay(rx_addr, how.clone()).expect("relay");
        let receiver = Background::spawn("baseline receiver", move || transfer::receive_in_order(&rx, config));
        let t0 = Instant::now();
        transfer::send_stop_and_wait(&tx, &relay.addr, &data, config).expect("the stop-and-wait baseline failed");
        let baseline = t0.elapsed();
        let base_got = receiver.join_within(DEADLINE * 2, "baseline receiver").expect("baseline receiver");
        drop(relay);
        assert_intact(&data, &base_got.data, "the stop-and-wait baseline (not your code)");

        let t0 = Instant::now();
        let (got, _, stats) = transfer_through(&data, how, config, false);
        let window = t0.elapsed();
        assert_intact(&data, &got, "the sliding window at 5 % loss");
        let kbs = |t: Duration| data.len() as f64 / 1024.0 / t.as_secs_f64();
        assert!(
            window * 2 <= baseline,
            "96 KiB at 5 % loss, 5 ms each way: stop-and-wait took {baseline:?} ({:.0} KB/s), your window of {} took {window:?} ({:.0} KB/s): want at least 2x the baseline's goodput (relay: forward {}; back {})",
            kbs(baseline), config.window, kbs(window), stats.forward, stats.back
        );
    }
}

// ---------------------------------------------------------------------------
// Assignment 4: connected UDP.

graded! {
    /// A question to a closed port fails with ECONNREFUSED, as the ICMP port-unreachable reports.
    points = 1;
    fn connected_reports_econnrefused() {
        let closed = {
            let s = UdpSocket::bind("127.0.0.1:0").unwrap();
            s.local_addr().unwrap()
        };
        // Independent check that the port is closed: std's connected socket.
        let probe = std_udp(DEADLINE);
        probe.connect(closed).unwrap();
        probe.send(b"?").unwrap();
        let mut buf = [0u8; 16];
        let std_says = probe.recv(&mut buf).map_err(|e| e.kind());
        assert_eq!(std_says, Err(ErrorKind::ConnectionRefused), "std's probe of {closed} (test setup)");
        narrate::set_quiet(true);
        let t0 = Instant::now();
        match ask_connected(&nix(closed), b"anyone there?", Duration::from_secs(3)) {
            Err(e) => assert_eq!(
                e.errno(),
                Some(Errno::ECONNREFUSED),
                "asked closed port {closed}: want ECONNREFUSED from the call after send, got {e} after {:?}",
                t0.elapsed()
            ),
            Ok(r) => panic!("asked closed port {closed}, got a reply {r:?}"),
        }
    }
}

graded! {
    /// A connected socket gets its server's answer, never a stranger's datagram.
    points = 1;
    fn connected_gets_the_answer_and_never_a_strangers() {
        let server = std_udp(DEADLINE);
        let stranger = std_udp(DEADLINE);
        let addr = server.local_addr().unwrap();
        let peer = Background::spawn("server", move || {
            let mut buf = [0u8; 256];
            let (n, from) = server.recv_from(&mut buf).unwrap_or_else(|e| {
                panic!("the test's server: no question from ask_connected within {DEADLINE:?} ({e})")
            });
            stranger.send_to(b"from a stranger", from).unwrap();
            let mut answer = b"answer to ".to_vec();
            answer.extend_from_slice(&buf[..n]);
            server.send_to(&answer, from).unwrap();
        });
        narrate::set_quiet(true);
        let got = ask_connected(&nix(addr), b"q?", DEADLINE).unwrap_or_else(|e| {
            panic!("ask_connected(server {addr}, \"q?\"): a stranger's datagram, then the server's answer \"answer to q?\" were sent; it returned {e}")
        });
        assert_eq!(
            String::from_utf8_lossy(&got),
            "answer to q?",
            "a stranger sent \"from a stranger\" to the client just before the server's answer"
        );
        peer.join_within(DEADLINE, "server");
    }
}
