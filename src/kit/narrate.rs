//! Narration: every demo prints the calls it makes the way `strace` would,
//! so a learner can hold the output against `strace -f -e trace=network`.
//!
//! ```text
//! [server] socket(AF_INET, SOCK_STREAM, 0) = 3
//! [server] bind(3, 127.0.0.1:0) = 0
//! [client] connect(4, 127.0.0.1:40145) = 0
//! [server] accept(3) = 5 peer=127.0.0.1:51234
//! ```
//!
//! Use the [`crate::say!`] macro; lines from different threads never mix.

use std::fmt::Display;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

static QUIET: AtomicBool = AtomicBool::new(false);

/// Silence (or restore) all narration, e.g. in a test or a benchmark.
pub fn set_quiet(quiet: bool) {
    QUIET.store(quiet, Ordering::Relaxed);
}

/// Is narration silenced?
pub fn is_quiet() -> bool {
    QUIET.load(Ordering::Relaxed)
}

/// Print one narrated line, `[who] text`, or `text` when `who` is empty.
pub fn line(who: &str, text: impl Display) {
    if is_quiet() {
        return;
    }
    let mut out = std::io::stdout().lock();
    // A closed stdout (`| head`) must not panic a demo: ignore write errors.
    let _ = if who.is_empty() {
        writeln!(out, "{text}")
    } else {
        writeln!(out, "[{who}] {text}")
    };
}

/// A section heading in a demo: a blank line, then `== text ==`.
pub fn heading(text: impl Display) {
    line("", format_args!("\n== {text} =="));
}

/// A remark in a demo that explains rather than narrates: `# text`.
pub fn note(text: impl Display) {
    line("", format_args!("# {text}"));
}

/// Narrate one line: `say!("server", "accept({}) = {}", lfd, cfd)`.
#[macro_export]
macro_rules! say {
    ($who:expr, $($arg:tt)*) => {
        $crate::kit::narrate::line($who, format_args!($($arg)*))
    };
}
