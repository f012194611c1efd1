//! # sockbook
//!
//! A workbook that teaches the POSIX socket API by calling it for real.
//! Read `chapters/` in order; each chapter has a module here, an exercise
//! binary in `src/bin/`, and graded tests in `tests/`.

pub mod kit;

pub mod ch01_sockets;
pub mod ch02_tcp;
