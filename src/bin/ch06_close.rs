//! `ch06_close`: how a TCP connection ends, on a live kernel. See
//! `chapters/06-close.md`.

use sockbook::ch05_handshake::capture;
use sockbook::ch06_close::{USAGE, VALUE_OPTIONS, run};
use sockbook::kit::args::Args;
use sockbook::kit::stop::Stop;

fn main() {
    let args = Args::from_env(USAGE, VALUE_OPTIONS);
    sockbook::kit::main_with(|| {
        // Before any thread starts: unshare(CLONE_NEWUSER) refuses a
        // multithreaded process, and signalfd needs the signals blocked in
        // every thread. The server and client talk to other processes, so
        // they stay in the machine's own network namespace.
        let access = match args.command.as_deref() {
            Some("server" | "client") => {
                capture::Access::Refused("not needed by server and client".into())
            }
            // The lab builds namespaces and veth pairs: it needs its own.
            Some("vanish" | "simclose") => capture::prepare(true),
            _ => capture::prepare(args.flag("--netns")),
        };
        let stop = if args.command.as_deref() == Some("server") {
            Some(Stop::on_ctrl_c()?)
        } else {
            None
        };
        run(&args, &access, stop.as_ref())
    });
}
