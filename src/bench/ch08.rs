//! Chapter 8's comparison: the UDP echo server with one `recvmsg` and one
//! `sendto` per datagram (the assignment's design) against the same server
//! batched with `recvmmsg`/`sendmmsg`, under a UDP echo load. The chapter's
//! in-process measurements (raw calls per datagram, and the reliable
//! transfer's goodput against stop-and-wait) are `ch08_udp bench`.

use std::collections::HashMap;
use std::net::UdpSocket;
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::socket::SockaddrStorage;

use super::rounds::{Measured, Program, Workload};
use super::{Comparison, Options};
use crate::kit::{Error, Result};

/// `clients` UDP sockets, each keeping one `size`-byte datagram in flight:
/// send, wait for the echo, send again. A datagram not echoed within 200 ms
/// (a full buffer dropped it: UDP) is sent again and counted as lost.
pub struct UdpEchoLoad {
    pub clients: usize,
    pub size: usize,
}

impl Workload for UdpEchoLoad {
    fn unit(&self) -> &str {
        "datagrams echoed"
    }

    fn run(&self, addr: &SockaddrStorage, duration: Duration) -> Result<Measured> {
        let to = addr
            .as_sockaddr_in()
            .map(|a| std::net::SocketAddr::V4((*a).into()))
            .ok_or_else(|| Error::msg(format!("{addr}: not IPv4")))?;
        let io = |e: std::io::Error| Error::msg(format!("udp load: {e}"));
        let socks: Vec<UdpSocket> = (0..self.clients)
            .map(|_| {
                let s = UdpSocket::bind("127.0.0.1:0")?;
                s.connect(to)?;
                s.set_nonblocking(true)?;
                Ok(s)
            })
            .collect::<std::io::Result<_>>()
            .map_err(io)?;
        let payload = vec![0x42u8; self.size];
        let mut sent_at: HashMap<usize, Instant> = HashMap::new();
        let start = Instant::now();
        for (i, s) in socks.iter().enumerate() {
            let _ = s.send(&payload);
            sent_at.insert(i, Instant::now());
        }
        let (mut ops, mut lost) = (0u64, 0usize);
        let mut lat_us: Vec<u32> = Vec::new();
        let mut buf = vec![0u8; self.size + 1];
        while start.elapsed() < duration {
            let mut fds: Vec<PollFd> = socks
                .iter()
                .map(|s| PollFd::new(s.as_fd(), PollFlags::POLLIN))
                .collect();
            let _ = poll(&mut fds, PollTimeout::from(10u16));
            let ready: Vec<bool> = fds.iter().map(|f| f.any().unwrap_or(false)).collect();
            drop(fds);
            let now = Instant::now();
            for (i, s) in socks.iter().enumerate() {
                let mut echoed = false;
                while ready[i] && s.recv(&mut buf).is_ok() {
                    echoed = true;
                }
                let since = sent_at.get(&i).copied().unwrap_or(now);
                if echoed {
                    ops += 1;
                    lat_us.push(now.duration_since(since).as_micros().min(u32::MAX as u128) as u32);
                } else if now.duration_since(since) > Duration::from_millis(200) {
                    lost += 1;
                } else {
                    continue;
                }
                let _ = s.send(&payload);
                sent_at.insert(i, Instant::now());
            }
        }
        lat_us.sort_unstable();
        let pct = |p: f64| -> Option<u32> {
            (!lat_us.is_empty()).then(|| lat_us[((lat_us.len() - 1) as f64 * p / 100.0) as usize])
        };
        Ok(Measured {
            ops,
            elapsed: start.elapsed(),
            p50_us: pct(50.0),
            p99_us: pct(99.0),
            errors: 0,
            note: if lost > 0 {
                format!("{lost} datagrams lost and resent")
            } else {
                String::new()
            },
        })
    }
}

/// The `udp` scenario.
pub fn comparisons(opts: &Options) -> Result<Vec<Comparison>> {
    let wanted = opts.scenarios.is_empty() || opts.scenarios.iter().any(|s| s == "udp");
    if !wanted {
        return Ok(Vec::new());
    }
    let server = |name: &str, extra: &[&str]| -> Box<dyn super::rounds::Contender> {
        let mut args = vec!["server".to_string(), "--addr".into(), "127.0.0.1:0".into()];
        args.extend(extra.iter().map(|s| s.to_string()));
        Box::new(Program {
            name: name.to_string(),
            program: opts.bin_dir.join("ch08_udp"),
            args,
        })
    };
    Ok(vec![Comparison {
        chapter: "ch08",
        scenario: "udp".into(),
        title: "UDP echo, 64 clients with one 64-byte datagram in flight each".into(),
        baseline: "recvmsg+sendto".into(),
        contenders: vec![
            server("recvmsg+sendto", &[]),
            server("recvmmsg+sendmmsg", &["--batch", "32"]),
        ],
        workload: Box::new(UdpEchoLoad {
            clients: 64,
            size: 64,
        }),
        goals: Vec::new(),
        notes: vec![
            "the same echo server, one system call per datagram each way against batches of up to 32 (chapter 8).".into(),
        ],
    }])
}
