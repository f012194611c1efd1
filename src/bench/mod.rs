//! The benchmark harness behind `make bench`: one for every chapter.
//!
//! A chapter adds *comparisons* (a scenario: a load and the servers to put
//! under it, one of them the baseline, such as tokio or nginx); the harness
//! runs them the same way for every chapter:
//!
//! - **Alternating rounds** ([`rounds`]): every contender once per round, in
//!   an order that rotates, each time in a **fresh server process**, after a
//!   short warm-up. The server is pinned to one CPU and the load generator
//!   (this process) to another.
//! - **Interference check**: `/proc/stat` is read around each measurement;
//!   if other work used more than a set share of the CPUs, the measurement
//!   is redone once and marked if still disturbed.
//! - **Ratios with a range** ([`stats`], [`report`]): each contender's
//!   figure is divided by the baseline's figure *of the same round*; the
//!   table prints the median of those per-round ratios and their range:
//!   min–max up to 8 rounds, from 9 on the `k`-th smallest to the `k`-th
//!   largest, at least 93.75 % sure to hold the true median
//!   ([`stats::order_k`]).
//!   A range that straddles 1.00 prints as "no clear difference".
//! - **Goals** (a chapter's stated targets, e.g. "epoll ≥ 1.05× tokio per
//!   server CPU-second") are judged on the whole range: met, missed, or
//!   undecided.
//!
//! The binary `bench` is thin: it parses options and calls [`run`].

pub mod ch07;
pub mod ch08;
pub mod ch09;
pub mod ch12;
pub mod load;
pub mod report;
pub mod rounds;
pub mod stalls;
pub mod stats;

use std::path::PathBuf;
use std::time::Duration;

use nix::sched::{CpuSet, sched_getaffinity, sched_setaffinity};
use nix::unistd::Pid;

use crate::kit::{Call, Error, Result};
use rounds::{Contender, RoundPlan, Workload};
use stats::Verdict;

/// Which figure a goal is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Figure {
    /// Operations per second.
    Rate,
    /// Operations per server CPU-second.
    PerCpuSecond,
    /// p99 latency over the baseline's (the goal is "at most").
    P99,
}

/// A chapter's stated target for one contender against the baseline.
#[derive(Debug, Clone)]
pub struct Goal {
    pub contender: String,
    pub figure: Figure,
    /// For Rate and PerCpuSecond: the ratio must be at least this. For P99:
    /// the ratio must be at most this.
    pub ratio: f64,
    /// Where the goal comes from, in words.
    pub why: String,
}

/// One scenario of one chapter: a load and the servers to compare under it.
pub struct Comparison {
    pub chapter: &'static str,
    /// Short name, for `--scenarios` and the CSV (`busy`, `idle`).
    pub scenario: String,
    /// The heading of its table.
    pub title: String,
    /// The contender every ratio is taken against.
    pub baseline: String,
    pub contenders: Vec<Box<dyn Contender>>,
    pub workload: Box<dyn Workload>,
    pub goals: Vec<Goal>,
    /// Lines printed under the heading (what the scenario shows).
    pub notes: Vec<String>,
}

/// What `make bench` was asked for.
#[derive(Debug, Clone)]
pub struct Options {
    pub rounds: usize,
    pub secs: f64,
    pub warmup: f64,
    /// Chapters to run (`ch07`…); empty for all.
    pub chapters: Vec<String>,
    /// Scenarios to run; empty for each chapter's defaults.
    pub scenarios: Vec<String>,
    /// Contenders to keep (the baseline is always kept); empty for all.
    pub designs: Vec<String>,
    /// Where the release binaries are.
    pub bin_dir: PathBuf,
    /// The tokio peer's binary.
    pub tokio: PathBuf,
    pub out_dir: PathBuf,
    /// Redo a measurement when other work used more CPUs than this.
    pub max_other_cpu: f64,
}

impl Options {
    /// The defaults, with the project's `target/` under `root`.
    pub fn new(root: &std::path::Path) -> Options {
        Options {
            rounds: 5,
            secs: 1.5,
            warmup: 0.5,
            chapters: Vec::new(),
            scenarios: Vec::new(),
            designs: Vec::new(),
            bin_dir: root.join("target/release"),
            tokio: root.join("target/bench/tokio-build/release/tokio-echo"),
            out_dir: root.join("target/bench"),
            max_other_cpu: 0.25,
        }
    }

    fn wants_chapter(&self, ch: &str) -> bool {
        self.chapters.is_empty() || self.chapters.iter().any(|c| c == ch)
    }
}

/// Every chapter's comparisons, as the options choose them.
pub fn comparisons(opts: &Options) -> Result<Vec<Comparison>> {
    let mut all = Vec::new();
    if opts.wants_chapter("ch07") {
        all.extend(ch07::comparisons(opts)?);
    }
    if opts.wants_chapter("ch08") {
        all.extend(ch08::comparisons(opts)?);
    }
    if opts.wants_chapter("ch09") {
        all.extend(ch09::comparisons(opts)?);
    }
    if opts.wants_chapter("ch12") {
        all.extend(ch12::comparisons(opts)?);
    }
    for c in &mut all {
        if !opts.designs.is_empty() {
            let base = c.baseline.clone();
            c.contenders
                .retain(|k| k.name() == base || opts.designs.iter().any(|d| d == k.name()));
        }
    }
    Ok(all)
}

/// CPUs this process may run on.
pub fn allowed_cpus() -> Vec<usize> {
    let Ok(set) = sched_getaffinity(Pid::from_raw(0)) else {
        return Vec::new();
    };
    (0..CpuSet::count())
        .filter(|&i| set.is_set(i).unwrap_or(false))
        .collect()
}

/// [`stalls::probe`] for 2 s on `cpus`, with the steal time the kernel
/// counted meanwhile, as one header line.
fn probe_stalls(cpus: &[usize]) -> String {
    let hz = crate::ch07_threads::proc::ticks_per_second() as f64;
    let before = stalls::steal_ticks();
    let seen = stalls::probe(cpus, Duration::from_secs(2));
    let steal = match (before, stalls::steal_ticks()) {
        (Some(a), Some(b)) => Some(Duration::from_secs_f64(b.saturating_sub(a) as f64 / hz)),
        _ => None,
    };
    stalls::describe(&seen, steal)
}

fn pin_self(cpu: usize) -> Result<()> {
    let mut set = CpuSet::new();
    set.set(cpu).call(format!("CPU_SET({cpu})"))?;
    sched_setaffinity(Pid::from_raw(0), &set).call(format!("sched_setaffinity(0, {{{cpu}}})"))
}

fn machine() -> String {
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_string();
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, m)| m.trim().to_string())
        .unwrap_or_else(|| "unknown CPU".into());
    let cpus = cpuinfo
        .lines()
        .filter(|l| l.starts_with("processor"))
        .count();
    format!("Linux {kernel}, {cpus} x {model}")
}

/// Run the chosen comparisons and print a table for each; write every
/// sample to `out_dir/latest.csv`.
pub fn run(opts: &Options) -> Result<()> {
    let comparisons = comparisons(opts)?;
    if comparisons.is_empty() {
        return Err(Error::msg(
            "nothing to run: no comparison chosen (see --chapters, --scenarios), or every chosen one skipped (see above)",
        ));
    }
    let (soft, hard) = crate::ch07_threads::server::raise_fd_limit()?;
    println!("# sockbook benchmark");
    println!("# machine: {}", machine());
    println!("# RLIMIT_NOFILE soft {soft} -> {hard} (inherited by every server)");
    let cpus = allowed_cpus();
    println!("{}", probe_stalls(&cpus[..cpus.len().min(2)]));
    let server_cpu = if cpus.len() >= 2 {
        pin_self(cpus[0])?;
        println!(
            "# load generator pinned to CPU {}, servers to CPU {}",
            cpus[0], cpus[1]
        );
        Some(cpus[1])
    } else {
        println!("# fewer than 2 CPUs: nothing pinned, generator and server share one");
        None
    };
    let plan = RoundPlan {
        rounds: opts.rounds.max(1),
        warmup: Duration::from_secs_f64(opts.warmup),
        measure: Duration::from_secs_f64(opts.secs),
        server_cpu,
        max_other_cpu: opts.max_other_cpu,
    };
    println!(
        "# {} alternating rounds; each round starts every contender afresh, warms it up {:.1} s, measures {:.1} s",
        plan.rounds, opts.warmup, opts.secs
    );
    println!(
        "# a ratio cell is the median of the per-round ratios to the baseline (measured in the same round), with their range in brackets (min–max up to 8 rounds, then the k-th smallest to k-th largest: at least 93.75 % sure to hold the true median);"
    );
    if plan.rounds == 1 {
        println!(
            "# with 1 round each ratio is a single sample, with no range: run more --rounds before drawing a conclusion"
        );
    } else {
        println!(
            "# with {} rounds that range is the {} and holds the true median ratio with {:.1} % probability; a range that straddles 1.00 is no clear difference",
            plan.rounds,
            match stats::order_k(plan.rounds) {
                1 => "min–max".to_string(),
                k => format!("{0} smallest to {0} largest", stats::ordinal(k)),
            },
            stats::coverage(plan.rounds, stats::order_k(plan.rounds)) * 100.0
        );
    }
    let mut csv = String::from(report::CSV_HEADER);
    for c in &comparisons {
        println!("\n## {} — {}\n", c.chapter, c.title);
        for n in &c.notes {
            println!("{n}");
        }
        if !c.notes.is_empty() {
            println!();
        }
        let who: Vec<&dyn Contender> = c.contenders.iter().map(|b| b.as_ref()).collect();
        let samples = rounds::alternate(&who, c.workload.as_ref(), &plan, |s| {
            eprintln!(
                "  round {} {:<10} {}{}",
                s.round + 1,
                s.contender,
                s.rate().map_or(s.note.clone(), |r| format!(
                    "{r:.0} {}/s, server CPU {:.2} s",
                    c.workload.unit(),
                    s.server_cpu
                )),
                if s.disturbed {
                    format!(" (disturbed: other work used {:.2} CPU)", s.other_cpu)
                } else {
                    String::new()
                }
            );
        });
        let order: Vec<String> = who.iter().map(|k| k.name().to_string()).collect();
        let rows = report::rows(&samples, &c.baseline, &order);
        print!("{}", report::table(&rows, &c.baseline, c.workload.unit()));
        for goal in &c.goals {
            let Some(row) = rows.iter().find(|r| r.contender == goal.contender) else {
                continue;
            };
            let (spread, verdict) = match goal.figure {
                Figure::Rate => (row.rate_ratio, row.rate_ratio.map(|s| s.judge(goal.ratio))),
                Figure::PerCpuSecond => (row.cpu_ratio, row.cpu_ratio.map(|s| s.judge(goal.ratio))),
                Figure::P99 => (
                    row.p99_ratio,
                    row.p99_ratio.map(|s| {
                        // "at most": judged on the inverse.
                        let inv = stats::Spread {
                            median: 1.0 / s.median,
                            low: 1.0 / s.high,
                            high: 1.0 / s.low,
                            rounds: s.rounds,
                        };
                        inv.judge(1.0 / goal.ratio)
                    }),
                ),
            };
            println!(
                "goal: {} — {}: {}",
                goal.why,
                spread.map_or("-".into(), |s| s.cell()),
                verdict.map_or("no data".to_string(), |v: Verdict| v.to_string())
            );
        }
        csv.push_str(&report::csv(c.chapter, &c.scenario, &samples));
    }
    std::fs::create_dir_all(&opts.out_dir)
        .map_err(|e| Error::msg(format!("create {}: {e}", opts.out_dir.display())))?;
    let file = opts.out_dir.join("latest.csv");
    std::fs::write(&file, csv).map_err(|e| Error::msg(format!("write {}: {e}", file.display())))?;
    println!("\nevery sample: {}", file.display());
    Ok(())
}
