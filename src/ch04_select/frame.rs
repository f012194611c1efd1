//! Framing: turning the bytes of a stream into lines.
//!
//! TCP delivers bytes, not messages. One `read(2)` may return half a line,
//! or the end of one line and three more after it. A server that watches
//! many clients with one thread keeps, for each client, the bytes of the
//! line it has not finished yet, and takes complete lines out as they
//! arrive.

use std::fmt;

/// A line was longer than the server accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineTooLong {
    /// The limit, in bytes, not counting the `\n`.
    pub max_line: usize,
}

impl fmt::Display for LineTooLong {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line longer than {} bytes", self.max_line)
    }
}

impl std::error::Error for LineTooLong {}

// ANCHOR: ch04_take_lines
/// **Assignment 2 (framing).** Append `data`, just read from one client, to
/// `pending`, that client's unfinished line, and take out every complete
/// line.
///
/// - Return the complete lines in the order they arrived, each with its
///   `\n`, and leave only the bytes after the last `\n` in `pending`.
/// - A line may carry at most `max_line` bytes before its `\n`. Return
///   `Err(LineTooLong { max_line })` if a complete line is longer, or if the
///   unfinished rest left in `pending` already is: a client must not make
///   the server buffer without end by never sending `\n`.
/// - The result must not depend on how the bytes were cut into reads:
///   `"a\nb"` then `"c\n"` gives `["a\n"]` then `["bc\n"]`, the same lines
///   as `"a\nbc\n"` in one go.
///
/// Hints: `extend_from_slice`, then look for `b'\n'` with `iter().position`
/// starting after the previous line; remove the consumed bytes with one
/// `drain(..end)` at the end, not one per line.
pub fn take_lines(
    pending: &mut Vec<u8>,
    data: &[u8],
    max_line: usize,
) -> Result<Vec<Vec<u8>>, LineTooLong> {
    // BEGIN SOLUTION
    pending.extend_from_slice(data);
    let mut lines = Vec::new();
    let mut start = 0;
    while let Some(len) = pending[start..].iter().position(|&b| b == b'\n') {
        if len > max_line {
            return Err(LineTooLong { max_line });
        }
        let end = start + len + 1;
        lines.push(pending[start..end].to_vec());
        start = end;
    }
    pending.drain(..start);
    if pending.len() > max_line {
        return Err(LineTooLong { max_line });
    }
    Ok(lines)
    // END SOLUTION
}
// ANCHOR_END: ch04_take_lines
