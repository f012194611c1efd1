//! # sockbook
//!
//! A workbook that teaches the POSIX socket API by calling it for real.
//! Read `chapters/` in order; each chapter has a module here (whose
//! documentation is the chapter itself), an exercise binary in `src/bin/`,
//! and graded tests in `tests/`.

pub mod kit;

// The benchmark harness behind `make bench` (not a chapter).
pub mod bench;

pub mod ch01_sockets;
pub mod ch02_tcp;
pub mod ch03_sockopts;
pub mod ch04_select;
pub mod ch05_handshake;
pub mod ch06_close;
pub mod ch07_threads;
pub mod ch08_udp;
pub mod ch09_epoll;
pub mod ch10_unix;
pub mod ch11_raw;
pub mod ch12_http;
