//! Chapter 10: Unix domain sockets, credentials and passing descriptors.
//! `ch10_unix --help` lists the subcommands; the lesson is in
//! `chapters/10-unix.md` and `src/ch10_unix/`.

fn main() {
    sockbook::ch10_unix::cli::main();
}
