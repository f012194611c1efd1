//! How many fds this process may open: `RLIMIT_NOFILE`
//! ([`getrlimit(2)`](https://man7.org/linux/man-pages/man2/getrlimit.2.html)).
//!
//! Two walls stand in front of a select server with many clients: the
//! process's fd limit (the *soft* limit, which the process may raise up to
//! the *hard* one) and `FD_SETSIZE`. Raw `libc` here: nix has these calls
//! behind a feature the workbook does not enable.

use crate::kit::{Error, Result};

/// The soft and hard `RLIMIT_NOFILE`.
pub fn nofile() -> Result<(u64, u64)> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid rlimit the call fills in; nothing else
    // holds a pointer to it.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == -1 {
        return Err(Error::last_os("getrlimit(RLIMIT_NOFILE)"));
    }
    Ok((lim.rlim_cur, lim.rlim_max))
}

/// Raise the soft `RLIMIT_NOFILE` to at least `want` if the hard limit
/// allows it (never lowers it). Returns the soft limit now in force.
pub fn raise_nofile(want: u64) -> Result<u64> {
    let (soft, hard) = nofile()?;
    if soft >= want {
        return Ok(soft);
    }
    let lim = libc::rlimit {
        rlim_cur: want.min(hard),
        rlim_max: hard,
    };
    // SAFETY: `lim` is a valid, initialised rlimit that outlives the call.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } == -1 {
        return Err(Error::last_os(format!(
            "setrlimit(RLIMIT_NOFILE, {{{}, {hard}}})",
            lim.rlim_cur
        )));
    }
    Ok(lim.rlim_cur)
}
