#![doc = include_str!("../../chapters/08-udp.md")]

pub mod batch;
pub mod bench;
pub mod cli;
pub mod connected;
pub mod demo;
pub mod dgram;
pub mod echo;
pub mod lab;
pub mod relay;
pub mod request;
pub mod transfer;

pub use connected::ask_connected;
pub use echo::{EchoConfig, EchoEvent, EchoStats, serve_echo};
pub use relay::{Impairment, RelayHandle, RelayStats, run_relay, spawn_relay};
pub use request::{Backoff, Reply, request};
pub use transfer::{Received, Sent, TransferConfig, receive_file, send_file};
