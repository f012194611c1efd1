//! The `ch04_select` binary: the demo, `server [--poll]`, `client`.

use std::os::fd::AsRawFd;

use super::{Config, Stats, client, demo, fdlimit, serve_poll, serve_select};
use crate::kit::args::{Args, usage_error};
use crate::kit::stop::Stop;
use crate::kit::{Result, narrate, net};
use crate::say;

/// Where `server` listens and `client` connects without `--addr`.
pub const DEFAULT_ADDR: &str = "127.0.0.1:7004";

/// `--help`.
pub const USAGE: &str = "\
ch04_select: one thread, many sockets: I/O multiplexing with select(2) and poll(2)

USAGE:
    ch04_select                     narrated demo on loopback: select's fd sets and
                                    timeout, a naive server stuck on a client that
                                    sends half a line, the fixed chat server with a
                                    staller and a non-reader, the FD_SETSIZE wall,
                                    poll, and the half-closing client
    ch04_select server [--poll] [--echo] [--addr A]
                                    single-threaded chat server (select, or poll with
                                    --poll); every line a client sends goes to every
                                    other client, prefixed with its address.
                                    --echo: echo each client's bytes back to it
                                    instead (the chapter 7 benchmark uses it).
                                    Default address 127.0.0.1:7004. Ctrl-C stops it.
    ch04_select client [--addr A]   select-based client: stdin to the server, the
                                    server to stdout; at the end of stdin it sends
                                    shutdown(SHUT_WR) and prints every reply until
                                    the server closes
    ch04_select eintr               a signal during a blocked recv or poll: EINTR,
                                    and which calls SA_RESTART restarts
    ch04_select accept              between readiness and accept: a client that
                                    resets (accept returns it, read gets
                                    ECONNRESET), a rival accepter (EAGAIN), no
                                    fds left (EMFILE, the connection stays queued)

Try: ch04_select server   then, in two more terminals,   ch04_select client
";

/// The binary's `main`.
pub fn main() {
    let args = Args::from_env(USAGE, &["--addr"]);
    crate::kit::main_with(|| match args.command.as_deref() {
        None => {
            check_options(&args, &[]);
            demo::run()
        }
        Some("server") => {
            check_options(&args, &["--addr", "--poll", "--echo"]);
            server(&args)
        }
        Some("client") => {
            check_options(&args, &["--addr"]);
            client(&args)
        }
        Some("eintr") => {
            check_options(&args, &[]);
            super::eintr::demo()
        }
        Some("accept") => {
            check_options(&args, &[]);
            super::acceptrace::demo()
        }
        Some(other) => usage_error(USAGE, &format!("unknown subcommand {other:?}")),
    });
}

fn check_options(args: &Args, known: &[&str]) {
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

/// `server [--poll] [--echo] [--addr A]`.
fn server(args: &Args) -> Result<()> {
    // Before any thread: block SIGINT/SIGTERM and read them from an fd.
    let stop = Stop::on_ctrl_c()?;
    let addr = args.addr_or(DEFAULT_ADDR)?;
    let poll = args.flag("--poll");
    // `listening on` comes first: the socket/bind/listen narration is muted.
    narrate::set_quiet(true);
    let listening = net::tcp_listen("server", &addr, 1024);
    narrate::set_quiet(false);
    let (listener, bound) = listening?;
    println!("listening on {bound}");
    let (soft, hard) = fdlimit::nofile()?;
    say!(
        "server",
        "{} loop on fd {}, stop on signalfd {}; RLIMIT_NOFILE soft {soft} hard {hard}, FD_SETSIZE {}",
        if poll { "poll(2)" } else { "select(2)" },
        listener.as_raw_fd(),
        stop.fd().as_raw_fd(),
        libc::FD_SETSIZE
    );
    let config = Config {
        echo: args.flag("--echo"),
        ..Config::default()
    };
    let stats = if poll {
        serve_poll(listener, stop.fd(), config)?
    } else {
        serve_select(listener, stop.fd(), config)?
    };
    report(&stats);
    Ok(())
}

/// The closing line of a server run.
pub fn report(stats: &Stats) {
    say!(
        "server",
        "stopped: {} clients served (at most {} at once), {} refused at FD_SETSIZE, {} dropped, {} lines",
        stats.accepted,
        stats.peak,
        stats.refused,
        stats.dropped,
        stats.lines
    );
}

/// `client [--addr A]`.
fn client(args: &Args) -> Result<()> {
    let addr = args.addr_or(DEFAULT_ADDR)?;
    // stdout carries only what the server sends.
    narrate::set_quiet(true);
    client::run_client(&addr).map(|_| ())
}
