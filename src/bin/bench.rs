//! `make bench`: every chapter's servers side by side with a real peer
//! (tokio), in alternating rounds with a fresh process each, reported as
//! median ratios with a range. The harness is `sockbook::bench`.

use std::path::PathBuf;
use std::time::Duration;

use sockbook::bench::{self, Options};
use sockbook::ch07_threads::server;
use sockbook::kit::args::{Args, usage_error};
use sockbook::kit::{Error, Result, addr};

const USAGE: &str = "\
bench — the workbook's benchmark: servers side by side with a real peer

usage:
  bench           a 1-second smoke run of the load generator against chapter
                  7's thread-per-connection server (no peer, no ratios)
  bench run [--rounds N] [--secs T] [--warmup T] [--chapters ch07,...]
            [--scenarios busy,idle,wide] [--designs a,b,...]
            [--bin-dir DIR] [--tokio PATH] [--out DIR] [--max-other-cpu F]
        every chosen comparison in N alternating rounds (default 5): each
        round starts every contender as a fresh process (pinned to one CPU,
        the load generator to another), warms it up (default 0.5 s) and
        measures it (default 1.5 s). Prints, per contender, the median of
        its per-round ratios to the baseline with their range (min-max up
        to 8 rounds; from 9 on the k-th smallest to k-th largest, still
        at least 93.75 % sure to hold the true median), for
        operations/s, operations per server CPU-second and p99 latency.
        A measurement during which other work used more than F CPUs
        (default 0.25) is redone once, then marked. Every sample goes to
        --out/latest.csv (default target/bench/).
  bench load --addr A [--conns N] [--size S] [--secs T] [--idle K]
        just the echo load generator, against a server you started yourself
";

const VALUES: &[&str] = &[
    "--rounds",
    "--secs",
    "--warmup",
    "--chapters",
    "--scenarios",
    "--designs",
    "--bin-dir",
    "--tokio",
    "--out",
    "--max-other-cpu",
    "--addr",
    "--conns",
    "--size",
    "--idle",
];

fn main() {
    let args = Args::from_env(USAGE, VALUES);
    if let Some(bad) = args.unknown_options(VALUES).first() {
        usage_error(USAGE, &format!("unknown option {bad}"));
    }
    sockbook::kit::main_with(|| match args.command.as_deref() {
        None => smoke(),
        Some("run") => bench::run(&options(&args)?),
        Some("load") => load_only(&args),
        Some(other) => usage_error(USAGE, &format!("unknown subcommand {other:?}")),
    });
}

fn list(args: &Args, name: &str) -> Vec<String> {
    args.value(name)
        .map(|v| v.split(',').map(str::to_string).collect())
        .unwrap_or_default()
}

fn seconds(args: &Args, name: &str, default: f64) -> Result<f64> {
    match args.value(name) {
        None => Ok(default),
        Some(v) => v
            .parse::<f64>()
            .ok()
            .filter(|s| *s >= 0.0 && s.is_finite())
            .ok_or_else(|| Error::msg(format!("{name} needs seconds, got {v:?}"))),
    }
}

fn options(args: &Args) -> Result<Options> {
    let mut o = Options::new(&PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    o.rounds = args.count("--rounds", o.rounds as u64)? as usize;
    o.secs = seconds(args, "--secs", o.secs)?;
    o.warmup = seconds(args, "--warmup", o.warmup)?;
    o.max_other_cpu = seconds(args, "--max-other-cpu", o.max_other_cpu)?;
    o.chapters = list(args, "--chapters");
    o.scenarios = list(args, "--scenarios");
    o.designs = list(args, "--designs");
    if let Some(d) = args.value("--bin-dir") {
        o.bin_dir = d.into();
    }
    if let Some(t) = args.value("--tokio") {
        o.tokio = t.into();
    }
    if let Some(d) = args.value("--out") {
        o.out_dir = d.into();
    }
    Ok(o)
}

/// No arguments: the load generator against an in-process thread server.
fn smoke() -> Result<()> {
    use sockbook::ch07_threads::{Limits, Live, Trigger};
    use std::sync::Arc;
    sockbook::kit::narrate::set_quiet(true);
    let (listener, at) =
        sockbook::kit::net::tcp_listen("server", &addr::parse("127.0.0.1:0")?, 128)?;
    let stop = Arc::new(Trigger::new()?);
    let live = Live::new();
    let (s, l) = (Arc::clone(&stop), Arc::clone(&live));
    let srv = std::thread::spawn(move || {
        sockbook::ch07_threads::thread::serve(listener, s.fd(), &Limits::default(), &l)
    });
    let mut cfg = bench::load::LoadConfig::new(at);
    cfg.conns = 8;
    cfg.duration = Duration::from_secs(1);
    println!(
        "load generator: {} connections x {}-byte messages for {:?} against an in-process thread-per-connection server on {}",
        cfg.conns, cfg.size, cfg.duration, cfg.addr
    );
    let r = bench::load::run(&cfg)?;
    println!(
        "{} round trips in {:.2} s = {:.0}/s; p99 {} us; errors {}",
        r.round_trips,
        r.elapsed.as_secs_f64(),
        r.rate(),
        r.percentile_us(99.0).map_or("-".into(), |v| v.to_string()),
        r.errors()
    );
    stop.fire();
    srv.join()
        .map_err(|_| Error::msg("server thread panicked"))??;
    println!("(the real benchmark: `make bench`, or `bench run --help`)");
    Ok(())
}

fn load_only(args: &Args) -> Result<()> {
    let at = addr::parse(
        args.value("--addr")
            .ok_or_else(|| Error::msg("load needs --addr IP:PORT"))?,
    )?;
    server::raise_fd_limit()?;
    let mut cfg = bench::load::LoadConfig::new(at);
    cfg.conns = args.count("--conns", 64)? as usize;
    cfg.size = args.count("--size", 512)? as usize;
    cfg.duration = Duration::from_secs(args.count("--secs", 3)?);
    cfg.idle = args.count("--idle", 0)? as usize;
    let r = bench::load::run(&cfg)?;
    println!(
        "{} round trips in {:.2} s = {:.0}/s; p50 {} us, p99 {} us; errors {}; starved {}",
        r.round_trips,
        r.elapsed.as_secs_f64(),
        r.rate(),
        r.percentile_us(50.0).map_or("-".into(), |v| v.to_string()),
        r.percentile_us(99.0).map_or("-".into(), |v| v.to_string()),
        r.errors(),
        r.starved
    );
    Ok(())
}
