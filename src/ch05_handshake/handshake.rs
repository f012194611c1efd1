//! Part 1: the three-way handshake on loopback, with the real sequence
//! numbers from captured packets and the state of each side.

use std::os::fd::AsRawFd;
use std::time::Duration;

use nix::sys::socket::{self, AddressFamily};

use super::backlog::{listener_queues, show_table};
use super::capture::{Access, Capture, Packet, print_packets};
use super::header::flags;
use super::opts::state_of;
use crate::kit::narrate::{heading, line, note};
use crate::kit::{Call, Error, Result, addr, net};
use crate::say;

/// The three packets of one handshake, found in a capture.
#[derive(Debug, Clone)]
pub struct Handshake {
    pub syn: Packet,
    pub syn_ack: Packet,
    pub ack: Packet,
}

/// Find the handshake between `client_port` and `server_port` in
/// `packets`: the client's SYN, the server's SYN+ACK that acknowledges it,
/// and the client's ACK of that.
pub fn find_handshake(packets: &[Packet], client_port: u16, server_port: u16) -> Option<Handshake> {
    let from_client = |p: &&Packet| p.tcp.src_port == client_port && p.tcp.dst_port == server_port;
    let from_server = |p: &&Packet| p.tcp.src_port == server_port && p.tcp.dst_port == client_port;
    let syn = packets
        .iter()
        .filter(from_client)
        .find(|p| p.tcp.flags & (flags::SYN | flags::ACK) == flags::SYN)?;
    let syn_ack = packets
        .iter()
        .filter(from_server)
        .find(|p| p.tcp.has(flags::SYN | flags::ACK) && p.tcp.ack == syn.tcp.seq.wrapping_add(1))?;
    let ack = packets.iter().filter(from_client).find(|p| {
        p.tcp.flags & (flags::SYN | flags::ACK) == flags::ACK
            && p.tcp.ack == syn_ack.tcp.seq.wrapping_add(1)
    })?;
    Some(Handshake {
        syn: syn.clone(),
        syn_ack: syn_ack.clone(),
        ack: ack.clone(),
    })
}

/// Part 1 of the demo.
pub fn demo(access: &Access) -> Result<()> {
    heading("1. The three-way handshake (三次握手)");
    let (listener, laddr) = net::tcp_listen("server", &addr::parse("127.0.0.1:0")?, 8)?;
    let port = net::local_port(&listener)?;
    say!(
        "server",
        "TCP_INFO({}): {}",
        listener.as_raw_fd(),
        state_of(&listener)?
    );
    let cap = if access.can_capture() {
        Some(Capture::start(&[port])?)
    } else {
        None
    };
    let client = net::tcp_socket("client", AddressFamily::Inet)?;
    say!(
        "client",
        "TCP_INFO({}): {}   (a new socket)",
        client.as_raw_fd(),
        state_of(&client)?
    );
    socket::connect(client.as_raw_fd(), &laddr)
        .call(format!("connect({}, {laddr})", client.as_raw_fd()))?;
    let cport = net::local_port(&client)?;
    say!(
        "client",
        "connect({}, {laddr}) = 0   (local port {cport})",
        client.as_raw_fd()
    );
    say!(
        "client",
        "TCP_INFO({}): {}",
        client.as_raw_fd(),
        state_of(&client)?
    );
    let q = listener_queues(&listener)?;
    note(format!(
        "connect has returned and the server has not called accept: the listener's accept queue holds {} (limit {})",
        q.ready, q.limit
    ));
    note(
        "/proc/net/tcp now (the server's side of the connection is already ESTABLISHED, held by the kernel, no fd yet):",
    );
    show_table(port)?;

    // Everything the capture holds now passed before accept is called.
    let before_accept = match &cap {
        Some(cap) => cap.take(Duration::from_millis(20))?,
        None => Vec::new(),
    };
    let (conn, peer) = net::accept("server", &listener)?;
    say!(
        "server",
        "TCP_INFO({}): {}   peer {peer}",
        conn.as_raw_fd(),
        state_of(&conn)?
    );

    let Some(cap) = cap else {
        note(
            "(no capture: the sequence numbers need packets; the states above are the whole story here)",
        );
        return Ok(());
    };
    let mut packets = before_accept.clone();
    packets.extend(cap.take(Duration::from_millis(20))?);
    let Some(hs) = find_handshake(&packets, cport, port) else {
        print_packets(&packets, None);
        return Err(Error::msg("no complete handshake in the capture"));
    };
    note("the packets (times from the SYN):");
    print_packets(&packets, None);
    note(format!(
        "{} handshake packets had passed when connect() returned (the capture, read right then, held them), \
         and accept() had not been called: the kernel completes the handshake; accept only collects the result",
        if find_handshake(&before_accept, cport, port).is_some() {
            "all three"
        } else {
            "not all"
        }
    ));
    let j = hs.syn.tcp.seq;
    let k = hs.syn_ack.tcp.seq;
    note(
        "the three steps in the seed's notation (states: the client's on the left, the server's on the right):",
    );
    let rows = [
        ("SYN_SENT", "-->", "SYN", format!("seq=j={j}"), "LISTEN"),
        (
            "",
            "<--",
            "SYN+ACK",
            format!(
                "seq=k={k} ack={} (j+1? {})",
                hs.syn_ack.tcp.ack,
                check(hs.syn_ack.tcp.ack == j.wrapping_add(1))
            ),
            "SYN_RECV",
        ),
        (
            "ESTABLISHED",
            "-->",
            "ACK",
            format!(
                "seq={} ack={} (k+1? {})",
                hs.ack.tcp.seq,
                hs.ack.tcp.ack,
                check(hs.ack.tcp.ack == k.wrapping_add(1))
            ),
            "ESTABLISHED (when it arrives)",
        ),
    ];
    for (client_state, arrow, what, numbers, server_state) in rows {
        line(
            "",
            format_args!("  {client_state:<12} {arrow} {what:<8} {numbers:<48} {server_state}"),
        );
    }
    note(format!(
        "the SYN counts as one byte of sequence space, so the client's next seq is j+1 = {} ({})",
        j.wrapping_add(1),
        check(hs.ack.tcp.seq == j.wrapping_add(1))
    ));
    note(format!(
        "options offered in the SYN: [{}]; answered in the SYN+ACK: [{}]",
        hs.syn.tcp.options_text(),
        hs.syn_ack.tcp.options_text()
    ));
    note("j and k are random (initial sequence numbers): run it again and they change");
    Ok(())
}

fn check(ok: bool) -> &'static str {
    if ok { "yes" } else { "NO" }
}
