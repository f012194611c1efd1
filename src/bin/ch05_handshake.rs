//! `ch05_handshake`: the TCP handshake, the backlog and the half-open
//! queue on a live kernel. See `chapters/05-handshake.md`.

use sockbook::ch05_handshake::{USAGE, VALUE_OPTIONS, capture, run};
use sockbook::kit::args::Args;
use sockbook::kit::stop::Stop;

fn main() {
    let args = Args::from_env(USAGE, VALUE_OPTIONS);
    sockbook::kit::main_with(|| {
        // Before any thread starts: unshare(CLONE_NEWUSER) refuses a
        // multithreaded process, and signalfd needs the signals blocked in
        // every thread. The server is for `nc` and `ss` in other terminals,
        // so it stays in the machine's own network namespace.
        let access = match args.command.as_deref() {
            Some("server") if !args.flag("--netns") => {
                capture::Access::Refused("not needed by the server".into())
            }
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
