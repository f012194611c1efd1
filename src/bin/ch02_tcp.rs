//! Chapter 2: a TCP server and client. See `chapters/02-tcp.md`.

use std::os::fd::AsFd;
use std::time::Duration;

use sockbook::ch02_tcp::{self, daytime, demo, echo};
use sockbook::kit::{self, args::Args, stop::Stop};

const USAGE: &str = "\
ch02_tcp: a TCP server and client, call by call (chapter 2)

usage:
  ch02_tcp                          narrated demo: socket, bind, listen, accept, connect,
                                    read/write, send/recv flags, short writes, EOF, errors
  ch02_tcp server [--addr A] [--idle SECS] [--quiet]
                                    iterative echo server (RFC 862), default 127.0.0.1:2007;
                                    talk to it with `nc 127.0.0.1 2007`; Ctrl-C stops it
  ch02_tcp client --addr A          stdin to the socket, the socket to stdout; at the end
                                    of stdin, shutdown(SHUT_WR) and print the rest
  ch02_tcp daytime-server [--addr A]  daytime server (RFC 867), default 127.0.0.1:2013
  ch02_tcp daytime-client [--addr A]  print the daytime server's answer
  ch02_tcp --help                   this text

options:
  --addr A     IP:PORT, e.g. 127.0.0.1:0 (the kernel picks a free port)
  --idle SECS  echo server: close a client quiet for this long (default 60)
  --quiet      echo server: no narration of each call (for benchmarks); still
               prints `listening on` first and one `# stopped:` line at the end
";

fn main() {
    let args = Args::from_env(USAGE, &["--addr", "--idle"]);
    let unknown = args.unknown_options(&["--addr", "--idle", "--quiet"]);
    if !unknown.is_empty() {
        kit::args::usage_error(USAGE, &format!("unknown option {}", unknown.join(", ")));
    }
    kit::main_with(|| match args.command.as_deref() {
        None => demo::run(),
        Some("server") => {
            // Block SIGINT/SIGTERM before any thread exists; they arrive on an fd.
            let stop = Stop::on_ctrl_c()?;
            let idle = match args.value("--idle") {
                None => Duration::from_secs(60),
                Some(text) => text
                    .parse::<f64>()
                    .ok()
                    .filter(|s| *s > 0.0 && s.is_finite())
                    .map(Duration::from_secs_f64)
                    .ok_or_else(|| {
                        kit::Error::msg(format!("--idle: not a number of seconds: {text}"))
                    })?,
            };
            kit::narrate::set_quiet(args.flag("--quiet"));
            echo::run_server(&args.addr_or(ch02_tcp::ECHO_ADDR)?, stop.fd(), idle)
        }
        Some("client") => match args.value("--addr") {
            Some(_) => echo::run_client(&args.addr_or(ch02_tcp::ECHO_ADDR)?),
            None => kit::args::usage_error(USAGE, "client needs --addr IP:PORT"),
        },
        Some("daytime-server") => {
            let stop = Stop::on_ctrl_c()?;
            daytime::run_server(&args.addr_or(ch02_tcp::DAYTIME_ADDR)?, stop.fd().as_fd())
        }
        Some("daytime-client") => {
            let text = daytime::run_client(
                &args.addr_or(ch02_tcp::DAYTIME_ADDR)?,
                Duration::from_secs(5),
            )?;
            print!("{text}");
            Ok(())
        }
        Some(other) => kit::args::usage_error(USAGE, &format!("unknown subcommand {other:?}")),
    });
}
