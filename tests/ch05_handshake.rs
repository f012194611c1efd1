//! Graded tests for chapter 5: connect with a deadline, the /proc/net/tcp
//! parser, the listener's queues, the TCP header decoder.

#[macro_use]
mod support;

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::socket::{
    AddressFamily, Backlog, SockFlag, SockType, SockaddrStorage, bind, listen, socket,
};
use sockbook::ch05_handshake::{
    TcpOption, connect_timeout, decode_tcp, listener_queues, parse_line, read_tcp_table,
};
use sockbook::kit::tcp::{state_name, tcp_info};

fn tcp_socket() -> OwnedFd {
    socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .unwrap()
}

fn local(fd: impl AsFd) -> SocketAddr {
    let a: SockaddrStorage = nix::sys::socket::getsockname(fd.as_fd().as_raw_fd()).unwrap();
    support::std_addr(&a)
}

/// A nix listener on 127.0.0.1:0 with `backlog`.
fn listener(backlog: i32) -> (OwnedFd, SockaddrStorage) {
    let fd = tcp_socket();
    bind(fd.as_raw_fd(), &support::loopback_any()).unwrap();
    listen(&fd, Backlog::new(backlog).unwrap()).unwrap();
    let addr = nix::sys::socket::getsockname(fd.as_raw_fd()).unwrap();
    (fd, addr)
}

/// `ADDR:PORT` as `/proc/net/tcp` prints an IPv4 endpoint.
fn proc_hex(a: SocketAddr) -> String {
    match a {
        SocketAddr::V4(v4) => format!(
            "{:08X}:{:04X}",
            u32::from_ne_bytes(v4.ip().octets()),
            v4.port()
        ),
        SocketAddr::V6(_) => panic!("IPv4 only"),
    }
}

/// The line of `/proc/net/tcp` for `local` (→ `remote`, if given), found by
/// the test itself.
fn proc_line(local: SocketAddr, remote: Option<SocketAddr>) -> Option<String> {
    let text = std::fs::read_to_string("/proc/net/tcp").unwrap();
    text.lines().skip(1).map(str::to_string).find(|line| {
        let cols: Vec<&str> = line.split_whitespace().collect();
        cols[1] == proc_hex(local) && remote.is_none_or(|r| cols[2] == proc_hex(r))
    })
}

/// The test's own reading of that line: (state, rx_queue, inode).
fn proc_entry(local: SocketAddr, remote: Option<SocketAddr>) -> Option<(u8, u32, u64)> {
    let line = proc_line(local, remote)?;
    let cols: Vec<&str> = line.split_whitespace().collect();
    let rx = cols[4].split_once(':').unwrap().1;
    Some((
        u8::from_str_radix(cols[3], 16).unwrap(),
        u32::from_str_radix(rx, 16).unwrap(),
        cols[9].parse().unwrap(),
    ))
}

/// The inode behind an fd, from `/proc/self/fd/N -> socket:[INODE]`.
fn socket_inode(fd: impl AsFd) -> u64 {
    let link = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_fd().as_raw_fd())).unwrap();
    let text = link.to_string_lossy().into_owned();
    text.trim_start_matches("socket:[")
        .trim_end_matches(']')
        .parse()
        .unwrap()
}

fn is_nonblocking(fd: impl AsFd) -> bool {
    let flags = nix::fcntl::fcntl(fd.as_fd(), nix::fcntl::FcntlArg::F_GETFL).unwrap();
    nix::fcntl::OFlag::from_bits_truncate(flags).contains(nix::fcntl::OFlag::O_NONBLOCK)
}

graded! {
    /// connect_timeout connects to a listener, to the right peer, and hands
    /// back a blocking socket.
    points = 2;
    fn connect_timeout_connects_and_restores_blocking() {
        let server = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = SockaddrStorage::from(server.local_addr().unwrap());
        let fd = tcp_socket();
        connect_timeout(&fd, &addr, Duration::from_secs(3)).unwrap_or_else(|e| panic!("connect_timeout(fd, {}, 3 s) to a listening std server failed: {e}", support::std_addr(&addr)));
        let peer: SockaddrStorage = nix::sys::socket::getpeername(fd.as_raw_fd()).unwrap();
        assert_eq!(support::std_addr(&peer), server.local_addr().unwrap(), "after connect_timeout(fd, {}, 3 s), getpeername(fd) says the socket is connected to left, not to the listener it was given (right)", support::std_addr(&addr));
        let (_conn, client_seen) = server.accept().unwrap();
        assert_eq!(client_seen, local(&fd), "the listener accepted a client from left, but the socket connect_timeout connected is bound to right (getsockname): it connected another socket than the one it was given");
        let state = tcp_info(&fd).unwrap().state();
        assert_eq!(state, 1, "after connect_timeout returned Ok, TCP_INFO on the socket says state {state} ({}), not 1 (ESTABLISHED)", state_name(state));
        assert!(!is_nonblocking(&fd), "O_NONBLOCK is still set on the returned socket");
    }
}

graded! {
    /// connect_timeout reports ECONNREFUSED from a port with no listener.
    /// Every failure but the timeout reaches a nonblocking connect only
    /// through SO_ERROR: a connect that never reads it reports failures as
    /// success, wrong at its core, so this test carries 5 of the
    /// assignment's 9 points.
    points = 5;
    fn connect_timeout_reports_refused() {
        // Bound but not listening: the port is ours, and it answers SYN with RST.
        let holder = tcp_socket();
        bind(holder.as_raw_fd(), &support::loopback_any()).unwrap();
        let addr: SockaddrStorage = nix::sys::socket::getsockname(holder.as_raw_fd()).unwrap();
        let fd = tcp_socket();
        let to = support::std_addr(&addr);
        let err = connect_timeout(&fd, &addr, Duration::from_secs(3)).err().unwrap_or_else(|| {
            panic!("connect_timeout(fd, {to}, 3 s) returned Ok, but nothing listens on {to} (bound, never listen()ed): the kernel answers the SYN with RST")
        });
        assert_eq!(err.errno(), Some(Errno::ECONNREFUSED), "connect_timeout(fd, {to}, 3 s) to a port nobody listens on failed with {err}: its errno (left) should be ECONNREFUSED (right), the error SO_ERROR holds after the RST");
    }
}

graded! {
    /// connect_timeout gives up with ETIMEDOUT on time when SYNs go
    /// unanswered (a listener whose accept queue is full drops them).
    points = 2;
    fn connect_timeout_gives_up_on_time() {
        let (_listener, addr) = listener(0);
        // listen(fd, 0) admits one connection; this one fills the queue.
        let _filler = support::std_client(&addr);
        let fd = tcp_socket();
        let limit = Duration::from_millis(400);
        let t = Instant::now();
        let to = support::std_addr(&addr);
        let result = connect_timeout(&fd, &addr, limit);
        let took = t.elapsed();
        let err = result.err().unwrap_or_else(|| {
            panic!("connect_timeout(fd, {to}, {limit:?}) returned Ok after {took:?}, but that listener's accept queue is full, so its SYNs go unanswered")
        });
        assert_eq!(err.errno(), Some(Errno::ETIMEDOUT), "connect_timeout(fd, {to}, {limit:?}) to a listener whose accept queue is full (SYNs dropped) failed after {took:?} with {err}: its errno (left) should be ETIMEDOUT (right)");
        assert!(took >= limit - Duration::from_millis(20), "connect_timeout(fd, {to}, {limit:?}) gave up after {took:?}, before its deadline");
        assert!(took < limit * 4, "connect_timeout(fd, {to}, {limit:?}) gave up only after {took:?}: it should stop at its deadline (poll for writability with the time left, not the kernel's SYN retries)");
    }
}

graded! {
    /// read_tcp_table (through parse_line) finds both ends of a connection
    /// and the listener, with the state TCP_INFO reports and the socket's
    /// inode.
    points = 2;
    fn proc_tcp_states_match_tcp_info() {
        let (lfd, addr) = listener(4);
        let client = support::std_client(&addr);
        let (conn, _) = {
            let raw = nix::sys::socket::accept(lfd.as_raw_fd()).unwrap();
            // SAFETY: accept returned a new fd that nothing else owns.
            let fd = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raw) };
            let peer = local(&client);
            (fd, peer)
        };
        let server_addr = support::std_addr(&addr);
        let client_addr = client.local_addr().unwrap();
        let table = read_tcp_table().unwrap_or_else(|e| panic!("read_tcp_table() failed: {e}"));
        let find = |l: SocketAddr, r: SocketAddr| {
            table
                .iter()
                .find(|e| e.local == l && e.remote == r)
                .unwrap_or_else(|| panic!("read_tcp_table() has no entry {l} -> {r}, though the test holds that connected socket ({} entries read)", table.len()))
        };
        let c = find(client_addr, server_addr);
        let kernel = tcp_info(&client).unwrap().state();
        assert_eq!(c.state, kernel, "read_tcp_table: the client's entry {client_addr} -> {server_addr} has state {} ({}) (left), but TCP_INFO on that socket says {kernel} ({}) (right); st is hex", c.state, state_name(c.state), state_name(kernel));
        assert_eq!(c.inode, socket_inode(&client), "read_tcp_table: the client's entry {client_addr} -> {server_addr} has inode left, but /proc/self/fd says the socket is socket:[right]; inode is decimal");
        let s = find(server_addr, client_addr);
        let kernel = tcp_info(&conn).unwrap().state();
        assert_eq!(s.state, kernel, "read_tcp_table: the accepted socket's entry {server_addr} -> {client_addr} has state {} ({}) (left), but TCP_INFO on that socket says {kernel} ({}) (right); st is hex", s.state, state_name(s.state), state_name(kernel));
        assert_eq!(s.inode, socket_inode(&conn), "read_tcp_table: the accepted socket's entry {server_addr} -> {client_addr} has inode left, but /proc/self/fd says the socket is socket:[right]; inode is decimal");
        let l = table
            .iter()
            .find(|e| e.local == server_addr && e.remote.port() == 0)
            .unwrap_or_else(|| panic!("read_tcp_table() has no entry for the listener on {server_addr} (remote port 0)"));
        let kernel = tcp_info(&lfd).unwrap().state();
        assert_eq!(l.state, kernel, "read_tcp_table: the listener's entry {server_addr} has state {} ({}) (left), but TCP_INFO on that socket says {kernel} ({}) (right); st is hex (0A = 10 = LISTEN)", l.state, state_name(l.state), state_name(kernel));
        assert_eq!(l.inode, socket_inode(&lfd), "read_tcp_table: the listener's entry {server_addr} has inode left, but /proc/self/fd says the socket is socket:[right]; inode is decimal");
    }
}

graded! {
    /// parse_line reads the queue columns: unread bytes show in rx_queue,
    /// as FIONREAD counts them.
    points = 1;
    fn proc_tcp_rx_queue_counts_unread_bytes() {
        use std::io::Write;
        let server = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = SockaddrStorage::from(server.local_addr().unwrap());
        let mut client = support::std_client(&addr);
        let (conn, peer) = server.accept().unwrap();
        let n = 1000 + (std::process::id() % 1000) as usize;
        client.write_all(&vec![b'x'; n]).unwrap();
        let unread = |fd: &std::net::TcpStream| {
            let mut count: libc::c_int = 0;
            // SAFETY: FIONREAD writes one int, which we own.
            let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::FIONREAD, &mut count) };
            assert_eq!(rc, 0, "the test's own ioctl(FIONREAD) on the accepted socket failed: {}", Errno::last());
            count as u32
        };
        let deadline = Instant::now() + Duration::from_secs(2);
        while unread(&conn) < n as u32 && Instant::now() < deadline {
            sockbook::kit::wait::wait_readable(&conn, Duration::from_millis(50)).ok();
        }
        let line = proc_line(server.local_addr().unwrap(), Some(peer))
            .expect("server side in /proc/net/tcp");
        let e = parse_line(&line).unwrap_or_else(|e| panic!("parse_line({line:?}) failed: {e}"));
        assert_eq!(e.local, server.local_addr().unwrap(), "parse_line({line:?}): local (left) should be the accepted socket's own address (right)");
        assert_eq!(e.remote, peer, "parse_line({line:?}): remote (left) should be the client's address (right)");
        assert_eq!(e.rx_queue, unread(&conn), "parse_line({line:?}): rx_queue (left) should be the bytes the client sent that nobody has read, as ioctl(FIONREAD) counts them (right); the column is tx_queue:rx_queue, in hex");
        assert_eq!(e.state, 1, "parse_line({line:?}): state {} ({}) (left), but this socket is ESTABLISHED, 01 (right)", e.state, state_name(e.state));
    }
}

/// A `/proc/net/tcp6` line for `local` → `remote`, built the way the kernel
/// prints it: each 32-bit word of the address in native byte order, `%08X`.
fn tcp6_line(
    local: (Ipv6Addr, u16),
    remote: (Ipv6Addr, u16),
    st: u8,
    tx: u32,
    rx: u32,
    retr: u32,
    inode: u64,
) -> String {
    let hex = |ip: Ipv6Addr| {
        ip.octets()
            .chunks(4)
            .map(|w| format!("{:08X}", u32::from_ne_bytes([w[0], w[1], w[2], w[3]])))
            .collect::<String>()
    };
    format!(
        "   3: {}:{:04X} {}:{:04X} {st:02X} {tx:08X}:{rx:08X} 01:0000002A {retr:08X}  1000        0 {inode} 1 0000000000000000 100 0 0 10 0",
        hex(local.0),
        local.1,
        hex(remote.0),
        remote.1
    )
}

graded! {
    /// parse_line decodes IPv6 entries (native-endian words) and rejects
    /// malformed lines without panicking.
    points = 1;
    fn proc_tcp_parses_ipv6_and_rejects_garbage() {
        let pid = std::process::id();
        let local: Ipv6Addr = format!("2001:db8::{:x}:1", pid & 0xffff).parse().unwrap();
        let remote = Ipv6Addr::LOCALHOST;
        let (lp, rp) = (1024 + (pid % 60000) as u16, 443);
        let line = tcp6_line((local, lp), (remote, rp), 3, 17, 5, 2, 4242 + u64::from(pid));
        let e = parse_line(&line).unwrap_or_else(|e| panic!("parse_line({line:?}) (an IPv6 line as /proc/net/tcp6 prints it) failed: {e}"));
        assert_eq!(e.local, SocketAddr::new(local.into(), lp), "parse_line({line:?}): local (left) should be [{local}]:{lp} (right); each 8-digit word is 4 address bytes as a native-endian u32");
        assert_eq!(e.remote, SocketAddr::new(remote.into(), rp), "parse_line({line:?}): remote (left) should be [{remote}]:{rp} (right)");
        assert_eq!((e.state, e.tx_queue, e.rx_queue, e.retransmits), (3, 17, 5, 2), "parse_line({line:?}): (state, tx_queue, rx_queue, retransmits) (left) should be the line's st 03, queues 00000011:00000005 and retrnsmt 00000002, all hex (right)");
        assert_eq!(e.timer, 1, "parse_line({line:?}): timer (left) should be the tr in tr:tm->when 01:0000002A (right)");
        assert_eq!(e.timer_when, 0x2a, "parse_line({line:?}): timer_when (left) should be the tm->when in 01:0000002A, hex (right)");
        assert_eq!(e.uid, 1000, "parse_line({line:?}): uid (left) should be the uid column, decimal (right)");
        assert_eq!(e.inode, 4242 + u64::from(pid), "parse_line({line:?}): inode (left) should be the inode column, decimal (right)");
        for bad in [
            "",
            "  0: 0100007F:1F90",
            "  0: XYZ:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000 0 0 1",
            "  0: 0100007F:1F90 00000000:0000 ZZ 00000000:00000000 00:00000000 00000000 0 0 1",
            "  0: 0100007F1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000 0 0 1",
        ] {
            let got = parse_line(bad);
            assert!(got.is_err(), "parse_line({bad:?}) returned {got:?}: a line that does not fit the format must be an error");
        }
        // And a live IPv4 line round-trips through the test's own reading.
        let server = TcpListener::bind("127.0.0.1:0").unwrap();
        let (st, rx, inode) = proc_entry(server.local_addr().unwrap(), None).unwrap();
        let line = proc_line(server.local_addr().unwrap(), None).unwrap();
        let e = parse_line(&line).unwrap_or_else(|e| panic!("parse_line({line:?}) (a listener's line from /proc/net/tcp) failed: {e}"));
        assert_eq!((e.state, e.rx_queue, e.inode), (st, rx, inode), "parse_line({line:?}): (state, rx_queue, inode) (left) differ from the test's own reading of the same line (right)");
        assert_eq!(e.local.ip(), Ipv4Addr::LOCALHOST, "parse_line({line:?}): local address {} (left), but the listener is bound to 127.0.0.1 (right); 0100007F is its bytes as a native-endian u32", e.local);
    }
}

graded! {
    /// listener_queues counts the connections waiting for accept, as
    /// /proc/net/tcp's Recv-Q does, and reports the backlog limit.
    points = 2;
    fn listener_queues_counts_waiting_connections() {
        let backlog = 3 + (std::process::id() % 3) as i32;
        let (lfd, addr) = listener(backlog);
        let somaxconn: i32 = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let q0 = listener_queues(&lfd).unwrap_or_else(|e| panic!("listener_queues(listener) failed: {e}"));
        assert_eq!(q0.ready, 0, "listener_queues on a fresh listener: ready (left) should be 0 (right), as no client has connected yet");
        assert_eq!(q0.limit as i32, backlog.min(somaxconn), "listener_queues on a listener made with listen(fd, {backlog}): limit (left) should be the backlog capped at net.core.somaxconn = {somaxconn} (right), from tcpi_sacked");
        let clients: Vec<_> = (0..2).map(|_| support::std_client(&addr)).collect();
        let (_, rx, _) = proc_entry(support::std_addr(&addr), None).unwrap();
        let q = listener_queues(&lfd).unwrap_or_else(|e| panic!("listener_queues(listener) failed: {e}"));
        assert_eq!(q.ready, rx, "two clients connected, none accepted: listener_queues' ready (left), but /proc/net/tcp's rx_queue for the listener says {rx} wait for accept (right); ready is tcpi_unacked");
        assert_eq!(q.ready as usize, clients.len(), "two clients connected, none accepted: listener_queues' ready (left) should be {} (right)", clients.len());
        let raw = nix::sys::socket::accept(lfd.as_raw_fd()).unwrap();
        // SAFETY: accept returned a new fd that nothing else owns.
        let _conn = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raw) };
        let (_, rx, _) = proc_entry(support::std_addr(&addr), None).unwrap();
        let q = listener_queues(&lfd).unwrap_or_else(|e| panic!("listener_queues(listener) failed: {e}"));
        assert_eq!(q.ready, rx, "two clients connected, one accepted: listener_queues' ready (left), but /proc/net/tcp's rx_queue for the listener says {rx} wait for accept (right)");
        assert_eq!(q.ready as usize, clients.len() - 1, "two clients connected, one accepted: listener_queues' ready (left) should be {} (right)", clients.len() - 1);
    }
}

graded! {
    /// listener_queues refuses a socket that is not listening.
    points = 1;
    fn listener_queues_rejects_a_connected_socket() {
        let server = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = support::std_client(&SockaddrStorage::from(server.local_addr().unwrap()));
        let got = listener_queues(&client);
        assert!(got.is_err(), "listener_queues on a connected (ESTABLISHED) client socket returned {got:?}: for a socket not in LISTEN, tcpi_unacked and tcpi_sacked mean something else, so it must be an error");
        let (lfd, _) = listener(2);
        let got = listener_queues(&lfd);
        assert!(got.is_ok(), "listener_queues on a socket after listen(fd, 2) returned {got:?}: a listening socket must be accepted");
    }
}

/// A TCP header built by hand: fixed part, then `options` padded to a
/// multiple of 4, then `payload`.
fn build_tcp(
    ports: (u16, u16),
    seq: u32,
    ack: u32,
    flags: u8,
    window: u16,
    options: &[u8],
    payload: &[u8],
) -> Vec<u8> {
    let mut opts = options.to_vec();
    while !opts.len().is_multiple_of(4) {
        opts.push(0);
    }
    let offset = (20 + opts.len()) / 4;
    let mut b = Vec::new();
    b.extend_from_slice(&ports.0.to_be_bytes());
    b.extend_from_slice(&ports.1.to_be_bytes());
    b.extend_from_slice(&seq.to_be_bytes());
    b.extend_from_slice(&ack.to_be_bytes());
    b.push((offset as u8) << 4);
    b.push(flags);
    b.extend_from_slice(&window.to_be_bytes());
    b.extend_from_slice(&0xBEEFu16.to_be_bytes());
    b.extend_from_slice(&7u16.to_be_bytes());
    b.extend_from_slice(&opts);
    b.extend_from_slice(payload);
    b
}

graded! {
    /// decode_tcp reads ports, sequence numbers, flags, window and the data
    /// length from a header the test builds.
    points = 2;
    fn decode_tcp_reads_the_fixed_header() {
        let pid = std::process::id();
        let seq = pid.wrapping_mul(2_654_435_761);
        let ack = seq.rotate_left(13) ^ 0x8000_0001;
        for (flags, payload) in [(0x12u8, &b""[..]), (0x18, &b"hello"[..]), (0x11, &b"bye"[..]), (0x04, &b""[..])] {
            let bytes = build_tcp((40000 + (pid % 999) as u16, 80), seq, ack, flags, 65483, &[], payload);
            let what = format!("decode_tcp of a 20-byte header without options (flags {flags:#04x}) and {} bytes of data {:02x?}", payload.len(), bytes);
            let h = decode_tcp(&bytes).unwrap_or_else(|e| panic!("{what} failed: {e}"));
            assert_eq!((h.src_port, h.dst_port), (40000 + (pid % 999) as u16, 80), "{what}: (src_port, dst_port) (left) should be the big-endian u16s at bytes 0..2 and 2..4 (right)");
            assert_eq!((h.seq, h.ack), (seq, ack), "{what}: (seq, ack) (left) should be the big-endian u32s at bytes 4..8 and 8..12 (right)");
            assert_eq!(h.flags, flags, "{what}: flags {:#04x} (left) should be byte 13, {flags:#04x} (right)", h.flags);
            assert_eq!(h.window, 65483, "{what}: window (left) should be the big-endian u16 at bytes 14..16 (right)");
            assert_eq!(h.checksum, 0xBEEF, "{what}: checksum {:#06x} (left) should be the big-endian u16 at bytes 16..18, 0xbeef (right)", h.checksum);
            assert_eq!(h.urgent, 7, "{what}: urgent (left) should be the big-endian u16 at bytes 18..20 (right)");
            assert_eq!(h.header_len, 20, "{what}: header_len (left) should be the data offset (high nibble of byte 12, 5) times 4 (right)");
            assert_eq!(h.payload_len, payload.len(), "{what}: payload_len (left) should be the bytes after the header (right)");
            assert!(h.options.is_empty(), "{what}: there are no option bytes, but options = {:?}", h.options);
        }
    }
}

graded! {
    /// decode_tcp decodes a SYN's options (MSS, SACK permitted, timestamps,
    /// NOP, window scale), SACK blocks and unknown kinds, and stops at EOL.
    points = 2;
    fn decode_tcp_decodes_options() {
        let tsval = std::process::id().wrapping_mul(7919);
        let mut o = vec![2, 4, 0xff, 0xd7, 4, 2, 8, 10];
        o.extend_from_slice(&tsval.to_be_bytes());
        o.extend_from_slice(&0u32.to_be_bytes());
        o.extend_from_slice(&[1, 3, 3, 10]);
        let syn = build_tcp((1, 2), 3, 0, 0x02, 65495, &o, b"");
        let what = format!("decode_tcp of a SYN with option bytes {o:?} (MSS, SACK permitted, timestamps, NOP, window scale)");
        let h = decode_tcp(&syn).unwrap_or_else(|e| panic!("{what} failed: {e}"));
        assert_eq!(h.header_len, 20 + o.len(), "{what}: header_len (left) should be 20 fixed bytes plus {} of options (right), the data offset times 4", o.len());
        assert_eq!(
            h.options,
            vec![
                TcpOption::Mss(0xffd7),
                TcpOption::SackPermitted,
                TcpOption::Timestamps(tsval, 0),
                TcpOption::WindowScale(10),
            ], "{what}: options (left) should be the four options in order, NOP left out (right)"
        );
        let mut o = vec![1, 1, 5, 18];
        for v in [100u32, 200, 300, 400] {
            o.extend_from_slice(&v.to_be_bytes());
        }
        o.extend_from_slice(&[254, 4, 0xab, 0xcd, 0, 2, 4, 0x05, 0xb4]); // EOL, then bytes to ignore
        let what = format!("decode_tcp of an ACK with option bytes {o:?} (NOP, NOP, SACK with two blocks, an unknown kind 254, EOL, then bytes past EOL) and 4 bytes of data");
        let h = decode_tcp(&build_tcp((1, 2), 3, 4, 0x10, 9, &o, b"data")).unwrap_or_else(|e| panic!("{what} failed: {e}"));
        assert_eq!(
            h.options,
            vec![
                TcpOption::Sack(vec![(100, 200), (300, 400)]),
                TcpOption::Other(254, vec![0xab, 0xcd]),
            ], "{what}: options (left) should be the SACK blocks and the unknown option kept as Other, and nothing after EOL (right)"
        );
        assert_eq!(h.payload_len, 4, "{what}: payload_len (left) should be the 4 bytes after the header (right), whatever follows EOL inside the header");
    }
}

graded! {
    /// decode_tcp returns an error, never a panic, for bytes that are not a
    /// whole header.
    points = 1;
    fn decode_tcp_rejects_malformed_bytes() {
        let good = build_tcp((1, 2), 3, 4, 0x02, 5, &[2, 4, 5, 180], b"");
        let got = decode_tcp(&good);
        assert!(got.is_ok(), "decode_tcp of a well-formed 24-byte SYN with an MSS option {good:02x?} returned {got:?}");
        assert!(decode_tcp(&good[..19]).is_err(), "decode_tcp of 19 bytes (shorter than the 20-byte fixed header) returned Ok: it must be an error");
        assert!(decode_tcp(&[]).is_err(), "decode_tcp of no bytes at all returned Ok: it must be an error");
        let mut short_offset = good.clone();
        short_offset[12] = 4 << 4;
        assert!(decode_tcp(&short_offset).is_err(), "decode_tcp of a header whose data offset is 4 (16 bytes, less than the fixed 20) returned Ok: it must be an error");
        let mut long_offset = good.clone();
        long_offset[12] = 15 << 4;
        assert!(decode_tcp(&long_offset).is_err(), "decode_tcp of a 24-byte segment whose data offset says 60 bytes of header returned Ok: it must be an error");
        for bad in [&[2u8, 0, 0, 0][..], &[2, 1, 0, 0], &[2, 9, 0, 0], &[3, 3, 1, 2, 200]] {
            let b = build_tcp((1, 2), 3, 4, 0x02, 5, bad, b"");
            assert!(decode_tcp(&b).is_err(), "decode_tcp of a header with option bytes {bad:?} (length below 2, or running past the header) returned Ok: it must be an error");
        }
    }
}
