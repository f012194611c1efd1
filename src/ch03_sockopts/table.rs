//! The table of option defaults: every option read from a fresh socket of
//! the right kind, the workbook's version of UNIX Network Programming's
//! `checkopts` (section 7.3).

use std::fmt;
use std::os::fd::OwnedFd;

use libc::c_int;
use nix::sys::socket::{AddressFamily, SockFlag, SockType, socket};

use super::option::{Kind, Reading, Value};

/// One option the table knows: its C name, level, number, value type and
/// the man page that documents it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Opt {
    /// The C name, as the table prints it: `SO_RCVBUF`.
    pub name: &'static str,
    /// `SOL_SOCKET`, `IPPROTO_IP`, `IPPROTO_IPV6` or `IPPROTO_TCP`.
    pub level: c_int,
    /// The option number at that level (`libc::SO_RCVBUF`).
    pub optname: c_int,
    /// The type of its value.
    pub kind: Kind,
    /// Where it is documented: `socket(7)`, `ip(7)`, `ipv6(7)`, `tcp(7)`.
    pub man: &'static str,
}

const fn opt(name: &'static str, level: c_int, optname: c_int, kind: Kind) -> Opt {
    let man = match level {
        libc::SOL_SOCKET => "socket(7)",
        libc::IPPROTO_IP => "ip(7)",
        libc::IPPROTO_IPV6 => "ipv6(7)",
        _ => "tcp(7)",
    };
    Opt {
        name,
        level,
        optname,
        kind,
        man,
    }
}

use Kind::{Flag, Int, Linger, TcpInfo, Text, Timeval};
use libc::{IPPROTO_IP, IPPROTO_IPV6, IPPROTO_TCP, SOL_SOCKET};

/// Every option the table prints, in order: socket level, IP and TCP (read
/// from TCP/IPv4), then IPv6 (read from TCP/IPv6).
pub const OPTIONS: &[Opt] = &[
    opt("SO_ACCEPTCONN", SOL_SOCKET, libc::SO_ACCEPTCONN, Flag),
    opt("SO_BROADCAST", SOL_SOCKET, libc::SO_BROADCAST, Flag),
    opt("SO_DEBUG", SOL_SOCKET, libc::SO_DEBUG, Flag),
    opt("SO_DOMAIN", SOL_SOCKET, libc::SO_DOMAIN, Int),
    opt("SO_DONTROUTE", SOL_SOCKET, libc::SO_DONTROUTE, Flag),
    opt("SO_ERROR", SOL_SOCKET, libc::SO_ERROR, Int),
    opt("SO_KEEPALIVE", SOL_SOCKET, libc::SO_KEEPALIVE, Flag),
    opt("SO_LINGER", SOL_SOCKET, libc::SO_LINGER, Linger),
    opt("SO_OOBINLINE", SOL_SOCKET, libc::SO_OOBINLINE, Flag),
    opt("SO_PRIORITY", SOL_SOCKET, libc::SO_PRIORITY, Int),
    opt("SO_PROTOCOL", SOL_SOCKET, libc::SO_PROTOCOL, Int),
    opt("SO_RCVBUF", SOL_SOCKET, libc::SO_RCVBUF, Int),
    opt("SO_RCVLOWAT", SOL_SOCKET, libc::SO_RCVLOWAT, Int),
    opt("SO_RCVTIMEO", SOL_SOCKET, libc::SO_RCVTIMEO, Timeval),
    opt("SO_REUSEADDR", SOL_SOCKET, libc::SO_REUSEADDR, Flag),
    opt("SO_REUSEPORT", SOL_SOCKET, libc::SO_REUSEPORT, Flag),
    opt("SO_SNDBUF", SOL_SOCKET, libc::SO_SNDBUF, Int),
    opt("SO_SNDLOWAT", SOL_SOCKET, libc::SO_SNDLOWAT, Int),
    opt("SO_SNDTIMEO", SOL_SOCKET, libc::SO_SNDTIMEO, Timeval),
    opt("SO_TYPE", SOL_SOCKET, libc::SO_TYPE, Int),
    opt("IP_TOS", IPPROTO_IP, libc::IP_TOS, Int),
    opt("IP_TTL", IPPROTO_IP, libc::IP_TTL, Int),
    opt("TCP_MAXSEG", IPPROTO_TCP, libc::TCP_MAXSEG, Int),
    opt("TCP_NODELAY", IPPROTO_TCP, libc::TCP_NODELAY, Flag),
    opt("TCP_KEEPIDLE", IPPROTO_TCP, libc::TCP_KEEPIDLE, Int),
    opt("TCP_KEEPINTVL", IPPROTO_TCP, libc::TCP_KEEPINTVL, Int),
    opt("TCP_KEEPCNT", IPPROTO_TCP, libc::TCP_KEEPCNT, Int),
    opt("TCP_SYNCNT", IPPROTO_TCP, libc::TCP_SYNCNT, Int),
    opt("TCP_DEFER_ACCEPT", IPPROTO_TCP, libc::TCP_DEFER_ACCEPT, Int),
    opt("TCP_USER_TIMEOUT", IPPROTO_TCP, libc::TCP_USER_TIMEOUT, Int),
    opt("TCP_CONGESTION", IPPROTO_TCP, libc::TCP_CONGESTION, Text),
    opt("TCP_QUICKACK", IPPROTO_TCP, libc::TCP_QUICKACK, Flag),
    opt("TCP_INFO", IPPROTO_TCP, libc::TCP_INFO, TcpInfo),
    opt("IPV6_V6ONLY", IPPROTO_IPV6, libc::IPV6_V6ONLY, Flag),
    opt(
        "IPV6_UNICAST_HOPS",
        IPPROTO_IPV6,
        libc::IPV6_UNICAST_HOPS,
        Int,
    ),
    opt("IPV6_TCLASS", IPPROTO_IPV6, libc::IPV6_TCLASS, Int),
];

/// Look an option up by its C name.
pub fn find(name: &str) -> Option<&'static Opt> {
    OPTIONS.iter().find(|o| o.name == name)
}

/// The C name of a level.
pub fn level_name(level: c_int) -> &'static str {
    match level {
        libc::SOL_SOCKET => "SOL_SOCKET",
        libc::IPPROTO_IP => "IPPROTO_IP",
        libc::IPPROTO_IPV6 => "IPPROTO_IPV6",
        libc::IPPROTO_TCP => "IPPROTO_TCP",
        _ => "?",
    }
}

/// The kind of fresh socket an option is read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SocketKind {
    /// `socket(AF_INET, SOCK_STREAM, 0)`.
    Tcp4,
    /// `socket(AF_INET6, SOCK_STREAM, 0)`.
    Tcp6,
    /// `socket(AF_INET, SOCK_DGRAM, 0)`.
    Udp4,
}

impl SocketKind {
    /// Where the table reads an option of `level` first: IPv6 options from
    /// a TCP/IPv6 socket, everything else from a TCP/IPv4 one.
    pub fn for_level(level: c_int) -> SocketKind {
        if level == libc::IPPROTO_IPV6 {
            SocketKind::Tcp6
        } else {
            SocketKind::Tcp4
        }
    }

    /// A new socket of this kind, close-on-exec.
    pub fn open(self) -> nix::Result<OwnedFd> {
        let (family, ty) = match self {
            SocketKind::Tcp4 => (AddressFamily::Inet, SockType::Stream),
            SocketKind::Tcp6 => (AddressFamily::Inet6, SockType::Stream),
            SocketKind::Udp4 => (AddressFamily::Inet, SockType::Datagram),
        };
        // Protocol 0: the family's default for the type (TCP, UDP).
        socket(family, ty, SockFlag::SOCK_CLOEXEC, None)
    }

    /// `socket(AF_INET, SOCK_STREAM, 0)` and so on.
    pub fn call(self) -> &'static str {
        match self {
            SocketKind::Tcp4 => "socket(AF_INET, SOCK_STREAM, 0)",
            SocketKind::Tcp6 => "socket(AF_INET6, SOCK_STREAM, 0)",
            SocketKind::Udp4 => "socket(AF_INET, SOCK_DGRAM, 0)",
        }
    }
}

/// One line of the table: which option, read from which kind of socket,
/// and what came back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub opt: Opt,
    pub socket: SocketKind,
    pub reading: Reading,
}

/// Names for the numbers some options hold, so `SO_TYPE` prints
/// `1 (SOCK_STREAM)`.
fn number_name(opt: &Opt, n: i32) -> Option<&'static str> {
    let names: &[(c_int, &str)] = match opt.optname {
        _ if opt.level != libc::SOL_SOCKET => &[],
        libc::SO_TYPE => &[
            (libc::SOCK_STREAM, "SOCK_STREAM"),
            (libc::SOCK_DGRAM, "SOCK_DGRAM"),
        ],
        libc::SO_DOMAIN => &[(libc::AF_INET, "AF_INET"), (libc::AF_INET6, "AF_INET6")],
        libc::SO_PROTOCOL => &[
            (libc::IPPROTO_TCP, "IPPROTO_TCP"),
            (libc::IPPROTO_UDP, "IPPROTO_UDP"),
        ],
        _ => &[],
    };
    names.iter().find(|(v, _)| *v == n).map(|(_, name)| *name)
}

impl fmt::Display for Row {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.reading {
            Ok(Value::Int(n)) => match number_name(&self.opt, *n) {
                Some(name) => write!(f, "{}: default = {n} ({name})", self.opt.name),
                None => write!(f, "{}: default = {n}", self.opt.name),
            },
            Ok(value) => write!(f, "{}: default = {value}", self.opt.name),
            Err(e) => write!(f, "{}: {e}", self.opt.name),
        }
    }
}

// ANCHOR: ch03_defaults_table
/// Build the table of defaults.
///
/// Task:
/// - For each option in [`OPTIONS`], in order: open a *fresh* socket of
///   `SocketKind::for_level(opt.level)` (`kind.open()`), read the option
///   with [`get_option`](super::option::get_option), and push a [`Row`]. A socket that cannot be
///   opened gives the row `Err(ReadError::NoSocket(errno))`. The socket
///   closes when its `OwnedFd` drops: open one per option, so no option's
///   reading disturbs the next (reading `SO_ERROR` clears it, for one).
/// - Then the UDP section: for each socket-level (`SOL_SOCKET`) and IP
///   (`IPPROTO_IP`) option, read it from a fresh `SocketKind::Udp4` socket
///   and push a `Udp4` row only where its reading differs from the TCP row
///   of the same option.
pub fn defaults_table() -> Vec<Row> {
    // BEGIN SOLUTION
    use super::option::{ReadError, get_option};
    let read_fresh = |kind: SocketKind, opt: &Opt| -> Reading {
        let fd = kind.open().map_err(ReadError::NoSocket)?;
        get_option(&fd, opt.level, opt.optname, opt.kind)
    };
    let mut rows: Vec<Row> = OPTIONS
        .iter()
        .map(|opt| {
            let socket = SocketKind::for_level(opt.level);
            Row {
                opt: *opt,
                socket,
                reading: read_fresh(socket, opt),
            }
        })
        .collect();
    let mut udp = Vec::new();
    for tcp in rows
        .iter()
        .filter(|r| matches!(r.opt.level, libc::SOL_SOCKET | libc::IPPROTO_IP))
    {
        let reading = read_fresh(SocketKind::Udp4, &tcp.opt);
        if reading != tcp.reading {
            udp.push(Row {
                opt: tcp.opt,
                socket: SocketKind::Udp4,
                reading,
            });
        }
    }
    rows.extend(udp);
    rows
    // END SOLUTION
}
// ANCHOR_END: ch03_defaults_table

/// Print the table, one section per kind of socket.
pub fn print_table(rows: &[Row]) {
    use crate::kit::narrate::{heading, line, note};
    let sections = [
        (
            SocketKind::Tcp4,
            "TCP over IPv4: socket-level, IP and TCP options",
        ),
        (SocketKind::Tcp6, "TCP over IPv6: IPv6 options"),
        (SocketKind::Udp4, "UDP over IPv4: where the default differs"),
    ];
    for (kind, title) in sections {
        heading(title);
        note(format_args!("each read from a fresh {}", kind.call()));
        for row in rows.iter().filter(|r| r.socket == kind) {
            line("", row);
        }
    }
}
