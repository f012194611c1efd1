//! Graded tests for chapter 3: socket options.
//!
//! Every value the chapter's code computes is compared with what an
//! independent reader in this file (a raw `libc::getsockopt` on a socket
//! from a raw `libc::socket`, decoded here) gets from the same kernel. No
//! expected value is written into a test.

#[macro_use]
mod support;

use std::io::{Read, Write};
use std::mem::{offset_of, size_of, size_of_val};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};

use libc::c_int;
use nix::errno::Errno;
use sockbook::ch03_sockopts::{
    Kind, ReadError, Row, SocketKind, TcpSummary, Value, decode_tcp_info, defaults_table,
    enable_keepalive, get_option, set_and_explain, set_read_timeout,
};

// ------------------------------------------------------------------------
// The independent reader.

/// A fresh socket from a raw `libc::socket`.
fn raw_socket(domain: c_int, ty: c_int) -> Result<OwnedFd, Errno> {
    // SAFETY: socket(2) takes no pointers.
    let fd = unsafe { libc::socket(domain, ty | libc::SOCK_CLOEXEC, 0) };
    if fd == -1 {
        return Err(Errno::last());
    }
    // SAFETY: the fd was just returned by socket(2) and has no other owner.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn fresh(kind: SocketKind) -> Result<OwnedFd, Errno> {
    match kind {
        SocketKind::Tcp4 => raw_socket(libc::AF_INET, libc::SOCK_STREAM),
        SocketKind::Tcp6 => raw_socket(libc::AF_INET6, libc::SOCK_STREAM),
        SocketKind::Udp4 => raw_socket(libc::AF_INET, libc::SOCK_DGRAM),
    }
}

fn tcp4() -> OwnedFd {
    fresh(SocketKind::Tcp4).unwrap()
}

/// `getsockopt` offering `offer` bytes: the bytes the kernel filled in.
fn raw_get(fd: &impl AsFd, level: c_int, name: c_int, offer: usize) -> Result<Vec<u8>, Errno> {
    let mut buf = vec![0u8; offer];
    let mut len = offer as libc::socklen_t;
    // SAFETY: buf has `offer` writable bytes; the kernel writes at most len.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_fd().as_raw_fd(),
            level,
            name,
            buf.as_mut_ptr().cast(),
            &mut len,
        )
    };
    if rc == -1 {
        return Err(Errno::last());
    }
    buf.truncate(len as usize);
    Ok(buf)
}

/// `getsockopt` into a `T`, asserting the kernel filled all of it.
fn raw_get_as<T: Copy>(fd: &impl AsFd, level: c_int, name: c_int) -> Result<T, Errno> {
    let bytes = raw_get(fd, level, name, size_of::<T>())?;
    assert_eq!(bytes.len(), size_of::<T>(), "raw getsockopt({name}) size");
    // SAFETY: exactly size_of::<T>() bytes of plain-old-data (ints) read unaligned.
    Ok(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<T>()) })
}

fn raw_set<T>(fd: &impl AsFd, level: c_int, name: c_int, value: &T) -> Result<(), Errno> {
    // SAFETY: value points at size_of::<T>() readable bytes for the call.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_fd().as_raw_fd(),
            level,
            name,
            (value as *const T).cast(),
            size_of::<T>() as libc::socklen_t,
        )
    };
    if rc == -1 { Err(Errno::last()) } else { Ok(()) }
}

/// The whole `struct tcp_info` and how many bytes of it the kernel filled.
fn raw_tcp_info(fd: &impl AsFd) -> (libc::tcp_info, usize) {
    // SAFETY: tcp_info is integers only; all-zero is valid.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: the pointer and length describe `info`.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_fd().as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&raw mut info).cast(),
            &mut len,
        )
    };
    assert_eq!(rc, 0, "raw TCP_INFO: {}", Errno::last());
    (info, len as usize)
}

/// The struct's bytes, as the kernel wrote them.
fn info_bytes(info: &libc::tcp_info) -> Vec<u8> {
    // SAFETY: reading the bytes of a plain-old-data struct we own.
    unsafe {
        std::slice::from_raw_parts(
            (info as *const libc::tcp_info).cast::<u8>(),
            size_of_val(info),
        )
    }
    .to_vec()
}

/// What each option is, by its C name: this file's own list, for the
/// independent reader (and the options the issue requires).
#[derive(Clone, Copy, Debug, PartialEq)]
enum T {
    Flag,
    Int,
    Linger,
    Timeval,
    Text,
    Info,
}

const SPEC: &[(&str, c_int, c_int, T)] = &[
    (
        "SO_ACCEPTCONN",
        libc::SOL_SOCKET,
        libc::SO_ACCEPTCONN,
        T::Flag,
    ),
    (
        "SO_BROADCAST",
        libc::SOL_SOCKET,
        libc::SO_BROADCAST,
        T::Flag,
    ),
    ("SO_DEBUG", libc::SOL_SOCKET, libc::SO_DEBUG, T::Flag),
    ("SO_DOMAIN", libc::SOL_SOCKET, libc::SO_DOMAIN, T::Int),
    (
        "SO_DONTROUTE",
        libc::SOL_SOCKET,
        libc::SO_DONTROUTE,
        T::Flag,
    ),
    ("SO_ERROR", libc::SOL_SOCKET, libc::SO_ERROR, T::Int),
    (
        "SO_KEEPALIVE",
        libc::SOL_SOCKET,
        libc::SO_KEEPALIVE,
        T::Flag,
    ),
    ("SO_LINGER", libc::SOL_SOCKET, libc::SO_LINGER, T::Linger),
    (
        "SO_OOBINLINE",
        libc::SOL_SOCKET,
        libc::SO_OOBINLINE,
        T::Flag,
    ),
    ("SO_PRIORITY", libc::SOL_SOCKET, libc::SO_PRIORITY, T::Int),
    ("SO_PROTOCOL", libc::SOL_SOCKET, libc::SO_PROTOCOL, T::Int),
    ("SO_RCVBUF", libc::SOL_SOCKET, libc::SO_RCVBUF, T::Int),
    ("SO_RCVLOWAT", libc::SOL_SOCKET, libc::SO_RCVLOWAT, T::Int),
    (
        "SO_RCVTIMEO",
        libc::SOL_SOCKET,
        libc::SO_RCVTIMEO,
        T::Timeval,
    ),
    (
        "SO_REUSEADDR",
        libc::SOL_SOCKET,
        libc::SO_REUSEADDR,
        T::Flag,
    ),
    (
        "SO_REUSEPORT",
        libc::SOL_SOCKET,
        libc::SO_REUSEPORT,
        T::Flag,
    ),
    ("SO_SNDBUF", libc::SOL_SOCKET, libc::SO_SNDBUF, T::Int),
    ("SO_SNDLOWAT", libc::SOL_SOCKET, libc::SO_SNDLOWAT, T::Int),
    (
        "SO_SNDTIMEO",
        libc::SOL_SOCKET,
        libc::SO_SNDTIMEO,
        T::Timeval,
    ),
    ("SO_TYPE", libc::SOL_SOCKET, libc::SO_TYPE, T::Int),
    ("IP_TOS", libc::IPPROTO_IP, libc::IP_TOS, T::Int),
    ("IP_TTL", libc::IPPROTO_IP, libc::IP_TTL, T::Int),
    (
        "IPV6_V6ONLY",
        libc::IPPROTO_IPV6,
        libc::IPV6_V6ONLY,
        T::Flag,
    ),
    (
        "IPV6_UNICAST_HOPS",
        libc::IPPROTO_IPV6,
        libc::IPV6_UNICAST_HOPS,
        T::Int,
    ),
    ("IPV6_TCLASS", libc::IPPROTO_IPV6, libc::IPV6_TCLASS, T::Int),
    ("TCP_MAXSEG", libc::IPPROTO_TCP, libc::TCP_MAXSEG, T::Int),
    ("TCP_NODELAY", libc::IPPROTO_TCP, libc::TCP_NODELAY, T::Flag),
    (
        "TCP_KEEPIDLE",
        libc::IPPROTO_TCP,
        libc::TCP_KEEPIDLE,
        T::Int,
    ),
    (
        "TCP_KEEPINTVL",
        libc::IPPROTO_TCP,
        libc::TCP_KEEPINTVL,
        T::Int,
    ),
    ("TCP_KEEPCNT", libc::IPPROTO_TCP, libc::TCP_KEEPCNT, T::Int),
    ("TCP_SYNCNT", libc::IPPROTO_TCP, libc::TCP_SYNCNT, T::Int),
    (
        "TCP_DEFER_ACCEPT",
        libc::IPPROTO_TCP,
        libc::TCP_DEFER_ACCEPT,
        T::Int,
    ),
    (
        "TCP_USER_TIMEOUT",
        libc::IPPROTO_TCP,
        libc::TCP_USER_TIMEOUT,
        T::Int,
    ),
    (
        "TCP_CONGESTION",
        libc::IPPROTO_TCP,
        libc::TCP_CONGESTION,
        T::Text,
    ),
    (
        "TCP_QUICKACK",
        libc::IPPROTO_TCP,
        libc::TCP_QUICKACK,
        T::Flag,
    ),
    ("TCP_INFO", libc::IPPROTO_TCP, libc::TCP_INFO, T::Info),
];

/// An option's C name from its level and number (for failure messages),
/// or the numbers themselves when this file's list does not have it.
fn opt_label(level: c_int, name: c_int) -> String {
    SPEC.iter()
        .find(|s| s.1 == level && s.2 == name)
        .map_or_else(
            || format!("option {name} at level {level}"),
            |s| s.0.to_string(),
        )
}

/// Read one option independently and decode it into the chapter's `Value`
/// (the container only; the decoding is this file's).
/// `setsockopt` with the C struct for `value`, by raw libc; panics on -1.
fn independent_set(fd: &impl AsFd, level: c_int, name: c_int, value: &Value) {
    fn set<V>(fd: &impl AsFd, level: c_int, name: c_int, v: &V) {
        // SAFETY: `v` is a live, initialised C value of size_of::<V>() bytes;
        // the kernel only reads it.
        let rc = unsafe {
            libc::setsockopt(
                fd.as_fd().as_raw_fd(),
                level,
                name,
                std::ptr::from_ref(v).cast(),
                size_of::<V>() as libc::socklen_t,
            )
        };
        assert_eq!(rc, 0, "raw setsockopt({name}): {}", Errno::last());
    }
    match value {
        Value::Flag(on) => set(fd, level, name, &c_int::from(*on)),
        Value::Int(n) => set(fd, level, name, n),
        Value::Linger { onoff, linger } => set(
            fd,
            level,
            name,
            &libc::linger {
                l_onoff: *onoff,
                l_linger: *linger,
            },
        ),
        Value::Timeval { sec, usec } => set(
            fd,
            level,
            name,
            &libc::timeval {
                tv_sec: *sec,
                tv_usec: *usec,
            },
        ),
        other => panic!("independent_set: {other:?} is not set by this test"),
    }
}

fn independent(fd: &impl AsFd, level: c_int, name: c_int, t: T) -> Result<Value, Errno> {
    Ok(match t {
        T::Flag => Value::Flag(raw_get_as::<c_int>(fd, level, name)? != 0),
        T::Int => Value::Int(raw_get_as::<c_int>(fd, level, name)?),
        T::Linger => {
            let l: libc::linger = raw_get_as(fd, level, name)?;
            Value::Linger {
                onoff: l.l_onoff,
                linger: l.l_linger,
            }
        }
        T::Timeval => {
            let tv: libc::timeval = raw_get_as(fd, level, name)?;
            Value::Timeval {
                sec: tv.tv_sec,
                usec: tv.tv_usec,
            }
        }
        T::Text => {
            let bytes = raw_get(fd, level, name, 64)?;
            let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
            Value::Text(String::from_utf8(bytes[..end].to_vec()).unwrap())
        }
        T::Info => panic!("TCP_INFO is compared field by field"),
    })
}

/// The fields of a `TcpSummary` that the table prints, against the struct.
fn assert_printed_info_fields(s: &TcpSummary, info: &libc::tcp_info, len: usize, what: &str) {
    assert_eq!(
        s.len, len,
        "{what}: the decoded TcpSummary.len (left) should be the bytes a raw getsockopt(TCP_INFO) returns (right)"
    );
    assert_eq!(
        s.state,
        Some(info.tcpi_state),
        "{what}: the decoded state (left); tcpi_state from a raw getsockopt(TCP_INFO) (right)"
    );
    assert_eq!(
        s.rto,
        Some(info.tcpi_rto),
        "{what}: the decoded rto (left); tcpi_rto from a raw getsockopt(TCP_INFO) (right)"
    );
    assert_eq!(
        s.rtt,
        Some(info.tcpi_rtt),
        "{what}: the decoded rtt (left); tcpi_rtt from a raw getsockopt(TCP_INFO) (right)"
    );
    assert_eq!(
        s.snd_mss,
        Some(info.tcpi_snd_mss),
        "{what}: the decoded snd_mss (left); tcpi_snd_mss from a raw getsockopt(TCP_INFO) (right)"
    );
    assert_eq!(
        s.rcv_mss,
        Some(info.tcpi_rcv_mss),
        "{what}: the decoded rcv_mss (left); tcpi_rcv_mss from a raw getsockopt(TCP_INFO) (right)"
    );
    assert_eq!(
        s.snd_cwnd,
        Some(info.tcpi_snd_cwnd),
        "{what}: the decoded snd_cwnd (left); tcpi_snd_cwnd from a raw getsockopt(TCP_INFO) (right)"
    );
    assert_eq!(
        s.retransmits,
        Some(info.tcpi_retransmits),
        "{what}: the decoded retransmits (left); tcpi_retransmits from a raw getsockopt(TCP_INFO) (right)"
    );
    assert_eq!(
        s.total_retrans,
        Some(info.tcpi_total_retrans),
        "{what}: the decoded total_retrans (left); tcpi_total_retrans from a raw getsockopt(TCP_INFO) (right)"
    );
    assert_eq!(
        s.bytes_acked,
        Some(info.tcpi_bytes_acked),
        "{what}: the decoded bytes_acked (left); tcpi_bytes_acked from a raw getsockopt(TCP_INFO) (right)"
    );
}

/// A live loopback connection made with std::net, some bytes each way.
fn live_connection() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (mut server, _) = listener.accept().unwrap();
    client.set_read_timeout(Some(support::DEADLINE)).unwrap();
    server.set_read_timeout(Some(support::DEADLINE)).unwrap();
    let mut c = &client;
    c.write_all(&[7u8; 3000]).unwrap();
    let mut got = vec![0u8; 3000];
    server.read_exact(&mut got).unwrap();
    server.write_all(b"ok").unwrap();
    let mut two = [0u8; 2];
    c.read_exact(&mut two).unwrap();
    (client, server)
}

// ------------------------------------------------------------------------
// get_option

graded! {
    /// get_option reads int and flag options at every level as a raw
    /// getsockopt does, including values set away from their defaults.
    points = 2;
    fn get_option_reads_ints_and_flags() {
        let fd = tcp4();
        raw_set(&fd, libc::SOL_SOCKET, libc::SO_RCVBUF, &(7777 as c_int)).unwrap();
        raw_set(&fd, libc::SOL_SOCKET, libc::SO_KEEPALIVE, &(1 as c_int)).unwrap();
        raw_set(&fd, libc::IPPROTO_TCP, libc::TCP_KEEPIDLE, &(42 as c_int)).unwrap();
        raw_set(&fd, libc::IPPROTO_IP, libc::IP_TTL, &(17 as c_int)).unwrap();
        raw_set(&fd, libc::IPPROTO_TCP, libc::TCP_NODELAY, &(1 as c_int)).unwrap();
        let cases = [
            (libc::SOL_SOCKET, libc::SO_RCVBUF, Kind::Int, T::Int),
            (libc::SOL_SOCKET, libc::SO_SNDBUF, Kind::Int, T::Int),
            (libc::SOL_SOCKET, libc::SO_KEEPALIVE, Kind::Flag, T::Flag),
            (libc::SOL_SOCKET, libc::SO_REUSEADDR, Kind::Flag, T::Flag),
            (libc::SOL_SOCKET, libc::SO_TYPE, Kind::Int, T::Int),
            (libc::IPPROTO_IP, libc::IP_TTL, Kind::Int, T::Int),
            (libc::IPPROTO_TCP, libc::TCP_KEEPIDLE, Kind::Int, T::Int),
            (libc::IPPROTO_TCP, libc::TCP_NODELAY, Kind::Flag, T::Flag),
            (libc::IPPROTO_TCP, libc::TCP_MAXSEG, Kind::Int, T::Int),
        ];
        for (level, name, kind, t) in cases {
            let want = independent(&fd, level, name, t).unwrap();
            assert_eq!(get_option(&fd, level, name, kind), Ok(want.clone()), "get_option({}, {kind:?}) on a TCP socket returned left; a raw getsockopt on the same socket reads {want} (right)", opt_label(level, name));
        }
        // And on a connected socket, where TCP_MAXSEG comes from the route.
        let (client, _server) = live_connection();
        let want = independent(&client, libc::IPPROTO_TCP, libc::TCP_MAXSEG, T::Int).unwrap();
        assert_eq!(get_option(&client, libc::IPPROTO_TCP, libc::TCP_MAXSEG, Kind::Int), Ok(want.clone()), "get_option(TCP_MAXSEG, Int) on a connected loopback socket returned left; a raw getsockopt on the same socket reads {want} (right), the MSS of the connection, not an unconnected socket's default");
    }
}

graded! {
    /// get_option decodes struct linger, struct timeval and the congestion
    /// control name as a raw getsockopt does.
    points = 2;
    fn get_option_decodes_structs_and_text() {
        let fd = tcp4();
        let l = libc::linger { l_onoff: 1, l_linger: 9 };
        raw_set(&fd, libc::SOL_SOCKET, libc::SO_LINGER, &l).unwrap();
        let tv = libc::timeval { tv_sec: 2, tv_usec: 500_000 };
        raw_set(&fd, libc::SOL_SOCKET, libc::SO_RCVTIMEO, &tv).unwrap();
        let cases = [
            (libc::SOL_SOCKET, libc::SO_LINGER, Kind::Linger, T::Linger),
            (libc::SOL_SOCKET, libc::SO_RCVTIMEO, Kind::Timeval, T::Timeval),
            (libc::SOL_SOCKET, libc::SO_SNDTIMEO, Kind::Timeval, T::Timeval),
            (libc::IPPROTO_TCP, libc::TCP_CONGESTION, Kind::Text, T::Text),
        ];
        for (level, name, kind, t) in cases {
            let want = independent(&fd, level, name, t).unwrap();
            assert_eq!(get_option(&fd, level, name, kind), Ok(want.clone()), "get_option({}, {kind:?}) on a TCP socket returned left; a raw getsockopt on the same socket reads {want} (right)", opt_label(level, name));
        }
    }
}

graded! {
    /// get_option reports a returned length that does not fit the type, and
    /// the errno of an option the kernel refuses; TCP_INFO of any length is
    /// accepted.
    points = 2;
    fn get_option_checks_size_and_reports_errno() {
        let fd = tcp4();
        // Wrong types: the kernel's answer has another size.
        for (level, name, kind) in [
            (libc::SOL_SOCKET, libc::SO_LINGER, Kind::Int),
            (libc::SOL_SOCKET, libc::SO_RCVTIMEO, Kind::Linger),
            (libc::SOL_SOCKET, libc::SO_RCVBUF, Kind::Timeval),
        ] {
            let got = raw_get(&fd, level, name, 64).unwrap().len();
            assert_eq!(
                get_option(&fd, level, name, kind),
                Err(ReadError::Size { expected: kind.size(), got }),
                "get_option({}, {kind:?}) returned left: the kernel answers with {got} bytes where {kind:?} has {}, so it must report ReadError::Size (right) rather than decode them",
                opt_label(level, name),
                kind.size()
            );
        }
        // Refused: an IPv6 option on an IPv4 socket, an option that does not exist.
        for (level, name) in [(libc::IPPROTO_IPV6, libc::IPV6_V6ONLY), (libc::SOL_SOCKET, 0x7ff0)] {
            let errno = raw_get(&fd, level, name, 64).unwrap_err();
            assert_eq!(get_option(&fd, level, name, Kind::Int), Err(ReadError::Errno(errno)), "get_option({}, Int) on an IPv4 TCP socket returned left; a raw getsockopt of it fails with {errno} (right), and that errno is the answer", opt_label(level, name));
        }
        // TCP_INFO: whatever length this kernel returns is fine.
        let (info, len) = raw_tcp_info(&fd);
        match get_option(&fd, libc::IPPROTO_TCP, libc::TCP_INFO, Kind::TcpInfo) {
            Ok(Value::TcpInfo(s)) => assert_printed_info_fields(&s, &info, len, "TCP_INFO"),
            other => panic!("get_option(TCP_INFO, TcpInfo) returned {other:?}; a raw getsockopt returned {len} bytes of struct tcp_info, which must decode to Ok(Value::TcpInfo(..))"),
        }
    }
}

// ------------------------------------------------------------------------
// set_and_explain

graded! {
    /// set_and_explain sets the value, reads back what the kernel stored,
    /// and says whether that differs from what was asked.
    points = 2;
    fn set_and_explain_reports_what_the_kernel_kept() {
        let rmem_max: i64 = std::fs::read_to_string("/proc/sys/net/core/rmem_max")
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let above = i32::try_from(rmem_max * 3).unwrap_or(i32::MAX);
        let cases = [
            (libc::SOL_SOCKET, libc::SO_RCVBUF, Kind::Int, T::Int, Value::Int(9973)),
            (libc::SOL_SOCKET, libc::SO_RCVBUF, Kind::Int, T::Int, Value::Int(above)),
            (libc::SOL_SOCKET, libc::SO_SNDBUF, Kind::Int, T::Int, Value::Int(6000)),
            (libc::IPPROTO_TCP, libc::TCP_DEFER_ACCEPT, Kind::Int, T::Int, Value::Int(5)),
            (libc::IPPROTO_TCP, libc::TCP_NODELAY, Kind::Flag, T::Flag, Value::Flag(true)),
            (libc::IPPROTO_IP, libc::IP_TTL, Kind::Int, T::Int, Value::Int(33)),
            (
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                Kind::Linger,
                T::Linger,
                Value::Linger { onoff: 1, linger: 5 },
            ),
            (
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                Kind::Timeval,
                T::Timeval,
                Value::Timeval { sec: 1, usec: 234_567 },
            ),
        ];
        for (level, name, kind, t, value) in cases {
            let fd = tcp4();
            let report = set_and_explain(&fd, level, name, kind, &value)
                .unwrap_or_else(|e| panic!("set_and_explain({}, {kind:?}, {value}) failed: {e}", opt_label(level, name)));
            let stored = independent(&fd, level, name, t).unwrap();
            // What the kernel keeps when the same value is set by a raw
            // setsockopt on a fresh socket: reading `fd` back alone cannot
            // catch a solution that asked for the wrong thing.
            let fresh = tcp4();
            independent_set(&fresh, level, name, &value);
            let expected = independent(&fresh, level, name, t).unwrap();
            assert_eq!(
                stored, expected,
                "option {name}: after set_and_explain(.., {value}) the socket holds {stored}; \
                 a raw setsockopt of the same value on a fresh socket leaves {expected}"
            );
            let label = opt_label(level, name);
            assert_eq!(report.asked, value, "set_and_explain({label}, {value}): report.asked (left) should be the value asked for (right)");
            assert_eq!(report.got, stored, "set_and_explain({label}, {value}): report.got (left) should be what a raw getsockopt reads back from the socket afterwards (right)");
            assert_eq!(report.changed, stored != value, "set_and_explain({label}, {value}): report.changed (left) should say whether the kernel kept something else ({stored}) than was asked (right)");
        }
    }
}

graded! {
    /// set_and_explain returns the errno setsockopt failed with, and refuses
    /// a value that is not of the option's kind.
    points = 1;
    fn set_and_explain_returns_the_errno() {
        let fd = tcp4();
        let errno = raw_set(&tcp4(), libc::SOL_SOCKET, libc::SO_SNDLOWAT, &(1 as c_int)).unwrap_err();
        let e = set_and_explain(&fd, libc::SOL_SOCKET, libc::SO_SNDLOWAT, Kind::Int, &Value::Int(1))
            .err()
            .unwrap_or_else(|| panic!("set_and_explain(SO_SNDLOWAT, Int, 1) returned Ok, but a raw setsockopt of it fails with {errno}"));
        assert_eq!(e.errno(), Some(errno), "set_and_explain(SO_SNDLOWAT, Int, 1) failed with {e}: its errno (left) should be the one a raw setsockopt fails with (right)");
        let errno = raw_set(&tcp4(), libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, &(1 as c_int)).unwrap_err();
        let e = set_and_explain(&fd, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, Kind::Flag, &Value::Flag(true))
            .err()
            .unwrap_or_else(|| panic!("set_and_explain(IPV6_V6ONLY, Flag, true) on an IPv4 socket returned Ok, but a raw setsockopt of it fails with {errno}"));
        assert_eq!(e.errno(), Some(errno), "set_and_explain(IPV6_V6ONLY, Flag, true) on an IPv4 socket failed with {e}: its errno (left) should be the one a raw setsockopt fails with (right)");
        // A value of the wrong kind is refused before any call.
        let before = independent(&fd, libc::SOL_SOCKET, libc::SO_RCVBUF, T::Int).unwrap();
        let refused = set_and_explain(&fd, libc::SOL_SOCKET, libc::SO_RCVBUF, Kind::Int, &Value::Flag(true));
        assert!(
            refused.is_err(),
            "set_and_explain(SO_RCVBUF, Int, Flag(true)) returned {refused:?}: a Flag value for an Int option must be refused with an error"
        );
        assert_eq!(independent(&fd, libc::SOL_SOCKET, libc::SO_RCVBUF, T::Int).unwrap(), before, "after set_and_explain(SO_RCVBUF, Int, Flag(true)) a raw getsockopt reads SO_RCVBUF as left, but it was {before} before (right): a value of the wrong kind must be refused before any setsockopt");
    }
}

// ------------------------------------------------------------------------
// decode_tcp_info

/// Compare every field of the summary with the struct, given that only
/// `cut` bytes were handed to the decoder.
macro_rules! assert_fields {
    ($s:expr, $info:expr, $cut:expr; $($field:ident = $cfield:ident),* $(,)?) => {
        $(
            let end = offset_of!(libc::tcp_info, $cfield) + size_of_val(&$info.$cfield);
            let want = if end <= $cut { Some($info.$cfield) } else { None };
            assert_eq!(
                $s.$field,
                want,
                "decode_tcp_info given the first {} bytes of the kernel's struct tcp_info: {} (left) should be {} (right), the field at bytes {}..{}",
                $cut,
                stringify!($field),
                if end <= $cut { "the kernel's value, which lies inside them" } else { "None, since the field does not fit in them" },
                offset_of!(libc::tcp_info, $cfield),
                end
            );
        )*
    };
}

fn check_summary(s: &TcpSummary, info: &libc::tcp_info, cut: usize) {
    assert_eq!(
        s.len, cut,
        "decode_tcp_info given {cut} bytes: its len (left) should be the number of bytes it was given (right)"
    );
    assert_fields!(s, info, cut;
        state = tcpi_state, ca_state = tcpi_ca_state, retransmits = tcpi_retransmits,
        probes = tcpi_probes, backoff = tcpi_backoff, rto = tcpi_rto, ato = tcpi_ato,
        snd_mss = tcpi_snd_mss, rcv_mss = tcpi_rcv_mss, unacked = tcpi_unacked,
        last_data_sent = tcpi_last_data_sent, last_data_recv = tcpi_last_data_recv,
        last_ack_recv = tcpi_last_ack_recv, pmtu = tcpi_pmtu, rtt = tcpi_rtt,
        rttvar = tcpi_rttvar, snd_ssthresh = tcpi_snd_ssthresh, snd_cwnd = tcpi_snd_cwnd,
        advmss = tcpi_advmss, total_retrans = tcpi_total_retrans,
        bytes_acked = tcpi_bytes_acked, bytes_received = tcpi_bytes_received,
        segs_out = tcpi_segs_out, segs_in = tcpi_segs_in, min_rtt = tcpi_min_rtt,
        data_segs_out = tcpi_data_segs_out, bytes_sent = tcpi_bytes_sent,
        snd_wnd = tcpi_snd_wnd,
    );
}

graded! {
    /// decode_tcp_info of the kernel's whole answer equals the struct, field
    /// by field, on a live connection.
    points = 1;
    fn decode_tcp_info_whole_answer() {
        let (client, server) = live_connection();
        for stream in [&client, &server] {
            let (info, len) = raw_tcp_info(stream);
            let bytes = info_bytes(&info);
            let s = decode_tcp_info(&bytes[..len]);
            check_summary(&s, &info, len);
            assert!(s.state.is_some() && s.bytes_acked.is_some(), "decode_tcp_info of the kernel's whole {len}-byte answer left state or bytes_acked absent ({:?}, {:?}): both lie well inside it", s.state, s.bytes_acked);
        }
    }
}

graded! {
    /// decode_tcp_info of a short answer, as an older kernel gives: fields
    /// past the end are absent, those before it present and right; bytes
    /// past the struct are ignored.
    points = 2;
    fn decode_tcp_info_short_answer() {
        let (client, _server) = live_connection();
        let (info, len) = raw_tcp_info(&client);
        let bytes = info_bytes(&info);
        // Cut at the start and the end of fields, as older kernels did
        // (before bytes_acked, before segs_out, before snd_wnd, …).
        let mut cuts = vec![0, 1, len];
        for at in [
            offset_of!(libc::tcp_info, tcpi_rto),
            offset_of!(libc::tcp_info, tcpi_rtt),
            offset_of!(libc::tcp_info, tcpi_snd_cwnd),
            offset_of!(libc::tcp_info, tcpi_total_retrans),
            offset_of!(libc::tcp_info, tcpi_pacing_rate),
            offset_of!(libc::tcp_info, tcpi_bytes_acked),
            offset_of!(libc::tcp_info, tcpi_segs_out),
            offset_of!(libc::tcp_info, tcpi_min_rtt),
            offset_of!(libc::tcp_info, tcpi_bytes_sent),
            offset_of!(libc::tcp_info, tcpi_snd_wnd),
        ] {
            cuts.extend([at, at + 1, at + 4]);
        }
        for cut in cuts.into_iter().filter(|&c| c <= len) {
            let s = decode_tcp_info(&bytes[..cut]);
            check_summary(&s, &info, cut);
        }
        // A newer kernel may return more than this libc knows.
        let mut longer = bytes[..len].to_vec();
        longer.extend_from_slice(&[0xAB; 40]);
        let s = decode_tcp_info(&longer);
        assert_eq!(s.len, longer.len(), "decode_tcp_info of the kernel's {len} bytes plus 40 more (as a newer kernel may return): its len (left) should be every byte it was given (right), the extra bytes ignored, not cut off");
        let mut whole = s;
        whole.len = len;
        check_summary(&whole, &info, len);
    }
}

// ------------------------------------------------------------------------
// The table

/// Check one row against the independent reader on a fresh socket.
fn check_row(row: &Row) {
    let (name, level, optname, t) = *SPEC
        .iter()
        .find(|s| s.0 == row.opt.name)
        .unwrap_or_else(|| panic!("{} is not an option this test knows", row.opt.name));
    assert_eq!(
        (row.opt.level, row.opt.optname),
        (level, optname),
        "defaults_table()'s row {name} has (level, optname) = left; libc defines {name} as right"
    );
    let line = row.to_string();
    assert!(
        line.starts_with(&format!("{name}: ")),
        "defaults_table()'s row for {name} prints {line:?}: it should start with \"{name}: \""
    );
    let fd = match fresh(row.socket) {
        Ok(fd) => fd,
        Err(errno) => {
            assert_eq!(
                row.reading,
                Err(ReadError::NoSocket(errno)),
                "a fresh {:?} socket cannot be made here (socket() fails with {errno}): defaults_table()'s reading of {name} (left) should be NoSocket with that errno (right)",
                row.socket
            );
            return;
        }
    };
    if t == T::Info {
        let (info, len) = raw_tcp_info(&fd);
        match &row.reading {
            Ok(Value::TcpInfo(s)) => assert_printed_info_fields(s, &info, len, name),
            other => panic!(
                "defaults_table()'s reading of {name} is {other:?}; a raw getsockopt on a fresh {:?} socket returns {len} bytes of struct tcp_info, which must read as Ok(Value::TcpInfo(..))",
                row.socket
            ),
        }
        return;
    }
    match independent(&fd, level, optname, t) {
        Ok(want) => {
            assert_eq!(
                row.reading,
                Ok(want.clone()),
                "defaults_table()'s reading of {name} (left); a raw getsockopt on a fresh {:?} socket reads {want} (right)",
                row.socket
            );
            assert!(
                line.contains(&format!("default = {want}")),
                "defaults_table()'s row for {name} prints {line:?}: it should show \"default = {want}\""
            );
        }
        Err(errno) => {
            assert_eq!(
                row.reading,
                Err(ReadError::Errno(errno)),
                "a raw getsockopt of {name} on a fresh {:?} socket fails with {errno}: defaults_table()'s reading (left) should be that errno (right)",
                row.socket
            );
            assert!(
                line.contains(&format!("{errno:?}")),
                "defaults_table()'s row for {name} prints {line:?}: it should name the errno {errno:?}"
            );
        }
    }
}

graded! {
    /// Every value the table prints equals what an independent raw
    /// getsockopt reads from a fresh socket of the same kind.
    points = 3;
    fn table_matches_an_independent_reader() {
        let rows = defaults_table();
        assert!(!rows.is_empty(), "defaults_table() returned no rows: it should have one per option in OPTIONS ({} here)", SPEC.len());
        for row in &rows {
            check_row(row);
        }
    }
}

graded! {
    /// The table covers every option, reads IPv6 options from an IPv6
    /// socket and the rest from IPv4, prints TCP first, and lists a UDP row
    /// exactly where a UDP socket's default differs from TCP's.
    points = 2;
    fn table_covers_every_option_and_each_udp_difference() {
        let rows = defaults_table();
        let order = |k: SocketKind| match k {
            SocketKind::Tcp4 => 0,
            SocketKind::Tcp6 => 1,
            SocketKind::Udp4 => 2,
        };
        assert!(rows.windows(2).all(|w| order(w[0].socket) <= order(w[1].socket)), "defaults_table() lists its rows in the order {:?}: all Tcp4 rows first, then Tcp6, then Udp4", rows.iter().map(|r| r.socket).collect::<Vec<_>>());
        for &(name, level, optname, t) in SPEC {
            let tcp: Vec<&Row> = rows
                .iter()
                .filter(|r| r.opt.name == name && r.socket != SocketKind::Udp4)
                .collect();
            assert_eq!(tcp.len(), 1, "defaults_table() has this many TCP rows for {name} (left): it should have exactly one (right)");
            let want_kind = if level == libc::IPPROTO_IPV6 { SocketKind::Tcp6 } else { SocketKind::Tcp4 };
            assert_eq!(tcp[0].socket, want_kind, "defaults_table() reads {name} from a socket of kind left; an IPv6 option is read from Tcp6, every other from Tcp4 (right)");
            let udp_rows = rows
                .iter()
                .filter(|r| r.opt.name == name && r.socket == SocketKind::Udp4)
                .count();
            if level == libc::SOL_SOCKET || level == libc::IPPROTO_IP {
                let on_tcp = independent(&tcp4(), level, optname, t);
                let on_udp = independent(&fresh(SocketKind::Udp4).unwrap(), level, optname, t);
                assert_eq!(udp_rows, usize::from(on_tcp != on_udp), "defaults_table() has this many Udp4 rows for {name} (left); a raw getsockopt reads {on_tcp:?} on a fresh TCP socket and {on_udp:?} on a fresh UDP one, so it should have {} (one only where they differ)", usize::from(on_tcp != on_udp));
            } else {
                assert_eq!(udp_rows, 0, "defaults_table() has {udp_rows} Udp4 rows for {name}: the UDP section has only SOL_SOCKET and IPPROTO_IP options, so none");
            }
        }
        assert_eq!(rows.iter().filter(|r| r.socket != SocketKind::Udp4).count(), SPEC.len(), "defaults_table() has this many TCP (IPv4 and IPv6) rows (left): it should have exactly one per option, {} (right)", SPEC.len());
    }
}

// ------------------------------------------------------------------------
// set_read_timeout and enable_keepalive: options that change behaviour

/// A connected pair on loopback with no timeouts of their own (std sets
/// none unless asked): a read on either blocks until data comes.
fn quiet_pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (server, _) = listener.accept().unwrap();
    (client, server)
}

/// The timeval for `d`, converted here: whole seconds, the rest in
/// microseconds rounded up.
fn timeval_of(d: std::time::Duration) -> libc::timeval {
    let micros = d.as_nanos().div_ceil(1000);
    libc::timeval {
        tv_sec: (micros / 1_000_000) as libc::time_t,
        tv_usec: (micros % 1_000_000) as libc::suseconds_t,
    }
}

fn timeo(fd: &impl AsFd, name: c_int) -> (i64, i64) {
    let tv: libc::timeval = raw_get_as(fd, libc::SOL_SOCKET, name).expect("raw getsockopt timeval");
    (tv.tv_sec, tv.tv_usec)
}

graded! {
    /// After set_read_timeout(T), data that comes in time is read, and a
    /// blocking read on a connection whose peer says nothing fails with
    /// EAGAIN once about T has passed: not at once, not never.
    points = 2;
    fn read_timeout_bounds_a_blocking_read() {
        for t in [std::time::Duration::from_millis(300), std::time::Duration::from_millis(1200)] {
            let (client, mut server) = quiet_pair();
            set_read_timeout(&client, t)
                .unwrap_or_else(|e| panic!("set_read_timeout(fd, {t:?}) failed: {e}"));
            server.write_all(b"x").unwrap();
            let mut byte = [0u8; 1];
            let got = (&client).read(&mut byte).unwrap_or_else(|e| panic!("after set_read_timeout(fd, {t:?}), a read with a byte already waiting failed: {e}"));
            assert_eq!((got, byte[0]), (1, b'x'), "after set_read_timeout(fd, {t:?}) the peer sent \"x\" at once: read() returned (count, first byte) left instead of right");

            let started = std::time::Instant::now();
            let reader = support::Background::spawn("reader", move || {
                let mut buf = [0u8; 16];
                // SAFETY: buf is writable for its length; the fd is open (client lives here).
                let rc = unsafe { libc::read(client.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
                let errno = Errno::last();
                (rc, errno, started.elapsed(), client)
            });
            let (rc, errno, took, _client) = reader.join_within(
                support::DEADLINE,
                &format!(
                    "a read after set_read_timeout(fd, {t:?}), peer silent: still blocked \
                     (SO_RCVTIMEO not set on this fd? SO_SNDTIMEO bounds writes only)"
                ),
            );
            assert_eq!(
                (rc, errno),
                (-1, Errno::EAGAIN),
                "read() with the peer silent after set_read_timeout(fd, {t:?}) returned {rc} \
                 (errno {errno}); expected -1 EAGAIN when the timeout runs out"
            );
            assert!(
                took >= t.mul_f64(0.9),
                "read() failed with EAGAIN after {took:?}, but the timeout was {t:?}: is the \
                 socket nonblocking, or tv_usec in milliseconds instead of microseconds?"
            );
            drop(server);
        }
    }
}

graded! {
    /// What set_read_timeout left on the fd (getsockopt SO_RCVTIMEO on the
    /// same fd) is what an independent setsockopt of the same timeout reads
    /// back on a fresh socket; SO_SNDTIMEO is untouched; zero is refused and
    /// changes nothing.
    points = 1;
    fn read_timeout_reads_back_like_an_independent_setsockopt() {
        use std::time::Duration;
        for d in [
            Duration::from_nanos(1),
            Duration::from_millis(1),
            Duration::from_millis(250),
            Duration::from_micros(999_999),
            Duration::from_millis(1500),
            Duration::new(2, 1000),
            Duration::from_secs(75),
            Duration::from_secs(3600),
        ] {
            let fd = tcp4();
            set_read_timeout(&fd, d).unwrap_or_else(|e| panic!("set_read_timeout(fd, {d:?}): {e}"));
            let fresh = tcp4();
            raw_set(&fresh, libc::SOL_SOCKET, libc::SO_RCVTIMEO, &timeval_of(d)).unwrap();
            let (ours, theirs) = (timeo(&fd, libc::SO_RCVTIMEO), timeo(&fresh, libc::SO_RCVTIMEO));
            assert_eq!(
                ours, theirs,
                "after set_read_timeout(fd, {d:?}), getsockopt(SO_RCVTIMEO) reads (sec, usec) = \
                 {ours:?}; a raw setsockopt of {{{}, {}}} on a fresh socket reads back {theirs:?}",
                timeval_of(d).tv_sec, timeval_of(d).tv_usec
            );
            let untouched = timeo(&tcp4(), libc::SO_SNDTIMEO);
            assert_eq!(
                timeo(&fd, libc::SO_SNDTIMEO),
                untouched,
                "set_read_timeout(fd, {d:?}) changed SO_SNDTIMEO (write timeout) too"
            );
        }
        let fd = tcp4();
        let one = timeval_of(Duration::from_secs(1));
        raw_set(&fd, libc::SOL_SOCKET, libc::SO_RCVTIMEO, &one).unwrap();
        let before = timeo(&fd, libc::SO_RCVTIMEO);
        assert!(
            set_read_timeout(&fd, Duration::ZERO).is_err(),
            "set_read_timeout(fd, 0) must be an Err: a zero timeval means \"no timeout\""
        );
        assert_eq!(
            timeo(&fd, libc::SO_RCVTIMEO),
            before,
            "set_read_timeout(fd, 0) failed but changed SO_RCVTIMEO anyway"
        );
    }
}

/// tcpi_segs_out and tcpi_segs_in of a socket, or None on a kernel whose
/// TCP_INFO stops before them (older than 4.2).
fn segments(fd: &impl AsFd) -> Option<(u32, u32)> {
    let (info, len) = raw_tcp_info(fd);
    let end = offset_of!(libc::tcp_info, tcpi_segs_in) + size_of::<u32>();
    (len >= end).then_some((info.tcpi_segs_out, info.tcpi_segs_in))
}

graded! {
    /// After enable_keepalive(fd, 1 s idle, 30 s interval, 4 probes), the
    /// kernel probes the idle connection within seconds: the prober's
    /// tcpi_segs_out and the peer's tcpi_segs_in (TCP_INFO) grow while
    /// neither side sends a byte.
    points = 2;
    fn keepalive_probes_an_idle_connection() {
        let (client, server) = quiet_pair();
        let Some((out0, _)) = segments(&client) else {
            return support::skip("TCP_INFO has no tcpi_segs_out on this kernel");
        };
        enable_keepalive(&client, 1, 30, 4)
            .unwrap_or_else(|e| panic!("enable_keepalive(fd, 1, 30, 4) failed: {e}"));
        let (_, in0) = segments(&server).unwrap();
        let probed = support::server_process::eventually(support::DEADLINE, || {
            let (out, _) = segments(&client).unwrap();
            let (_, inn) = segments(&server).unwrap();
            out > out0 && inn > in0
        });
        let (out, _) = segments(&client).unwrap();
        let (_, inn) = segments(&server).unwrap();
        assert!(
            probed,
            "after enable_keepalive(fd, idle 1 s, interval 30 s, 4 probes) the idle connection \
             saw no probe in {:?}: the prober sent {} segments (before: {out0}), the peer got {} \
             (before: {in0}). SO_KEEPALIVE on? TCP_KEEPIDLE = 1? (By hand: `ss -tno` shows \
             timer:(keepalive,…) on the socket; `sudo tcpdump -i lo` shows a probe each second.)",
            support::DEADLINE,
            out,
            inn
        );
        drop(server);
    }
}

graded! {
    /// SO_KEEPALIVE, TCP_KEEPIDLE, TCP_KEEPINTVL and TCP_KEEPCNT read back
    /// on the same fd as an independent setsockopt of the same values reads
    /// back on a fresh socket; values the kernel refuses are an Err carrying
    /// the kernel's own errno.
    points = 1;
    fn keepalive_reads_back_like_an_independent_setsockopt() {
        for (idle, interval, probes) in [(1u32, 30u32, 4u32), (7200, 75, 9), (600, 10, 3), (32767, 1, 127)] {
            let fd = tcp4();
            enable_keepalive(&fd, idle, interval, probes).unwrap_or_else(|e| {
                panic!("enable_keepalive(fd, {idle}, {interval}, {probes}) failed: {e}")
            });
            for (level, name, label, value) in [
                (libc::SOL_SOCKET, libc::SO_KEEPALIVE, "SO_KEEPALIVE", 1),
                (libc::IPPROTO_TCP, libc::TCP_KEEPIDLE, "TCP_KEEPIDLE", idle as c_int),
                (libc::IPPROTO_TCP, libc::TCP_KEEPINTVL, "TCP_KEEPINTVL", interval as c_int),
                (libc::IPPROTO_TCP, libc::TCP_KEEPCNT, "TCP_KEEPCNT", probes as c_int),
            ] {
                let fresh = tcp4();
                raw_set(&fresh, level, name, &value).unwrap();
                let theirs: c_int = raw_get_as(&fresh, level, name).unwrap();
                let ours: c_int = raw_get_as(&fd, level, name).unwrap();
                assert_eq!(
                    ours, theirs,
                    "after enable_keepalive(fd, {idle}, {interval}, {probes}), {label} reads {ours} \
                     on that fd; a raw setsockopt({label}, {value}) on a fresh socket reads back \
                     {theirs}"
                );
            }
        }
        for (idle, interval, probes, name, value) in [
            (0u32, 1u32, 1u32, libc::TCP_KEEPIDLE, 0),
            (40000, 1, 1, libc::TCP_KEEPIDLE, 40000),
            (1, 0, 1, libc::TCP_KEEPINTVL, 0),
            (1, 1, 0, libc::TCP_KEEPCNT, 0),
            (1, 1, 128, libc::TCP_KEEPCNT, 128),
        ] {
            let want = raw_set(&tcp4(), libc::IPPROTO_TCP, name, &(value as c_int))
                .expect_err("the kernel accepted a value out of its range?");
            let err = enable_keepalive(tcp4(), idle, interval, probes).expect_err(&format!(
                "enable_keepalive(fd, {idle}, {interval}, {probes}): the kernel refuses {value} \
                 ({want}), so this must be an Err"
            ));
            assert_eq!(
                err.errno(),
                Some(want),
                "enable_keepalive(fd, {idle}, {interval}, {probes}) failed with {err}; expected \
                 the kernel's own errno {want} from the setsockopt it refused (let the kernel \
                 check the range)"
            );
        }
    }
}
