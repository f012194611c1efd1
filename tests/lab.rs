//! `kit::lab`: hosts and routers as network namespaces joined by veth pairs.
//! Each test runs in a child process inside a private user + network
//! namespace (`support::in_private_netns`), and skips where that is refused.

#[macro_use]
mod support;

use std::net::{SocketAddr, UdpSocket};

use sockbook::kit::lab::Lab;

/// Send `payload` from `from` to `to` and read it back on `to`'s socket,
/// with a deadline; returns what arrived and the sender's address as seen.
fn one_datagram(from: &UdpSocket, to: &UdpSocket, payload: &[u8]) -> (Vec<u8>, SocketAddr) {
    to.set_read_timeout(Some(support::DEADLINE)).unwrap();
    let dest = to.local_addr().unwrap();
    let sent = from
        .send_to(payload, dest)
        .unwrap_or_else(|e| panic!("sendto {dest}: {e}"));
    assert_eq!(
        sent,
        payload.len(),
        "sendto {dest} sent {sent} of {} bytes",
        payload.len()
    );
    let mut buf = [0u8; 1500];
    let (n, peer) = to
        .recv_from(&mut buf)
        .unwrap_or_else(|e| panic!("recvfrom on {dest}, waiting for {payload:?}: {e}"));
    (buf[..n].to_vec(), peer)
}

#[test]
fn two_hosts_ping_pong_over_a_veth() {
    support::in_private_netns(|| {
        let lab = Lab::new().expect("Lab::new");
        let a = lab.host("a").expect("host a");
        let b = lab.host("b").expect("host b");
        lab.link(&a, "10.0.0.1/24", &b, "10.0.0.2/24")
            .expect("link a-b");
        let sa = a
            .run(|| UdpSocket::bind("10.0.0.1:0"))
            .unwrap()
            .expect("bind 10.0.0.1:0 in a");
        let sb = b
            .run(|| UdpSocket::bind("10.0.0.2:0"))
            .unwrap()
            .expect("bind 10.0.0.2:0 in b");
        let (got, from) = one_datagram(&sa, &sb, b"ping");
        assert_eq!(got, b"ping", "b received {got:?}, expected b\"ping\"");
        assert_eq!(
            from,
            sa.local_addr().unwrap(),
            "b saw the datagram come from {from}"
        );
        let (got, _) = one_datagram(&sb, &sa, b"pong");
        assert_eq!(got, b"pong", "a received {got:?}, expected b\"pong\"");
        // 10.0.0.2 is b's alone: a cannot bind it (each node its own stack).
        let err = a.run(|| UdpSocket::bind("10.0.0.2:0")).unwrap();
        assert!(
            err.is_err(),
            "a bound b's address 10.0.0.2: namespaces are not separate"
        );
    });
}

#[test]
fn a_chain_of_two_routers_forwards_and_counts_hops() {
    support::in_private_netns(|| {
        let lab = Lab::new().expect("Lab::new");
        let a = lab.host("a").unwrap();
        let r1 = lab.router("r1").unwrap();
        let r2 = lab.router("r2").unwrap();
        let b = lab.host("b").unwrap();
        lab.link(&a, "10.1.0.1/24", &r1, "10.1.0.254/24").unwrap();
        lab.link(&r1, "10.2.0.1/24", &r2, "10.2.0.2/24").unwrap();
        lab.link(&r2, "10.3.0.254/24", &b, "10.3.0.1/24").unwrap();
        lab.route(&a, "default", "10.1.0.254").unwrap();
        lab.route(&r1, "10.3.0.0/24", "10.2.0.2").unwrap();
        lab.route(&r2, "10.1.0.0/24", "10.2.0.1").unwrap();
        lab.route(&b, "default", "10.3.0.254").unwrap();
        let sa = a.run(|| UdpSocket::bind("10.1.0.1:0")).unwrap().unwrap();
        let sb = b.run(|| UdpSocket::bind("10.3.0.1:0")).unwrap().unwrap();
        let (got, _) = one_datagram(&sa, &sb, b"over two routers");
        assert_eq!(
            got, b"over two routers",
            "b received {got:?} from a via r1, r2"
        );
        // Each router decrements the TTL: with TTL 2 the datagram dies at r2.
        sa.set_ttl(2).unwrap();
        sb.set_read_timeout(Some(std::time::Duration::from_millis(300)))
            .unwrap();
        sa.send_to(b"ttl 2", sb.local_addr().unwrap()).unwrap();
        let mut buf = [0u8; 64];
        let late = sb.recv_from(&mut buf);
        assert!(
            late.is_err(),
            "a datagram with TTL 2 crossed two routers and reached b: {late:?}"
        );
        // r1's forwarding is its own sysctl, not the machine's.
        let forwarding = r1
            .run(|| std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward"))
            .unwrap();
        assert_eq!(forwarding.unwrap().trim(), "1", "ip_forward inside r1");
        let forwarding = a
            .run(|| std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward"))
            .unwrap();
        assert_eq!(forwarding.unwrap().trim(), "0", "ip_forward inside host a");
    });
}

#[test]
fn a_link_taken_down_drops_silently_and_comes_back() {
    support::in_private_netns(|| {
        let lab = Lab::new().expect("Lab::new");
        let a = lab.host("a").unwrap();
        let b = lab.host("b").unwrap();
        let ab = lab.link(&a, "10.0.0.1/24", &b, "10.0.0.2/24").unwrap();
        lab.route(&b, "10.9.0.0/24", "10.0.0.1").unwrap();
        let sa = a.run(|| UdpSocket::bind("10.0.0.1:0")).unwrap().unwrap();
        let sb = b.run(|| UdpSocket::bind("10.0.0.2:0")).unwrap().unwrap();
        assert_eq!(
            one_datagram(&sa, &sb, b"before").0,
            b"before",
            "before set_down"
        );
        lab.set_down(&b, &ab).unwrap();
        // The sender is told nothing: sendto succeeds, the datagram is lost.
        let sent = sa.send_to(b"into the void", sb.local_addr().unwrap());
        assert!(
            sent.is_ok(),
            "sendto over a link whose far end is down: {sent:?}"
        );
        sb.set_read_timeout(Some(std::time::Duration::from_millis(300)))
            .unwrap();
        let mut buf = [0u8; 64];
        // Nor does anything come back: a connected UDP socket would report
        // an ICMP error as ECONNREFUSED/EHOSTUNREACH on its next call.
        let sc = a
            .run(|| UdpSocket::bind("10.0.0.1:0"))
            .unwrap()
            .expect("bind a second socket in a");
        sc.connect(sb.local_addr().unwrap()).unwrap();
        sc.set_read_timeout(Some(std::time::Duration::from_millis(300)))
            .unwrap();
        sc.send(b"anyone?").unwrap();
        let answer = sc.recv(&mut buf).map_err(|e| e.kind());
        assert!(
            matches!(
                answer,
                Err(std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)
            ),
            "a connected socket sending over a downed link got {answer:?}: expected silence"
        );
        let got = sb.recv_from(&mut buf);
        assert!(got.is_err(), "b received over a link that is down: {got:?}");
        lab.set_up(&b, &ab).unwrap();
        let routes = b.ip(&["route"]).unwrap();
        assert!(
            routes.contains("10.9.0.0/24 via 10.0.0.1"),
            "set_up put b's route back: {routes}"
        );
        // After set_up: resend until one arrives (the link needs a moment).
        sb.set_read_timeout(Some(std::time::Duration::from_millis(100)))
            .unwrap();
        let deadline = std::time::Instant::now() + support::DEADLINE;
        loop {
            sa.send_to(b"after", sb.local_addr().unwrap()).unwrap();
            if let Ok((n, _)) = sb.recv_from(&mut buf) {
                assert_eq!(
                    &buf[..n],
                    b"after",
                    "after set_up b received {:?}",
                    &buf[..n]
                );
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "nothing arrived after set_up within {:?}",
                support::DEADLINE
            );
        }
    });
}
