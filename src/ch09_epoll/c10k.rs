//! C10K: placeholder
use crate::kit::Result;
use crate::kit::args::Args;

/// `c10k`.
pub fn main(_args: &Args) -> Result<()> {
    Ok(())
}
