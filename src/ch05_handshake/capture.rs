//! Watching the packets: an `AF_PACKET` socket on the loopback interface
//! ([`packet(7)`](https://man7.org/linux/man-pages/man7/packet.7.html)),
//! filtered in the kernel to the demo's own ports, decoding IPv4 + TCP.
//! It is a tiny `tcpdump -i lo 'tcp port P'`.
//!
//! A packet socket needs `CAP_NET_RAW`. A learner without root can often
//! get that capability inside a private *user + network namespace*: the
//! process becomes "root" of a brand-new network stack with its own `lo`
//! and nothing else, so whatever it captures is its own traffic.
//! [`prepare`] does that (it must run before any thread starts:
//! `unshare(CLONE_NEWUSER)` refuses a multithreaded process).

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::socket::{self, MsgFlags, sockopt};

use super::header::{Ipv4Header, TcpHeader, decode_ipv4, decode_tcp};
pub use crate::kit::netns::{enter_private_netns, interface_up};
use crate::kit::{Call, Error, Result, wait};

/// Where the demo runs, and whether it can capture packets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// This process may open a packet socket where it is (root, or
    /// `CAP_NET_RAW`): it captures on the machine's own `lo`.
    Here,
    /// It moved itself into a private user + network namespace and
    /// captures there (on that namespace's `lo`).
    Namespace,
    /// No capture: the reason, in one line. The demo shows states only.
    Refused(String),
}

impl Access {
    /// Can the demo capture?
    pub fn can_capture(&self) -> bool {
        !matches!(self, Access::Refused(_))
    }

    /// One line for the start of a demo.
    pub fn describe(&self) -> String {
        match self {
            Access::Here => "packet capture: AF_PACKET on lo (this process has CAP_NET_RAW)".into(),
            Access::Namespace => "packet capture: AF_PACKET on the lo of a private user+network \
                 namespace (no root needed; `ss` in another terminal will not see these sockets)"
                .into(),
            Access::Refused(why) => format!("packet capture unavailable ({why}): states only"),
        }
    }
}

/// Decide how the demo will capture. Call it in `main` before any thread
/// starts. With `want_namespace` the process enters a private namespace even
/// when it could capture where it is (clean counters, no other traffic).
pub fn prepare(want_namespace: bool) -> Access {
    if !want_namespace && packet_socket().is_ok() {
        return Access::Here;
    }
    match enter_private_netns() {
        Ok(()) => match packet_socket() {
            Ok(_) => Access::Namespace,
            Err(e) => Access::Refused(format!("in a private namespace: {e}")),
        },
        Err(e) => match packet_socket() {
            Ok(_) => Access::Here,
            // The kit's line names the setting that refused and how to allow it.
            Err(here) => Access::Refused(match crate::kit::netns::refusal() {
                Some(why) => format!("{here}; and {why}"),
                None => format!("{here}; and {e}"),
            }),
        },
    }
}

/// `socket(AF_PACKET, SOCK_DGRAM, 0)`: a packet socket that receives nothing
/// yet (protocol 0) until [`Capture::start`] filters and binds it.
fn packet_socket() -> Result<OwnedFd> {
    // SAFETY: plain socket(2) call with constant arguments; the result is
    // checked before use.
    let raw = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
            0,
        )
    };
    if raw == -1 {
        return Err(Error::last_os("socket(AF_PACKET, SOCK_DGRAM, 0)"));
    }
    // SAFETY: socket() just returned this fd and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// One captured TCP segment.
#[derive(Debug, Clone)]
pub struct Packet {
    /// When the capture thread read it (within microseconds of its
    /// sending, on an idle machine).
    pub at: Instant,
    pub ip: Ipv4Header,
    pub tcp: TcpHeader,
    /// The first bytes of the data, if any (up to 32).
    pub data: Vec<u8>,
}

impl Packet {
    /// `127.0.0.1:51234 > 127.0.0.1:40001`.
    pub fn route(&self) -> String {
        format!(
            "{}:{} > {}:{}",
            self.ip.src, self.tcp.src_port, self.ip.dst, self.tcp.dst_port
        )
    }

    /// One tcpdump-like line, absolute sequence numbers:
    /// `SYN seq=123 win=65495 [mss 65495,…] len=0`.
    pub fn summary(&self) -> String {
        let t = &self.tcp;
        let mut s = format!("{:<8} seq={}", t.flag_names(), t.seq);
        if t.has(super::header::flags::ACK) {
            s.push_str(&format!(" ack={}", t.ack));
        }
        s.push_str(&format!(" win={} len={}", t.window, t.payload_len));
        if !t.options.is_empty() {
            s.push_str(&format!(" [{}]", t.options_text()));
        }
        s
    }
}

/// A running capture on `lo` of the IPv4 TCP packets to or from some ports.
#[derive(Debug)]
pub struct Capture {
    shared: Arc<Shared>,
    reader: Option<std::thread::JoinHandle<()>>,
    ports: Vec<u16>,
}

/// What the capture thread and the demo share.
#[derive(Debug)]
struct Shared {
    fd: OwnedFd,
    packets: Mutex<Vec<Packet>>,
    arrived: Condvar,
    stop: AtomicBool,
    error: Mutex<Option<Error>>,
}

impl Capture {
    /// Open a packet socket, attach a classic BPF filter that keeps only
    /// IPv4 TCP packets with one of `ports` as source or destination, then
    /// bind it to `lo` for every protocol (`ETH_P_ALL`).
    ///
    /// Loopback shows each packet twice: once as it is sent (outgoing) and
    /// once as it is received. The filter keeps the outgoing copy, in the
    /// order the packets were sent.
    pub fn start(ports: &[u16]) -> Result<Capture> {
        let fd = packet_socket()?;
        let filter = port_filter(ports);
        let prog = libc::sock_fprog {
            len: filter.len() as u16,
            filter: filter.as_ptr().cast_mut(),
        };
        // SAFETY: prog points at `filter`, which lives across the call; the
        // kernel copies the program.
        let rc = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_ATTACH_FILTER,
                (&raw const prog).cast(),
                size_of::<libc::sock_fprog>() as libc::socklen_t,
            )
        };
        if rc == -1 {
            return Err(Error::last_os("setsockopt(SO_ATTACH_FILTER)"));
        }
        // A burst of 64 KiB loopback segments overflows the default buffer
        // before the reader thread runs: ask for a big one. SO_RCVBUFFORCE
        // (CAP_NET_ADMIN, which we have in a private namespace) passes the
        // rmem_max cap; plain SO_RCVBUF is the fallback.
        let big = 8 << 20;
        if socket::setsockopt(&fd, sockopt::RcvBufForce, &big).is_err() {
            let _ = socket::setsockopt(&fd, sockopt::RcvBuf, &big);
        }
        let ifindex = nix::net::if_::if_nametoindex("lo").call("if_nametoindex(lo)")?;
        // SAFETY: sockaddr_ll is plain old data; all-zero is a valid value.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
        sll.sll_ifindex = ifindex as i32;
        // SAFETY: the pointer and length describe `sll`, which outlives the call.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&raw const sll).cast(),
                size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc == -1 {
            return Err(Error::last_os("bind(AF_PACKET, lo, ETH_P_ALL)"));
        }
        let shared = Arc::new(Shared {
            fd,
            packets: Mutex::new(Vec::new()),
            arrived: Condvar::new(),
            stop: AtomicBool::new(false),
            error: Mutex::new(None),
        });
        let for_reader = Arc::clone(&shared);
        let reader = std::thread::Builder::new()
            .name("capture".into())
            .spawn(move || read_packets(&for_reader))
            .map_err(|e| Error::msg(format!("start the capture thread: {e}")))?;
        Ok(Capture {
            shared,
            reader: Some(reader),
            ports: ports.to_vec(),
        })
    }

    /// The ports this capture keeps.
    pub fn ports(&self) -> &[u16] {
        &self.ports
    }

    /// Every packet captured so far, in the order sent, after waiting until
    /// none has arrived for `quiet` *and* none is left unread in the
    /// socket. A packet sent on loopback is in the packet socket's queue
    /// before the sending call returns; the reader thread moves it to the
    /// list under the same lock `take` holds, so "queue empty while holding
    /// the lock" means "every packet sent so far is in the list", however
    /// late the reader thread was scheduled (a quiet period alone would
    /// miss packets on a loaded machine). The quiet period is for packets
    /// the kernel sends on its own a moment later (an ACK, a FIN).
    pub fn take(&self, quiet: Duration) -> Result<Vec<Packet>> {
        let lock_failed = || Error::msg("capture: a thread panicked holding the packet list");
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut packets = self.shared.packets.lock().map_err(|_| lock_failed())?;
        loop {
            let before = packets.len();
            let (guard, _) = self
                .shared
                .arrived
                .wait_timeout(packets, quiet)
                .map_err(|_| lock_failed())?;
            packets = guard;
            let unread = wait::wait_readable(&self.shared.fd, Duration::ZERO).is_ok();
            if packets.len() == before && (!unread || Instant::now() > deadline) {
                break;
            }
        }
        if let Some(e) = self.shared.error.lock().map_err(|_| lock_failed())?.take() {
            return Err(e);
        }
        Ok(std::mem::take(&mut *packets))
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

/// The capture thread: wait for packets, stamp each with the time it is
/// read, keep the ones that decode. The kernel's own receive time stamps
/// (`SO_TIMESTAMPNS`) are no good here: on loopback a TCP segment can carry
/// a stale stamp from the sending side, so packets sent a second apart may
/// show the same time.
fn read_packets(shared: &Shared) {
    let mut buf = [0u8; 2048];
    while !shared.stop.load(Ordering::Relaxed) {
        match wait::wait_readable(&shared.fd, Duration::from_millis(50)) {
            Ok(()) => {}
            Err(e) if e.errno() == Some(Errno::ETIMEDOUT) => continue,
            Err(e) => return fail(shared, e),
        }
        // Read and keep under the lock, so `take` never sees the queue
        // empty while a packet is between the socket and the list.
        let Ok(mut packets) = shared.packets.lock() else {
            return;
        };
        loop {
            match socket::recv(shared.fd.as_raw_fd(), &mut buf, MsgFlags::MSG_DONTWAIT) {
                Ok(len) => {
                    if let Some(p) = decode_packet(&buf[..len], Instant::now()) {
                        packets.push(p);
                    }
                }
                Err(Errno::EAGAIN) => break,
                Err(Errno::EINTR) => continue,
                Err(e) => {
                    drop(packets);
                    return fail(shared, Error::sys("recv(AF_PACKET)", e));
                }
            }
        }
        drop(packets);
        shared.arrived.notify_all();
    }
}

fn fail(shared: &Shared, e: Error) {
    if let Ok(mut slot) = shared.error.lock() {
        *slot = Some(e);
    }
    shared.arrived.notify_all();
}

/// Decode an IPv4 packet carrying TCP; `None` for anything else.
pub fn decode_packet(bytes: &[u8], at: Instant) -> Option<Packet> {
    let ip = decode_ipv4(bytes).ok()?;
    if ip.protocol != libc::IPPROTO_TCP as u8 {
        return None;
    }
    let end = ip.total_len.min(bytes.len());
    let segment = bytes.get(ip.header_len..end)?;
    let mut tcp = decode_tcp(segment).ok()?;
    let data = segment[tcp.header_len..].iter().take(32).copied().collect();
    // The capture keeps only the first bytes of a big segment: the data's
    // length is what the IP header says, not what was copied.
    tcp.payload_len = ip.total_len.saturating_sub(ip.header_len + tcp.header_len);
    Some(Packet { at, ip, tcp, data })
}

/// Bytes of each packet the capture keeps: the IP and TCP headers with
/// room for all their options, and the start of the data.
const SNAPLEN: u32 = 256;

/// A classic BPF program (the `tcpdump -d` kind): accept an incoming IPv4
/// TCP packet, not a fragment, whose source or destination port is one of
/// `ports`; drop everything else. The packet socket is `SOCK_DGRAM`, so
/// offset 0 is the IP header.
fn port_filter(ports: &[u16]) -> Vec<libc::sock_filter> {
    let stmt = |code: u32, k: u32| libc::sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    };
    let jump = |code: u32, k: u32, jt: u8, jf: u8| libc::sock_filter {
        code: code as u16,
        jt,
        jf,
        k,
    };
    let n = ports.len() as u8;
    // Layout:
    //  0 ld  proto            ; ancillary: the packet's ethertype
    //  1 jeq ETH_P_IP else drop
    //  2 ldb pkttype          ; ancillary: PACKET_HOST, PACKET_OUTGOING, …
    //  3 jeq OUTGOING else drop
    //  4 ldb [9]              ; IP protocol
    //  5 jeq TCP else drop
    //  6 ldh [6]              ; flags + fragment offset
    //  7 jset 0x1fff → drop   ; a later fragment has no TCP header
    //  8 ldxb 4*([0]&0xf)     ; X = IP header length
    //  9 ldh [x+0]            ; source port
    // 10.. jeq port_i → accept   (n of them)
    //    ldh [x+2]            ; destination port
    //    jeq port_i → accept   (n of them)
    //    ret 0                ; drop
    //    ret SNAPLEN          ; accept, keeping the first SNAPLEN bytes
    let mut prog = Vec::new();
    let total = 10 + n as usize + 1 + n as usize + 2;
    let drop_at = total - 2;
    let accept_at = total - 1;
    let to = |from: usize, target: usize| (target - from - 1) as u8;
    prog.push(stmt(
        libc::BPF_LD | libc::BPF_H | libc::BPF_ABS,
        (libc::SKF_AD_OFF + libc::SKF_AD_PROTOCOL) as u32,
    ));
    prog.push(jump(
        libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K,
        libc::ETH_P_IP as u32,
        0,
        to(1, drop_at),
    ));
    prog.push(stmt(
        libc::BPF_LD | libc::BPF_B | libc::BPF_ABS,
        (libc::SKF_AD_OFF + libc::SKF_AD_PKTTYPE) as u32,
    ));
    prog.push(jump(
        libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K,
        4, // PACKET_OUTGOING
        0,
        to(3, drop_at),
    ));
    prog.push(stmt(libc::BPF_LD | libc::BPF_B | libc::BPF_ABS, 9));
    prog.push(jump(
        libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K,
        libc::IPPROTO_TCP as u32,
        0,
        to(5, drop_at),
    ));
    prog.push(stmt(libc::BPF_LD | libc::BPF_H | libc::BPF_ABS, 6));
    prog.push(jump(
        libc::BPF_JMP | libc::BPF_JSET | libc::BPF_K,
        0x1fff,
        to(7, drop_at),
        0,
    ));
    prog.push(stmt(libc::BPF_LDX | libc::BPF_B | libc::BPF_MSH, 0));
    prog.push(stmt(libc::BPF_LD | libc::BPF_H | libc::BPF_IND, 0));
    for &p in ports {
        let here = prog.len();
        prog.push(jump(
            libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K,
            u32::from(p),
            to(here, accept_at),
            0,
        ));
    }
    prog.push(stmt(libc::BPF_LD | libc::BPF_H | libc::BPF_IND, 2));
    for &p in ports {
        let here = prog.len();
        prog.push(jump(
            libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K,
            u32::from(p),
            to(here, accept_at),
            0,
        ));
    }
    prog.push(stmt(libc::BPF_RET | libc::BPF_K, 0));
    prog.push(stmt(libc::BPF_RET | libc::BPF_K, SNAPLEN));
    debug_assert_eq!(prog.len(), total);
    prog
}

/// Print packets in the order they were captured, with times from `t0`
/// (or from the first packet).
pub fn print_packets(packets: &[Packet], t0: Option<Instant>) {
    let Some(first) = packets.first() else {
        crate::kit::narrate::line("", "  (no packets captured)");
        return;
    };
    let t0 = t0.unwrap_or(first.at);
    for p in packets {
        let ms = p.at.saturating_duration_since(t0).as_secs_f64() * 1e3;
        crate::kit::narrate::line(
            "",
            format_args!("  {ms:>10.3} ms  {}  {}", p.route(), p.summary()),
        );
    }
}
