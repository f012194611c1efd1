//! Chapter 3: socket options. `ch03_sockopts --help` lists the demos.

use sockbook::ch03_sockopts;
use sockbook::kit::{self, args::Args};

fn main() {
    let args = Args::from_env(&ch03_sockopts::usage(), &["--addr"]);
    kit::main_with(|| ch03_sockopts::run(&args));
}
