//! `make bench`: rank the workbook's server designs, side by side, against
//! a tokio peer. See chapters/07-threads.md, "The benchmark".

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::sched::{CpuSet, sched_getaffinity, sched_setaffinity};
use nix::unistd::Pid;

use sockbook::ch07_threads::load::{self, LoadConfig, LoadResult};
use sockbook::ch07_threads::spawn::ServerChild;
use sockbook::ch07_threads::{Limits, Live, Trigger, proc, server};
use sockbook::kit::args::{Args, usage_error};
use sockbook::kit::{Call, Error, Result, addr};

const USAGE: &str = "\
ch07_threads_bench — the benchmark of chapter 7: every server design under the same load

usage:
  ch07_threads_bench          a 1-second run of the load generator against an
                              in-process thread-per-connection server
  ch07_threads_bench run [--secs T] [--conns N] [--size S] [--wide N] [--idle K]
                         [--scenarios busy,wide,idle] [--designs a,b,...]
                         [--bin-dir DIR] [--tokio PATH] [--out DIR]
        start each design as a child process (pinned to one CPU), load it
        from this process (pinned to another), print a table per scenario
        and write CSV to --out (default target/bench/). Scenarios: busy = N
        connections (default 64); wide = --wide connections (default 1000);
        idle = N busy beside K idle ones (default 5000). Each runs T seconds
        (default 3) of S-byte messages (default 512). Designs: iterative,
        thread, pool, queue, fork, reuseport, select, poll, tokio (default:
        all); a design whose server does not start is skipped, and says why.
  ch07_threads_bench load --addr A [--conns N] [--size S] [--secs T] [--idle K]
        just the load generator, against a server you started yourself
";

const VALUES: &[&str] = &[
    "--secs",
    "--conns",
    "--size",
    "--wide",
    "--idle",
    "--scenarios",
    "--designs",
    "--bin-dir",
    "--tokio",
    "--out",
    "--addr",
];

fn main() {
    let args = Args::from_env(USAGE, VALUES);
    if let Some(bad) = args.unknown_options(VALUES).first() {
        usage_error(USAGE, &format!("unknown option {bad}"));
    }
    sockbook::kit::main_with(|| match args.command.as_deref() {
        None => smoke(),
        Some("run") => run(&args),
        Some("load") => load_only(&args),
        Some(other) => usage_error(USAGE, &format!("unknown subcommand {other:?}")),
    });
}

/// Print one result line.
fn describe(r: &LoadResult) -> String {
    format!(
        "{} round trips in {:.2} s = {:.0}/s; p50 {} us, p99 {} us; errors {}; starved {}; idle held {}",
        r.round_trips,
        r.elapsed.as_secs_f64(),
        r.rate(),
        r.percentile_us(50.0).map_or("-".into(), |v| v.to_string()),
        r.percentile_us(99.0).map_or("-".into(), |v| v.to_string()),
        r.errors(),
        r.starved,
        r.idle_held
    )
}

/// No arguments: the load generator against an in-process thread server.
fn smoke() -> Result<()> {
    sockbook::kit::narrate::set_quiet(true);
    let (listener, at) =
        sockbook::kit::net::tcp_listen("server", &addr::parse("127.0.0.1:0")?, 128)?;
    let stop = Arc::new(Trigger::new()?);
    let live = Live::new();
    let (s, l) = (Arc::clone(&stop), Arc::clone(&live));
    let server = std::thread::spawn(move || {
        sockbook::ch07_threads::thread::serve(listener, s.fd(), &Limits::default(), &l)
    });
    let mut cfg = LoadConfig::new(at);
    cfg.conns = 8;
    cfg.duration = Duration::from_secs(1);
    println!(
        "load generator: {} connections x {}-byte messages for {:?} against an in-process thread-per-connection server on {}",
        cfg.conns, cfg.size, cfg.duration, cfg.addr
    );
    let r = load::run(&cfg)?;
    println!("{}", describe(&r));
    stop.fire();
    server
        .join()
        .map_err(|_| Error::msg("server thread panicked"))??;
    println!("(the real benchmark: `make bench`, or `ch07_threads_bench run --help`)");
    Ok(())
}

fn load_only(args: &Args) -> Result<()> {
    let at = addr::parse(
        args.value("--addr")
            .ok_or_else(|| Error::msg("load needs --addr IP:PORT"))?,
    )?;
    server::raise_fd_limit()?;
    let mut cfg = LoadConfig::new(at);
    cfg.conns = args.count("--conns", 64)? as usize;
    cfg.size = args.count("--size", 512)? as usize;
    cfg.duration = Duration::from_secs(args.count("--secs", 3)?);
    cfg.idle = args.count("--idle", 0)? as usize;
    println!("{}", describe(&load::run(&cfg)?));
    Ok(())
}

/// One design: how to start its server.
struct Design {
    name: &'static str,
    program: PathBuf,
    args: Vec<String>,
}

fn designs(bin_dir: &Path, tokio: &Path) -> Vec<Design> {
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
    let words = |w: &[&str]| -> Vec<String> { w.iter().map(|s| s.to_string()).collect() };
    vec![
        Design {
            name: "iterative",
            program: bin_dir.join("ch02_tcp"),
            args: words(&["server", "--quiet", "--addr", "127.0.0.1:0"]),
        },
        Design {
            name: "thread",
            program: bin_dir.join("ch07_threads"),
            args: ch07("thread", &[]),
        },
        Design {
            name: "pool",
            program: bin_dir.join("ch07_threads"),
            args: ch07("pool", &["--workers", "128"]),
        },
        Design {
            name: "queue",
            program: bin_dir.join("ch07_threads"),
            args: ch07("queue", &["--workers", "128"]),
        },
        Design {
            name: "fork",
            program: bin_dir.join("ch07_threads"),
            args: ch07("fork", &[]),
        },
        Design {
            name: "reuseport",
            program: bin_dir.join("ch07_threads"),
            args: ch07("reuseport", &["--workers", "4"]),
        },
        Design {
            name: "select",
            program: bin_dir.join("ch04_select"),
            args: words(&["server", "--echo", "--addr", "127.0.0.1:0"]),
        },
        Design {
            name: "poll",
            program: bin_dir.join("ch04_select"),
            args: words(&["server", "--echo", "--poll", "--addr", "127.0.0.1:0"]),
        },
        Design {
            name: "tokio",
            program: tokio.to_path_buf(),
            args: words(&["--addr", "127.0.0.1:0"]),
        },
    ]
}

/// One row of the table.
struct Row {
    scenario: String,
    design: &'static str,
    conns: usize,
    idle: usize,
    /// `None` when the design was skipped; the reason is in `note`.
    result: Option<LoadResult>,
    cpu_secs: f64,
    /// Server context switches (all its threads and children) per round trip.
    switches_per_rt: Option<f64>,
    /// The load generator's own CPU use, a share of one CPU: near 1.0, the
    /// generator and not the server is the limit.
    gen_cpu: f64,
    /// The part of `gen_cpu` spent in user space (the rest is the kernel's
    /// work for the generator's reads, writes and epoll_waits).
    gen_user: f64,
    note: String,
}

impl Row {
    fn cpu_per_100k(&self) -> Option<f64> {
        let r = self.result.as_ref()?;
        (r.round_trips > 0).then(|| self.cpu_secs * 100_000.0 / r.round_trips as f64)
    }
}

/// CPUs this process may run on.
fn allowed_cpus() -> Vec<usize> {
    let Ok(set) = sched_getaffinity(Pid::from_raw(0)) else {
        return Vec::new();
    };
    (0..CpuSet::count())
        .filter(|&i| set.is_set(i).unwrap_or(false))
        .collect()
}

fn pin_self(cpu: usize) -> Result<()> {
    let mut set = CpuSet::new();
    set.set(cpu).call(format!("CPU_SET({cpu})"))?;
    sched_setaffinity(Pid::from_raw(0), &set).call(format!("sched_setaffinity(0, {{{cpu}}})"))
}

/// Wait until the server has no children left (fork design), at most 3 s,
/// so their CPU time is in its `cutime`/`cstime`.
fn settle(pid: i32) {
    let deadline = Instant::now() + Duration::from_secs(3);
    while !proc::children(pid).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// This process's user-space CPU time so far (`utime`, field 14 of
/// `/proc/self/stat`), in clock ticks.
fn user_ticks() -> u64 {
    proc::stat_fields(0)
        .ok()
        .and_then(|f| f.get(11).and_then(|s| s.parse().ok()))
        .unwrap_or(0)
}

fn measure(design: &Design, scenario: &str, cfg: &LoadConfig, server_cpu: Option<usize>) -> Row {
    let mut row = Row {
        scenario: scenario.to_string(),
        design: design.name,
        conns: cfg.conns,
        idle: cfg.idle,
        result: None,
        cpu_secs: 0.0,
        switches_per_rt: None,
        gen_cpu: 0.0,
        gen_user: 0.0,
        note: String::new(),
    };
    let program = design.program.to_string_lossy().to_string();
    if !design.program.exists() {
        row.note = format!("skipped: {program} not built");
        return row;
    }
    let server =
        match ServerChild::start(&program, &design.args, server_cpu, Duration::from_secs(5)) {
            Ok(s) => s,
            Err(e) => {
                row.note = format!("skipped: server did not start: {e}");
                return row;
            }
        };
    let mut cfg = cfg.clone();
    cfg.addr = server.addr;
    let hz = proc::ticks_per_second() as f64;
    let before = proc::cpu_ticks(server.pid).unwrap_or((0, 0));
    let gen_before = proc::cpu_ticks(0).unwrap_or((0, 0));
    let user_before = user_ticks();
    let switches = |pid: i32| -> u64 {
        proc::context_switches(pid)
            + proc::children(pid)
                .iter()
                .map(|c| proc::context_switches(c.pid))
                .sum::<u64>()
    };
    // Threads and children that come and go take their counts with them:
    // the end sample is taken while every connection is still open.
    let mut switch_samples = (switches(server.pid), 0u64);
    let started = Instant::now();
    let mut elapsed = Duration::ZERO;
    let result = load::run_observed(&cfg, || {
        switch_samples.1 = switches(server.pid);
        elapsed = started.elapsed();
    });
    let gen_after = proc::cpu_ticks(0).unwrap_or(gen_before);
    let secs = elapsed.as_secs_f64().max(1e-9);
    row.gen_cpu = (gen_after.0.saturating_sub(gen_before.0)) as f64 / hz / secs;
    row.gen_user = user_ticks().saturating_sub(user_before) as f64 / hz / secs;
    settle(server.pid);
    let after = proc::cpu_ticks(server.pid).unwrap_or(before);
    row.cpu_secs = ((after.0 + after.1).saturating_sub(before.0 + before.1)) as f64 / hz;
    let alive = proc::stat_fields(server.pid)
        .map(|f| f.first().map(String::as_str) != Some("Z"))
        .unwrap_or(false);
    match server.stop(Duration::from_secs(5)) {
        Ok((status, _)) if !status.success() => {
            row.note = format!("server exit: {status}");
        }
        Ok(_) => {}
        Err(e) => row.note = format!("stop: {e}"),
    }
    if !alive {
        row.note = format!("server died during the run; {}", row.note);
    }
    if let Ok(r) = &result
        && r.round_trips > 0
    {
        let n = switch_samples.1.saturating_sub(switch_samples.0);
        row.switches_per_rt = Some(n as f64 / r.round_trips as f64);
    }
    match result {
        Ok(r) => row.result = Some(r),
        Err(e) => row.note = format!("load failed: {e}"),
    }
    row
}

fn fmt_us(v: Option<u32>) -> String {
    match v {
        None => "-".into(),
        Some(us) if us >= 10_000 => format!("{:.0} ms", us as f64 / 1000.0),
        Some(us) if us >= 1000 => format!("{:.1} ms", us as f64 / 1000.0),
        Some(us) => format!("{us} us"),
    }
}

/// The scenario's table, in Markdown (readable as is in a terminal).
fn table(rows: &[Row]) -> String {
    let tokio = rows
        .iter()
        .find(|r| r.design == "tokio")
        .and_then(|r| r.result.as_ref())
        .map(LoadResult::rate)
        .filter(|&rate| rate > 0.0);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| design | round trips/s | x tokio | p50 | p99 | server CPU s / 100k | switches / rt | errors | starved | gen CPU | note |"
    );
    let _ = writeln!(
        out,
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
    );
    for row in rows {
        match &row.result {
            None => {
                let _ = writeln!(
                    out,
                    "| {} | - | - | - | - | - | - | - | - | - | {} |",
                    row.design, row.note
                );
            }
            Some(r) => {
                let ratio = tokio.map_or("n/a".to_string(), |t| format!("{:.2}", r.rate() / t));
                let cpu = row
                    .cpu_per_100k()
                    .map_or("-".to_string(), |c| format!("{c:.2}"));
                let _ = writeln!(
                    out,
                    "| {} | {:.0} | {} | {} | {} | {} | {} | {} | {} | {:.0}% ({:.0}% user) | {} |",
                    row.design,
                    r.rate(),
                    ratio,
                    fmt_us(r.percentile_us(50.0)),
                    fmt_us(r.percentile_us(99.0)),
                    cpu,
                    row.switches_per_rt
                        .map_or("-".to_string(), |s| format!("{s:.2}")),
                    r.errors(),
                    r.starved,
                    row.gen_cpu * 100.0,
                    row.gen_user * 100.0,
                    row.note
                );
            }
        }
    }
    out
}

fn csv(rows: &[Row], secs: u64, size: usize) -> String {
    let mut out = String::from(
        "scenario,design,conns,idle,size,secs,round_trips,rate_per_s,ratio_to_tokio,p50_us,p99_us,server_cpu_s,cpu_s_per_100k,switches_per_rt,gen_cpu,gen_user,connect_failed,broken,starved,note\n",
    );
    for scenario in unique(rows.iter().map(|r| r.scenario.as_str())) {
        let group: Vec<&Row> = rows.iter().filter(|r| r.scenario == scenario).collect();
        let tokio = group
            .iter()
            .find(|r| r.design == "tokio")
            .and_then(|r| r.result.as_ref())
            .map(LoadResult::rate)
            .filter(|&t| t > 0.0);
        for row in group {
            let note = row.note.replace([',', '\n'], ";");
            match &row.result {
                None => {
                    let _ = writeln!(
                        out,
                        "{},{},{},{},{size},{secs},,,,,,,,,,,,,,{note}",
                        row.scenario, row.design, row.conns, row.idle
                    );
                }
                Some(r) => {
                    let _ = writeln!(
                        out,
                        "{},{},{},{},{size},{secs},{},{:.1},{},{},{},{:.3},{},{},{:.3},{:.3},{},{},{},{note}",
                        row.scenario,
                        row.design,
                        row.conns,
                        row.idle,
                        r.round_trips,
                        r.rate(),
                        tokio.map_or(String::new(), |t| format!("{:.3}", r.rate() / t)),
                        r.percentile_us(50.0)
                            .map_or(String::new(), |v| v.to_string()),
                        r.percentile_us(99.0)
                            .map_or(String::new(), |v| v.to_string()),
                        row.cpu_secs,
                        row.cpu_per_100k()
                            .map_or(String::new(), |c| format!("{c:.3}")),
                        row.switches_per_rt
                            .map_or(String::new(), |s| format!("{s:.3}")),
                        row.gen_cpu,
                        row.gen_user,
                        r.connect_failed,
                        r.broken,
                        r.starved
                    );
                }
            }
        }
    }
    out
}

fn unique<'a>(items: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    let mut out: Vec<&str> = Vec::new();
    for i in items {
        if !out.contains(&i) {
            out.push(i);
        }
    }
    out
}

/// `YYYY-MM-DD HH:MM:SS` UTC, from the system clock (no date crate).
fn utc_now() -> (String, String) {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let (h, mi, s) = (rem / 3600, rem / 60 % 60, rem % 60);
    (
        format!("{y:04}-{m:02}-{d:02} {h:02}:{mi:02}:{s:02} UTC"),
        format!("{y:04}{m:02}{d:02}-{h:02}{mi:02}{s:02}"),
    )
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

fn run(args: &Args) -> Result<()> {
    let secs = args.count("--secs", 3)?;
    let size = args.count("--size", 512)? as usize;
    let busy = args.count("--conns", 64)? as usize;
    let wide = args.count("--wide", 1000)? as usize;
    let idle = args.count("--idle", 5000)? as usize;
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let bin_dir = args
        .value("--bin-dir")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target/release"));
    let tokio = args
        .value("--tokio")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target/bench/tokio-build/release/tokio-echo"));
    let out_dir = args
        .value("--out")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target/bench"));
    let wanted: Option<Vec<&str>> = args.value("--designs").map(|d| d.split(',').collect());
    let scenarios: Vec<&str> = args
        .value("--scenarios")
        .unwrap_or("busy,wide,idle")
        .split(',')
        .collect();

    let (soft, hard) = server::raise_fd_limit()?;
    let (date, stamp) = utc_now();
    println!("# ch07 benchmark, {date}");
    println!("# machine: {}", machine());
    println!("# RLIMIT_NOFILE soft {soft} -> {hard} (inherited by every server)");
    let cpus = allowed_cpus();
    let server_cpu = if cpus.len() >= 2 {
        pin_self(cpus[0])?;
        println!(
            "# load generator pinned to CPU {}, servers to CPU {}",
            cpus[0], cpus[1]
        );
        Some(cpus[1])
    } else {
        println!("# fewer than 2 CPUs allowed: nothing pinned, generator and server share");
        None
    };
    println!("# {secs} s per design and scenario, {size}-byte messages");

    let all = designs(&bin_dir, &tokio);
    let chosen: Vec<&Design> = all
        .iter()
        .filter(|d| wanted.as_ref().is_none_or(|w| w.contains(&d.name)))
        .collect();
    let mut rows = Vec::new();
    for scenario in &scenarios {
        let mut cfg = LoadConfig::new(addr::parse("127.0.0.1:0")?);
        cfg.size = size;
        cfg.duration = Duration::from_secs(secs);
        cfg.connect_timeout = Duration::from_secs(3);
        let title = match *scenario {
            "busy" => {
                cfg.conns = busy;
                format!("{busy} busy connections")
            }
            "wide" => {
                cfg.conns = wide;
                format!("{wide} busy connections")
            }
            "idle" => {
                cfg.conns = busy;
                cfg.idle = idle;
                if (idle + busy + 64) as u64 > hard {
                    println!(
                        "\n## {busy} busy + {idle} idle: skipped, RLIMIT_NOFILE hard limit {hard} is too low"
                    );
                    continue;
                }
                format!("{busy} busy connections beside {idle} idle ones")
            }
            other => {
                return Err(Error::msg(format!(
                    "unknown scenario {other:?}: busy, wide or idle"
                )));
            }
        };
        println!("\n## {title}\n");
        if cfg.conns + cfg.idle >= libc::FD_SETSIZE {
            println!(
                "(select: fd_set holds fds 0..{} only (FD_SETSIZE); a server with more connections than that cannot select on them)\n",
                libc::FD_SETSIZE
            );
        }
        let mut group = Vec::new();
        for design in &chosen {
            eprint!("{scenario}/{}... ", design.name);
            let row = measure(design, scenario, &cfg, server_cpu);
            eprintln!(
                "{}",
                row.result
                    .as_ref()
                    .map_or(row.note.clone(), |r| format!("{:.0}/s", r.rate()))
            );
            group.push(row);
        }
        print!("{}", table(&group));
        rows.extend(group);
    }

    std::fs::create_dir_all(&out_dir)
        .map_err(|e| Error::msg(format!("create {}: {e}", out_dir.display())))?;
    let text = csv(&rows, secs, size);
    let file = out_dir.join(format!("ch07-{stamp}.csv"));
    for path in [&file, &out_dir.join("latest.csv")] {
        std::fs::write(path, &text)
            .map_err(|e| Error::msg(format!("write {}: {e}", path.display())))?;
    }
    println!("\nCSV: {}", file.display());
    Ok(())
}
