//! Chapter 12: an HTTP/1.1 static file server on epoll. `ch12_http --help`
//! lists the subcommands; the lesson is in `chapters/12-http.md` and
//! `src/ch12_http/`.

fn main() {
    sockbook::ch12_http::cli::main();
}
