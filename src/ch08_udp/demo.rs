//! The narrated tour of chapter 8: `cargo run --bin ch08_udp`. Each part is
//! also a subcommand (`ch08_udp demo PART`).

use std::io::IoSliceMut;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::socket::{
    self, AddressFamily, ControlMessageOwned, IpMembershipRequest, MsgFlags, SockaddrStorage,
    sockopt,
};

use super::dgram::{self, MAX_UDP4, MAX_UDP6, loopback_any, recv_datagram, send_to, udp_bind};
use super::relay::{self, Impairment};
use super::transfer::{self, TransferConfig};
use super::{batch, connected, echo, request};
use crate::kit::narrate::{heading, note};
use crate::kit::{Call, Error, Result, net, wait};
use crate::say;

/// A short wait: on loopback a datagram that is coming is there at once.
const SHORT: Duration = Duration::from_millis(200);

/// One part of the tour.
pub type Part = fn() -> Result<()>;

/// The parts, in order, with the subcommand name of each.
pub const PARTS: [(&str, Part); 12] = [
    ("boundaries", boundaries),
    ("trunc", trunc),
    ("connected", connected_udp),
    ("recverr", recverr),
    ("loss", loss),
    ("sizes", sizes),
    ("broadcast", broadcast),
    ("multicast", multicast),
    ("veth", super::lab::veth_multicast),
    ("batch", batching),
    ("echo", echo_server),
    ("reliable", reliable),
];

/// The whole tour.
pub fn run() -> Result<()> {
    crate::kit::narrate::line(
        "",
        "Chapter 8 — UDP: datagrams, and reliability you build yourself",
    );
    for (_, part) in PARTS {
        part()?;
    }
    note(
        "nothing in this tour left the machine: loopback addresses, lo's broadcast address, and one group sent with IP_MULTICAST_IF 127.0.0.1",
    );
    Ok(())
}

fn v4(addr: &SockaddrStorage) -> Result<SocketAddrV4> {
    addr.as_sockaddr_in()
        .map(|a| SocketAddrV4::from(*a))
        .ok_or_else(|| Error::msg(format!("{addr}: not IPv4")))
}

fn nix_addr(ip: Ipv4Addr, port: u16) -> SockaddrStorage {
    SockaddrStorage::from(SocketAddrV4::new(ip, port))
}

/// Message boundaries: three sends, three receives, each whole; the same
/// three writes over TCP arrive as one stream of bytes.
pub fn boundaries() -> Result<()> {
    heading("1. Datagrams keep their boundaries; a stream does not");
    let (rx, rx_addr) = udp_bind("receiver", &loopback_any())?;
    let (tx, _) = udp_bind("sender", &loopback_any())?;
    for word in ["one", "two!", "three"] {
        let n = send_to(&tx, word.as_bytes(), &rx_addr)?;
        say!(
            "sender",
            "sendto({}, {word:?}, {rx_addr}) = {n}",
            tx.as_raw_fd()
        );
    }
    for _ in 0..3 {
        let d = dgram::recv_within(&rx, 1024, SHORT)?;
        let from = d.from.map(|f| f.to_string()).unwrap_or_default();
        say!(
            "receiver",
            "recvfrom({}, 1024-byte buffer) = {} {:?} from {from}",
            rx.as_raw_fd(),
            d.len,
            String::from_utf8_lossy(&d.data)
        );
    }
    note(
        "three sendto, three recvfrom, each returned exactly one datagram: a datagram is delivered whole or not at all",
    );
    // The same experiment as chapter 2, over TCP.
    crate::kit::narrate::set_quiet(true);
    let listening = net::tcp_listen("server", &loopback_any(), 1);
    let (listener, addr) = match listening {
        Ok(l) => l,
        Err(e) => {
            crate::kit::narrate::set_quiet(false);
            return Err(e);
        }
    };
    let client = net::tcp_connect("client", &addr);
    let accepted = client.and_then(|c| net::accept("server", &listener).map(|a| (c, a)));
    crate::kit::narrate::set_quiet(false);
    let (client, (conn, _)) = accepted?;
    for word in ["one", "two!", "three"] {
        nix::unistd::write(&client, word.as_bytes()).call("write(tcp)")?;
    }
    say!("client", "write(tcp) x3: \"one\" \"two!\" \"three\"");
    // Wait until all 12 bytes are queued (FIONREAD), then one read.
    let deadline = Instant::now() + SHORT;
    while fionread(&conn)? < 12 && Instant::now() < deadline {
        wait::wait_readable(&conn, SHORT)?;
        std::thread::yield_now();
    }
    let mut buf = [0u8; 1024];
    let n = nix::unistd::read(&conn, &mut buf).call("read(tcp)")?;
    say!(
        "server",
        "read({}, 1024-byte buffer) = {n} {:?}",
        conn.as_raw_fd(),
        String::from_utf8_lossy(&buf[..n])
    );
    note(
        "over TCP the same three writes came out of one read: a byte stream has no boundaries (chapter 2)",
    );
    Ok(())
}

/// Bytes waiting to be read (`ioctl(FIONREAD)`).
fn fionread(fd: &OwnedFd) -> Result<usize> {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int, which we own.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::FIONREAD, &mut n) } == -1 {
        return Err(Error::last_os("ioctl(FIONREAD)"));
    }
    Ok(n as usize)
}

/// MSG_TRUNC: a short buffer loses the rest of the datagram.
pub fn trunc() -> Result<()> {
    heading("2. A buffer too short: MSG_TRUNC");
    let (rx, rx_addr) = udp_bind("receiver", &loopback_any())?;
    let (tx, _) = udp_bind("sender", &loopback_any())?;
    let big = vec![b'x'; 100];
    send_to(&tx, &big, &rx_addr)?;
    send_to(&tx, &big, &rx_addr)?;
    say!("sender", "sendto 100 bytes, twice");
    wait::wait_readable(&rx, SHORT)?;
    let mut small = [0u8; 10];
    let n = socket::recv(rx.as_raw_fd(), &mut small, MsgFlags::MSG_DONTWAIT).call("recv")?;
    say!(
        "receiver",
        "recv({}, 10-byte buffer, 0) = {n}",
        rx.as_raw_fd()
    );
    let d = recv_datagram(&rx, 10, MsgFlags::MSG_DONTWAIT)?;
    say!(
        "receiver",
        "recvmsg({}, 10-byte buffer, MSG_TRUNC) = {}, msg_flags {}MSG_TRUNC, {} bytes in the buffer",
        rx.as_raw_fd(),
        d.len,
        if d.truncated { "" } else { "no " },
        d.data.len()
    );
    match recv_datagram(&rx, 1024, MsgFlags::MSG_DONTWAIT) {
        Err(e) if e.errno() == Some(Errno::EAGAIN) => say!(
            "receiver",
            "recv({}) = -1 EAGAIN: the other 90 bytes of each are gone",
            rx.as_raw_fd()
        ),
        other => say!("receiver", "unexpected: {other:?}"),
    }
    note(
        "without MSG_TRUNC the call returns what fit, and nothing says it was cut; with it, the return value is the datagram's real length",
    );
    Ok(())
}

/// Connected UDP: a default peer, filtering, and ECONNREFUSED.
pub fn connected_udp() -> Result<()> {
    heading("3. connect() on a UDP socket: a peer, a filter, and its errors");
    let (server, server_addr) = udp_bind("server", &loopback_any())?;
    let (client, client_addr) = udp_bind("client", &loopback_any())?;
    let (stranger, _) = udp_bind("stranger", &loopback_any())?;
    socket::connect(client.as_raw_fd(), &server_addr).call("connect")?;
    say!(
        "client",
        "connect({}, {server_addr}) = 0 (no packet is sent)",
        client.as_raw_fd()
    );
    socket::send(client.as_raw_fd(), b"ping", MsgFlags::empty()).call("send")?;
    say!(
        "client",
        "send({}, \"ping\") = 4 (no address: the socket has a peer)",
        client.as_raw_fd()
    );
    let d = dgram::recv_within(&server, 64, SHORT)?;
    say!("server", "got {:?}", String::from_utf8_lossy(&d.data));
    let no_ports = dgram::udp_counter("NoPorts");
    send_to(&stranger, b"stranger", &client_addr)?;
    send_to(&server, b"pong", &client_addr)?;
    say!(
        "stranger",
        "sendto(client, \"stranger\"); then the server sends \"pong\""
    );
    let d = dgram::recv_within(&client, 64, SHORT)?;
    say!("client", "recv = {:?}", String::from_utf8_lossy(&d.data));
    note(format_args!(
        "the stranger's datagram never reached the connected socket: no socket matched it, so /proc/net/snmp Udp NoPorts went +{} (and an ICMP port-unreachable went back to the stranger)",
        dgram::udp_counter("NoPorts").saturating_sub(no_ports)
    ));
    // A closed port.
    let closed = {
        let (gone, gone_addr) = udp_bind("", &loopback_any())?;
        drop(gone);
        gone_addr
    };
    let t0 = Instant::now();
    match connected::ask_connected(&closed, b"anyone?", Duration::from_secs(2)) {
        Err(e) => say!("client", "{e} after {:?}", t0.elapsed()),
        Ok(r) => say!("client", "unexpected reply {r:?}"),
    }
    note(
        "send() succeeded; the ICMP port-unreachable that came back made the *next* call fail: ECONNREFUSED",
    );
    Ok(())
}

/// IP_RECVERR and MSG_ERRQUEUE on an unconnected socket.
pub fn recverr() -> Result<()> {
    heading("4. An unconnected socket and the ICMP error: IP_RECVERR, MSG_ERRQUEUE");
    let closed = {
        let (gone, gone_addr) = udp_bind("", &loopback_any())?;
        drop(gone);
        gone_addr
    };
    let (plain, _) = udp_bind("plain", &loopback_any())?;
    send_to(&plain, b"hello?", &closed)?;
    say!(
        "plain",
        "sendto({}, \"hello?\", {closed}) = 6",
        plain.as_raw_fd()
    );
    match dgram::recv_within(&plain, 64, SHORT) {
        Err(e) if e.errno() == Some(Errno::ETIMEDOUT) => say!(
            "plain",
            "poll({}, POLLIN, {SHORT:?}) = 0: no datagram and no error",
            plain.as_raw_fd()
        ),
        Err(e) => say!("plain", "{e}"),
        Ok(d) => say!("plain", "unexpected datagram {d:?}"),
    }
    note(
        "an unconnected socket is told nothing: the ICMP cannot be pinned on one of its many possible peers",
    );
    let (asking, _) = udp_bind("recverr", &loopback_any())?;
    socket::setsockopt(&asking, sockopt::Ipv4RecvErr, &true).call("setsockopt(IP_RECVERR)")?;
    say!(
        "recverr",
        "setsockopt({}, IPPROTO_IP, IP_RECVERR, 1) = 0",
        asking.as_raw_fd()
    );
    send_to(&asking, b"hello?", &closed)?;
    say!(
        "recverr",
        "sendto({}, \"hello?\", {closed}) = 6",
        asking.as_raw_fd()
    );
    // The error arrives as POLLERR; read it from the error queue.
    let revents = wait::wait_for(&asking, nix::poll::PollFlags::empty(), SHORT)?;
    say!("recverr", "poll: revents {revents:?}");
    let mut body = [0u8; 64];
    let mut iov = [IoSliceMut::new(&mut body)];
    let mut cmsgs = nix::cmsg_space!(libc::sock_extended_err, libc::sockaddr_in);
    let msg = socket::recvmsg::<SockaddrStorage>(
        asking.as_raw_fd(),
        &mut iov,
        Some(&mut cmsgs),
        MsgFlags::MSG_ERRQUEUE | MsgFlags::MSG_DONTWAIT,
    )
    .call("recvmsg(MSG_ERRQUEUE)")?;
    let (bytes, to) = (
        msg.bytes,
        msg.address.map(|a| a.to_string()).unwrap_or_default(),
    );
    say!(
        "recverr",
        "recvmsg({}, MSG_ERRQUEUE) = {bytes} (the datagram that failed, to {to}), flags {:?}",
        asking.as_raw_fd(),
        msg.flags
    );
    for c in msg.cmsgs().call("cmsgs")? {
        if let ControlMessageOwned::Ipv4RecvErr(err, offender) = c {
            let from = offender
                .map(|o| Ipv4Addr::from(u32::from_be(o.sin_addr.s_addr)).to_string())
                .unwrap_or_default();
            say!(
                "recverr",
                "  IP_RECVERR: ee_errno {} ({}), ee_origin {} (SO_EE_ORIGIN_ICMP = {}), ICMP type {} code {} (3/3: destination unreachable, port unreachable), from {from}",
                err.ee_errno,
                Errno::from_raw(err.ee_errno as i32),
                err.ee_origin,
                libc::SO_EE_ORIGIN_ICMP,
                err.ee_type,
                err.ee_code
            );
        }
    }
    Ok(())
}

/// Loss you can count: RcvbufErrors and SO_RXQ_OVFL.
pub fn loss() -> Result<()> {
    heading("5. Loss you can count: a full receive buffer drops datagrams");
    let rmem_max = dgram::sysctl("net/core/rmem_max").unwrap_or(0);
    let rmem_default = dgram::sysctl("net/core/rmem_default").unwrap_or(0);
    note(format_args!(
        "/proc/sys/net/core/rmem_default = {rmem_default}, rmem_max = {rmem_max} (the most SO_RCVBUF may ask for)"
    ));
    let (rx, rx_addr) = udp_bind("receiver", &loopback_any())?;
    let (tx, _) = udp_bind("sender", &loopback_any())?;
    socket::setsockopt(&rx, sockopt::RcvBuf, &4096).call("setsockopt(SO_RCVBUF)")?;
    let got = socket::getsockopt(&rx, sockopt::RcvBuf).call("getsockopt(SO_RCVBUF)")?;
    say!(
        "receiver",
        "setsockopt(SO_RCVBUF, 4096); getsockopt reads back {got} (the kernel doubles it for its bookkeeping)"
    );
    socket::setsockopt(&rx, sockopt::RxqOvfl, &1).call("setsockopt(SO_RXQ_OVFL)")?;
    say!(
        "receiver",
        "setsockopt({}, SOL_SOCKET, SO_RXQ_OVFL, 1) = 0",
        rx.as_raw_fd()
    );
    let before = dgram::udp_counter("RcvbufErrors");
    let sent = 200;
    for _ in 0..sent {
        send_to(&tx, &[7u8; 1000], &rx_addr)?;
    }
    let after = dgram::udp_counter("RcvbufErrors");
    say!(
        "sender",
        "sendto 1000 bytes x {sent}, none of them read yet: every sendto returned 1000"
    );
    let mut received = 0;
    while read_with_drop_count(&rx)?.is_some() {
        received += 1;
    }
    say!(
        "receiver",
        "read {received} of {sent}, and no SO_RXQ_OVFL message with them: they were queued before the first drop"
    );
    send_to(&tx, b"one more", &rx_addr)?;
    wait::wait_readable(&rx, SHORT)?;
    let dropped = read_with_drop_count(&rx)?.flatten();
    say!(
        "receiver",
        "one more datagram: recvmsg's SO_RXQ_OVFL control message says {} dropped on this socket so far",
        dropped.map_or("none".into(), |n| n.to_string())
    );
    let port = v4(&rx_addr)?.port();
    say!(
        "receiver",
        "/proc/net/udp, the line for port {port}: drops = {}",
        proc_udp_drops(port).map_or("?".into(), |d| d.to_string())
    );
    note(format_args!(
        "/proc/net/snmp Udp RcvbufErrors went {before} -> {after} (+{}; the counter is for the whole network namespace)",
        after.saturating_sub(before)
    ));
    note(
        "the sender was told nothing: UDP has no flow control, and the loss is silent unless you count it",
    );
    Ok(())
}

/// The `drops` column (the last) of the `/proc/net/udp` line whose local
/// port is `port`.
fn proc_udp_drops(port: u16) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/net/udp").ok()?;
    text.lines().skip(1).find_map(|line| {
        let cols: Vec<&str> = line.split_whitespace().collect();
        let local_port = cols.get(1)?.rsplit_once(':')?.1;
        if u16::from_str_radix(local_port, 16).ok()? != port {
            return None;
        }
        cols.last()?.parse().ok()
    })
}

/// Receive one datagram (without waiting) and the `SO_RXQ_OVFL` count
/// that came with it: `None` when there was no datagram, `Some(None)` when
/// it carried no count.
fn read_with_drop_count(rx: &OwnedFd) -> Result<Option<Option<u32>>> {
    let mut body = [0u8; 2048];
    let mut iov = [IoSliceMut::new(&mut body)];
    let mut cmsgs = nix::cmsg_space!(u32);
    let msg = match socket::recvmsg::<SockaddrStorage>(
        rx.as_raw_fd(),
        &mut iov,
        Some(&mut cmsgs),
        MsgFlags::MSG_DONTWAIT,
    ) {
        Ok(msg) => msg,
        Err(Errno::EAGAIN) => return Ok(None),
        Err(e) => return Err(Error::sys("recvmsg(SO_RXQ_OVFL)", e)),
    };
    let mut dropped = None;
    for c in msg.cmsgs().call("cmsgs")? {
        if let ControlMessageOwned::RxqOvfl(n) = c {
            dropped = Some(n);
        }
    }
    Ok(Some(dropped))
}

/// Size limits: 65507 over IPv4, 65527 over IPv6, EMSGSIZE above.
pub fn sizes() -> Result<()> {
    heading("6. How big a datagram can be");
    let (rx, rx_addr) = udp_bind("receiver", &loopback_any())?;
    let (tx, _) = udp_bind("sender", &loopback_any())?;
    for n in [MAX_UDP4, MAX_UDP4 + 1] {
        match send_to(&tx, &vec![1u8; n], &rx_addr) {
            Ok(sent) => say!("sender", "sendto({n} bytes) = {sent}"),
            Err(e) => say!("sender", "{e}"),
        }
    }
    let d = dgram::recv_within(&rx, MAX_UDP4 + 1, SHORT)?;
    say!("receiver", "received {} bytes, whole", d.len);
    let v6: SockaddrStorage = SockaddrStorage::from(
        "[::1]:0"
            .parse::<SocketAddr>()
            .map_err(|e| Error::msg(e.to_string()))?,
    );
    match udp_bind("receiver6", &v6) {
        Ok((_rx6, rx6_addr)) => {
            let tx6 = dgram::udp_socket("sender6", AddressFamily::Inet6)?;
            for n in [MAX_UDP6, MAX_UDP6 + 1] {
                match send_to(&tx6, &vec![1u8; n], &rx6_addr) {
                    Ok(sent) => say!("sender6", "sendto({n} bytes) = {sent}"),
                    Err(e) => say!("sender6", "{e}"),
                }
            }
        }
        Err(e) => note(format_args!("no IPv6 loopback here ({e}): skipped")),
    }
    let pmtu = dgram::get_int_option(
        &tx,
        libc::IPPROTO_IP,
        libc::IP_MTU_DISCOVER,
        "IP_MTU_DISCOVER",
    )?;
    let pmtu_name = match pmtu {
        libc::IP_PMTUDISC_DONT => "IP_PMTUDISC_DONT",
        libc::IP_PMTUDISC_WANT => "IP_PMTUDISC_WANT",
        libc::IP_PMTUDISC_DO => "IP_PMTUDISC_DO",
        libc::IP_PMTUDISC_PROBE => "IP_PMTUDISC_PROBE",
        _ => "?",
    };
    say!(
        "sender",
        "getsockopt({}, IPPROTO_IP, IP_MTU_DISCOVER) = {pmtu} ({pmtu_name}); /proc/sys/net/ipv4/ip_no_pmtu_disc = {}",
        tx.as_raw_fd(),
        dgram::sysctl("net/ipv4/ip_no_pmtu_disc").map_or("?".into(), |v| v.to_string())
    );
    let mtu = std::fs::read_to_string("/sys/class/net/lo/mtu").unwrap_or_default();
    note(format_args!(
        "65535 - 20 (IPv4 header) - 8 (UDP header) = {MAX_UDP4}; IPv6's length field excludes its header: 65535 - 8 = {MAX_UDP6}"
    ));
    note(format_args!(
        "lo's MTU is {} (/sys/class/net/lo/mtu), so these went unfragmented; on a 1500-byte Ethernet one 65507-byte datagram is 45 IP fragments, and losing any one loses the datagram",
        mtu.trim()
    ));
    Ok(())
}

/// Broadcast to 127.255.255.255 only.
pub fn broadcast() -> Result<()> {
    heading("7. Broadcast, on loopback only: 127.255.255.255");
    let bcast = Ipv4Addr::new(127, 255, 255, 255);
    let (rx, rx_addr) = udp_bind("listener", &nix_addr(bcast, 0))?;
    let port = v4(&rx_addr)?.port();
    let (tx, _) = udp_bind("sender", &loopback_any())?;
    let to = nix_addr(bcast, port);
    match send_to(&tx, b"to all on lo", &to) {
        Err(e) => say!("sender", "{e}: a broadcast needs SO_BROADCAST first"),
        Ok(n) => say!("sender", "unexpected: sent {n} without SO_BROADCAST"),
    }
    socket::setsockopt(&tx, sockopt::Broadcast, &true).call("setsockopt(SO_BROADCAST)")?;
    say!(
        "sender",
        "setsockopt({}, SOL_SOCKET, SO_BROADCAST, 1) = 0",
        tx.as_raw_fd()
    );
    send_to(&tx, b"to all on lo", &to)?;
    say!("sender", "sendto({to}) = 12");
    let d = dgram::recv_within(&rx, 64, SHORT)?;
    say!(
        "listener",
        "bound to {rx_addr}: got {:?} from {}",
        String::from_utf8_lossy(&d.data),
        d.from.map(|f| f.to_string()).unwrap_or_default()
    );
    // Who else hears a broadcast: a socket bound to INADDR_ANY does, one
    // bound to 127.0.0.1 does not. (Binding sends nothing.)
    for ip in [Ipv4Addr::UNSPECIFIED, Ipv4Addr::LOCALHOST] {
        let (other, other_addr) = udp_bind("", &nix_addr(ip, 0))?;
        send_to(
            &tx,
            b"to all on lo",
            &nix_addr(bcast, v4(&other_addr)?.port()),
        )?;
        let heard = dgram::recv_within(&other, 64, SHORT).is_ok();
        say!(
            "listener",
            "bound to {other_addr}: {}",
            if heard {
                "got it"
            } else {
                "nothing within 200 ms"
            }
        );
    }
    note(
        "127.255.255.255 is lo's broadcast address (ip route show table local); broadcasts reach sockets bound to the broadcast address or to INADDR_ANY, not to 127.0.0.1",
    );
    Ok(())
}

/// The flags of interface `name` (`ioctl(SIOCGIFFLAGS)`).
fn interface_flags(name: &str) -> Result<libc::c_int> {
    let fd = dgram::udp_socket("", AddressFamily::Inet)?;
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(name.bytes()) {
        *dst = src as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS reads and writes one ifreq, which we own.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) } == -1 {
        return Err(Error::last_os(format!("ioctl({name}, SIOCGIFFLAGS)")));
    }
    // SAFETY: SIOCGIFFLAGS filled the flags member of the union.
    Ok(unsafe { req.ifr_ifru.ifru_flags } as libc::c_int)
}

/// The multicast group the chapter uses: in 239.0.0.0/8, administratively
/// scoped (RFC 2365), and only ever sent with `IP_MULTICAST_IF` 127.0.0.1.
pub const GROUP: Ipv4Addr = Ipv4Addr::new(239, 255, 8, 8);

/// Multicast on loopback.
pub fn multicast() -> Result<()> {
    heading("8. Multicast on loopback: IP_ADD_MEMBERSHIP, IP_MULTICAST_IF");
    let flags = interface_flags("lo")?;
    say!(
        "",
        "lo flags: IFF_LOOPBACK {} IFF_MULTICAST {}",
        flags & libc::IFF_LOOPBACK != 0,
        flags & libc::IFF_MULTICAST != 0
    );
    let (rx, rx_addr) = udp_bind("member", &nix_addr(GROUP, 0))?;
    let port = v4(&rx_addr)?.port();
    let join = IpMembershipRequest::new(GROUP, Some(Ipv4Addr::LOCALHOST));
    socket::setsockopt(&rx, sockopt::IpAddMembership, &join)
        .call("setsockopt(IP_ADD_MEMBERSHIP)")?;
    say!(
        "member",
        "setsockopt({}, IP_ADD_MEMBERSHIP, {{{GROUP}, 127.0.0.1}}) = 0",
        rx.as_raw_fd()
    );
    let to = nix_addr(GROUP, port);
    let fresh = dgram::udp_socket("", AddressFamily::Inet)?;
    let default_ttl =
        socket::getsockopt(&fresh, sockopt::IpMulticastTtl).call("getsockopt(IP_MULTICAST_TTL)")?;
    let default_loop = socket::getsockopt(&fresh, sockopt::IpMulticastLoop)
        .call("getsockopt(IP_MULTICAST_LOOP)")?;
    say!(
        "",
        "a new socket's defaults: IP_MULTICAST_TTL {default_ttl}, IP_MULTICAST_LOOP {}",
        default_loop as u8
    );
    for ttl in [0u8, 1] {
        for looped in [false, true] {
            let tx = dgram::udp_socket("", AddressFamily::Inet)?;
            // First and always: the interface. Without it, the route for
            // 239.0.0.0/4 would pick the default interface and the packet
            // would leave the machine.
            dgram::set_multicast_if(&tx, Ipv4Addr::LOCALHOST)?;
            socket::setsockopt(&tx, sockopt::IpMulticastTtl, &ttl).call("IP_MULTICAST_TTL")?;
            socket::setsockopt(&tx, sockopt::IpMulticastLoop, &looped).call("IP_MULTICAST_LOOP")?;
            send_to(&tx, b"group hello", &to)?;
            let mut copies = 0;
            while dgram::recv_within(&rx, 64, Duration::from_millis(50)).is_ok() {
                copies += 1;
            }
            say!(
                "sender",
                "IP_MULTICAST_IF 127.0.0.1, TTL {ttl}, LOOP {}: sendto({to}) -> {copies} cop{} at the member",
                looped as u8,
                if copies == 1 { "y" } else { "ies" }
            );
        }
    }
    note(
        "lo carries multicast although it lacks IFF_MULTICAST: the join names 127.0.0.1, and what lo transmits it receives",
    );
    note(
        "IP_MULTICAST_LOOP and TTL 0 govern the extra local copy made when a group packet goes out a real interface; through lo the transmission itself is the local delivery, so on this kernel they changed nothing above (read the table, it is measured)",
    );
    Ok(())
}

/// recvmmsg/sendmmsg against one call per datagram.
pub fn batching() -> Result<()> {
    heading("9. Batching: sendmmsg and recvmmsg");
    let count = 20_000;
    let one = batch::measure(count, 64, 1)?;
    let many = batch::measure(count, 64, 32)?;
    say!(
        "",
        "one call per datagram: {count} datagrams in {:.1} ms, {} calls, {:.0}/s",
        one.elapsed.as_secs_f64() * 1e3,
        one.calls,
        one.per_second()
    );
    say!(
        "",
        "batches of 32:         {count} datagrams in {:.1} ms, {} calls, {:.0}/s",
        many.elapsed.as_secs_f64() * 1e3,
        many.calls,
        many.per_second()
    );
    note(format_args!(
        "ratio {:.1}x: the per-datagram work in the kernel is the same; what batching saves is the system-call entry and exit",
        many.per_second() / one.per_second()
    ));
    Ok(())
}

/// The echo server (assignment 1), with a short buffer to show MSG_TRUNC.
pub fn echo_server() -> Result<()> {
    heading("10. The echo server, and a datagram too long for its buffer");
    let (sock, addr) = udp_bind("server", &loopback_any())?;
    let (stop_r, stop_w) = std::io::pipe().map_err(|e| Error::msg(e.to_string()))?;
    let (tx, events) = std::sync::mpsc::channel();
    let config = echo::EchoConfig {
        buf_len: 1000,
        events: Some(tx),
    };
    let server = std::thread::spawn(move || echo::serve_echo(sock, stop_r, config));
    let (client, _) = udp_bind("client", &loopback_any())?;
    for n in [10usize, 1000, 1001] {
        send_to(&client, &vec![b'e'; n], &addr)?;
        say!("client", "sendto({n} bytes)");
        match dgram::recv_within(&client, 4096, SHORT) {
            Ok(d) => say!("client", "echo: {} bytes", d.len),
            Err(_) => say!("client", "no echo within {SHORT:?}"),
        }
    }
    drop(stop_w);
    let stats = server
        .join()
        .map_err(|_| Error::msg("echo server panicked"))??;
    for e in events.try_iter() {
        say!("server", "{e:?}");
    }
    say!("server", "{stats:?}");
    Ok(())
}

/// The relay, the resolver's client, and reliable transfer.
pub fn reliable() -> Result<()> {
    heading("11. A bad network on purpose: the relay; retries; a sliding window");
    crate::kit::narrate::set_quiet(true);
    let bound = udp_bind("", &loopback_any());
    crate::kit::narrate::set_quiet(false);
    // A server that answers every request, behind a relay that loses half.
    let (srv, srv_addr) = bound?;
    let responder = std::thread::spawn(move || -> Result<u32> {
        let mut answered = 0;
        while let Ok(d) = dgram::recv_within(&srv, 2048, Duration::from_millis(1500)) {
            let Some(from) = d.from else { continue };
            if d.data == b"quit" {
                break;
            }
            let _ = send_to(&srv, &d.data, &from);
            answered += 1;
        }
        Ok(answered)
    });
    let lossy = Impairment {
        loss: 0.5,
        seed: 8,
        ..Impairment::default()
    };
    let relay = relay::spawn_relay(srv_addr, lossy)?;
    say!("relay", "{} -> {srv_addr}, loss 50 %, seed 8", relay.addr);
    let (client, _) = udp_bind("client", &loopback_any())?;
    let backoff = request::Backoff {
        first_timeout: Duration::from_millis(20),
        factor: 2,
        tries: 6,
    };
    for id in 1..=3 {
        let t0 = Instant::now();
        match request::request(&client, &relay.addr, id, b"what time is it?", backoff) {
            Ok(r) => say!(
                "client",
                "request {id}: answered after {} send(s), {} ignored, {:?}",
                r.sends,
                r.ignored,
                t0.elapsed()
            ),
            Err(e) => say!("client", "request {id}: {e}"),
        }
    }
    let _ = send_to(&client, b"quit", &srv_addr);
    let stats = relay.stop()?;
    relay::report("relay", &stats);
    let _ = responder.join();
    note(
        "timeouts of 20, 40, 80 ms...: each retry waits twice as long, so a slow server is not flooded",
    );

    // Reliable transfer: stop-and-wait against a sliding window.
    let data: Vec<u8> = (0..64 * 1024u32).map(|i| (i * 7 % 251) as u8).collect();
    let how = Impairment {
        loss: 0.05,
        dup: 0.02,
        reorder: 0.05,
        delay: Duration::from_millis(2),
        seed: 5,
        ..Impairment::default()
    };
    for (name, window) in [("stop-and-wait", 1), ("sliding window of 32", 32)] {
        let config = TransferConfig {
            window,
            ..TransferConfig::default()
        };
        crate::kit::narrate::set_quiet(true);
        let pair =
            udp_bind("", &loopback_any()).and_then(|r| Ok((r, udp_bind("", &loopback_any())?)));
        crate::kit::narrate::set_quiet(false);
        let ((rx, rx_addr), (tx, _)) = pair?;
        let relay = relay::spawn_relay(rx_addr, how.clone())?;
        let receiver = std::thread::spawn(move || {
            if window == 1 {
                transfer::receive_in_order(rx, config)
            } else {
                transfer::receive_file(rx, config)
            }
        });
        let sent = if window == 1 {
            transfer::send_stop_and_wait(&tx, &relay.addr, &data, config)?
        } else {
            transfer::send_file(&tx, &relay.addr, &data, config)?
        };
        let got = receiver
            .join()
            .map_err(|_| Error::msg("receiver panicked"))??;
        let stats = relay.stop()?;
        say!(
            "",
            "{name}: {} bytes in {:.0} ms ({:.0} KB/s), {} packets, {} datagrams sent; intact: {}",
            data.len(),
            sent.elapsed.as_secs_f64() * 1e3,
            data.len() as f64 / 1024.0 / sent.elapsed.as_secs_f64(),
            sent.packets,
            sent.datagrams,
            got.data == data
        );
        relay::report("relay", &stats);
    }
    note(
        "same file, same relay seed (5 % loss, 2 % duplicates, 5 % reordered, 2 ms each way): the window keeps the pipe full; stop-and-wait pays a round trip per packet and a timeout per loss",
    );
    Ok(())
}
