//! The `ch09_epoll` binary: the demo, one subcommand per part, `server`,
//! and the `c10k` measurement.

use std::os::fd::AsRawFd;

use super::{Design, Stats, c10k, demo, listen_for, serve_echo, serve_idle};
use crate::kit::args::{Args, usage_error};
use crate::kit::stop::Stop;
use crate::kit::{Result, narrate, net};
use crate::say;

/// Where `server` listens without `--addr`.
pub const DEFAULT_ADDR: &str = "127.0.0.1:7009";

/// `--help`.
pub const USAGE: &str = "\
ch09_epoll: nonblocking I/O and epoll(7), from one socket to ten thousand

USAGE:
    ch09_epoll                  narrated demo of every part below, on loopback (a few seconds)
    ch09_epoll nonblock         O_NONBLOCK: EAGAIN from recv, send and accept
    ch09_epoll connect          nonblocking connect: EINPROGRESS, writable, SO_ERROR
                                (success, ECONNREFUSED, a 300 ms deadline)
    ch09_epoll epoll            epoll_create1/ctl/wait; interest list vs ready list;
                                level vs edge triggered and the edge-triggered bug live;
                                a standing EPOLLOUT as a busy loop
    ch09_epoll oneshot          EPOLLONESHOT and EPOLLRDHUP
    ch09_epoll herd             the thundering herd: wake-ups with and without EPOLLEXCLUSIVE
    ch09_epoll emfile           out of fds: a naive loop spins at 100 % CPU; the reserve fd
    ch09_epoll fds              timerfd, eventfd and signalfd in one loop; idle timeouts
    ch09_epoll echo             the level- and edge-triggered echo servers, 1 MiB each way
    ch09_epoll server [--design single|et|reuseport|exclusive|poll] [--threads N]
                      [--idle-ms T] [--addr A]
                                an echo server (default single, 4 threads for the
                                multi-threaded designs); --idle-ms: the idle-timeout
                                server instead. Prints `listening on IP:PORT` first,
                                Ctrl-C (SIGINT/SIGTERM) stops it. Default 127.0.0.1:7009
    ch09_epoll chat [--addr A]  chapter 4's chat server on epoll (the same protocol as
                                `ch04_select server`); prints `listening on IP:PORT`
                                first, Ctrl-C stops it. Default 127.0.0.1:7009
    ch09_epoll c10k [--ns 100,1000,10000] [--busy 64] [--secs 2]
                                N idle + a few busy connections: server CPU per round
                                trip, chapter 4's poll loop vs epoll, servers in child
                                processes; prints the ratios
";

const VALUES: &[&str] = &[
    "--addr",
    "--design",
    "--threads",
    "--idle-ms",
    "--ns",
    "--busy",
    "--secs",
    "--limit",
];

/// The binary's `main`.
pub fn main() {
    let args = Args::from_env(USAGE, VALUES);
    crate::kit::main_with(|| match args.command.as_deref() {
        None => {
            check(&args, &[]);
            demo::run()
        }
        Some("server") => {
            check(&args, &["--addr", "--design", "--threads", "--idle-ms"]);
            server(&args)
        }
        Some("chat") => {
            check(&args, &["--addr"]);
            chat(&args)
        }
        Some("c10k") => {
            check(&args, &["--ns", "--busy", "--secs"]);
            c10k::main(&args)
        }
        Some("emfile-child") => {
            check(&args, &["--naive", "--limit"]);
            demo::emfile_child(&args)
        }
        Some(part) => match demo::PARTS.iter().find(|(name, _)| *name == part) {
            Some((_, run)) => {
                check(&args, &[]);
                run()
            }
            None => usage_error(USAGE, &format!("unknown subcommand {part:?}")),
        },
    });
}

fn check(args: &Args, known: &[&str]) {
    let unknown = args.unknown_options(known);
    if !unknown.is_empty() {
        usage_error(USAGE, &format!("unknown option(s): {}", unknown.join(" ")));
    }
    if !args.positional.is_empty() {
        usage_error(
            USAGE,
            &format!("unexpected word(s): {}", args.positional.join(" ")),
        );
    }
}

/// `server [--design D] [--threads N] [--idle-ms T] [--addr A]`.
fn server(args: &Args) -> Result<()> {
    // Before any thread: block SIGINT/SIGTERM and read them from an fd.
    let stop = Stop::on_ctrl_c()?;
    let design = Design::parse(args.value("--design").unwrap_or("single"))?;
    let threads = args.number("--threads", 4, 1..=1024)? as usize;
    let idle = args.number("--idle-ms", 0, 0..=86_400_000)? as u64;
    let addr = args.addr_or(DEFAULT_ADDR)?;
    let (old, soft) = crate::ch07_threads::server::raise_fd_limit()?;
    narrate::set_quiet(true);
    let listening = listen_for(design, &addr, threads);
    narrate::set_quiet(false);
    let listeners = listening?;
    let bound = net::local_addr(&listeners[0])?;
    // The loops create their epoll sets and spare fds as they start: wait
    // for them before announcing the address, so that whoever counts our
    // fds after `listening on` sees the server as it stays.
    let loops = match design {
        Design::ReusePort | Design::Exclusive if idle == 0 => threads,
        Design::Poll if idle == 0 => 0,
        _ => 1,
    };
    let spares_before = fds_named("/dev/null");
    let stats = std::thread::scope(|s| -> Result<Stats> {
        let server = s.spawn(|| {
            if idle > 0 {
                let listener = &listeners[0];
                net::set_nonblocking(listener, true)?;
                serve_idle(
                    std::os::fd::AsFd::as_fd(listener),
                    stop.fd(),
                    std::time::Duration::from_millis(idle),
                )
            } else {
                serve_echo(listeners, design, threads, stop.fd())
            }
        });
        await_setup(&server, || {
            fds_named("anon_inode:[eventpoll]") >= loops
                && fds_named("/dev/null") >= spares_before + loops
        });
        println!("listening on {bound}");
        say!(
            "server",
            "design {}{}, stop on signalfd {}; RLIMIT_NOFILE soft {old} -> {soft}{}",
            design.name(),
            match design {
                Design::ReusePort | Design::Exclusive => format!(" x {threads} threads"),
                _ => String::new(),
            },
            stop.fd().as_raw_fd(),
            if idle > 0 {
                format!("; idle timeout {idle} ms (timerfd per connection)")
            } else {
                String::new()
            }
        );
        server
            .join()
            .unwrap_or_else(|_| Err(crate::kit::Error::msg("the server thread panicked")))
    })?;
    say!(
        "server",
        "stopped: {} accepted, {} shed for lack of fds, {} closed ({} idle), {} epoll_wait returns",
        stats.accepted,
        stats.shed,
        stats.closed,
        stats.timed_out,
        stats.wakeups
    );
    Ok(())
}

/// `chat [--addr A]`: chapter 4's chat server, on [`super::epoll_loop`].
fn chat(args: &Args) -> Result<()> {
    // Before any thread: block SIGINT/SIGTERM and read them from an fd.
    let stop = Stop::on_ctrl_c()?;
    let addr = args.addr_or(DEFAULT_ADDR)?;
    let (old, soft) = crate::ch07_threads::server::raise_fd_limit()?;
    // `listening on` comes first: the socket/bind/listen narration is muted.
    narrate::set_quiet(true);
    let listening = net::tcp_listen("server", &addr, 1024);
    narrate::set_quiet(false);
    let (listener, bound) = listening?;
    let lfd = listener.as_raw_fd();
    // As in `server`: announce the address once the loop has its epoll
    // set, so whoever counts our fds after `listening on` sees them all.
    let sets_before = fds_named("anon_inode:[eventpoll]");
    let stats = std::thread::scope(|s| -> Result<crate::ch04_select::Stats> {
        let server = s.spawn(|| {
            super::serve_epoll(listener, stop.fd(), crate::ch04_select::Config::default())
        });
        await_setup(&server, || {
            fds_named("anon_inode:[eventpoll]") > sets_before
        });
        println!("listening on {bound}");
        say!(
            "server",
            "chat on epoll(7), listener fd {lfd}, stop on signalfd {}; RLIMIT_NOFILE soft {old} -> {soft}, no FD_SETSIZE limit",
            stop.fd().as_raw_fd()
        );
        server
            .join()
            .unwrap_or_else(|_| Err(crate::kit::Error::msg("the server thread panicked")))
    })?;
    crate::ch04_select::cli::report(&stats);
    Ok(())
}

/// Wait until the server thread's setup shows in `/proc/self/fd`
/// (`ready()`), it has finished (failed), or 2 s have passed. The fds have
/// no event to wait on, so this looks every millisecond.
fn await_setup<T>(server: &std::thread::ScopedJoinHandle<'_, T>, ready: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    while !ready() && !server.is_finished() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

/// How many of this process's fds point at `target` (`/proc/self/fd`).
fn fds_named(target: &str) -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |dir| {
        dir.flatten()
            .filter(|e| std::fs::read_link(e.path()).is_ok_and(|t| t.to_string_lossy() == target))
            .count()
    })
}
