#![doc = include_str!("../../chapters/06-close.md")]

pub mod abort;
pub mod common;
pub mod graceful;
pub mod halfclose;
pub mod states;
pub mod timewait;
pub mod vanish;

pub use graceful::{PeerLeft, graceful_close, half_close_exchange, how_peer_left};

use crate::ch05_handshake::capture::Access;
use crate::kit::args::{Args, usage_error};
use crate::kit::narrate::note;
use crate::kit::{Error, Result};

/// `--help` text of `ch06_close`.
pub const USAGE: &str = "\
ch06_close: how a TCP connection ends -- the four-way close and its states,
half-close, TIME_WAIT and FIN_WAIT2, and aborts (RST, ECONNRESET, EPIPE,
SIGPIPE) -- watched with TCP_INFO, /proc/net/tcp and, where allowed, packets
captured on lo.

usage: ch06_close [SUBCOMMAND] [OPTIONS]

  (none)             run every part below, narrated (a few seconds)
  fourway            a close as packets: FIN, ACK, FIN+ACK, ACK
  steps              each closing state held still: FIN_WAIT1, FIN_WAIT2,
                     CLOSE_WAIT, LAST_ACK, TIME_WAIT
  halfclose [--lines N]
                     shutdown(SHUT_WR): send a whole input, still get every
                     reply (default 2000 lines); and SHUT_RD on Linux
  timewait [--linger2 S]
                     TIME_WAIT's fixed length vs tcp_fin_timeout, EADDRINUSE
                     and SO_REUSEADDR, a FIN_WAIT2 limit (default 2 s)
  linger             SO_LINGER {1, 0}: close sends RST, the peer sees ECONNRESET
  unread             close with unread data sends RST
  rst-send           send after an RST: ECONNRESET once, no signal; then EPIPE
                     and SIGPIPE (counted by a handler)
  epipe              write after the peer closed: first write ok, then EPIPE
  sigpipe            the same in a child with SIGPIPE at SIG_DFL; MSG_NOSIGNAL
  vanish             the peer vanishes (a veth cable goes down in a private
                     namespace): a read waits for ever, a write retries until
                     ETIMEDOUT (TCP_USER_TIMEOUT 1.5 s), keepalive (~3 s)
  simclose           simultaneous close in the same lab: CLOSING, then
                     TIME_WAIT on both sides
  server [--addr A]  an upper-case server that answers after your EOF
                     (default 127.0.0.1:5006)
  client [--addr A]  send stdin to it, half-close, print the replies

options:
  --netns    run in a private user+network namespace even with root
  --help     this text

Packet capture needs CAP_NET_RAW; without it the binary moves itself into a
private user+network namespace where the kernel allows that, or shows
states only.
";

/// Options that take a value.
pub const VALUE_OPTIONS: &[&str] = &["--addr", "--lines", "--linger2"];

/// Run the binary: the demo, or one part of it. `access` comes from
/// [`crate::ch05_handshake::capture::prepare`], called in `main` before any
/// thread started.
pub fn run(args: &Args, access: &Access, stop: Option<&crate::kit::stop::Stop>) -> Result<()> {
    let known = ["--netns", "--addr", "--lines", "--linger2"];
    if let Some(bad) = args.unknown_options(&known).first() {
        usage_error(USAGE, &format!("unknown option {bad}"));
    }
    let lines = args.number("--lines", 2_000, 1..=1_000_000)? as usize;
    let linger2 = args.number("--linger2", 2, 1..=30)? as i32;
    let command = args.command.as_deref();
    if command.is_none() {
        crate::say!(
            "",
            "Chapter 6: the close: FIN, half-close, TIME_WAIT and RST. (`cargo run --bin ch06_close -- --help` for more)"
        );
    }
    if !matches!(command, Some("server" | "client")) {
        note(access.describe());
    }
    match command {
        None => {
            states::fourway(access)?;
            states::steps(access)?;
            halfclose::demo(access, lines)?;
            timewait::demo(linger2)?;
            abort::demo(access)?;
            note("done");
            Ok(())
        }
        Some("fourway") => states::fourway(access),
        Some("steps") => states::steps(access),
        Some("halfclose") => halfclose::demo(access, lines),
        Some("timewait") => timewait::demo(linger2),
        Some("linger") => abort::linger(access),
        Some("unread") => abort::unread(access),
        Some("epipe") => abort::epipe(access),
        Some("rst-send") => abort::send_after_rst(),
        Some("sigpipe") => abort::sigpipe(),
        Some("simclose") => match access {
            Access::Namespace => vanish::simultaneous_close(),
            _ => {
                note(format!(
                    "skipped: the simultaneous close lab needs a private network namespace: {}",
                    vanish::refusal().unwrap_or("the binary could not enter one")
                ));
                Ok(())
            }
        },
        Some("vanish") => match access {
            Access::Namespace => vanish::demo(),
            _ => {
                note(format!(
                    "skipped: the peer-vanishes lab needs a private network namespace: {}",
                    vanish::refusal().unwrap_or("the binary could not enter one")
                ));
                Ok(())
            }
        },
        Some("server") => {
            let stop = stop.ok_or_else(|| Error::msg("server needs the Ctrl-C handler"))?;
            halfclose::serve(stop, &args.addr_or("127.0.0.1:5006")?)
        }
        Some("client") => halfclose::client(&args.addr_or("127.0.0.1:5006")?),
        Some(other) => usage_error(USAGE, &format!("unknown subcommand {other:?}")),
    }
}
