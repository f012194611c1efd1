//! Chapter 7: concurrent servers. See chapters/07-threads.md.

use sockbook::ch07_threads::{demo, server};
use sockbook::kit::args::{Args, usage_error};
use sockbook::kit::stop::Stop;

const USAGE: &str = "\
ch07_threads — concurrent servers: thread per connection, pools, fork, SO_REUSEPORT

usage:
  ch07_threads                 narrated demo on loopback (a few seconds)
  ch07_threads server [--design thread|pool|queue|fork|reuseport] [--addr A]
                      [--max N] [--workers N] [--grace-ms N] [--log] [--no-reap]
        an echo server (default: thread per connection on 127.0.0.1:7007);
        prints `listening on IP:PORT` first; Ctrl-C or SIGTERM stops
        accepting, lets connections finish for --grace-ms (default 5000),
        cuts the rest and exits 0
          --max N      connections served at once; one more gets a busy line
                       (default 1024)
          --workers N  pool threads or SO_REUSEPORT listeners (default 4)
          --log        one line per accepted/refused/closed/reaped event
          --no-reap    (fork) leave exited children as zombies until shutdown
  ch07_threads --help          this text
";

const VALUES: &[&str] = &["--design", "--addr", "--max", "--workers", "--grace-ms"];
const FLAGS: &[&str] = &["--log", "--no-reap"];

fn main() {
    let args = Args::from_env(USAGE, VALUES);
    let known: Vec<&str> = VALUES.iter().chain(FLAGS).copied().collect();
    if let Some(bad) = args.unknown_options(&known).first() {
        usage_error(USAGE, &format!("unknown option {bad}"));
    }
    sockbook::kit::main_with(|| match args.command.as_deref() {
        None => demo::run(),
        Some("server") => {
            // Block SIGINT/SIGTERM before any thread exists: threads inherit
            // the mask, so the signal waits in the signalfd for the accept loop.
            let stop = Stop::on_ctrl_c()?;
            server::run(&args, &stop)
        }
        Some(other) => usage_error(USAGE, &format!("unknown subcommand {other:?}")),
    });
}
