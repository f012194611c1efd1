#![doc = include_str!("../../chapters/10-unix.md")]

pub mod addr;
pub mod cli;
pub mod cred;
pub mod demo;
pub mod fds;
pub mod handover;
pub mod measure;
pub mod message;

pub use addr::{Name, TempDir};
pub use cred::{Peer, Verdict, authorise};
pub use fds::{Received, recv_fds, send_fds};
pub use handover::{hand_over, serve_tcp, take_over};
pub use message::{answer, serve, serve_lines, serve_messages};
