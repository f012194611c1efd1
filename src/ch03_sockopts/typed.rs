//! Typed options nix 0.31 does not have, defined with its own
//! `sockopt_impl!` macro, so `getsockopt(&fd, SndLowat)` reads like the
//! options nix ships (`sockopt::RcvBuf`, `sockopt::TcpNoDelay`, …).
//!
//! The macro expands to nix's `GetSockOpt`/`SetSockOpt` impls, whose
//! `unsafe` calls are nix's own (a typed buffer of `size_of::<T>()` bytes).
//! Note that nix's getter *asserts* that the kernel returned exactly
//! `size_of::<T>()` bytes: fine for an `int`, wrong for `TCP_INFO`, which
//! an older kernel returns short (see [`super::tcpinfo`]).

// sockopt_impl! refers to its helper macros unqualified: import all three.
#[allow(unused_imports)]
use nix::{getsockopt_impl, setsockopt_impl, sockopt_impl};

sockopt_impl!(
    /// `SO_SNDLOWAT` (socket(7)): readable on Linux (always 1), but setting
    /// it fails with `ENOPROTOOPT`.
    SndLowat,
    Both,
    libc::SOL_SOCKET,
    libc::SO_SNDLOWAT,
    i32
);

sockopt_impl!(
    /// `SO_RCVLOWAT` (socket(7)): the fewest bytes a read waits for.
    RcvLowat,
    Both,
    libc::SOL_SOCKET,
    libc::SO_RCVLOWAT,
    i32
);

sockopt_impl!(
    /// `TCP_DEFER_ACCEPT` (tcp(7)): seconds a listener waits for data before
    /// waking `accept`; the kernel stores it as a count of SYN-ACK retries.
    TcpDeferAccept,
    Both,
    libc::IPPROTO_TCP,
    libc::TCP_DEFER_ACCEPT,
    i32
);

sockopt_impl!(
    /// `TCP_SYNCNT` (tcp(7)): SYN retransmissions before `connect` gives up.
    TcpSynCnt,
    Both,
    libc::IPPROTO_TCP,
    libc::TCP_SYNCNT,
    i32
);
