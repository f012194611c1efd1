//! Reading a process's threads, fds, children and CPU time from `/proc`
//! ([proc(5)](https://man7.org/linux/man-pages/man5/proc.5.html)): how the
//! demo shows zombies, how the tests check that a server gave back what it
//! took, and how the benchmark charges a server for its CPU.

use std::fs;

use crate::kit::{Error, Result};

/// Entries in a `/proc` directory (`/proc/PID/task`, `/proc/PID/fd`).
fn count_entries(dir: &str) -> Result<usize> {
    let entries = fs::read_dir(dir).map_err(|e| Error::msg(format!("read_dir({dir}): {e}")))?;
    Ok(entries.filter(|e| e.is_ok()).count())
}

/// Threads of process `pid` (`/proc/PID/task`); `pid` 0 is this process.
pub fn threads(pid: i32) -> Result<usize> {
    count_entries(&format!("/proc/{}/task", name(pid)))
}

/// Open fds of process `pid` (`/proc/PID/fd`); `pid` 0 is this process.
pub fn fds(pid: i32) -> Result<usize> {
    count_entries(&format!("/proc/{}/fd", name(pid)))
}

fn name(pid: i32) -> String {
    if pid == 0 {
        "self".to_string()
    } else {
        pid.to_string()
    }
}

/// The fields of `/proc/PID/stat` after the command name, which is in
/// parentheses and may itself hold spaces or parentheses: split after the
/// last `)`. Index 0 is field 3 of proc(5) (`state`).
pub fn stat_fields(pid: i32) -> Result<Vec<String>> {
    let path = format!("/proc/{}/stat", name(pid));
    let text = fs::read_to_string(&path).map_err(|e| Error::msg(format!("read({path}): {e}")))?;
    let rest = text
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .ok_or_else(|| Error::msg(format!("{path}: no ')' after the command name")))?;
    Ok(rest.split_whitespace().map(str::to_string).collect())
}

/// One child process, as `/proc` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Child {
    pub pid: i32,
    /// `R` running, `S` sleeping, `Z` zombie (exited, not yet reaped), …
    pub state: char,
}

/// The children of `pid`: every process whose `ppid` (field 4 of
/// `/proc/PID/stat`) is `pid`. Processes that vanish while we read are
/// skipped.
pub fn children(pid: i32) -> Vec<Child> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in dir.flatten() {
        let Some(child) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(fields) = stat_fields(child) else {
            continue;
        };
        let ppid = fields.get(1).and_then(|s| s.parse::<i32>().ok());
        if ppid == Some(pid) {
            let state = fields.first().and_then(|s| s.chars().next()).unwrap_or('?');
            out.push(Child { pid: child, state });
        }
    }
    out.sort_by_key(|c| c.pid);
    out
}

/// Zombie children of `pid`.
pub fn zombies(pid: i32) -> usize {
    children(pid).iter().filter(|c| c.state == 'Z').count()
}

/// CPU time of `pid` in clock ticks: (`utime + stime` of all its threads,
/// `cutime + cstime` of the children it has reaped).
pub fn cpu_ticks(pid: i32) -> Result<(u64, u64)> {
    let f = stat_fields(pid)?;
    // proc(5) fields 14..=17 are utime, stime, cutime, cstime: index 11..=14.
    let num = |i: usize| f.get(i).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
    Ok((num(11) + num(12), num(13) + num(14)))
}

/// Clock ticks per second (`sysconf(_SC_CLK_TCK)`), read at run time.
pub fn ticks_per_second() -> u64 {
    // SAFETY: sysconf only reads a configuration value.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz > 0 { hz as u64 } else { 100 }
}

/// A `kB` line of `/proc/PID/status`, such as `VmRSS` or `VmSize`.
pub fn status_kb(pid: i32, key: &str) -> Option<u64> {
    let text = fs::read_to_string(format!("/proc/{}/status", name(pid))).ok()?;
    let line = text
        .lines()
        .find(|l| l.starts_with(key) && l[key.len()..].starts_with(':'))?;
    line[key.len() + 1..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Context switches (voluntary + involuntary) of every thread of `pid` now
/// alive, from `/proc/PID/task/TID/status`. Threads that have exited are
/// not counted, so sample while the threads of interest still run.
pub fn context_switches(pid: i32) -> u64 {
    let Ok(dir) = fs::read_dir(format!("/proc/{}/task", name(pid))) else {
        return 0;
    };
    let mut total = 0;
    for entry in dir.flatten() {
        let Ok(text) = fs::read_to_string(entry.path().join("status")) else {
            continue;
        };
        for line in text.lines() {
            if line.starts_with("voluntary_ctxt_switches:")
                || line.starts_with("nonvoluntary_ctxt_switches:")
            {
                total += line
                    .split_whitespace()
                    .nth(1)
                    .and_then(|n| n.parse::<u64>().ok())
                    .unwrap_or(0);
            }
        }
    }
    total
}
