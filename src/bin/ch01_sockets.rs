//! Chapter 1: what a socket is. `cargo run` (this is the default binary)
//! runs the narrated tour; `--help` lists the subcommands.

use sockbook::ch01_sockets::demo;
use sockbook::kit::{self, args::Args, args::usage_error};

fn main() {
    let args = Args::from_env(demo::USAGE, &[]);
    if let Some(option) = args.unknown_options(&[]).first() {
        usage_error(demo::USAGE, &format!("unknown option {option}"));
    }
    kit::main_with(|| match args.command.as_deref() {
        None => demo::tour(),
        Some("resolve") => {
            let (host, port) = match args.positional.as_slice() {
                [host] => (host, None),
                [host, port] => match port.parse::<u16>() {
                    Ok(port) => (host, Some(port)),
                    Err(_) => usage_error(demo::USAGE, &format!("not a port: {port:?}")),
                },
                _ => usage_error(demo::USAGE, "resolve takes HOST and an optional PORT"),
            };
            demo::resolve_command(host, port)
        }
        Some("dualstack") => {
            let private = sockbook::ch01_sockets::dualstack::enter_namespace_if_allowed();
            sockbook::ch01_sockets::dualstack::demo(private)
        }
        Some(other) => usage_error(demo::USAGE, &format!("unknown subcommand {other:?}")),
    });
}
