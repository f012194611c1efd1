//! Chapter 9: nonblocking I/O and epoll. `ch09_epoll --help` lists the
//! subcommands; the lesson is in `chapters/09-epoll.md` and
//! `src/ch09_epoll/`.

fn main() {
    sockbook::ch09_epoll::cli::main();
}
