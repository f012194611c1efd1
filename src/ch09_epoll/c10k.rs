//! C10K: what an idle connection costs a server that waits with `poll`
//! and one that waits with `epoll`.
//!
//! `poll(2)` hands the kernel the whole list of fds on every call and the
//! kernel checks every one of them, so with N idle connections each wake-up
//! costs O(N) however few fds are ready. `epoll_wait` returns only the
//! ready list: the idle connections cost nothing until they speak. This
//! measurement shows it: the same echo load (a few busy connections, each
//! with one message in flight) beside N idle connections, against chapter
//! 4's poll loop and this chapter's level-triggered epoll loop, each in its
//! own server process (`ch09_epoll server --design poll|single`). The load
//! generator is this process (the benchmark's, `bench::load`). Server CPU
//! time comes from `/proc/PID/stat`.

use std::time::{Duration, Instant};

use super::probe;
use crate::bench::load::{self, LoadConfig};
use crate::ch07_threads::spawn::ServerChild;
use crate::kit::args::Args;
use crate::kit::narrate::{heading, note};
use crate::kit::{Error, Result};
use crate::say;

/// One measurement.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// Idle connections held open beside the busy ones.
    pub idle: usize,
    /// Round trips completed.
    pub round_trips: u64,
    /// Server CPU seconds (user + system) during the busy phase.
    pub cpu: f64,
    /// Wall-clock seconds of the busy phase.
    pub secs: f64,
}

impl Sample {
    /// Round trips per server CPU-second.
    pub fn per_cpu_second(&self) -> f64 {
        if self.cpu > 0.0 {
            self.round_trips as f64 / self.cpu
        } else {
            f64::NAN
        }
    }

    /// Server CPU microseconds per round trip.
    pub fn cpu_us_per_request(&self) -> f64 {
        if self.round_trips > 0 {
            self.cpu * 1e6 / self.round_trips as f64
        } else {
            f64::NAN
        }
    }
}

/// Start `ch09_epoll server --design DESIGN` as a child process, hold
/// `idle` idle connections to it, run `busy` echo connections for
/// `duration`, and measure the server's CPU during that busy phase.
pub fn measure(design: &str, idle: usize, busy: usize, duration: Duration) -> Result<Sample> {
    let exe = std::env::current_exe().map_err(|e| Error::msg(format!("current_exe: {e}")))?;
    let words: Vec<String> = ["server", "--design", design, "--addr", "127.0.0.1:0"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let child = ServerChild::start(&exe.to_string_lossy(), &words, None, Duration::from_secs(5))?;
    let pid = child.pid;
    let (held, failed) = load::open_idle(&child.addr, idle, Duration::from_secs(20))?;
    if failed > 0 {
        say!(
            "c10k",
            "{design}: {failed} of {idle} idle connections failed to connect"
        );
    }
    // Wait until the server has accepted them all (its fd count), so the
    // busy phase measures serving, not accepting.
    let fds = || std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count());
    let deadline = Instant::now() + Duration::from_secs(20);
    while fds() < held.len() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let cpu0 = probe::cpu_secs(pid).ok_or_else(|| Error::msg("cannot read /proc/PID/stat"))?;
    let mut cfg = LoadConfig::new(child.addr);
    cfg.conns = busy;
    cfg.size = 512;
    cfg.duration = duration;
    let mut cpu1 = cpu0;
    let r = load::run_observed(&cfg, || {
        cpu1 = probe::cpu_secs(pid).unwrap_or(cpu0);
    })?;
    drop(held);
    let _ = child.stop(Duration::from_secs(5));
    Ok(Sample {
        idle,
        round_trips: r.round_trips,
        cpu: cpu1 - cpu0,
        secs: r.elapsed.as_secs_f64(),
    })
}

/// `c10k [--ns 100,1000,10000] [--busy 64] [--secs 2]`.
pub fn main(args: &Args) -> Result<()> {
    let mut ns: Vec<usize> = Vec::new();
    for word in args.value("--ns").unwrap_or("100,1000,10000").split(',') {
        ns.push(
            word.trim()
                .parse()
                .map_err(|_| Error::msg(format!("--ns: {word:?} is not a number")))?,
        );
    }
    let busy = args.number("--busy", 64, 1..=1000)? as usize;
    let secs = args.number("--secs", 2, 1..=60)? as u64;
    run(&ns, busy, Duration::from_secs(secs))
}

/// Measure poll and epoll at each N of `ns`, print the table and ratios.
pub fn run(ns: &[usize], busy: usize, duration: Duration) -> Result<()> {
    heading("C10K: server CPU per round trip, poll against epoll, as idle connections grow");
    // Each idle connection is one fd here and one in the server.
    let (old, soft) = crate::ch07_threads::server::raise_fd_limit()?;
    say!(
        "c10k",
        "RLIMIT_NOFILE soft {old} -> {soft} (raised to the hard limit; each server raises its own the same way)"
    );
    let room = (soft as usize).saturating_sub(busy + 64);
    let mut sizes = Vec::new();
    for &n in ns {
        if n > room {
            say!(
                "c10k",
                "N = {n} needs {} fds but the hard limit is {soft}: measuring N = {room} instead \
                 (raise it with `ulimit -Hn` as root, or in /etc/security/limits.conf)",
                n + busy + 64
            );
            sizes.push(room);
        } else {
            sizes.push(n);
        }
    }
    note(format!(
        "{busy} busy connections (512-byte echoes, one in flight each) for {} ms beside N idle ones; \
         servers are separate processes; CPU from /proc/PID/stat (utime + stime)",
        duration.as_millis()
    ));
    say!(
        "",
        "{:>7} | {:>12} {:>10} {:>12} | {:>12} {:>10} {:>12} | {:>8}",
        "idle N",
        "poll rt/s",
        "CPU us/rt",
        "rt/CPU-s",
        "epoll rt/s",
        "CPU us/rt",
        "rt/CPU-s",
        "epoll/poll"
    );
    let mut ratios = Vec::new();
    for &n in &sizes {
        let p = measure("poll", n, busy, duration)?;
        let e = measure("single", n, busy, duration)?;
        let ratio = e.per_cpu_second() / p.per_cpu_second();
        ratios.push((n, ratio));
        say!(
            "",
            "{:>7} | {:>12.0} {:>10.1} {:>12.0} | {:>12.0} {:>10.1} {:>12.0} | {:>7.2}x",
            n,
            p.round_trips as f64 / p.secs,
            p.cpu_us_per_request(),
            p.per_cpu_second(),
            e.round_trips as f64 / e.secs,
            e.cpu_us_per_request(),
            e.per_cpu_second(),
            ratio
        );
    }
    note("epoll/poll = epoll's round trips per server CPU-second over poll's, from this one run");
    if let (Some(first), Some(last)) = (ratios.first(), ratios.last()) {
        note(format!(
            "from N = {} to N = {}, the ratio went from {:.2}x to {:.2}x: poll pays for every idle fd \
             on every call, epoll only for the ready ones",
            first.0, last.0, first.1, last.1
        ));
    }
    note("one run on a shared loopback is noisy: `make bench` repeats it in alternating rounds");
    Ok(())
}
