//! The `ch08_udp` binary: the demo, its parts, `relay`, `server`, `client`,
//! `send`, `receive`, `bench`.

use std::io::BufRead;
use std::time::Duration;

use super::demo;
use super::dgram::{self, udp_bind};
use super::echo::{EchoConfig, serve_echo};
use super::relay::{Impairment, report, run_relay};
use super::request::{Backoff, request};
use super::transfer::{self, TransferConfig};
use crate::kit::args::{Args, usage_error};
use crate::kit::stop::Stop;
use crate::kit::{Error, Result, addr, narrate};
use crate::say;

/// Where `server` listens and `client` sends without `--addr`.
pub const DEFAULT_ADDR: &str = "127.0.0.1:7008";

/// `--help`.
pub const USAGE: &str = "\
ch08_udp: datagrams, connected UDP, lost and reordered messages

USAGE:
    ch08_udp                        narrated demo on loopback, every part below
    ch08_udp demo PART              one part: boundaries trunc connected recverr
                                    loss sizes broadcast multicast veth batch echo
                                    reliable
    ch08_udp server [--addr A] [--buf N] [--batch N]
                                    UDP echo server (default 127.0.0.1:7008); reports
                                    datagrams longer than its N-byte buffer (MSG_TRUNC)
                                    instead of echoing them cut. --batch N: up to N
                                    datagrams per recvmmsg/sendmmsg (make bench
                                    compares the two). Ctrl-C stops it.
    ch08_udp client [--addr A] [--timeout MS] [--tries N]
                                    request/response client: each line of stdin is a
                                    request \"ID line\" (ids 1, 2, ...); prints each reply
                                    body; retries with exponential backoff
    ch08_udp relay --listen A --to B [--loss P] [--dup P] [--reorder P] [--delay MS]
                   [--seed N]       the lossy relay: datagrams to A go on to B (and
                                    replies back), dropped/duplicated/reordered with
                                    probability P (0..1), delayed MS each way; the same
                                    seed gives the same fates. Ctrl-C prints the counts.
    ch08_udp receive [--addr A] [--out FILE]
                                    receive one file by the chapter's sliding-window
                                    protocol (stdout without --out)
    ch08_udp send --to A FILE [--window N]
                                    send FILE to a receiver (or a relay in front of it)
    ch08_udp bench [--datagrams N] [--kib N]
                                    datagrams/s, one call each vs sendmmsg/recvmmsg;
                                    goodput at 0, 1, 5 % loss, window vs stop-and-wait

Try: ch08_udp server   then   nc -u 127.0.0.1 7008   (type lines: each comes back)
     ch08_udp relay --listen 127.0.0.1:7009 --to 127.0.0.1:7008 --loss 0.3 --seed 1
     ch08_udp client --addr 127.0.0.1:7009
Nothing here sends off this machine: use loopback addresses.
";

const VALUES: &[&str] = &[
    "--addr",
    "--buf",
    "--batch",
    "--timeout",
    "--tries",
    "--listen",
    "--to",
    "--loss",
    "--dup",
    "--reorder",
    "--delay",
    "--seed",
    "--out",
    "--window",
    "--datagrams",
    "--kib",
];

/// The binary's `main`.
pub fn main() {
    let args = Args::from_env(USAGE, VALUES);
    crate::kit::main_with(|| match args.command.as_deref() {
        None => {
            check(&args, &[], 0);
            demo::run()
        }
        Some("demo") => {
            check(&args, &[], 1);
            let Some(part) = args.positional.first() else {
                return demo::run();
            };
            match demo::PARTS.iter().find(|(name, _)| name == part) {
                Some((_, run)) => run(),
                None => usage_error(USAGE, &format!("no demo part {part:?}")),
            }
        }
        Some("server") => {
            check(&args, &["--addr", "--buf", "--batch"], 0);
            server(&args)
        }
        Some("client") => {
            check(&args, &["--addr", "--timeout", "--tries"], 0);
            client(&args)
        }
        Some("relay") => {
            check(
                &args,
                &[
                    "--listen",
                    "--to",
                    "--loss",
                    "--dup",
                    "--reorder",
                    "--delay",
                    "--seed",
                ],
                0,
            );
            relay(&args)
        }
        Some("receive") => {
            check(&args, &["--addr", "--out"], 0);
            receive(&args)
        }
        Some("send") => {
            check(&args, &["--to", "--window"], 1);
            send(&args)
        }
        Some("bench") => {
            check(&args, &["--datagrams", "--kib"], 0);
            let n = args.count("--datagrams", 100_000)? as usize;
            let kib = args.count("--kib", 256)? as usize;
            super::bench::run(n.max(1), kib.max(1))
        }
        Some(other) => usage_error(USAGE, &format!("unknown subcommand {other:?}")),
    });
}

fn check(args: &Args, known: &[&str], max_positional: usize) {
    let unknown = args.unknown_options(known);
    if !unknown.is_empty() {
        usage_error(USAGE, &format!("unknown option(s): {}", unknown.join(" ")));
    }
    if args.positional.len() > max_positional {
        usage_error(
            USAGE,
            &format!("unexpected word(s): {}", args.positional.join(" ")),
        );
    }
}

/// A probability option, 0..=1.
fn probability(args: &Args, name: &str) -> Result<f64> {
    let Some(text) = args.value(name) else {
        return Ok(0.0);
    };
    match text.parse::<f64>() {
        Ok(p) if (0.0..=1.0).contains(&p) => Ok(p),
        _ => Err(Error::msg(format!(
            "{name} {text}: want a probability in 0..=1"
        ))),
    }
}

/// Bind quietly and print `listening on IP:PORT` first.
fn bind_listening(addr: &str) -> Result<std::os::fd::OwnedFd> {
    let addr = addr::parse(addr)?;
    narrate::set_quiet(true);
    let bound = udp_bind("server", &addr);
    narrate::set_quiet(false);
    let (fd, bound) = bound?;
    println!("listening on {bound}");
    Ok(fd)
}

fn server(args: &Args) -> Result<()> {
    let stop = Stop::on_ctrl_c()?;
    let buf = args.number("--buf", dgram::MAX_UDP6 as i64 + 1, 1..=1 << 20)? as usize;
    let sock = bind_listening(args.value("--addr").unwrap_or(DEFAULT_ADDR))?;
    if args.value("--batch").is_some() {
        let batch = args.number("--batch", 32, 1..=1024)? as usize;
        let stats = super::batch::serve_echo_batched(sock, stop.fd(), batch)?;
        say!(
            "server",
            "stopped: {} echoed, {} truncated (not echoed), {} sends failed",
            stats.echoed,
            stats.truncated,
            stats.send_failed
        );
        return Ok(());
    }
    let (tx, events) = std::sync::mpsc::channel();
    let printer = std::thread::spawn(move || {
        // Echoes are counted at the end; what went wrong is told at once.
        for e in events {
            if !matches!(e, super::echo::EchoEvent::Echoed { .. }) {
                say!("server", "{e:?}");
            }
        }
    });
    let config = EchoConfig {
        buf_len: buf,
        events: Some(tx),
    };
    let stats = serve_echo(sock, stop.fd(), config);
    let _ = printer.join();
    let stats = stats?;
    say!(
        "server",
        "stopped: {} echoed, {} truncated (not echoed), {} sends failed",
        stats.echoed,
        stats.truncated,
        stats.send_failed
    );
    Ok(())
}

fn client(args: &Args) -> Result<()> {
    let server = addr::parse(args.value("--addr").unwrap_or(DEFAULT_ADDR))?;
    let backoff = Backoff {
        first_timeout: Duration::from_millis(args.number("--timeout", 500, 1..=60_000)? as u64),
        tries: args.number("--tries", 4, 1..=20)? as u32,
        ..Backoff::default()
    };
    let family = nix::sys::socket::SockaddrLike::family(&server)
        .ok_or_else(|| Error::msg("--addr: no address family"))?;
    let sock = dgram::udp_socket("client", family)?;
    for (i, line) in std::io::stdin().lock().lines().enumerate() {
        let line = line.map_err(|e| Error::msg(format!("read stdin: {e}")))?;
        let id = i as u32 + 1;
        match request(&sock, &server, id, line.as_bytes(), backoff) {
            Ok(r) => {
                say!(
                    "client",
                    "reply to {id} after {} send(s), {} ignored",
                    r.sends,
                    r.ignored
                );
                // A peer typing into `nc -u -l` ends its reply with a newline.
                let body = r.body.strip_suffix(b"\n").unwrap_or(&r.body);
                println!("{}", String::from_utf8_lossy(body));
            }
            Err(e) => say!("client", "request {id}: {e}"),
        }
    }
    Ok(())
}

fn relay(args: &Args) -> Result<()> {
    let stop = Stop::on_ctrl_c()?;
    let Some(to) = args.value("--to") else {
        usage_error(USAGE, "relay needs --to B");
    };
    let Some(listen) = args.value("--listen") else {
        usage_error(USAGE, "relay needs --listen A");
    };
    let how = Impairment {
        loss: probability(args, "--loss")?,
        dup: probability(args, "--dup")?,
        reorder: probability(args, "--reorder")?,
        delay: Duration::from_millis(args.number("--delay", 0, 0..=60_000)? as u64),
        seed: args.count("--seed", 1)?,
        ..Impairment::default()
    };
    let target = addr::parse(to)?;
    let sock = bind_listening(listen)?;
    say!("relay", "to {target}: {how:?}");
    let stats = run_relay(sock, target, how, stop.fd())?;
    say!("relay", "stopped after {} client(s)", stats.clients);
    report("relay", &stats);
    Ok(())
}

fn receive(args: &Args) -> Result<()> {
    let sock = bind_listening(args.value("--addr").unwrap_or(DEFAULT_ADDR))?;
    let config = TransferConfig {
        give_up: Duration::from_secs(3600),
        ..TransferConfig::default()
    };
    let got = transfer::receive_file(&sock, config)?;
    say!(
        "receiver",
        "{} bytes; {} duplicates, {} early",
        got.data.len(),
        got.duplicates,
        got.early
    );
    match args.value("--out") {
        Some(path) => {
            std::fs::write(path, &got.data).map_err(|e| Error::msg(format!("write {path}: {e}")))?
        }
        None => {
            use std::io::Write;
            let _ = std::io::stdout().lock().write_all(&got.data);
        }
    }
    Ok(())
}

fn send(args: &Args) -> Result<()> {
    let Some(to) = args.value("--to") else {
        usage_error(USAGE, "send needs --to A");
    };
    let Some(path) = args.positional.first() else {
        usage_error(USAGE, "send needs a FILE");
    };
    let to = addr::parse(to)?;
    let data = std::fs::read(path).map_err(|e| Error::msg(format!("read {path}: {e}")))?;
    let family = nix::sys::socket::SockaddrLike::family(&to)
        .ok_or_else(|| Error::msg("--to: no address family"))?;
    let sock = dgram::udp_socket("sender", family)?;
    let config = TransferConfig {
        window: args.number("--window", 32, 1..=4096)? as u32,
        ..TransferConfig::default()
    };
    let sent = transfer::send_file(&sock, &to, &data, config)?;
    say!(
        "sender",
        "{} bytes in {} packets, {} datagrams, {:.1} ms",
        data.len(),
        sent.packets,
        sent.datagrams,
        sent.elapsed.as_secs_f64() * 1e3
    );
    Ok(())
}
