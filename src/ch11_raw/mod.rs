#![doc = include_str!("../../chapters/11-raw.md")]

pub mod bpf;
pub mod capture;
pub mod checksum;
pub mod demo;
pub mod frame;
pub mod icmp;
pub mod ring;
pub mod trace;

pub use bpf::{Dir, Expr, compile, parse_filter};
pub use checksum::internet_checksum;
pub use frame::{FrameError, Packet, Transport, parse_ipv4};
pub use icmp::{Echo, IcmpError, build_echo_request, parse_echo, ping_once};
pub use trace::{Hop, trace};

/// `--help` of the binary.
pub const USAGE: &str = "\
ch11_raw — raw and packet sockets: build, filter and capture packets yourself

usage:
  ch11_raw                 the narrated demo (in a private user+network
                           namespace, where this process holds CAP_NET_RAW)
  ch11_raw checksum        the Internet checksum, checked on the kernel's own packets
  ch11_raw ping [--count N] [--to A]
                           ping two ways: a raw ICMP socket, and the ping socket
  ch11_raw packet          AF_PACKET SOCK_RAW vs SOCK_DGRAM on lo; each frame twice
  ch11_raw bpf [EXPR]      compile a filter, print it like `tcpdump -d`, attach it,
                           and compare with tcpdump's own program where installed
  ch11_raw ring            PACKET_RX_RING + TPACKET_V3 against recvfrom: rate and drops
  ch11_raw hdrincl         IP_HDRINCL: write the IPv4 header yourself
  ch11_raw traceroute      a chain of namespaces as routers, traced with UDP
                           probes and IP_RECVERR
  ch11_raw sniff [EXPR] [--count N] [--secs S] [--iface IF]
                           a mini tcpdump on this machine's own interface (needs
                           CAP_NET_RAW here: run it as root); EXPR is the filter
                           language of `bpf` (tcp, udp, icmp, host, port, and/or/not)
";

/// The subcommands of the binary.
pub const SUBCOMMANDS: &[&str] = &[
    "checksum",
    "ping",
    "packet",
    "bpf",
    "ring",
    "hdrincl",
    "traceroute",
    "sniff",
];

/// Options that take a value.
pub const VALUE_OPTIONS: &[&str] = &["--count", "--to", "--secs", "--iface"];
