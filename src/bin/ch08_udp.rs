//! Chapter 8: UDP. `ch08_udp --help` lists the subcommands; the lesson is
//! in `chapters/08-udp.md` and `src/ch08_udp/`.

fn main() {
    sockbook::ch08_udp::cli::main();
}
