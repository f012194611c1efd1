//! How often this machine takes a CPU away from a thread that is running.
//!
//! On a virtual machine the host can stop a virtual CPU for milliseconds
//! to run something else. Where the hypervisor tells the guest, its kernel
//! counts that time as *steal* (the 8th number on the `cpu` lines of
//! `/proc/stat`, see
//! [proc_stat(5)](https://man7.org/linux/man-pages/man5/proc_stat.5.html)),
//! but a thread that was running sees it directly, as a gap between two
//! reads of the clock. Such a gap can also be the guest's own kernel (an
//! interrupt, a kernel thread): the steal time beside it says how much of
//! it the kernel knew was the host's. A stall in the middle of a round delays every
//! request in flight, so it lands in that round's p99. The benchmark runs
//! this probe before its rounds and prints what it saw beside the steal
//! time counted meanwhile, so a reader knows how noisy the machine was.

use std::time::{Duration, Instant};

/// A gap in the clock longer than this counts as a stall: a spinning
/// thread reads the clock every few tens of nanoseconds, and the kernel's
/// own interruptions (timer tick, softirqs) last microseconds.
pub const STALL: Duration = Duration::from_millis(1);

/// What a thread spinning on one CPU saw.
#[derive(Debug, Clone, PartialEq)]
pub struct Stalls {
    pub cpu: usize,
    /// How long it spun.
    pub span: Duration,
    /// Gaps between two clock reads longer than [`STALL`].
    pub gaps: usize,
    /// Their sum.
    pub lost: Duration,
    /// The longest gap of all (stall or not).
    pub longest: Duration,
}

/// Spin on the calling thread for `span`, reading the monotonic clock
/// (`clock_gettime(CLOCK_MONOTONIC)` through the vDSO) and noting every gap.
fn spin(cpu: usize, span: Duration) -> Stalls {
    let start = Instant::now();
    let mut last = start;
    let mut out = Stalls {
        cpu,
        span,
        gaps: 0,
        lost: Duration::ZERO,
        longest: Duration::ZERO,
    };
    loop {
        let now = Instant::now();
        let gap = now - last;
        if gap > STALL {
            out.gaps += 1;
            out.lost += gap;
        }
        out.longest = out.longest.max(gap);
        last = now;
        if now - start >= span {
            out.span = now - start;
            return out;
        }
    }
}

/// One thread per CPU in `cpus`, each pinned to its CPU
/// (`sched_setaffinity(2)`) and spinning for `span` at the same time.
/// Run it with nothing else going on: it uses every CPU it is given.
pub fn probe(cpus: &[usize], span: Duration) -> Vec<Stalls> {
    std::thread::scope(|scope| {
        let threads: Vec<_> = cpus
            .iter()
            .map(|&cpu| {
                scope.spawn(move || {
                    // Unpinned, the probe still measures the CPU it runs
                    // on, just not a named one: keep going.
                    let _ = super::pin_self(cpu);
                    spin(cpu, span)
                })
            })
            .collect();
        threads.into_iter().filter_map(|t| t.join().ok()).collect()
    })
}

/// Steal time of all CPUs together, the 8th number of the `cpu` line of
/// `/proc/stat` (clock ticks); `None` when it cannot be read.
pub fn steal_ticks() -> Option<u64> {
    super::rounds::machine_cpu_line().get(7).copied()
}

/// One line for the benchmark's header.
pub fn describe(seen: &[Stalls], steal: Option<Duration>) -> String {
    let per_cpu: Vec<String> = seen
        .iter()
        .map(|s| {
            format!(
                "CPU {} {} stall(s) over {} ms in {:.1} s ({:.1} ms lost, longest gap {:.2} ms)",
                s.cpu,
                s.gaps,
                STALL.as_millis(),
                s.span.as_secs_f64(),
                s.lost.as_secs_f64() * 1e3,
                s.longest.as_secs_f64() * 1e3
            )
        })
        .collect();
    let steal = match steal {
        Some(d) => format!("; steal time in /proc/stat meanwhile: {} ms", d.as_millis()),
        None => String::new(),
    };
    format!(
        "# stalls: a thread spinning on each CPU before the rounds saw {}{steal}",
        per_cpu.join("; ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_probe_accounts_for_its_gaps_within_its_span() {
        let cpus = super::super::allowed_cpus();
        let seen = probe(&cpus[..cpus.len().min(1)], Duration::from_millis(50));
        assert_eq!(
            seen.len(),
            cpus.len().min(1),
            "one result per CPU probed: {seen:?}"
        );
        for s in &seen {
            assert!(
                s.span >= Duration::from_millis(50),
                "spun the whole span: {s:?}"
            );
            assert!(s.lost <= s.span, "stalls cannot outlast the span: {s:?}");
            assert!(s.longest <= s.span, "no gap longer than the span: {s:?}");
            assert!(
                s.gaps == 0 || s.longest > STALL,
                "a stall is longer than {STALL:?}: {s:?}"
            );
        }
        let line = describe(&seen, Some(Duration::from_millis(3)));
        assert!(
            line.contains("steal time in /proc/stat meanwhile: 3 ms"),
            "{line}"
        );
    }
}
