//! A workbook server run as a child process: started from its binary with
//! `server … --addr 127.0.0.1:0`, found by the `listening on IP:PORT` line
//! it prints first, read line by line with deadlines, and killed on every
//! path (on drop, and by the kernel if the test thread dies first).

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::socket::SockaddrStorage;

/// A running server process.
pub struct ServerProcess {
    child: Child,
    /// Its process id, for `/proc/PID/…`.
    pub pid: i32,
    /// The address from its `listening on` line.
    pub addr: SockaddrStorage,
    /// The port of that address.
    pub port: u16,
    lines: Receiver<String>,
    exited: Option<ExitStatus>,
    stderr: Arc<Mutex<Vec<String>>>,
}

/// How [`ServerProcess::start_with`] starts a server.
#[derive(Debug, Clone, Copy, Default)]
pub struct Launch {
    /// `RLIMIT_NOFILE` (soft and hard) set in the child before `exec`, so
    /// the server cannot raise it: how many fds it may hold.
    pub nofile: Option<u64>,
    /// Keep the server's stderr to [`ServerProcess::stderr_lines`] only,
    /// instead of also copying it to the test's stderr line by line (a
    /// server that logs every dropped client would drown the test's output).
    pub quiet_stderr: bool,
}

impl ServerProcess {
    /// Start `path` with `args` and wait at most `limit` for its
    /// `listening on IP:PORT` line; panics (after killing it) otherwise.
    pub fn start(path: &str, args: &[&str], limit: Duration) -> ServerProcess {
        ServerProcess::start_with(path, args, limit, Launch::default())
    }

    /// [`ServerProcess::start`], with the options of `launch`.
    pub fn start_with(path: &str, args: &[&str], limit: Duration, launch: Launch) -> ServerProcess {
        let mut cmd = Command::new(path);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // SAFETY: prctl is async-signal-safe; it only sets a flag of the new
        // process: SIGKILL it when the thread that spawned it dies.
        // setrlimit is async-signal-safe too and changes only the child.
        unsafe {
            cmd.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                if let Some(n) = launch.nofile {
                    let lim = libc::rlimit {
                        rlim_cur: n,
                        rlim_max: n,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) == -1 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {path}: {e}"));
        // The server's stderr goes to the test's own stderr, line by line:
        // libtest captures it, so a failing test shows why the server died
        // (in the student edition: its `not yet implemented` panic).
        // Every line is also kept for `stderr_lines`.
        let stderr = child.stderr.take().unwrap();
        let kept = Arc::new(Mutex::new(Vec::new()));
        let keep = Arc::clone(&kept);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if !launch.quiet_stderr {
                    eprintln!("{line}");
                }
                keep.lock().unwrap_or_else(|p| p.into_inner()).push(line);
            }
        });
        let stdout = child.stdout.take().unwrap();
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
        let first = lines.recv_timeout(limit);
        let Ok(first) = first else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{path} {args:?}: no `listening on` line within {limit:?}");
        };
        let Some(text) = first.strip_prefix("listening on ") else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{path} {args:?}: first line is {first:?}, not `listening on IP:PORT`");
        };
        let sock: std::net::SocketAddr = text.trim().parse().expect("an IP:PORT address");
        ServerProcess {
            child,
            pid,
            addr: SockaddrStorage::from(sock),
            port: sock.port(),
            lines,
            exited: None,
            stderr: kept,
        }
    }

    /// Every line the server has written to stderr so far.
    pub fn stderr_lines(&self) -> Vec<String> {
        self.stderr
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Its exit status if it has exited (without waiting), `None` while it
    /// runs.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        if self.exited.is_none() {
            self.exited = self.child.try_wait().ok().flatten();
        }
        self.exited
    }

    /// The next line of its stdout, waiting at most `timeout`; `None` on
    /// timeout or once stdout has closed.
    pub fn next_line(&self, timeout: Duration) -> Option<String> {
        self.lines.recv_timeout(timeout).ok()
    }

    /// Read lines until one satisfies `want`, for at most `timeout` in all;
    /// panics with the lines seen if none does.
    pub fn wait_line(&self, timeout: Duration, want: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + timeout;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if want(&line) => return line,
                Ok(line) => seen.push(line),
                Err(RecvTimeoutError::Timeout) => panic!(
                    "the server (pid {}, {}) printed no line the test waits for within \
                     {timeout:?}; it printed {seen:?} meanwhile; its stderr so far: {:?}",
                    self.pid,
                    self.addr,
                    self.stderr_lines()
                ),
                Err(RecvTimeoutError::Disconnected) => panic!(
                    "the server (pid {}, {}) closed its stdout (did it exit or crash?) before \
                     printing the line the test waits for; it printed {seen:?}; its stderr: {:?}",
                    self.pid,
                    self.addr,
                    self.stderr_lines()
                ),
            }
        }
    }

    /// Send it a signal (`libc::SIGTERM`, …).
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill only sends a signal to our own child process.
        unsafe {
            libc::kill(self.pid, signal);
        }
    }

    /// Wait at most `timeout` for it to exit (its stdout closes when it and
    /// every process sharing that stdout have gone); panics on timeout.
    /// Returns its exit status and the lines it printed meanwhile.
    pub fn wait_exit(&mut self, timeout: Duration) -> (ExitStatus, Vec<String>) {
        let deadline = Instant::now() + timeout;
        let mut rest = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => rest.push(line),
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => {
                    let _ = self.child.kill();
                    panic!("server did not exit within {timeout:?}; printed {rest:?}");
                }
            }
        }
        let status = self.child.wait().expect("wait for the server");
        self.exited = Some(status);
        (status, rest)
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if self.exited.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Check `ready` until it holds, for at most `timeout`. For kernel state
/// that has no fd to wait on (a thread's exit as `/proc` shows it, a child
/// leaving the process table): it looks every few milliseconds.
pub fn eventually(timeout: Duration, mut ready: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if ready() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}
