//! Chapter 7's comparisons: every server design of chapters 2, 4 and 7
//! under the same echo load, against a tokio echo server.

use std::time::Duration;

use nix::sys::socket::SockaddrStorage;

use super::load::{self, LoadConfig};
use super::rounds::{Measured, Program, Workload};
use super::{Comparison, Options};
use crate::kit::Result;

/// `conns` connections, each sending `size` bytes and waiting for the echo,
/// beside `idle` silent ones ([`load`]).
pub struct EchoLoad {
    pub conns: usize,
    pub idle: usize,
    pub size: usize,
}

impl Workload for EchoLoad {
    fn unit(&self) -> &str {
        "round trips"
    }

    fn run(&self, addr: &SockaddrStorage, duration: Duration) -> Result<Measured> {
        let mut cfg = LoadConfig::new(*addr);
        cfg.conns = self.conns;
        cfg.idle = self.idle;
        cfg.size = self.size;
        cfg.duration = duration;
        cfg.connect_timeout = Duration::from_secs(3);
        let r = load::run(&cfg)?;
        let mut note = String::new();
        if r.starved > 0 {
            note = format!("{} connections starved", r.starved);
        }
        Ok(Measured {
            ops: r.round_trips,
            elapsed: r.elapsed,
            p50_us: r.percentile_us(50.0),
            p99_us: r.percentile_us(99.0),
            errors: r.errors(),
            note,
        })
    }
}

fn program(opts: &Options, name: &str, bin: &str, args: &[&str]) -> Program {
    Program {
        name: name.to_string(),
        program: opts.bin_dir.join(bin),
        args: args.iter().map(|s| s.to_string()).collect(),
    }
}

/// The designs, each as a fresh-process contender.
fn designs(opts: &Options, with_iterative: bool) -> Vec<Box<dyn super::rounds::Contender>> {
    let ch07 = |design: &str, extra: &[&str]| -> Vec<String> {
        [
            "server",
            "--design",
            design,
            "--addr",
            "127.0.0.1:0",
            "--max",
            "100000",
        ]
        .iter()
        .chain(extra)
        .map(|s| s.to_string())
        .collect()
    };
    let mut v: Vec<Box<dyn super::rounds::Contender>> = Vec::new();
    if with_iterative {
        v.push(Box::new(program(
            opts,
            "iterative",
            "ch02_tcp",
            &["server", "--quiet", "--addr", "127.0.0.1:0"],
        )));
    }
    for (name, extra) in [
        ("thread", &[][..]),
        ("pool", &["--workers", "128"][..]),
        ("queue", &["--workers", "128"][..]),
        ("fork", &[][..]),
        ("reuseport", &["--workers", "4"][..]),
    ] {
        v.push(Box::new(Program {
            name: name.to_string(),
            program: opts.bin_dir.join("ch07_threads"),
            args: ch07(name, extra),
        }));
    }
    v.push(Box::new(program(
        opts,
        "select",
        "ch04_select",
        &["server", "--echo", "--addr", "127.0.0.1:0"],
    )));
    v.push(Box::new(program(
        opts,
        "poll",
        "ch04_select",
        &["server", "--echo", "--poll", "--addr", "127.0.0.1:0"],
    )));
    v.push(Box::new(Program {
        name: "tokio".into(),
        program: opts.tokio.clone(),
        args: vec!["--addr".into(), "127.0.0.1:0".into()],
    }));
    v
}

/// busy: 64 connections; wide: 1,000; idle: 64 busy beside 5,000 idle.
/// The default run is busy and idle.
pub fn comparisons(opts: &Options) -> Result<Vec<Comparison>> {
    let wanted = |s: &str| {
        if opts.scenarios.is_empty() {
            s != "wide"
        } else {
            opts.scenarios.iter().any(|x| x == s)
        }
    };
    let mut out = Vec::new();
    if wanted("busy") {
        out.push(Comparison {
            chapter: "ch07",
            scenario: "busy".into(),
            title: "64 busy connections, 512-byte echoes".into(),
            baseline: "tokio".into(),
            contenders: designs(opts, true),
            workload: Box::new(EchoLoad {
                conns: 64,
                idle: 0,
                size: 512,
            }),
            goals: Vec::new(),
            notes: vec![
                "iterative serves one connection at a time: the other 63 starve (chapter 2 says why).".into(),
            ],
        });
    }
    if wanted("wide") {
        out.push(Comparison {
            chapter: "ch07",
            scenario: "wide".into(),
            title: "1,000 busy connections".into(),
            baseline: "tokio".into(),
            contenders: designs(opts, false),
            workload: Box::new(EchoLoad {
                conns: 1000,
                idle: 0,
                size: 512,
            }),
            goals: Vec::new(),
            notes: vec!["select cannot hold fds at or above FD_SETSIZE (1024).".into()],
        });
    }
    if wanted("idle") {
        out.push(Comparison {
            chapter: "ch07",
            scenario: "idle".into(),
            title: "64 busy connections beside 5,000 idle ones".into(),
            baseline: "tokio".into(),
            contenders: designs(opts, false),
            workload: Box::new(EchoLoad {
                conns: 64,
                idle: 5000,
                size: 512,
            }),
            goals: Vec::new(),
            notes: vec![
                "select cannot hold fds at or above FD_SETSIZE (1024): it refuses or fails here.".into(),
                "poll scans every fd on every call; thread and fork designs park one thread or process per idle connection.".into(),
            ],
        });
    }
    Ok(out)
}
