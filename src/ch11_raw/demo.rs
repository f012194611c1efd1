//! The narrated demo of chapter 11 and its subcommands.

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::Command;
use std::time::{Duration, Instant};

use nix::sys::socket::{self, MsgFlags, SockaddrIn};

use super::capture::{self, Kind};
use super::{bpf, checksum, frame, icmp, ring, trace};
use crate::kit::args::Args;
use crate::kit::narrate::{heading, note};
use crate::kit::{Call, Error, Result, lab, netns};
use crate::say;

/// Where the demo runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    /// In a private user + network namespace this process made.
    Namespace,
    /// In the machine's own namespace, with CAP_NET_RAW (root).
    Here,
    /// No CAP_NET_RAW anywhere: the reason, in one line.
    Refused(String),
}

/// Decide where to run, in `main`, before any thread starts: a private
/// namespace if the machine allows one, else here if root, else nowhere.
pub fn prepare(want_here: bool) -> Place {
    if want_here {
        return if can_raw() {
            Place::Here
        } else {
            Place::Refused(
                "sniff needs CAP_NET_RAW in this namespace: run it as root (sudo)".into(),
            )
        };
    }
    match netns::enter_private_netns() {
        Ok(()) => Place::Namespace,
        Err(e) if can_raw() => {
            let _ = e;
            Place::Here
        }
        Err(e) => Place::Refused(format!(
            "{} ({e})",
            netns::refusal().unwrap_or("no private namespace here")
        )),
    }
}

/// Can this process open a raw socket where it is?
fn can_raw() -> bool {
    icmp::raw_icmp_socket().is_ok()
}

/// Run the demo or one subcommand.
pub fn run(args: &Args, place: &Place) -> Result<()> {
    match place {
        Place::Namespace => note(
            "running in a private user + network namespace: this process is root there, \
             holds CAP_NET_RAW over its own lo, and sees only its own packets",
        ),
        Place::Here => note("running in this machine's own network namespace, as root"),
        Place::Refused(why) => note(format!(
            "no CAP_NET_RAW: {why}; only the parts that need no privilege run"
        )),
    }
    let privileged = !matches!(place, Place::Refused(_));
    let need = |part: &str| -> bool {
        if !privileged {
            note(format!("skipped {part}: it needs CAP_NET_RAW (see above)"));
        }
        privileged
    };
    match args.command.as_deref() {
        None => {
            checksum_part()?;
            if need("ping, packet, bpf, hdrincl") {
                ping_part(Ipv4Addr::LOCALHOST, 2, place)?;
                packet_part()?;
                bpf_part("udp and dst port 9999")?;
                ring_part()?;
                hdrincl_part()?;
            }
            if *place == Place::Namespace {
                traceroute_part()?;
            } else {
                note("skipped traceroute: it builds namespaces inside a private one");
            }
            Ok(())
        }
        Some("checksum") => checksum_part(),
        Some("ping") => {
            let to = args.value("--to").unwrap_or("127.0.0.1");
            let to: Ipv4Addr = to
                .parse()
                .map_err(|_| Error::msg(format!("--to needs an IPv4 address, got {to:?}")))?;
            if !to.is_loopback() && *place != Place::Namespace {
                return Err(Error::msg(
                    "ping sends only to loopback (127.0.0.0/8) here: traffic stays on this machine",
                ));
            }
            if need("ping") {
                ping_part(to, args.count("--count", 3)? as u16, place)?;
            }
            Ok(())
        }
        Some("packet") if need("packet") => packet_part(),
        Some("bpf") if need("bpf") => bpf_part(
            &args
                .positional
                .first()
                .cloned()
                .unwrap_or_else(|| "udp and dst port 9999".into()),
        ),
        Some("hdrincl") if need("hdrincl") => hdrincl_part(),
        Some("ring") if need("ring") => ring_part(),
        Some("traceroute") => {
            if *place == Place::Namespace {
                traceroute_part()
            } else {
                note("skipped traceroute: it needs a private namespace to build routers in");
                Ok(())
            }
        }
        Some("sniff") => sniff(args),
        Some("packet" | "bpf" | "hdrincl" | "ring") => Ok(()),
        Some(other) => Err(Error::msg(format!(
            "unknown subcommand {other:?} (try --help)"
        ))),
    }
}

/// A UDP datagram from `from` to `to` on loopback, to have something to see.
fn send_udp(from: &UdpSocket, to: SocketAddrV4, payload: &[u8]) -> Result<()> {
    from.send_to(payload, to)
        .map(|_| ())
        .map_err(|e| Error::msg(format!("sendto({to}): {e}")))
}

fn checksum_part() -> Result<()> {
    heading("The Internet checksum (RFC 1071)");
    let sample = [0x45u8, 0x00, 0x00, 0x1c, 0x00, 0x01, 0x00, 0x00, 0x40, 0x11];
    note(format!(
        "16-bit big-endian words, summed with end-around carry, complemented: \
         checksum of {sample:02x?} = {:#06x}",
        checksum::internet_checksum(&sample)
    ));
    let odd = [1u8, 2, 3];
    note(format!(
        "an odd length pads the last byte on the right: [01 02 03] sums 0x0102 + 0x0300 → {:#06x}",
        checksum::internet_checksum(&odd)
    ));
    let request = icmp::build_echo_request(0x1234, 1, b"sockbook");
    note(format!(
        "an echo request with its checksum filled in re-sums to 0 (the check every receiver does): {:#06x}",
        checksum::internet_checksum(&request)
    ));
    Ok(())
}

fn ping_part(to: Ipv4Addr, count: u16, place: &Place) -> Result<()> {
    heading("ping two ways");
    let raw = icmp::raw_icmp_socket()?;
    say!(
        "ping",
        "socket(AF_INET, SOCK_RAW, IPPROTO_ICMP) = {}",
        raw.as_raw_fd()
    );
    let id = (std::process::id() & 0xffff) as u16;
    for seq in 1..=count {
        let rtt = icmp::ping_once(&raw, to, id, seq, b"sockbook ping", Duration::from_secs(2))?;
        say!(
            "ping",
            "echo reply from {to}: id {id:#06x} seq {seq} time {:.3} ms",
            rtt.as_secs_f64() * 1e3
        );
    }
    note(
        "a raw ICMP socket gets every ICMP message of the host, IPv4 header included: \
         ping_once skips the header (IHL × 4 bytes), its own request (type 8) and replies \
         with another identifier",
    );
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ping_group_range")
        .unwrap_or_default()
        .trim()
        .replace('\t', " ");
    // SAFETY: getgid cannot fail.
    let gid = unsafe { libc::getgid() };
    note(format!(
        "the ping socket, socket(AF_INET, SOCK_DGRAM, IPPROTO_ICMP), needs no privilege: \
         any process whose group id is in net.ipv4.ping_group_range may open one \
         (here \"{range}\", our gid {gid}). The default, \"1 0\", is an empty range (first > last); \
         inside a user namespace a group id it does not map, such as 1, reads as 65534, the overflow id"
    ));
    let ping_socket = || {
        socket::socket(
            socket::AddressFamily::Inet,
            socket::SockType::Datagram,
            socket::SockFlag::SOCK_CLOEXEC,
            socket::SockProtocol::Icmp,
        )
    };
    let mut opened = ping_socket();
    if let Err(e) = &opened
        && *place == Place::Namespace
    {
        say!(
            "ping",
            "socket(AF_INET, SOCK_DGRAM, IPPROTO_ICMP) = -1 {e}: gid {gid} is outside ping_group_range"
        );
        // Only inside our own namespace: the sysctl is per network namespace.
        std::fs::write(
            "/proc/sys/net/ipv4/ping_group_range",
            format!("{gid} {gid}"),
        )
        .map_err(|e| Error::msg(format!("write ping_group_range: {e}")))?;
        note(format!(
            "in our private namespace we may widen it: ping_group_range = \"{gid} {gid}\", then again"
        ));
        opened = ping_socket();
    }
    match opened {
        Ok(fd) => {
            say!(
                "ping",
                "socket(AF_INET, SOCK_DGRAM, IPPROTO_ICMP) = {}",
                fd.as_raw_fd()
            );
            let request = icmp::build_echo_request(0, 1, b"ping socket");
            let dst = SockaddrIn::from(SocketAddrV4::new(to, 0));
            socket::sendto(fd.as_raw_fd(), &request, &dst, MsgFlags::empty())
                .call("sendto(ping socket)")?;
            crate::kit::wait::wait_readable(&fd, Duration::from_secs(2))?;
            let mut buf = [0u8; 1500];
            let n = socket::recv(fd.as_raw_fd(), &mut buf, MsgFlags::empty())
                .call("recv(ping socket)")?;
            match icmp::parse_echo(&buf[..n]) {
                Ok(echo) => say!(
                    "ping",
                    "recv = {n} bytes: echo reply, id {:#06x} (the kernel chose it: the socket's \
                     local \"port\"), seq {}, no IPv4 header in front",
                    echo.id,
                    echo.seq
                ),
                Err(e) => note(format!("the ping socket's reply did not decode: {e:?}")),
            }
        }
        Err(e) => say!(
            "ping",
            "socket(AF_INET, SOCK_DGRAM, IPPROTO_ICMP) = -1 {e}: gid {gid} is outside ping_group_range"
        ),
    }
    Ok(())
}

fn packet_part() -> Result<()> {
    heading("AF_PACKET: SOCK_RAW and SOCK_DGRAM on lo");
    let raw = capture::open(Kind::Raw, capture::ETH_P_ALL, "lo")?;
    let dgram = capture::open(Kind::Dgram, capture::ETH_P_ALL, "lo")?;
    say!(
        "capture",
        "socket(AF_PACKET, SOCK_RAW, htons(ETH_P_ALL)) = {}, bound to lo",
        raw.as_raw_fd()
    );
    say!(
        "capture",
        "socket(AF_PACKET, SOCK_DGRAM, htons(ETH_P_ALL)) = {}, bound to lo",
        dgram.as_raw_fd()
    );
    let rx = UdpSocket::bind("127.0.0.1:0").map_err(|e| Error::msg(format!("bind: {e}")))?;
    let tx = UdpSocket::bind("127.0.0.1:0").map_err(|e| Error::msg(format!("bind: {e}")))?;
    let to = match rx.local_addr() {
        Ok(std::net::SocketAddr::V4(a)) => a,
        _ => return Err(Error::msg("no IPv4 address")),
    };
    send_udp(&tx, to, b"one datagram")?;
    for (name, fd) in [("SOCK_RAW", &raw), ("SOCK_DGRAM", &dgram)] {
        for _ in 0..2 {
            let Some(p) = capture::recv_packet(fd, 2048, Duration::from_secs(2))? else {
                note(format!("{name}: nothing captured within 2 s"));
                break;
            };
            let ip = if name == "SOCK_RAW" {
                &p.bytes[14.min(p.bytes.len())..]
            } else {
                &p.bytes[..]
            };
            let what = frame::parse_ipv4(ip)
                .map(|pk| pk.summary())
                .unwrap_or_else(|e| format!("{e:?}"));
            say!(
                "capture",
                "{name}: {} bytes, pkttype {} — {}{}",
                p.wire_len,
                p.direction(),
                if name == "SOCK_RAW" {
                    "14-byte link header, then "
                } else {
                    ""
                },
                what
            );
        }
    }
    note(
        "one datagram, captured twice on each socket: lo's transmit path hands the packet \
         to packet sockets as PACKET_OUTGOING, then its receive path as PACKET_HOST. \
         SOCK_RAW's copy is 14 bytes longer: lo's Ethernet-style header, MACs all zero",
    );
    Ok(())
}

/// `PACKET_RX_RING` + `TPACKET_V3` against one `recvfrom` per packet: a
/// flood of small datagrams on lo reaches both sockets; then each hands
/// over what it kept, timed.
fn ring_part() -> Result<()> {
    heading("PACKET_RX_RING with TPACKET_V3: a mapped ring instead of a call per packet");
    let (blocks, block_size) = (16usize, 1usize << 16);
    let mut ring = ring::Ring::open("lo", capture::ETH_P_IP, blocks, block_size, 10)?;
    let plain = capture::open(Kind::Dgram, capture::ETH_P_IP, "lo")?;
    say!(
        "ring",
        "socket {}: PACKET_VERSION = TPACKET_V3, PACKET_RX_RING = {blocks} blocks × {} KiB, mmap'ed; \
         socket {}: plain, read with recvfrom",
        ring.fd().as_raw_fd(),
        block_size / 1024,
        plain.as_raw_fd()
    );
    let rmem = std::fs::read_to_string("/proc/sys/net/core/rmem_default")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "?".into());
    let rx = UdpSocket::bind("127.0.0.1:0").map_err(|e| Error::msg(format!("bind: {e}")))?;
    let tx = UdpSocket::bind("127.0.0.1:0").map_err(|e| Error::msg(format!("bind: {e}")))?;
    let to = match rx.local_addr() {
        Ok(std::net::SocketAddr::V4(a)) => a,
        _ => return Err(Error::msg("no IPv4 address")),
    };
    let _ = capture::statistics(&plain)?;
    let _ = capture::statistics(ring.fd())?;
    let (flood, rounds) = (4000u64, 5);
    let mut buf = [0u8; 2048];
    let (mut plain_n, mut plain_calls, mut ring_n, mut ring_polls) = (0u64, 0u64, 0u64, 0u64);
    let rate = |n: u64, d: Duration| n as f64 / d.as_secs_f64().max(1e-9);
    // The best of a few rounds: on a busy machine one preemption inside a
    // short loop would decide the ratio.
    let (mut best_plain, mut best_ring) = (0f64, 0f64);
    for _ in 0..rounds {
        for _ in 0..flood {
            send_udp(&tx, to, b"ring or recvfrom")?;
        }
        // The plain socket: one recv per packet until its queue is empty.
        let (mut n_here, t) = (0u64, Instant::now());
        loop {
            plain_calls += 1;
            // SAFETY: buf is ours and its length is passed.
            let n = unsafe {
                libc::recv(
                    plain.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_DONTWAIT,
                )
            };
            if n < 0 {
                break;
            }
            n_here += 1;
        }
        best_plain = best_plain.max(rate(n_here, t.elapsed()));
        plain_n += n_here;
        // The ring: walk every block the kernel has handed over; time only
        // the blocks that were ready (the last, partly filled one is
        // retired after the 10 ms block timeout: that wait is not work).
        let (mut timed_n, mut time) = (0u64, Duration::ZERO);
        loop {
            let ready = ring.ready();
            if !ready {
                ring_polls += 1;
            }
            let t = Instant::now();
            // The same work per packet as recv does: copy it out.
            let n = ring.next_block(Duration::from_millis(200), |data, _| {
                let k = data.len().min(buf.len());
                buf[..k].copy_from_slice(&data[..k]);
                std::hint::black_box(&buf);
            })? as u64;
            if n == 0 {
                break;
            }
            ring_n += n;
            if ready {
                time += t.elapsed();
                timed_n += n;
            }
        }
        if timed_n > 0 {
            best_ring = best_ring.max(rate(timed_n, time));
        }
    }
    let (_, plain_drops) = capture::statistics(&plain)?;
    let (_, ring_drops) = capture::statistics(ring.fd())?;
    say!(
        "ring",
        "{rounds} × {flood} datagrams sent; plain socket: {plain_n} packets in {plain_calls} recv calls, \
         PACKET_STATISTICS dropped {plain_drops}; ring: {ring_n} packets, {ring_polls} poll calls, \
         dropped {ring_drops}"
    );
    say!(
        "ring",
        "handing packets over (best of {rounds}): recv {:.0} packets/s, ring {:.0} packets/s: \
         the ring is {:.0}× faster (this run)",
        best_plain,
        best_ring,
        best_ring / best_plain.max(1e-9)
    );
    note(format!(
        "the plain socket's queue is bounded by its receive buffer (SO_RCVBUF, default \
         net.core.rmem_default = {rmem} from /proc/sys/net/core/rmem_default): what did not fit \
         was dropped and counted. The ring kept {} blocks of packets without a system call each; \
         the kernel drops only when every block is still in user space",
        blocks
    ));
    Ok(())
}

fn bpf_part(text: &str) -> Result<()> {
    heading(format!("classic BPF: \"{text}\""));
    let expr = bpf::parse_filter(text)?;
    let prog = bpf::compile(&expr)?;
    for line in bpf::disassemble(&prog) {
        note(line);
    }
    let fd = capture::open(Kind::Dgram, capture::ETH_P_IP, "lo")?;
    bpf::attach(&fd, &prog)?;
    say!(
        "bpf",
        "setsockopt({}, SO_ATTACH_FILTER, {} instructions) = 0",
        fd.as_raw_fd(),
        prog.len()
    );
    // Drain what arrived between bind and attach (the filter only applies from now).
    while capture::recv_packet(&fd, 2048, Duration::ZERO)?.is_some() {}
    let rx = UdpSocket::bind("127.0.0.1:9999").or_else(|_| UdpSocket::bind("127.0.0.1:0"));
    let rx = rx.map_err(|e| Error::msg(format!("bind: {e}")))?;
    let tx = UdpSocket::bind("127.0.0.1:0").map_err(|e| Error::msg(format!("bind: {e}")))?;
    let port = rx.local_addr().map(|a| a.port()).unwrap_or(9999);
    send_udp(
        &tx,
        SocketAddrV4::new(Ipv4Addr::LOCALHOST, port),
        b"to the filtered port",
    )?;
    send_udp(
        &tx,
        SocketAddrV4::new(Ipv4Addr::LOCALHOST, 9),
        b"to the discard port",
    )?;
    let mut seen = 0;
    while let Some(p) = capture::recv_packet(&fd, 2048, Duration::from_millis(300))? {
        seen += 1;
        let line = frame::parse_ipv4(&p.bytes)
            .map(|pk| pk.summary())
            .unwrap_or_default();
        say!("bpf", "accepted: {line} ({})", p.direction());
    }
    note(format!(
        "{seen} packets passed the filter; the datagram to port 9 (and its ICMP answer) never \
         left the kernel for this socket"
    ));
    bpf::lock(&fd)?;
    let detach = {
        let zero: libc::c_int = 0;
        // SAFETY: passes one int that lives across the call.
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_DETACH_FILTER,
                (&zero as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        }
    };
    say!(
        "bpf",
        "after SO_LOCK_FILTER: setsockopt(SO_DETACH_FILTER) = {} {}",
        detach,
        if detach == -1 {
            nix::errno::Errno::last().to_string()
        } else {
            String::new()
        }
    );
    tcpdump_compare(text, &expr)
}

/// Where tcpdump is installed: its program for the same expression, on
/// `lo`'s Ethernet framing, beside ours adapted with `for_ethernet`; both
/// attached to SOCK_RAW sockets and fed the same packets.
fn tcpdump_compare(text: &str, expr: &bpf::Expr) -> Result<()> {
    let out = match Command::new("tcpdump")
        .args(["-i", "lo", "-ddd", text])
        .output()
    {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).to_string(),
        Ok(o) => {
            note(format!(
                "tcpdump -ddd: {}",
                String::from_utf8_lossy(&o.stderr)
                    .lines()
                    .next()
                    .unwrap_or("failed")
            ));
            return Ok(());
        }
        Err(_) => {
            note("tcpdump is not installed: no comparison (apt-get install tcpdump)");
            return Ok(());
        }
    };
    let mut nums = out.split_whitespace().filter_map(|w| w.parse::<u32>().ok());
    let n = nums.next().unwrap_or(0) as usize;
    let mut theirs = Vec::with_capacity(n);
    for _ in 0..n {
        let (Some(code), Some(jt), Some(jf), Some(k)) =
            (nums.next(), nums.next(), nums.next(), nums.next())
        else {
            break;
        };
        theirs.push(libc::sock_filter {
            code: code as u16,
            jt: jt as u8,
            jf: jf as u8,
            k,
        });
    }
    let ours = bpf::for_ethernet(&bpf::compile(expr)?);
    note(format!(
        "tcpdump -i lo -ddd '{text}': {} instructions (it also handles IPv6 and checks more); ours on Ethernet framing: {}",
        theirs.len(),
        ours.len()
    ));
    let a = capture::open(Kind::Raw, capture::ETH_P_ALL, "lo")?;
    let b = capture::open(Kind::Raw, capture::ETH_P_ALL, "lo")?;
    bpf::attach(&a, &theirs)?;
    bpf::attach(&b, &ours)?;
    for fd in [&a, &b] {
        while capture::recv_packet(fd, 4096, Duration::ZERO)?.is_some() {}
    }
    let tx = UdpSocket::bind("127.0.0.1:0").map_err(|e| Error::msg(format!("bind: {e}")))?;
    for port in [9999u16, 9, 53, 9999] {
        send_udp(
            &tx,
            SocketAddrV4::new(Ipv4Addr::LOCALHOST, port),
            b"compare",
        )?;
    }
    let count = |fd: &OwnedFd| -> Result<usize> {
        let mut n = 0;
        while capture::recv_packet(fd, 4096, Duration::from_millis(300))?.is_some() {
            n += 1;
        }
        Ok(n)
    };
    let (ta, tb) = (count(&a)?, count(&b)?);
    note(format!(
        "on the same traffic tcpdump's program accepted {ta} frames, ours {tb}: {}",
        if ta == tb {
            "the same decision"
        } else {
            "they differ!"
        }
    ));
    Ok(())
}

fn hdrincl_part() -> Result<()> {
    heading("IP_HDRINCL: writing the IPv4 header yourself");
    // SAFETY: plain socket(2) with constant arguments; checked below.
    let raw = unsafe {
        libc::socket(
            libc::AF_INET,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::IPPROTO_RAW,
        )
    };
    if raw == -1 {
        return Err(Error::last_os("socket(AF_INET, SOCK_RAW, IPPROTO_RAW)"));
    }
    // SAFETY: socket() just returned this fd and nothing else owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    say!(
        "hdrincl",
        "socket(AF_INET, SOCK_RAW, IPPROTO_RAW) = {raw} (IP_HDRINCL is implied)"
    );
    let rx = UdpSocket::bind("127.0.0.1:0").map_err(|e| Error::msg(format!("bind: {e}")))?;
    rx.set_read_timeout(Some(Duration::from_secs(2))).ok();
    let port = rx.local_addr().map(|a| a.port()).unwrap_or(0);
    let payload = b"a header of our own";
    let (src, dst) = (Ipv4Addr::new(127, 0, 0, 42), Ipv4Addr::LOCALHOST);
    let udp_len = 8 + payload.len() as u16;
    let total = 20 + udp_len;
    let mut pkt = vec![0x45, 0, 0, 0, 0x12, 0x34, 0x40, 0, 64, 17, 0, 0];
    pkt[2..4].copy_from_slice(&total.to_be_bytes());
    pkt.extend_from_slice(&src.octets());
    pkt.extend_from_slice(&dst.octets());
    let sum = checksum::internet_checksum(&pkt);
    pkt[10..12].copy_from_slice(&sum.to_be_bytes());
    pkt.extend_from_slice(&4242u16.to_be_bytes());
    pkt.extend_from_slice(&port.to_be_bytes());
    pkt.extend_from_slice(&udp_len.to_be_bytes());
    pkt.extend_from_slice(&[0, 0]); // UDP checksum 0: "none" over IPv4
    pkt.extend_from_slice(payload);
    let to = SockaddrIn::from(SocketAddrV4::new(dst, 0));
    let n =
        socket::sendto(fd.as_raw_fd(), &pkt, &to, MsgFlags::empty()).call("sendto(IPPROTO_RAW)")?;
    say!(
        "hdrincl",
        "sendto({raw}, {n} bytes: our IPv4 header from {src}, UDP 4242 → {port}) = {n}"
    );
    let mut buf = [0u8; 256];
    match rx.recv_from(&mut buf) {
        Ok((m, from)) => say!(
            "hdrincl",
            "the UDP socket received {m} bytes {:?} from {from}: the source address is the one we wrote",
            String::from_utf8_lossy(&buf[..m])
        ),
        Err(e) => note(format!("nothing arrived: {e}")),
    }
    note(
        "with IP_HDRINCL the kernel always fills in the header checksum and the total length, \
         and the source address and the id when they are 0; the rest goes out as written (raw(7))",
    );
    Ok(())
}

fn traceroute_part() -> Result<()> {
    heading("traceroute over a chain of namespaces");
    if let Some(why) = lab::refusal() {
        note(format!("skipped: {why}"));
        return Ok(());
    }
    let lab = lab::Lab::new()?;
    let a = lab.host("a")?;
    let r1 = lab.router("r1")?;
    let r2 = lab.router("r2")?;
    let b = lab.host("b")?;
    lab.link(&a, "10.0.1.1/24", &r1, "10.0.1.254/24")?;
    lab.link(&r1, "10.0.2.1/24", &r2, "10.0.2.2/24")?;
    lab.link(&r2, "10.0.3.254/24", &b, "10.0.3.1/24")?;
    lab.route(&a, "default", "10.0.1.254")?;
    lab.route(&r1, "10.0.3.0/24", "10.0.2.2")?;
    lab.route(&r2, "10.0.1.0/24", "10.0.2.1")?;
    lab.route(&b, "default", "10.0.3.254")?;
    note("a — r1 — r2 — b: four network namespaces, three veth pairs, forwarding on in r1 and r2");
    let dst = Ipv4Addr::new(10, 0, 3, 1);
    let hops = a.run(move || trace::trace(dst, 33433, 8, Duration::from_secs(1)))??;
    for h in &hops {
        match (h.from, h.icmp) {
            (Some(from), Some((t, c))) => say!(
                "traceroute",
                "{:>2}  {from}  {:.3} ms  ({})",
                h.ttl,
                h.rtt.unwrap_or_default().as_secs_f64() * 1e3,
                frame::icmp_name(t, c)
            ),
            _ => say!("traceroute", "{:>2}  * * *", h.ttl),
        }
    }
    note(
        "each router answered the probe whose TTL it took to 0 with ICMP time exceeded; the \
         destination answered port unreachable. No raw socket: IP_RECVERR queued each ICMP \
         error on the UDP socket, recvmsg(MSG_ERRQUEUE) read it with the sender's address",
    );
    Ok(())
}

/// `ch11_raw sniff [EXPR]`: one line per packet on an interface of this
/// machine, through a filter compiled to classic BPF.
fn sniff(args: &Args) -> Result<()> {
    let iface = args.value("--iface").unwrap_or("lo");
    let count = args.count("--count", 0)?;
    let secs = args.count("--secs", 0)?;
    let text = args.positional.join(" ");
    let fd = capture::open(Kind::Dgram, capture::ETH_P_IP, iface)?;
    if !text.is_empty() {
        let prog = bpf::compile(&bpf::parse_filter(&text)?)?;
        bpf::attach(&fd, &prog)?;
        while capture::recv_packet(&fd, 65536, Duration::ZERO)?.is_some() {}
    }
    println!(
        "sniffing on {iface}{} (Ctrl-C stops)",
        if text.is_empty() {
            String::new()
        } else {
            format!(", filter \"{text}\"")
        }
    );
    let t0 = Instant::now();
    let mut n = 0u64;
    loop {
        if secs > 0 && t0.elapsed() >= Duration::from_secs(secs) {
            break;
        }
        let Some(p) = capture::recv_packet(&fd, 65536, Duration::from_millis(200))? else {
            continue;
        };
        let line = match frame::parse_ipv4(&p.bytes) {
            Ok(pk) => pk.summary(),
            Err(e) => format!("undecodable ({e:?}), {} bytes", p.wire_len),
        };
        println!(
            "{:>10.6} {:<8} {line}",
            p.at.duration_since(t0).as_secs_f64(),
            p.direction()
        );
        n += 1;
        if count > 0 && n >= count {
            break;
        }
    }
    let (seen, dropped) = capture::statistics(&fd)?;
    println!(
        "{n} packets printed; PACKET_STATISTICS: {seen} received, {dropped} dropped by the kernel"
    );
    Ok(())
}
