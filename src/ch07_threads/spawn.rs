//! Running a server binary as a child process, the convention every
//! workbook server follows: start it with `--addr 127.0.0.1:0`, read the
//! `listening on IP:PORT` line it prints first, talk to it, stop it with
//! SIGTERM. The demo uses it for the fork server (so the demo's own process
//! stays free of forks), and the benchmark for every design.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use nix::sched::{CpuSet, sched_setaffinity};
use nix::sys::signal::{Signal, kill};
use nix::sys::socket::SockaddrStorage;
use nix::unistd::Pid;

use crate::kit::{Call, Error, Result, addr};

/// A server running as a child process.
#[derive(Debug)]
pub struct ServerChild {
    child: Child,
    /// Its process id.
    pub pid: i32,
    /// Where it listens, from its first line.
    pub addr: SockaddrStorage,
    lines: Receiver<String>,
    done: bool,
}

impl ServerChild {
    /// Start `program args…`, pinned to CPU `cpu` if given, and wait at
    /// most `timeout` for its `listening on IP:PORT` line. The child gets
    /// SIGKILL if this process dies first (`PR_SET_PDEATHSIG`).
    pub fn start(
        program: &str,
        args: &[String],
        cpu: Option<usize>,
        timeout: Duration,
    ) -> Result<ServerChild> {
        let mut cmd = Command::new(program);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let cpus = match cpu {
            Some(n) => {
                let mut set = CpuSet::new();
                set.set(n).call(format!("CPU_SET({n})"))?;
                Some(set)
            }
            None => None,
        };
        // SAFETY: between fork and exec the closure makes only two system
        // calls (prctl, sched_setaffinity), both async-signal-safe, and
        // allocates nothing.
        unsafe {
            cmd.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                if let Some(set) = &cpus {
                    sched_setaffinity(Pid::from_raw(0), set).map_err(std::io::Error::from)?;
                }
                Ok(())
            });
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| Error::msg(format!("spawn {program}: {e}")))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| Error::msg("no stdout pipe"))?;
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let pid = child.id() as i32;
        let mut server = ServerChild {
            child,
            pid,
            addr: addr::parse("127.0.0.1:0")?,
            lines,
            done: false,
        };
        let first = match server.lines.recv_timeout(timeout) {
            Ok(line) => line,
            Err(_) => {
                return Err(Error::msg(format!(
                    "{program} {args:?}: no `listening on` line within {timeout:?}"
                )));
            }
        };
        let text = first.strip_prefix("listening on ").ok_or_else(|| {
            Error::msg(format!(
                "{program}: first line {first:?} is not `listening on IP:PORT`"
            ))
        })?;
        server.addr = addr::parse(text)?;
        Ok(server)
    }

    /// The next line it prints, waiting at most `timeout`.
    pub fn next_line(&self, timeout: Duration) -> Option<String> {
        self.lines.recv_timeout(timeout).ok()
    }

    /// Lines until one satisfies `want`, at most `timeout` in all.
    pub fn wait_line(&self, timeout: Duration, want: impl Fn(&str) -> bool) -> Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            match self
                .lines
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                Ok(line) if want(&line) => return Ok(line),
                Ok(_) => continue,
                Err(RecvTimeoutError::Timeout) => {
                    return Err(Error::msg(format!(
                        "server {}: no such line within {timeout:?}",
                        self.pid
                    )));
                }
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(Error::msg(format!("server {}: stdout closed", self.pid)));
                }
            }
        }
    }

    /// Send it `signal`.
    pub fn signal(&self, signal: Signal) -> Result<()> {
        kill(Pid::from_raw(self.pid), signal).call(format!("kill({}, {signal:?})", self.pid))
    }

    /// SIGTERM, then wait at most `timeout` for it to exit (SIGKILL after
    /// that). Returns its status and the lines it printed meanwhile.
    pub fn stop(mut self, timeout: Duration) -> Result<(ExitStatus, Vec<String>)> {
        let _ = self.signal(Signal::SIGTERM);
        let deadline = Instant::now() + timeout;
        let mut rest = Vec::new();
        loop {
            match self
                .lines
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                Ok(line) => rest.push(line),
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => {
                    let _ = self.child.kill();
                    break;
                }
            }
        }
        let status = self
            .child
            .wait()
            .map_err(|e| Error::msg(format!("wait for {}: {e}", self.pid)))?;
        self.done = true;
        Ok((status, rest))
    }
}

impl Drop for ServerChild {
    fn drop(&mut self) {
        if !self.done {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
