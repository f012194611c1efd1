//! The `server` subcommand: one echo server, in the design you choose.

use std::time::Duration;

use nix::sys::resource::{Resource, getrlimit, setrlimit};

use super::fork::{self, ForkOptions};
use super::live::Live;
use super::{Limits, Report, pool, reuseport, set_events, thread};
use crate::kit::args::Args;
use crate::kit::narrate::set_quiet;
use crate::kit::net::tcp_listen;
use crate::kit::stop::Stop;
use crate::kit::{Call, Error, Result};

/// The address `server` binds when given no `--addr`.
pub const DEFAULT_ADDR: &str = "127.0.0.1:7007";

/// The listen backlog the servers ask for (the kernel caps it at
/// `/proc/sys/net/core/somaxconn`).
pub const BACKLOG: i32 = 4096;

/// The concurrent designs of this chapter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Design {
    /// A new thread per connection, bounded.
    Thread,
    /// A fixed pool of threads, each blocked in `accept`.
    Pool,
    /// A fixed pool fed through a queue by one acceptor thread.
    Queue,
    /// A new process per connection, reaped on SIGCHLD.
    Fork,
    /// Several SO_REUSEPORT listeners, one accept loop each.
    Reuseport,
}

impl Design {
    /// Every design, in the chapter's order.
    pub const ALL: [Design; 5] = [
        Design::Thread,
        Design::Pool,
        Design::Queue,
        Design::Fork,
        Design::Reuseport,
    ];

    /// The name `--design` takes.
    pub fn name(self) -> &'static str {
        match self {
            Design::Thread => "thread",
            Design::Pool => "pool",
            Design::Queue => "queue",
            Design::Fork => "fork",
            Design::Reuseport => "reuseport",
        }
    }

    /// Parse a `--design` value.
    pub fn parse(word: &str) -> Result<Design> {
        Design::ALL
            .into_iter()
            .find(|d| d.name() == word)
            .ok_or_else(|| {
                Error::msg(format!(
                    "unknown design {word:?}: one of thread, pool, queue, fork, reuseport"
                ))
            })
    }
}

/// Raise this process's soft limit on open fds (RLIMIT_NOFILE) to its hard
/// limit, as a server that expects thousands of clients does; children and
/// threads share or inherit it. Returns (old soft, new soft).
pub fn raise_fd_limit() -> Result<(u64, u64)> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).call("getrlimit(RLIMIT_NOFILE)")?;
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard)
            .call(format!("setrlimit(RLIMIT_NOFILE, {hard}, {hard})"))?;
    }
    Ok((soft, hard.max(soft)))
}

/// `server [--design D] [--addr A] [--max N] [--workers N] [--grace-ms N]
/// [--log] [--no-reap]`: print `listening on IP:PORT`, serve echo until
/// SIGINT or SIGTERM, drain, print what was done, return.
pub fn run(args: &Args, stop: &Stop) -> Result<()> {
    let design = Design::parse(args.value("--design").unwrap_or("thread"))?;
    let addr = args.addr_or(DEFAULT_ADDR)?;
    let defaults = Limits::default();
    let limits = Limits {
        max_conns: args.count("--max", defaults.max_conns as u64)? as usize,
        workers: args.count("--workers", defaults.workers as u64)? as usize,
        grace: Duration::from_millis(args.count("--grace-ms", defaults.grace.as_millis() as u64)?),
    };
    set_events(args.flag("--log"));
    set_quiet(true);
    raise_fd_limit()?;
    let live = Live::new();
    let report: Report = match design {
        Design::Reuseport => {
            let listeners = reuseport::listeners("server", &addr, limits.workers, BACKLOG)?;
            let bound = crate::kit::net::local_addr(&listeners[0])?;
            let (total, each) =
                reuseport::serve(listeners, stop.fd(), &limits, &live, || listening(&bound))?;
            let spread: Vec<String> = each.iter().map(|r| r.accepted.to_string()).collect();
            println!("accepted per listener: {}", spread.join(" "));
            total
        }
        _ => {
            let (listener, bound) = tcp_listen("server", &addr, BACKLOG)?;
            // The pools say "listening" once their workers are all up, so
            // whoever reads the line sees the server at its resting size.
            let ready = || listening(&bound);
            match design {
                Design::Thread => {
                    ready();
                    thread::serve(listener, stop.fd(), &limits, &live)?
                }
                Design::Pool => pool::accept_pool(listener, stop.fd(), &limits, &live, ready)?,
                Design::Queue => pool::queue_pool(listener, stop.fd(), &limits, &live, ready)?,
                Design::Fork => {
                    let options = ForkOptions {
                        reap: !args.flag("--no-reap"),
                    };
                    fork::serve(listener, stop.fd(), &limits, options, ready)?
                }
                Design::Reuseport => return Err(Error::msg("reuseport is served above")),
            }
        }
    };
    println!(
        "stopped: accepted={} refused={} cut={} spawned={} joined={}",
        report.accepted, report.refused, report.cut, report.spawned, report.joined
    );
    Ok(())
}

fn listening(bound: &nix::sys::socket::SockaddrStorage) {
    use std::io::Write;
    println!("listening on {bound}");
    let _ = std::io::stdout().flush();
}
