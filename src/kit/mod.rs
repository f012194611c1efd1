//! The shared kit: what more than one chapter needs, and only that.
//!
//! | module | what |
//! |---|---|
//! | [`error`] | [`Error`]: names the failed call and its errno |
//! | [`accept`] | a failed `accept`: one connection's problem, out of fds, or fatal |
//! | [`io`] | `readn`, `writen`, `read_line`, [`io::LineReader`] |
//! | [`wait`] | bounded waits with `poll`: readable, writable, a line |
//! | [`addr`] | parse `IP:PORT`, read the port back |
//! | [`net`] | narrated, checked socket/bind/listen/accept/connect |
//! | [`narrate`] | strace-like narration, [`crate::say!`] |
//! | [`args`] | subcommands, `--addr`, `--help` |
//! | [`stop`] | Ctrl-C as a pollable fd, for clean server shutdown |
//! | [`netns`] | a private user + network namespace: can we, enter it, why not |
//! | [`lab`] | hosts and routers as network namespaces joined by veth pairs |
//! | [`tcp`] | `TCP_INFO` (short-length tolerant) and TCP state names |

pub mod accept;
pub mod addr;
pub mod args;
pub mod error;
pub mod io;
pub mod lab;
pub mod narrate;
pub mod net;
pub mod netns;
pub mod stop;
pub mod tcp;
pub mod wait;

pub use error::{Call, Error, Result};

/// Run a binary's real `main`: print the error (which names the call and the
/// errno) and exit 1 on failure.
pub fn main_with(body: impl FnOnce() -> Result<()>) {
    if let Err(e) = body() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
