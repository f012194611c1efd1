//! The narrated demo: `cargo run --bin ch07_threads`.

use crate::kit::Result;

/// Run every part of the demo.
pub fn run() -> Result<()> {
    Ok(())
}
