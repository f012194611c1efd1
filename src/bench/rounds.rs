//! Alternating rounds: every contender of a comparison is measured once per
//! round, each time in a fresh server process, after a short warm-up, in an
//! order that rotates from round to round (A B C, B C A, C A B, …). A round
//! in which something else used a noticeable share of the CPUs is measured
//! again once, and marked if it is still disturbed.

use std::time::{Duration, Instant};

use nix::sys::socket::SockaddrStorage;

use crate::ch07_threads::proc;
use crate::ch07_threads::spawn::ServerChild;
use crate::kit::{Error, Result};

/// A server under measurement, started afresh for every round.
pub trait Contender {
    /// Its name in the table (`poll`, `tokio`, `nginx`…).
    fn name(&self) -> &str;
    /// Start it (pinned to `cpu` if given) and return once it listens.
    fn start(&self, cpu: Option<usize>) -> Result<Running>;
}

/// A started server: where it listens, whose CPU time to count, how to stop.
pub struct Running {
    pub addr: SockaddrStorage,
    /// The process whose CPU time (with its reaped children's) is the
    /// server's.
    pub pid: i32,
    /// Stop it; returns a note for the table ("" when all went well).
    pub stop: Box<dyn FnOnce() -> String>,
}

/// One of the workbook's server binaries (or any program that follows its
/// convention: `listening on IP:PORT` first, SIGTERM stops it).
pub struct Program {
    pub name: String,
    pub program: std::path::PathBuf,
    pub args: Vec<String>,
}

impl Contender for Program {
    fn name(&self) -> &str {
        &self.name
    }

    fn start(&self, cpu: Option<usize>) -> Result<Running> {
        if !self.program.exists() {
            return Err(Error::msg(format!(
                "{} not built",
                self.program.to_string_lossy()
            )));
        }
        let server = ServerChild::start(
            &self.program.to_string_lossy(),
            &self.args,
            cpu,
            Duration::from_secs(5),
        )?;
        let (addr, pid) = (server.addr, server.pid);
        Ok(Running {
            addr,
            pid,
            stop: Box::new(move || match server.stop(Duration::from_secs(5)) {
                Ok((status, _)) if !status.success() => format!("server exit: {status}"),
                Ok(_) => String::new(),
                Err(e) => format!("stop: {e}"),
            }),
        })
    }
}

/// Wait until the server has no children left (a forking design), at most
/// 3 s, so their CPU time is in its `cutime`/`cstime`. A pid of 0 or less
/// names no process (ppid 0 is the kernel's: init and kthreadd), so there is
/// nothing to wait for.
fn settle(pid: i32) {
    if pid <= 0 {
        return;
    }
    let deadline = Instant::now() + Duration::from_secs(3);
    while !proc::children(pid).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// What a load run measured.
#[derive(Debug, Clone, Default)]
pub struct Measured {
    /// Operations completed (round trips, requests, datagrams).
    pub ops: u64,
    pub elapsed: Duration,
    pub p50_us: Option<u32>,
    pub p99_us: Option<u32>,
    pub errors: usize,
    pub note: String,
}

impl Measured {
    pub fn rate(&self) -> f64 {
        let s = self.elapsed.as_secs_f64();
        if s > 0.0 { self.ops as f64 / s } else { 0.0 }
    }
}

/// A load to put on a server: run for `secs`, report what happened. It
/// runs in this process (pinned to its own CPU).
pub trait Workload {
    /// The operation counted: "round trips", "requests".
    fn unit(&self) -> &str;
    fn run(&self, addr: &SockaddrStorage, duration: Duration) -> Result<Measured>;
}

/// One measurement of one contender in one round.
#[derive(Debug, Clone)]
pub struct Sample {
    pub contender: String,
    pub round: usize,
    /// `None` when the run failed; the reason is in `note`.
    pub measured: Option<Measured>,
    /// The server's CPU time during the measured part, seconds.
    pub server_cpu: f64,
    /// CPU used by anything else on the machine during the measurement,
    /// in CPUs (0.25 = a quarter of one CPU).
    pub other_cpu: f64,
    /// Still disturbed after one retry.
    pub disturbed: bool,
    pub note: String,
}

impl Sample {
    /// Operations per second.
    pub fn rate(&self) -> Option<f64> {
        self.measured
            .as_ref()
            .map(Measured::rate)
            .filter(|r| *r > 0.0)
    }

    /// Operations per server CPU-second: the efficiency of the server.
    pub fn per_cpu_second(&self) -> Option<f64> {
        let m = self.measured.as_ref()?;
        (self.server_cpu > 0.0 && m.ops > 0).then(|| m.ops as f64 / self.server_cpu)
    }

    pub fn p99_us(&self) -> Option<f64> {
        self.measured.as_ref()?.p99_us.map(f64::from)
    }
}

/// How rounds run.
#[derive(Debug, Clone)]
pub struct RoundPlan {
    pub rounds: usize,
    pub warmup: Duration,
    pub measure: Duration,
    /// CPU for the servers; the load generator is pinned elsewhere.
    pub server_cpu: Option<usize>,
    /// A measurement during which other work used more than this many
    /// CPUs is redone once, then marked.
    pub max_other_cpu: f64,
}

/// The numbers of the first line of `/proc/stat` (`cpu  user nice system
/// idle iowait irq softirq steal …`, in clock ticks); empty when it cannot
/// be read.
pub fn machine_cpu_line() -> Vec<u64> {
    let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = text.lines().next() else {
        return Vec::new();
    };
    line.split_whitespace()
        .skip(1)
        .filter_map(|s| s.parse().ok())
        .collect()
}

/// Busy and total jiffies of the whole machine, from the first line of
/// `/proc/stat` (`cpu  user nice system idle iowait irq softirq steal …`).
pub fn machine_ticks() -> (u64, u64) {
    let v = machine_cpu_line();
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    (total.saturating_sub(idle), total)
}

fn process_ticks(pid: i32) -> u64 {
    proc::cpu_ticks(pid).map(|(a, b)| a + b).unwrap_or(0)
}

/// Measure `who` once: start, warm up, measure, stop.
pub fn measure_once(
    who: &dyn Contender,
    load: &dyn Workload,
    plan: &RoundPlan,
    round: usize,
) -> Sample {
    let mut sample = Sample {
        contender: who.name().to_string(),
        round,
        measured: None,
        server_cpu: 0.0,
        other_cpu: 0.0,
        disturbed: false,
        note: String::new(),
    };
    let running = match who.start(plan.server_cpu) {
        Ok(r) => r,
        Err(e) => {
            sample.note = format!("did not start: {e}");
            return sample;
        }
    };
    if !plan.warmup.is_zero()
        && let Err(e) = load.run(&running.addr, plan.warmup)
    {
        sample.note = format!("warm-up failed: {e}");
    }
    let hz = proc::ticks_per_second() as f64;
    let server_before = process_ticks(running.pid);
    let me_before = process_ticks(0);
    let (busy_before, _) = machine_ticks();
    let started = Instant::now();
    let result = load.run(&running.addr, plan.measure);
    let wall = started.elapsed().as_secs_f64().max(1e-6);
    let (busy_after, _) = machine_ticks();
    let me_after = process_ticks(0);
    // A forking server's children count once it has reaped them.
    settle(running.pid);
    let server_after = process_ticks(running.pid);
    let stop_note = (running.stop)();
    sample.server_cpu = server_after.saturating_sub(server_before) as f64 / hz;
    let busy = busy_after.saturating_sub(busy_before) as f64 / hz;
    let ours = sample.server_cpu + me_after.saturating_sub(me_before) as f64 / hz;
    sample.other_cpu = ((busy - ours) / wall).max(0.0);
    match result {
        Ok(m) => {
            sample.note = m.note.clone();
            sample.measured = Some(m);
        }
        Err(e) => sample.note = format!("load failed: {e}"),
    }
    if !stop_note.is_empty() {
        sample.note = if sample.note.is_empty() {
            stop_note
        } else {
            format!("{}; {stop_note}", sample.note)
        };
    }
    sample
}

/// Run `rounds` alternating rounds over `contenders`; returns every sample.
/// `progress` is told about each one as it is taken.
pub fn alternate(
    contenders: &[&dyn Contender],
    load: &dyn Workload,
    plan: &RoundPlan,
    mut progress: impl FnMut(&Sample),
) -> Vec<Sample> {
    let mut samples = Vec::new();
    let n = contenders.len();
    for round in 0..plan.rounds {
        for k in 0..n {
            let who = contenders[(round + k) % n];
            let mut sample = measure_once(who, load, plan, round);
            if sample.other_cpu > plan.max_other_cpu {
                let again = measure_once(who, load, plan, round);
                sample = again;
                sample.disturbed = sample.other_cpu > plan.max_other_cpu;
            }
            progress(&sample);
            samples.push(sample);
        }
    }
    samples
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    /// A contender that is not a server: its "load" reports a fixed rate,
    /// so the test can check the order of rounds and the pairing.
    struct Fake(&'static str);

    impl Contender for Fake {
        fn name(&self) -> &str {
            self.0
        }
        fn start(&self, _cpu: Option<usize>) -> Result<Running> {
            Ok(Running {
                addr: crate::kit::addr::parse("127.0.0.1:1")?,
                pid: 0,
                stop: Box::new(String::new),
            })
        }
    }

    struct Log(RefCell<Vec<String>>);

    impl Workload for Log {
        fn unit(&self) -> &str {
            "ops"
        }
        fn run(&self, _addr: &SockaddrStorage, duration: Duration) -> Result<Measured> {
            self.0.borrow_mut().push(format!("{duration:?}"));
            Ok(Measured {
                ops: 100,
                elapsed: Duration::from_secs(1),
                ..Measured::default()
            })
        }
    }

    #[test]
    fn rounds_rotate_the_order_and_warm_up_each_contender() {
        let (a, b, c) = (Fake("a"), Fake("b"), Fake("c"));
        let who: Vec<&dyn Contender> = vec![&a, &b, &c];
        let plan = RoundPlan {
            rounds: 3,
            warmup: Duration::from_millis(1),
            measure: Duration::from_millis(2),
            server_cpu: None,
            max_other_cpu: f64::INFINITY,
        };
        let log = Log(RefCell::new(Vec::new()));
        let samples = alternate(&who, &log, &plan, |_| {});
        let order: Vec<&str> = samples.iter().map(|s| s.contender.as_str()).collect();
        assert_eq!(
            order,
            ["a", "b", "c", "b", "c", "a", "c", "a", "b"],
            "each round must start with the next contender"
        );
        assert_eq!(
            log.0.borrow().len(),
            18,
            "every measurement is preceded by a warm-up run: {:?}",
            log.0.borrow()
        );
        let rows = super::super::report::rows(&samples, "a", &["a".into(), "b".into()]);
        let b_ratio = rows[1].rate_ratio.expect("b has a ratio to a");
        assert_eq!((b_ratio.median, b_ratio.rounds), (1.0, 3));
        assert!(rows[0].rate_ratio.is_none(), "the baseline has no ratio");
    }
}
