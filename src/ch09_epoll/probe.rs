//! Watching a process or thread from `/proc`: how much CPU it used, and how
//! much of the time it *wanted* the CPU (running, or runnable and waiting
//! for a core). The second is what tells a busy loop from a sleeping
//! server on a loaded machine: a spinning loop is runnable all the time
//! however little CPU the scheduler gives it.

use std::time::{Duration, Instant};

/// `/proc/PID/task/TID/schedstat`: nanoseconds on a CPU and nanoseconds
/// runnable but waiting for one, for one thread (see
/// [`sched-stats`](https://docs.kernel.org/scheduler/sched-stats.html)).
pub fn schedstat(path: &str) -> Option<(u64, u64)> {
    let text = std::fs::read_to_string(path).ok()?;
    let mut words = text.split_whitespace().map(|w| w.parse::<u64>().ok());
    Some((words.next()??, words.next()??))
}

/// Running + waiting nanoseconds summed over every thread of `pid`.
pub fn runnable_ns(pid: i32) -> Option<u64> {
    let dir = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut total = 0;
    for entry in dir.flatten() {
        let path = entry.path().join("schedstat");
        if let Some((run, wait)) = schedstat(&path.to_string_lossy()) {
            total += run + wait;
        }
    }
    Some(total)
}

/// CPU time (user + system) of every thread of `pid`, from `utime` and
/// `stime` in `/proc/PID/stat`, in seconds.
pub fn cpu_secs(pid: i32) -> Option<f64> {
    let (ticks, _) = crate::ch07_threads::proc::cpu_ticks(pid).ok()?;
    Some(ticks as f64 / crate::ch07_threads::proc::ticks_per_second() as f64)
}

/// Over `window`, the share of the time `pid` was runnable (1.0 = it
/// wanted a CPU the whole time, a busy loop; near 0 = it slept) and the
/// CPU seconds it used.
pub fn busy_share(pid: i32, window: Duration) -> Option<(f64, f64)> {
    let r0 = runnable_ns(pid)?;
    let c0 = cpu_secs(pid)?;
    let t0 = Instant::now();
    std::thread::sleep(window); // sampling over a window, not synchronising
    let r1 = runnable_ns(pid)?;
    let c1 = cpu_secs(pid)?;
    let wall = t0.elapsed().as_nanos() as f64;
    Some(((r1.saturating_sub(r0)) as f64 / wall, c1 - c0))
}
