//! Graded tests for chapter 11: the Internet checksum, ICMP echo, ping,
//! the IPv4 packet decoder, the BPF compiler and traceroute. Tests that need
//! raw or packet sockets run in a child process inside a private user +
//! network namespace (`support::in_private_netns`), where the test holds
//! CAP_NET_RAW over its own `lo` and sees only its own packets; where the
//! machine refuses a namespace they report themselves skipped. Every
//! decision is checked against an independent implementation in this file.

#[macro_use]
mod support;

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::sys::socket::{self, MsgFlags, SockaddrIn};
use sockbook::ch11_raw::capture::{self, Kind};
use sockbook::ch11_raw::frame::Transport;
use sockbook::ch11_raw::icmp::{self, IcmpError};
use sockbook::ch11_raw::{bpf, frame, trace};

// ---------------------------------------------------------------- helpers

/// A tiny deterministic PRNG (xorshift64*), so a failure can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// The checksum the slow, obvious way: add byte pairs as numbers, odd byte
/// times 256, fold at the end.
fn reference_checksum(data: &[u8]) -> u16 {
    let mut sum: u64 = 0;
    for (i, b) in data.iter().enumerate() {
        sum += if i % 2 == 0 {
            u64::from(*b) * 256
        } else {
            u64::from(*b)
        };
    }
    while sum > 0xffff {
        sum = (sum >> 16) + (sum & 0xffff);
    }
    !(sum as u16)
}

fn quiet() {
    sockbook::kit::narrate::set_quiet(true);
}

fn raw_icmp() -> OwnedFd {
    icmp::raw_icmp_socket().expect("socket(AF_INET, SOCK_RAW, IPPROTO_ICMP) in the namespace")
}

/// Send raw ICMP bytes to 127.0.0.1 from a raw socket.
fn send_icmp(fd: &OwnedFd, msg: &[u8]) {
    let to = SockaddrIn::from(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0));
    socket::sendto(fd.as_raw_fd(), msg, &to, MsgFlags::empty())
        .unwrap_or_else(|e| panic!("sendto(raw ICMP, {} bytes to 127.0.0.1): {e}", msg.len()));
}

/// An ICMP echo message built independently of the code under test.
fn echo_message(kind: u8, id: u16, seq: u16, payload: &[u8]) -> Vec<u8> {
    let mut m = vec![kind, 0, 0, 0];
    m.extend_from_slice(&id.to_be_bytes());
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(payload);
    let c = reference_checksum(&m);
    m[2..4].copy_from_slice(&c.to_be_bytes());
    m
}

/// Every ICMP message a raw socket receives within `window`, IPv4 header
/// stripped (independently: IHL from the first byte).
fn icmp_received(fd: &OwnedFd, window: Duration) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let end = Instant::now() + window;
    let mut buf = [0u8; 65536];
    loop {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() || sockbook::kit::wait::wait_readable(fd, left).is_err() {
            return out;
        }
        let n = socket::recv(fd.as_raw_fd(), &mut buf, MsgFlags::MSG_DONTWAIT).unwrap_or(0);
        if n > 20 {
            let ihl = usize::from(buf[0] & 0x0f) * 4;
            out.push(buf[ihl..n].to_vec());
        }
    }
}

fn write_sysctl(path: &str, value: &str) {
    std::fs::write(path, value)
        .unwrap_or_else(|e| panic!("write {value:?} to {path} (in our own namespace): {e}"));
}

// ---------------------------------------------------------------- checksum

graded! {
    /// The checksum of RFC 1071's own example and of random data of every
    /// length 0..300 equals an independent computation.
    points = 2;
    fn checksum_matches_rfc1071_and_an_independent_sum() {
        // RFC 1071 section 3: the words 0001 f203 f4f5 f6f7 sum to 0xddf2.
        let example = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        let got = sockbook::ch11_raw::internet_checksum(&example);
        assert!(got == !0xddf2u16,
            "internet_checksum(00 01 f2 03 f4 f5 f6 f7): RFC 1071 sums these to 0xddf2, so the \
             checksum is {:#06x}; got {got:#06x}", !0xddf2u16);
        let mut rng = Rng(0x5eed_0001);
        for len in 0..300 {
            let data = rng.bytes(len);
            let (got, want) = (sockbook::ch11_raw::internet_checksum(&data), reference_checksum(&data));
            assert!(got == want, "internet_checksum of {len} random bytes {:02x?}…: expected {want:#06x} (an independent one's-complement sum), got {got:#06x}",
                &data[..len.min(8)]);
        }
    }
}

graded! {
    /// An odd last byte counts as the high byte of a final word, and large
    /// sums fold their carries back in (all 0xff bytes).
    points = 1;
    fn checksum_pads_an_odd_byte_and_folds_carries() {
        let odd = [0x01, 0x02, 0x03];
        let got = sockbook::ch11_raw::internet_checksum(&odd);
        assert!(got == !(0x0102u16 + 0x0300),
            "internet_checksum(01 02 03) = !(0x0102 + 0x0300) = {:#06x}: the odd byte 03 is the \
             HIGH byte of a last word 0300; got {got:#06x}", !(0x0102u16 + 0x0300));
        let ones = vec![0xffu8; 4001];
        let (got, want) = (sockbook::ch11_raw::internet_checksum(&ones), reference_checksum(&ones));
        assert!(got == want, "internet_checksum of 4001 bytes of 0xff: expected {want:#06x}, got {got:#06x} (the sum overflows 16 bits many times: are the carries folded back in?)");
    }
}

// ---------------------------------------------------------------- ICMP

graded! {
    /// The kernel answers an echo request built by `build_echo_request`
    /// (it drops one with a bad checksum), and the request's bytes are
    /// exactly RFC 792's layout.
    points = 2;
    secs = 30;
    fn kernel_answers_our_echo_request() {
        support::in_private_netns(|| {
            quiet();
            let payload = b"odd-length payload!"; // 19 bytes: the odd byte matters
            let req = icmp::build_echo_request(0xbeef, 7, payload);
            let want = echo_message(8, 0xbeef, 7, payload);
            assert!(req == want, "build_echo_request(0xbeef, 7, {:?}): expected bytes {want:02x?} (type 8, code 0, checksum, id, seq big-endian, payload), got {req:02x?}",
                String::from_utf8_lossy(payload));
            let fd = raw_icmp();
            send_icmp(&fd, &req);
            let seen = icmp_received(&fd, Duration::from_millis(500));
            let reply = echo_message(0, 0xbeef, 7, payload);
            assert!(seen.contains(&reply),
                "sent our echo request to 127.0.0.1 from a raw socket; expected the kernel's echo reply \
                 {reply:02x?}; the raw socket saw {seen:02x?} (no reply: the kernel dropped the request, \
                 usually a wrong checksum)");
        });
    }
}

graded! {
    /// `parse_echo` decodes the kernel's own echo reply, and refuses short,
    /// non-echo and corrupted messages with the right error.
    points = 2;
    secs = 30;
    fn parse_echo_reads_the_kernels_reply_and_refuses_bad_ones() {
        support::in_private_netns(|| {
            quiet();
            let fd = raw_icmp();
            let payload = b"kernel made this";
            // Identifier and sequence differ in their two bytes: a reader that
            // swaps them gets another number.
            send_icmp(&fd, &echo_message(8, 0x4217, 0x0203, payload));
            let seen = icmp_received(&fd, Duration::from_millis(500));
            let kernels = seen.iter().find(|m| m.first() == Some(&0))
                .unwrap_or_else(|| panic!("no echo reply from the kernel to our request; raw socket saw {seen:02x?}"));
            let got = icmp::parse_echo(kernels);
            let want = icmp::Echo { kind: 0, id: 0x4217, seq: 0x0203, payload: payload.to_vec() };
            assert_eq!(got.as_ref(), Ok(&want), "parse_echo(the kernel's reply {kernels:02x?})");
            assert_eq!(icmp::parse_echo(&kernels[..7]), Err(IcmpError::TooShort),
                "parse_echo of the first 7 bytes of the kernel's reply {:02x?}: an echo message has an 8-byte header", &kernels[..7]);
            let mut unreachable = kernels.clone();
            unreachable[0] = 3;
            unreachable[1] = 3;
            assert_eq!(icmp::parse_echo(&unreachable), Err(IcmpError::NotEcho),
                "parse_echo of a type 3 code 3 message (port unreachable) {unreachable:02x?}: only types 0 and 8 are echo");
            // Code 0 but not an echo: a timestamp request (type 13), its
            // checksum right, so only the type can refuse it.
            let mut timestamp = kernels.clone();
            timestamp[0] = 13;
            timestamp[2..4].copy_from_slice(&[0, 0]);
            let c = reference_checksum(&timestamp);
            timestamp[2..4].copy_from_slice(&c.to_be_bytes());
            assert_eq!(icmp::parse_echo(&timestamp), Err(IcmpError::NotEcho),
                "parse_echo of a type 13 code 0 message with a correct checksum {timestamp:02x?}: only types 0 and 8 are echo");
            let mut corrupt = kernels.clone();
            let last = corrupt.len() - 1;
            corrupt[last] ^= 0x40;
            assert_eq!(icmp::parse_echo(&corrupt), Err(IcmpError::BadChecksum),
                "parse_echo of the reply with one payload bit flipped (checksum no longer verifies)");
        });
    }
}

graded! {
    /// `ping_once` returns only for its own reply: with the kernel's echo
    /// answers turned off, replies to another identifier, another sequence
    /// number, another payload and our own request (type 8) waiting in the
    /// socket must not end it (it times out); a matching reply does (sent
    /// with IP options, so its IPv4 header is 24 bytes long).
    points = 3;
    secs = 30;
    fn ping_once_matches_its_own_reply_only() {
        support::in_private_netns(|| {
            quiet();
            // A real ping first: the kernel answers.
            let fd = raw_icmp();
            let rtt = icmp::ping_once(&fd, Ipv4Addr::LOCALHOST, 0x1111, 1, b"hello", Duration::from_secs(3));
            if let Err(e) = &rtt {
                panic!("ping_once(127.0.0.1, id 0x1111, seq 1, \"hello\", 3 s) with the kernel answering echo requests should return Ok(rtt); it returned Err: {e}");
            }
            // Now the kernel stays silent; only what we inject arrives.
            write_sysctl("/proc/sys/net/ipv4/icmp_echo_ignore_all", "1");
            let injector = raw_icmp();
            // The injected messages carry IP options (NOP NOP NOP EOL): a
            // 24-byte IPv4 header, so only a reader that uses IHL finds them.
            let opts = [1u8, 1, 1, 0];
            // SAFETY: passes 4 bytes of options and their length.
            let rc = unsafe { libc::setsockopt(injector.as_raw_fd(), libc::IPPROTO_IP, libc::IP_OPTIONS,
                opts.as_ptr().cast(), 4) };
            assert_eq!(rc, 0, "setsockopt(raw ICMP, IP_OPTIONS): {}", std::io::Error::last_os_error());
            let fd = raw_icmp();
            let (id, seq, payload) = (0x2222u16, 5u16, b"mine".as_slice());
            for decoy in [
                echo_message(0, 0x3333, seq, payload),  // another process's reply
                echo_message(0, id, seq + 1, payload),  // our id, another sequence
                echo_message(0, id, seq, b"theirs"),    // our id and seq, another payload
                echo_message(8, id, seq, payload),      // a request, not a reply
            ] {
                send_icmp(&injector, &decoy);
            }
            let got = icmp::ping_once(&fd, Ipv4Addr::LOCALHOST, id, seq, payload, Duration::from_millis(400));
            assert!(got.is_err(),
                "with icmp_echo_ignore_all=1 only decoys arrived (a reply with id 0x3333, one with seq {}, one \
                 with payload \"theirs\", a type 8 request): ping_once(id {id:#x}, seq {seq}) must time out, \
                 but returned {got:?}", seq + 1);
            let fd = raw_icmp();
            send_icmp(&injector, &echo_message(0, id, seq, payload));
            let got = icmp::ping_once(&fd, Ipv4Addr::LOCALHOST, id, seq, payload, Duration::from_secs(2));
            assert!(got.is_ok(), "a matching echo reply (id {id:#x}, seq {seq}, payload \"mine\") was waiting: \
                 ping_once must accept it, got {got:?}");
            write_sysctl("/proc/sys/net/ipv4/icmp_echo_ignore_all", "0");
        });
    }
}

// ---------------------------------------------------------------- IPv4 decoding

/// An IPv4 header (independent builder): `options` padded to 4 bytes.
fn ipv4(proto: u8, src: [u8; 4], dst: [u8; 4], options: &[u8], frag: u16, body: &[u8]) -> Vec<u8> {
    let mut opts = options.to_vec();
    while !opts.len().is_multiple_of(4) {
        opts.push(0);
    }
    let hlen = 20 + opts.len();
    let total = (hlen + body.len()) as u16;
    let mut h = vec![0x40 | (hlen / 4) as u8, 0];
    h.extend_from_slice(&total.to_be_bytes());
    h.extend_from_slice(&0x1234u16.to_be_bytes());
    h.extend_from_slice(&frag.to_be_bytes());
    h.extend_from_slice(&[64, proto, 0, 0]);
    h.extend_from_slice(&src);
    h.extend_from_slice(&dst);
    h.extend_from_slice(&opts);
    let c = reference_checksum(&h);
    h[10..12].copy_from_slice(&c.to_be_bytes());
    h.extend_from_slice(body);
    h
}

fn udp_body(sport: u16, dport: u16, data: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&sport.to_be_bytes());
    b.extend_from_slice(&dport.to_be_bytes());
    b.extend_from_slice(&((8 + data.len()) as u16).to_be_bytes());
    b.extend_from_slice(&[0, 0]);
    b.extend_from_slice(data);
    b
}

graded! {
    /// Packets the kernel itself sent — UDP with IP options (IHL 6), a TCP
    /// handshake, an ICMP echo — decode to the fields an independent
    /// decoder reads from the same bytes.
    points = 3;
    secs = 30;
    fn parse_ipv4_decodes_captured_packets() {
        support::in_private_netns(|| {
            quiet();
            let cap = capture::open(Kind::Dgram, capture::ETH_P_IP, "lo").expect("packet socket on lo");
            let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
            let tx = UdpSocket::bind("127.0.0.2:0").unwrap();
            // IP options: NOP NOP NOP EOL (4 bytes): the header is 24 bytes long.
            let opts = [1u8, 1, 1, 0];
            // SAFETY: passes 4 bytes of options and their length.
            let rc = unsafe { libc::setsockopt(tx.as_raw_fd(), libc::IPPROTO_IP, libc::IP_OPTIONS,
                opts.as_ptr().cast(), 4) };
            assert_eq!(rc, 0, "setsockopt(IP_OPTIONS): {}", std::io::Error::last_os_error());
            tx.send_to(b"with options", rx.local_addr().unwrap()).unwrap();
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            let _c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
            let _s = l.accept().unwrap();
            let ping = raw_icmp();
            send_icmp(&ping, &echo_message(8, 9, 9, b"x"));
            let mut kinds = HashMap::new();
            let end = Instant::now() + Duration::from_secs(1);
            while Instant::now() < end {
                let Some(p) = capture::recv_packet(&cap, 65536, Duration::from_millis(200)).unwrap() else { break };
                let b = &p.bytes;
                let ihl = usize::from(b[0] & 0xf) * 4;
                let got = frame::parse_ipv4(b).unwrap_or_else(|e| {
                    panic!("parse_ipv4 of a packet the kernel sent on lo (captured whole, IHL {ihl} bytes) should decode; it returned {e:?} for {b:02x?}")
                });
                assert_eq!(got.ip.header_len, ihl, "parse_ipv4(captured packet): header_len should be IHL x 4 (low nibble of byte 0); header {:02x?}", &b[..ihl]);
                assert_eq!(got.ip.src, Ipv4Addr::new(b[12], b[13], b[14], b[15]), "parse_ipv4(captured packet): src is bytes 12..16 of the header {:02x?}", &b[..ihl]);
                assert_eq!(got.ip.dst, Ipv4Addr::new(b[16], b[17], b[18], b[19]), "parse_ipv4(captured packet): dst is bytes 16..20 of the header {:02x?}", &b[..ihl]);
                assert_eq!((got.ip.ttl, got.ip.protocol, got.ip.total_len), (b[8], b[9], u16::from_be_bytes([b[2], b[3]])),
                    "parse_ipv4(captured packet): (ttl, protocol, total length) are bytes 8, 9 and 2..4 (big-endian) of the header {:02x?}", &b[..ihl]);
                let t = &b[ihl..];
                let want = match b[9] {
                    17 => Transport::Udp { src_port: u16::from_be_bytes([t[0], t[1]]), dst_port: u16::from_be_bytes([t[2], t[3]]), len: u16::from_be_bytes([t[4], t[5]]) },
                    6 => Transport::Tcp { src_port: u16::from_be_bytes([t[0], t[1]]), dst_port: u16::from_be_bytes([t[2], t[3]]),
                        seq: u32::from_be_bytes([t[4], t[5], t[6], t[7]]), ack: u32::from_be_bytes([t[8], t[9], t[10], t[11]]),
                        flags: t[13], header_len: usize::from(t[12] >> 4) * 4 },
                    1 => Transport::Icmp { kind: t[0], code: t[1] },
                    p => Transport::Other(p),
                };
                assert_eq!(got.transport, want, "transport of the captured packet {b:02x?} (IHL {ihl} bytes)");
                *kinds.entry((b[9], ihl)).or_insert(0) += 1;
            }
            assert!(kinds.contains_key(&(17, 24)), "captured no UDP datagram with a 24-byte header (IP options); saw {kinds:?}");
            assert!(kinds.contains_key(&(6, 20)) && kinds.contains_key(&(1, 20)), "captured no TCP or ICMP packet; saw {kinds:?}");
        });
    }
}

graded! {
    /// Fragments: a later fragment has no transport header; the first one
    /// (MF set, offset 0) is decoded; offsets are in bytes.
    points = 1;
    fn parse_ipv4_marks_fragments() {
        let body = udp_body(1000, 2000, b"first part");
        let first = ipv4(17, [10, 0, 0, 1], [10, 0, 0, 2], &[], 0x2000, &body);
        let got = frame::parse_ipv4(&first)
            .unwrap_or_else(|e| panic!("parse_ipv4 of a first fragment (MF set, offset 0, UDP 1000 → 2000) {first:02x?} should decode; it returned {e:?}"));
        assert!(got.ip.more_fragments && got.ip.fragment_offset == 0,
            "first fragment (flags/offset field 0x2000): expected MF set, offset 0; got {:?}", got.ip);
        assert!(matches!(got.transport, Transport::Udp { src_port: 1000, dst_port: 2000, .. }),
            "first fragment carries the UDP header (ports 1000 → 2000): got {:?}", got.transport);
        let later = ipv4(17, [10, 0, 0, 1], [10, 0, 0, 2], &[], 185, b"middle of the datagram");
        let got = frame::parse_ipv4(&later)
            .unwrap_or_else(|e| panic!("parse_ipv4 of a later fragment (offset field 185) {later:02x?} should decode (its transport is LaterFragment); it returned {e:?}"));
        assert_eq!((got.ip.fragment_offset, got.transport.clone()), (185 * 8, Transport::LaterFragment),
            "a fragment whose offset field is 185 starts at byte 1480 and has no UDP header");
    }
}

graded! {
    /// Untrusted input: every truncation of good packets (with and without
    /// options) and 20,000 random byte strings decode without a panic, to
    /// the answer an independent decoder gives.
    points = 2;
    fn parse_ipv4_survives_truncation_and_garbage() {
        let mut rng = Rng(0x5eed_0011);
        let packets = [
            ipv4(17, [127, 0, 0, 1], [127, 0, 0, 2], &[], 0, &udp_body(53, 9999, b"q")),
            ipv4(6, [127, 0, 0, 1], [127, 0, 0, 2], &[1, 1, 1, 1, 1, 1, 1, 0], 0, &[0u8; 24]),
            ipv4(1, [127, 0, 0, 1], [127, 0, 0, 2], &[7, 7, 4], 0, &[8, 0, 0, 0, 0, 1]),
        ];
        for p in &packets {
            let ihl = usize::from(p[0] & 0xf) * 4;
            for cut in 0..=p.len() {
                let bytes = &p[..cut];
                let got = std::panic::catch_unwind(|| frame::parse_ipv4(bytes))
                    .unwrap_or_else(|_| panic!("parse_ipv4 panicked on the first {cut} of {} bytes of {p:02x?}", p.len()));
                let need = match p[9] { 6 => 20, 17 => 8, _ => 4 };
                match got {
                    Err(frame::FrameError::Truncated) => assert!(cut < ihl,
                        "cut to {cut} bytes the {ihl}-byte header is whole: expected a decoded header, got Truncated"),
                    Ok(pk) => {
                        assert!(cut >= ihl, "cut to {cut} bytes the {ihl}-byte header is not whole: expected Err(Truncated), got {pk:?}");
                        let whole = cut >= ihl + need;
                        assert!((pk.transport == Transport::Truncated) != whole,
                            "cut to {cut} bytes ({} of the transport header's {need}): expected {}, got transport {:?}",
                            cut - ihl, if whole { "the transport header decoded" } else { "Transport::Truncated" }, pk.transport);
                    }
                    other => panic!("the first {cut} bytes of a valid packet: expected Truncated or a packet, got {other:?}"),
                }
            }
        }
        for _ in 0..20_000 {
            let n = rng.below(80);
            let bytes = rng.bytes(n);
            let got = std::panic::catch_unwind(|| frame::parse_ipv4(&bytes))
                .unwrap_or_else(|_| panic!("parse_ipv4 panicked on the random bytes {bytes:02x?}"));
            let ok_header = n >= 1 && bytes[0] >> 4 == 4 && bytes[0] & 0xf >= 5;
            if !ok_header {
                assert!(got.is_err(), "random bytes {bytes:02x?} are not an IPv4 header (version/IHL): got {got:?}");
            } else if n < usize::from(bytes[0] & 0xf) * 4 {
                assert_eq!(got, Err(frame::FrameError::Truncated), "random bytes {bytes:02x?}: shorter than IHL says");
            } else {
                assert!(got.is_ok(), "random bytes {bytes:02x?} hold a whole IPv4 header: got {got:?}");
            }
        }
    }
}

// ---------------------------------------------------------------- BPF

/// The independent decision: does `expr` accept this IPv4 packet?
fn accepts(expr: &bpf::Expr, p: &[u8]) -> bool {
    use bpf::{Dir, Expr};
    let word = |i: usize| u32::from_be_bytes([p[i], p[i + 1], p[i + 2], p[i + 3]]);
    match expr {
        Expr::Proto(n) => p[9] == *n,
        Expr::Host(dir, a) => {
            let a = u32::from(*a);
            match dir {
                Dir::Src => word(12) == a,
                Dir::Dst => word(16) == a,
                Dir::Either => word(12) == a || word(16) == a,
            }
        }
        Expr::Port(dir, n) => {
            let frag = u16::from_be_bytes([p[6], p[7]]) & 0x1fff;
            if !(p[9] == 6 || p[9] == 17) || frag != 0 {
                return false;
            }
            let ihl = usize::from(p[0] & 0xf) * 4;
            let (s, d) = (
                u16::from_be_bytes([p[ihl], p[ihl + 1]]),
                u16::from_be_bytes([p[ihl + 2], p[ihl + 3]]),
            );
            match dir {
                Dir::Src => s == *n,
                Dir::Dst => d == *n,
                Dir::Either => s == *n || d == *n,
            }
        }
        Expr::And(a, b) => accepts(a, p) && accepts(b, p),
        Expr::Or(a, b) => accepts(a, p) || accepts(b, p),
        Expr::Not(a) => !accepts(a, p),
    }
}

/// Attach `compile(expr)` to one packet socket, leave another unfiltered,
/// make a mix of traffic, and compare what the filtered socket got with the
/// independent decision over what the unfiltered one saw.
fn filter_agrees(text: &str, rx_port: u16, traffic: &dyn Fn()) {
    let expr = bpf::parse_filter(text).expect("parse_filter");
    let prog =
        sockbook::ch11_raw::compile(&expr).unwrap_or_else(|e| panic!("compile({text:?}): {e}"));
    let listing = bpf::disassemble(&prog).join("\n");
    let all = capture::open(Kind::Dgram, capture::ETH_P_IP, "lo").expect("packet socket");
    let some = capture::open(Kind::Dgram, capture::ETH_P_IP, "lo").expect("packet socket");
    bpf::attach(&some, &prog).unwrap_or_else(|e| panic!(
        "attach the program compiled from {text:?}: {e} (the kernel refuses a program whose jumps leave it)\n{listing}"));
    for fd in [&all, &some] {
        while capture::recv_packet(fd, 65536, Duration::ZERO)
            .unwrap()
            .is_some()
        {}
    }
    traffic();
    let drain = |fd: &OwnedFd| {
        let mut v = Vec::new();
        while let Some(p) = capture::recv_packet(fd, 65536, Duration::from_millis(300)).unwrap() {
            v.push(p.bytes);
        }
        v
    };
    let (seen, got) = (drain(&all), drain(&some));
    let want: Vec<Vec<u8>> = seen.iter().filter(|p| accepts(&expr, p)).cloned().collect();
    let summary = |v: &[Vec<u8>]| {
        v.iter()
            .map(|p| {
                frame::parse_ipv4(p)
                    .map(|x| x.summary())
                    .unwrap_or_default()
            })
            .collect::<Vec<_>>()
    };
    let (mut a, mut b) = (want.clone(), got.clone());
    a.sort();
    b.sort();
    assert!(
        seen.len() > 4,
        "the traffic made too few packets to judge ({})",
        seen.len()
    );
    assert_eq!(
        a,
        b,
        "filter {text:?} (rx port {rx_port}): on {} packets, the independent decision accepts {:#?}\n\
        but the compiled program accepted {:#?}\nprogram:\n{listing}",
        seen.len(),
        summary(&want),
        summary(&got)
    );
}

/// UDP among 127.0.0.1–3 on several ports (some with IP options), a TCP
/// connection with data, and pings.
fn mixed_traffic(rx: &UdpSocket, tcp: &TcpListener) {
    let rx_port = rx.local_addr().unwrap().port();
    for (src, opts) in [
        ("127.0.0.1:0", false),
        ("127.0.0.2:0", true),
        ("127.0.0.3:0", false),
    ] {
        let tx = UdpSocket::bind(src).unwrap();
        if opts {
            let o = [1u8, 1, 1, 0];
            // SAFETY: 4 bytes of IP options and their length.
            unsafe {
                libc::setsockopt(
                    tx.as_raw_fd(),
                    libc::IPPROTO_IP,
                    libc::IP_OPTIONS,
                    o.as_ptr().cast(),
                    4,
                )
            };
        }
        for dst in [
            rx.local_addr().unwrap(),
            "127.0.0.2:53".parse().unwrap(),
            "127.0.0.3:9".parse().unwrap(),
        ] {
            let _ = tx.send_to(b"filter me", dst);
        }
    }
    let mut c = TcpStream::connect(tcp.local_addr().unwrap()).unwrap();
    let (mut s, _) = tcp.accept().unwrap();
    use std::io::Write;
    let _ = c.write_all(b"tcp data");
    let _ = s.write_all(b"reply");
    let ping = raw_icmp();
    send_icmp(&ping, &echo_message(8, 1, 1, b"p"));
    // A later fragment of a UDP datagram (offset 1480) whose data happens
    // to start like ports 53 and 9: no port filter may match it.
    send_ipv4_hdrincl(&ipv4(
        17,
        [127, 0, 0, 2],
        [127, 0, 0, 1],
        &[],
        185,
        &udp_body(53, 9, b"data, not a header"),
    ));
    let _ = rx_port;
}

/// Send a whole hand-made IPv4 packet to 127.0.0.1 through
/// `socket(AF_INET, SOCK_RAW, IPPROTO_RAW)` (IP_HDRINCL implied, raw(7)).
fn send_ipv4_hdrincl(packet: &[u8]) {
    // SAFETY: plain socket(2); the fd is owned right after the check.
    let raw = unsafe {
        libc::socket(
            libc::AF_INET,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::IPPROTO_RAW,
        )
    };
    assert!(
        raw >= 0,
        "socket(AF_INET, SOCK_RAW, IPPROTO_RAW): {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: socket() just returned this fd; nothing else owns it.
    let fd = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raw) };
    let to = SockaddrIn::from(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0));
    socket::sendto(fd.as_raw_fd(), packet, &to, MsgFlags::empty()).unwrap_or_else(|e| {
        panic!(
            "sendto(IPPROTO_RAW, {} bytes of a hand-made IPv4 packet): {e}",
            packet.len()
        )
    });
}

graded! {
    /// Each primitive compiled alone (tcp, udp, icmp, src/dst/plain host,
    /// src/dst/plain port) accepts exactly the packets an independent
    /// decision accepts, on real traffic captured on lo.
    points = 3;
    secs = 40;
    fn compile_primitives_agree_with_an_independent_decision() {
        support::in_private_netns(|| {
            quiet();
            let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
            let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
            let (rp, tp) = (rx.local_addr().unwrap().port(), tcp.local_addr().unwrap().port());
            for text in ["tcp".to_string(), "udp".into(), "icmp".into(), "src host 127.0.0.2".into(),
                "dst host 127.0.0.3".into(), "host 127.0.0.2".into(), format!("dst port {rp}"),
                format!("src port {tp}"), "port 53".into()] {
                filter_agrees(&text, rp, &|| mixed_traffic(&rx, &tcp));
            }
        });
    }
}

graded! {
    /// and, or, not and parentheses, nested: the jumps land where they
    /// must (an off-by-one jump accepts or drops the wrong packets).
    points = 3;
    secs = 40;
    fn compile_combinations_agree_with_an_independent_decision() {
        support::in_private_netns(|| {
            quiet();
            let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
            let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
            let (rp, tp) = (rx.local_addr().unwrap().port(), tcp.local_addr().unwrap().port());
            for text in [format!("udp and dst port {rp}"), "tcp or icmp".into(), "not udp".into(),
                format!("udp and not (port 53 or port {rp})"), "(src host 127.0.0.2 or src host 127.0.0.3) and udp".into(),
                format!("not (tcp and port {tp}) and not icmp"), "icmp or (udp and host 127.0.0.2) or port 9".into()] {
                filter_agrees(&text, rp, &|| mixed_traffic(&rx, &tcp));
            }
        });
    }
}

// ---------------------------------------------------------------- traceroute

graded! {
    /// Over a chain a — r1 — r2 — b of network namespaces, `trace` lists r1,
    /// r2 (time exceeded, from the address facing a) and then b (port
    /// unreachable), and stops there.
    points = 3;
    secs = 40;
    fn trace_lists_every_hop_of_a_namespace_chain() {
        support::in_private_netns(|| {
            quiet();
            use sockbook::kit::lab::Lab;
            let lab = Lab::new().expect("Lab::new");
            let a = lab.host("a").unwrap();
            let r1 = lab.router("r1").unwrap();
            let r2 = lab.router("r2").unwrap();
            let b = lab.host("b").unwrap();
            lab.link(&a, "10.9.1.1/24", &r1, "10.9.1.254/24").unwrap();
            lab.link(&r1, "10.9.2.1/24", &r2, "10.9.2.2/24").unwrap();
            lab.link(&r2, "10.9.3.254/24", &b, "10.9.3.1/24").unwrap();
            lab.route(&a, "default", "10.9.1.254").unwrap();
            lab.route(&r1, "10.9.3.0/24", "10.9.2.2").unwrap();
            lab.route(&r2, "10.9.1.0/24", "10.9.2.1").unwrap();
            lab.route(&b, "default", "10.9.3.254").unwrap();
            let dst = Ipv4Addr::new(10, 9, 3, 1);
            let hops = a.run(move || trace::trace(dst, 33433, 6, Duration::from_secs(2)))
                .unwrap_or_else(|e| panic!("test scaffolding: run in host a's namespace: {e}"))
                .unwrap_or_else(|e| panic!("trace(10.9.3.1) from a: {e}"));
            type Line = (u8, Option<Ipv4Addr>, Option<(u8, u8)>);
            let got: Vec<Line> = hops.iter().map(|h| (h.ttl, h.from, h.icmp)).collect();
            let want = vec![
                (1, Some(Ipv4Addr::new(10, 9, 1, 254)), Some((11, 0))),
                (2, Some(Ipv4Addr::new(10, 9, 2, 2)), Some((11, 0))),
                (3, Some(dst), Some((3, 3))),
            ];
            assert_eq!(got, want, "trace(10.9.3.1) over a — r1 — r2 — b: expected (ttl, answered by, ICMP type/code) \
                {want:?}; got {got:?}. By hand: `cargo run --bin ch11_raw -- traceroute`");
        });
    }
}
