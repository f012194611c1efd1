#![doc = include_str!("../../chapters/02-tcp.md")]

pub mod calls;
pub mod daytime;
pub mod demo;
pub mod echo;
pub mod stream;

pub use calls::{
    accept_peer, close_fd, connect_to, listen_on, show_bytes, wait_readable_or_stop,
    wait_writable_or_stop,
};
pub use echo::{EchoEnd, EchoReply, EchoStats, echo_exchange, serve_echo};
pub use stream::{read_exact_counting, write_all_counting};

/// The echo server's default address: RFC 862's port 7, moved above 1024 so
/// no privilege is needed.
pub const ECHO_ADDR: &str = "127.0.0.1:2007";

/// The daytime server's default address: RFC 867's port 13, moved above 1024.
pub const DAYTIME_ADDR: &str = "127.0.0.1:2013";
