#![doc = include_str!("../../chapters/03-sockopts.md")]

pub mod behave;
pub mod demos;
pub mod option;
pub mod table;
pub mod tcpinfo;
pub mod typed;

pub use behave::{enable_keepalive, set_read_timeout};
pub use option::{Kind, ReadError, Reading, SetReport, Value, get_option, set_and_explain};
pub use table::{OPTIONS, Opt, Row, SocketKind, defaults_table, print_table};
pub use tcpinfo::{TcpSummary, decode_tcp_info, read_tcp_info};

use crate::kit::args::{Args, usage_error};
use crate::kit::narrate::note;
use crate::kit::{Call, Result};

/// `--help` of `ch03_sockopts`.
pub fn usage() -> String {
    let mut text = String::from(
        "ch03_sockopts: socket options, read and set for real (getsockopt/setsockopt)\n\n\
         usage: ch03_sockopts [COMMAND]\n\n\
         With no command: print the table of option defaults, then run every demo.\n\n\
         commands:\n  table       the table of defaults, each option read from a fresh socket\n",
    );
    for (name, _, what) in demos::DEMOS {
        text.push_str(&format!("  {name:<11} {what}\n"));
    }
    text.push_str(&format!(
        "  server      [--addr A] (default {SERVER_ADDR}) tell each client the options of\n\
         \x20             its accepted socket and a TCP_INFO snapshot; Ctrl-C stops\n"
    ));
    text
}

/// Print the table of defaults.
pub fn table() -> Result<()> {
    let rows = defaults_table();
    print_table(&rows);
    // An option belongs to a protocol: ask the wrong kind of socket for it.
    let v4 = SocketKind::Tcp4
        .open()
        .call("socket(AF_INET, SOCK_STREAM, 0)")?;
    match get_option(&v4, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, Kind::Flag) {
        Ok(v) => note(format_args!("IPV6_V6ONLY asked of an IPv4 socket: {v}")),
        Err(e) => note(format_args!("IPV6_V6ONLY asked of an IPv4 socket: {e}")),
    }
    match get_option(&v4, libc::SOL_SOCKET, 0x7ff0, Kind::Int) {
        Ok(v) => note(format_args!(
            "option 0x7ff0 (no such option) at SOL_SOCKET: {v}"
        )),
        Err(e) => note(format_args!(
            "option 0x7ff0 (no such option) at SOL_SOCKET: {e}"
        )),
    }
    let options = rows.iter().filter(|r| r.socket != SocketKind::Udp4).count();
    note(format_args!(
        "{options} options, {} readings; a size mismatch or an errno is printed instead of a value",
        rows.len()
    ));
    Ok(())
}

/// Where `server` listens by default.
pub const SERVER_ADDR: &str = "127.0.0.1:7003";

/// The binary's body: a subcommand, or the table and every demo.
pub fn run(args: &Args) -> Result<()> {
    if let Some(bad) = args.unknown_options(&["--addr"]).first() {
        usage_error(&usage(), &format!("unknown option {bad}"));
    }
    match args.command.as_deref() {
        None => {
            crate::say!(
                "",
                "Chapter 3: socket options, getsockopt and setsockopt. (`cargo run --bin ch03_sockopts -- --help` for more)"
            );
            table()?;
            for (_, demo, _) in demos::DEMOS {
                demo()?;
            }
            Ok(())
        }
        Some("table") => table(),
        Some("server") => {
            // Block Ctrl-C before any thread exists; it arrives on an fd.
            let stop = crate::kit::stop::Stop::on_ctrl_c()?;
            demos::server(&args.addr_or(SERVER_ADDR)?, &stop)
        }
        Some(name) => match demos::DEMOS.iter().find(|(n, _, _)| *n == name) {
            Some((_, demo, _)) => demo(),
            None => usage_error(&usage(), &format!("unknown command {name}")),
        },
    }
}
