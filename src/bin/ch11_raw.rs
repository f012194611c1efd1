//! `ch11_raw`: raw and packet sockets: build, filter and capture packets
//! yourself. See `chapters/11-raw.md`.

use sockbook::ch11_raw::demo::{self, Place};
use sockbook::ch11_raw::{SUBCOMMANDS, USAGE, VALUE_OPTIONS};
use sockbook::kit::args::{Args, usage_error};

fn main() {
    let args = Args::from_env(USAGE, VALUE_OPTIONS);
    if let Some(bad) = args.unknown_options(VALUE_OPTIONS).first() {
        usage_error(USAGE, &format!("unknown option {bad}"));
    }
    if let Some(cmd) = args.command.as_deref()
        && !SUBCOMMANDS.contains(&cmd)
    {
        usage_error(USAGE, &format!("unknown subcommand {cmd}"));
    }
    sockbook::kit::main_with(|| {
        // Before any thread starts: unshare(CLONE_NEWUSER) refuses a
        // multithreaded process. `sniff` watches this machine's own
        // interfaces, so it stays where it is.
        let place = match args.command.as_deref() {
            Some("sniff") => demo::prepare(true),
            Some("checksum") => Place::Refused("not needed".into()),
            _ => demo::prepare(false),
        };
        demo::run(&args, &place)
    });
}
