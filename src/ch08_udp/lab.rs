//! Multicast between two network namespaces joined by a veth pair, where
//! `IP_MULTICAST_LOOP` and `IP_MULTICAST_TTL` can be seen at work (on `lo`
//! they cannot). Built with [`crate::kit::lab`]: the namespaces, the veth
//! pair and the 10.0.8.0/24 addresses exist only inside a private user +
//! network namespace this program creates, and vanish with it.
//!
//! A process must be single-threaded to enter a private user namespace, and
//! the demo is not, so the demo runs this part as a child process of the
//! same binary (`ch08_udp demo veth`), which enters the namespace before it
//! starts ([`crate::kit::netns::enter_before_exec`]).

use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsRawFd, OwnedFd};
use std::process::Command;
use std::time::Duration;

use nix::sys::socket::{self, AddressFamily, IpMembershipRequest, SockaddrStorage, sockopt};

use super::demo::GROUP;
use super::dgram::{self, recv_within, send_to, udp_bind};
use crate::kit::lab::Lab;
use crate::kit::narrate::note;
use crate::kit::{Call, Error, Result, netns};
use crate::say;

/// Set in the child's environment: "you are already inside the namespace".
const IN_LAB: &str = "SOCKBOOK_CH08_IN_LAB";

/// Host a's end of the veth pair, and host b's.
const A_ADDR: Ipv4Addr = Ipv4Addr::new(10, 0, 8, 1);
const B_ADDR: Ipv4Addr = Ipv4Addr::new(10, 0, 8, 2);

/// The `veth` part: in the child, build the lab and run it; otherwise start
/// the child (or say in one line why not).
pub fn veth_multicast() -> Result<()> {
    if std::env::var_os(IN_LAB).is_some() {
        return in_lab();
    }
    if let Some(why) = crate::kit::lab::refusal() {
        note(format_args!(
            "multicast over a veth pair between two namespaces: skipped: {why}"
        ));
        return Ok(());
    }
    let exe = std::env::current_exe().map_err(|e| Error::msg(format!("current_exe: {e}")))?;
    let is_ours = exe
        .file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with("ch08_udp"));
    if !is_ours {
        note("multicast over a veth pair: run `ch08_udp demo veth` (it needs its own process)");
        return Ok(());
    }
    let mut child = Command::new(exe);
    child.args(["demo", "veth"]).env(IN_LAB, "1");
    netns::enter_before_exec(&mut child);
    let status = child.status().map_err(|e| {
        Error::msg(format!(
            "start `ch08_udp demo veth` in a private namespace: {e}"
        ))
    })?;
    if !status.success() {
        return Err(Error::msg(format!("`ch08_udp demo veth` failed: {status}")));
    }
    Ok(())
}

fn v4(ip: Ipv4Addr, port: u16) -> SockaddrStorage {
    SockaddrStorage::from(SocketAddrV4::new(ip, port))
}

/// A member of GROUP on `port` (0: any), joined on the interface with
/// address `on`.
fn member(on: Ipv4Addr, port: u16) -> Result<(OwnedFd, u16)> {
    let (fd, bound) = udp_bind("", &v4(GROUP, port))?;
    socket::setsockopt(&fd, sockopt::ReuseAddr, &true).call("SO_REUSEADDR")?;
    socket::setsockopt(
        &fd,
        sockopt::IpAddMembership,
        &IpMembershipRequest::new(GROUP, Some(on)),
    )
    .call(format!("setsockopt(IP_ADD_MEMBERSHIP, {{{GROUP}, {on}}})"))?;
    let port = bound.as_sockaddr_in().map_or(0, |a| a.port());
    Ok((fd, port))
}

fn copies(fd: &OwnedFd) -> usize {
    let mut n = 0;
    while recv_within(fd, 64, Duration::from_millis(100)).is_ok() {
        n += 1;
    }
    n
}

fn in_lab() -> Result<()> {
    crate::kit::narrate::heading("8b. Multicast between two namespaces joined by a veth pair");
    let lab = Lab::new()?;
    let a = lab.host("a")?;
    let b = lab.host("b")?;
    lab.link(&a, "10.0.8.1/24", &b, "10.0.8.2/24")?;
    say!(
        "lab",
        "hosts a (10.0.8.1) and b (10.0.8.2), one veth pair between them, inside a private namespace"
    );
    // A member on b, and one on a itself (the sender's own host).
    let (on_b, port) = b.run(|| member(B_ADDR, 0))??;
    let (on_a, _) = a.run(|| member(A_ADDR, port))??;
    say!(
        "b",
        "joined {GROUP}:{port} on 10.0.8.2; a member on a joined on 10.0.8.1 too"
    );
    let to = v4(GROUP, port);
    // A veth pair just set up can lose the first datagram (seen here once,
    // under load: the link comes up asynchronously after `ip link set up`).
    // Probe until b hears one, for at most 3 s, then count from empty queues.
    let probe = a.run(|| -> Result<OwnedFd> {
        let fd = dgram::udp_socket("", AddressFamily::Inet)?;
        dgram::set_multicast_if(&fd, A_ADDR)?;
        Ok(fd)
    })??;
    let t0 = std::time::Instant::now();
    let mut up = false;
    while !up && t0.elapsed() < Duration::from_secs(3) {
        send_to(&probe, b"probe", &to)?;
        up = recv_within(&on_b, 64, Duration::from_millis(50)).is_ok();
    }
    say!(
        "lab",
        "the link carries multicast after {:?}{}",
        t0.elapsed(),
        if up {
            ""
        } else {
            " (not yet: the counts below may be short)"
        }
    );
    copies(&on_a);
    copies(&on_b);
    for (ttl, looped) in [(1u8, true), (1, false), (0, true)] {
        let sender = a.run(|| -> Result<OwnedFd> {
            let fd = dgram::udp_socket("", AddressFamily::Inet)?;
            dgram::set_multicast_if(&fd, A_ADDR)?;
            socket::setsockopt(&fd, sockopt::IpMulticastTtl, &ttl).call("IP_MULTICAST_TTL")?;
            socket::setsockopt(&fd, sockopt::IpMulticastLoop, &looped).call("IP_MULTICAST_LOOP")?;
            Ok(fd)
        })??;
        send_to(&sender, b"group hello", &to)?;
        say!(
            "a",
            "fd {}: IP_MULTICAST_IF 10.0.8.1, TTL {ttl}, LOOP {}: sendto({to}) -> {} at b, {} at a's own member",
            sender.as_raw_fd(),
            looped as u8,
            copies(&on_b),
            copies(&on_a)
        );
    }
    note(
        "over the veth pair the options show: LOOP 1 gives the sender's own host a copy, LOOP 0 does not; TTL 0 keeps the packet on the sending host (its local copy still arrives), TTL 1 lets it cross the link but no router",
    );
    note(
        "the namespaces, the veth pair and 10.0.8.0/24 existed only inside this program's private namespace: nothing left the machine",
    );
    Ok(())
}
