//! Chapter 9's comparisons: the epoll designs against tokio under the busy
//! load, and epoll against chapter 4's poll loop beside 10,000 idle
//! connections (C10K). The servers are `ch09_epoll server --design D`
//! ([`crate::ch09_epoll::serve_echo`]).

use super::ch07::EchoLoad;
use super::rounds::{Contender, Program};
use super::{Comparison, Figure, Goal, Options};
use crate::kit::Result;

fn epoll(opts: &Options, name: &str, design: &str, threads: &str) -> Box<dyn Contender> {
    Box::new(Program {
        name: name.to_string(),
        program: opts.bin_dir.join("ch09_epoll"),
        args: [
            "server",
            "--design",
            design,
            "--threads",
            threads,
            "--addr",
            "127.0.0.1:0",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
    })
}

fn tokio(opts: &Options) -> Box<dyn Contender> {
    Box::new(Program {
        name: "tokio".into(),
        program: opts.tokio.clone(),
        args: vec!["--addr".into(), "127.0.0.1:0".into()],
    })
}

/// `epoll`: 64 busy connections, the four epoll designs against tokio.
/// `c10k`: 64 busy beside 10,000 idle, epoll against poll (and tokio).
pub fn comparisons(opts: &Options) -> Result<Vec<Comparison>> {
    let wanted = |s: &str| opts.scenarios.is_empty() || opts.scenarios.iter().any(|x| x == s);
    let mut out = Vec::new();
    if wanted("epoll") {
        out.push(Comparison {
            chapter: "ch09",
            scenario: "epoll".into(),
            title: "64 busy connections, 512-byte echoes: the epoll designs".into(),
            baseline: "tokio".into(),
            contenders: vec![
                epoll(opts, "epoll", "single", "1"),
                epoll(opts, "epoll-et", "et", "1"),
                epoll(opts, "reuseport", "reuseport", "4"),
                epoll(opts, "exclusive", "exclusive", "4"),
                tokio(opts),
            ],
            workload: Box::new(EchoLoad {
                conns: 64,
                idle: 0,
                size: 512,
            }),
            goals: vec![
                Goal {
                    contender: "epoll".into(),
                    figure: Figure::PerCpuSecond,
                    ratio: 1.05,
                    why: "issue 13: one epoll thread does no more work per round trip than tokio's runtime".into(),
                },
                Goal {
                    contender: "epoll".into(),
                    figure: Figure::P99,
                    ratio: 1.0,
                    why: "issue 13: and no worse p99 latency".into(),
                },
            ],
            notes: vec![
                "the server is pinned to one CPU: the 4-thread designs share it, so they measure overhead, not parallelism.".into(),
            ],
        });
    }
    if wanted("c10k") {
        out.push(Comparison {
            chapter: "ch09",
            scenario: "c10k".into(),
            title: "64 busy connections beside 10,000 idle ones: poll against epoll".into(),
            baseline: "poll".into(),
            contenders: vec![
                epoll(opts, "poll", "poll", "1"),
                epoll(opts, "epoll", "single", "1"),
                tokio(opts),
            ],
            workload: Box::new(EchoLoad {
                conns: 64,
                idle: 10_000,
                size: 512,
            }),
            goals: vec![Goal {
                contender: "epoll".into(),
                figure: Figure::PerCpuSecond,
                ratio: 5.0,
                why: "issue 13: poll walks every idle fd on every call; epoll_wait returns only the ready ones".into(),
            }],
            notes: vec![
                "poll is chapter 4's loop (ch09_epoll server --design poll runs it in echo mode).".into(),
            ],
        });
    }
    Ok(out)
}
