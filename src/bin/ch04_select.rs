//! Chapter 4: one thread, many sockets, with select(2) and poll(2).
//! `ch04_select --help` lists the subcommands; the lesson is in
//! `chapters/04-select.md` and `src/ch04_select/`.

fn main() {
    sockbook::ch04_select::cli::main();
}
