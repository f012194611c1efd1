//! The `ch12_http` binary: the demo, `server`, `get`.

use std::path::PathBuf;

use super::conn::Config;
use super::server::{listeners, serve_then};
use crate::kit::args::{Args, usage_error};
use crate::kit::narrate::set_quiet;
use crate::kit::stop::Stop;
use crate::kit::{Call, Error, Result};

const USAGE: &str = "\
ch12_http: an HTTP/1.1 static file server on epoll (chapter 12)

usage:
  ch12_http                                   the narrated demo
  ch12_http server --root DIR [--addr A] [--threads N] [--log]
                                              serve DIR (default 127.0.0.1:8080)
  ch12_http get URL [URL...]                  GET each URL on one connection
  ch12_http segments [--count N] [--size BYTES]
                                              count the segments of N responses
                                              sent with and without MSG_MORE/TCP_CORK
";

/// The address `server` binds when given no `--addr`.
pub const DEFAULT_ADDR: &str = "127.0.0.1:8080";

/// Entry point of the binary.
pub fn main() {
    // Before any thread: SIGINT/SIGTERM become a readable fd.
    let stop = match Stop::on_ctrl_c() {
        Ok(stop) => stop,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    };
    let args = Args::from_env(
        USAGE,
        &["--root", "--addr", "--threads", "--count", "--size"],
    );
    crate::kit::main_with(|| match args.command.as_deref() {
        None => super::demo::run(),
        Some("server") => server(&args, &stop),
        Some("get") => {
            let mut urls = args.positional.clone();
            if urls.is_empty() {
                usage_error(USAGE, "get needs a URL");
            }
            urls.dedup();
            super::client::run(&urls)
        }
        Some("segments") => {
            let count = args.number("--count", 200, 1..=100_000)? as u32;
            let size = args.number("--size", 1000, 0..=64 << 20)? as usize;
            super::segments::run(count, size).map(|_| ())
        }
        Some(other) => usage_error(USAGE, &format!("unknown subcommand {other:?}")),
    });
}

fn server(args: &Args, stop: &Stop) -> Result<()> {
    let root = args
        .value("--root")
        .ok_or_else(|| Error::msg("server needs --root DIR"))?;
    let root: PathBuf =
        std::fs::canonicalize(root).map_err(|e| Error::msg(format!("--root {root}: {e}")))?;
    let threads = args.number("--threads", 1, 1..=64)? as usize;
    let addr = args.addr_or(DEFAULT_ADDR)?;
    set_quiet(true);
    let (soft, hard) = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .call("getrlimit(RLIMIT_NOFILE)")?;
    if soft < hard {
        let _ =
            nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE, hard, hard);
    }
    let (fds, bound) = listeners(&addr, threads, 4096)?;
    let mut config = Config::new(root);
    config.log = args.flag("--log");
    let stats = serve_then(fds, stop.fd(), &config, || println!("listening on {bound}"))?;
    println!(
        "stopped: {} connections, {} requests, {} closed by a timer, {} turned away",
        stats.accepted, stats.requests, stats.timed_out, stats.turned_away
    );
    Ok(())
}
