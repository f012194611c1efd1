//! One suite of hostile clients, run against any TCP server binary of the
//! workbook. Every long-running server must survive it (`tests/bad_clients.rs`
//! runs it against each one).
//!
//! ```ignore
//! #[macro_use]
//! mod support;
//! use support::bad_clients::{BadClients, Case, Server, probe};
//!
//! #[test]
//! fn echo_server_survives_bad_clients() {
//!     let server = Server::new("ch02 echo", env!("CARGO_BIN_EXE_ch02_tcp"), &["server"])
//!         .probe(probe::echo_line);
//!     BadClients::new(server)
//!         .skip(Case::StalledLine, "iterative: one client at a time (chapter 2, pitfalls)")
//!         .run();
//! }
//! ```
//!
//! [`Server::new`] takes the binary and its arguments; the suite adds
//! `--addr 127.0.0.1:0` and reads the port from the `listening on IP:PORT`
//! line. The *probe* is how a fresh client checks it is served correctly
//! (echo a line and compare, read a greeting…): [`probe`] has the common
//! ones, or pass any `Fn(SocketAddr, Duration) -> Result<(), String>` that
//! finishes within the given time. A server that is naive on purpose skips
//! a [`Case`] with [`BadClients::skip`] and the reason its chapter gives.
//! The suite speaks TCP over IPv4 loopback, to a binary (a server function
//! is run through the binary that serves it: the suite needs a process of
//! its own to limit its fds, read its CPU time and send it SIGINT).
//!
//! The probes at hand: [`probe::echo_line`] (the default),
//! [`probe::reply_to_eof`] (a server that speaks first and closes, e.g.
//! daytime), [`probe::exchange`] (request, half-close, reply to EOF, e.g.
//! an HTTP/1.0 `GET`); chapter 4's chat has its own in `tests/bad_clients.rs`.
//!
//! Every run prints its skips with their reasons and one line per case (what
//! the client did, in how long) to stderr: `cargo test --test bad_clients --
//! --nocapture` shows them.
//!
//! What [`BadClients::run`] does, on one server process, case after case
//! (each [`Case`] says what its client does):
//!
//! 1. after every case: the server is still running and the probe passes;
//! 2. [`Case::FdExhaustion`] runs meanwhile on a second process started
//!    under a low `RLIMIT_NOFILE`: it must not die, must not spin (its CPU
//!    time from `/proc/PID/stat` over the overload stays under
//!    [`SPIN_LIMIT`] of one core), and must serve again once the clients
//!    leave (that probe is retried until [`DEADLINE`]: each thread of a
//!    multi-threaded server may need a moment to see its fds come back);
//! 3. at the end, on each process: its fd count (`/proc/PID/fd`) is back to
//!    what it was after start, its stderr has no panic, and SIGINT stops it
//!    with exit status 0.
//!
//! Every failure is collected (the run goes on while the server lives) and
//! the test then fails with one paragraph per failed case: what the client
//! did, what was expected, what it got, and the server's last stderr lines.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::socket::{
    self, AddressFamily, MsgFlags, SockFlag, SockType, SockaddrIn, SockaddrStorage, sockopt,
};

use super::DEADLINE;
use super::server_process::{Launch, ServerProcess, eventually};

/// The hostile clients, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Case {
    /// Half a line, then a reset (`SO_LINGER {1, 0}` and `close`: RST).
    RstMidLine,
    /// Connections reset while they still wait in the accept queue: one
    /// silent client holds the server (an iterative one is then busy), 16
    /// more (the smallest backlog here) connect and reset at once, then the
    /// first leaves.
    RstInQueue,
    /// 64 KiB of binary garbage (every byte value, `\0` and invalid UTF-8),
    /// reading whatever comes back.
    Garbage64K,
    /// 1 MiB with no newline (or until the server stops reading for
    /// [`STALL`]), reading whatever comes back.
    NoNewline1M,
    /// Half a line, then silence with the connection open: meanwhile a
    /// fresh client must be served within [`SERVED_WITHIN`].
    StalledLine,
    /// Sends and never reads (its receive buffer set small, so an echo
    /// backs up sooner), until its sends block for [`STALL`] or 16 MiB have
    /// gone; then waits until the server has read all it will (its receive
    /// queue for the connection in `/proc/net/tcp` is empty or stops
    /// changing); with that connection open, a fresh client must be served.
    NeverReads,
    /// 1,000 connections opened and closed at once (every other one with
    /// RST), from 4 threads. A connect not established within
    /// [`FLOOD_PATIENCE`] is abandoned: its SYN met a full accept queue
    /// (an iterative server's small backlog overflows), and the kernel would
    /// resend it only after a second.
    Flood1000,
    /// 500 connections open at once; while they are, a fresh client must
    /// be served.
    Hold500,
    /// A second server process under `RLIMIT_NOFILE` = [`FD_LIMIT`] gets
    /// more clients than it can hold, for [`OVERLOAD`]: it must neither die
    /// nor spin, and must serve again once they leave.
    FdExhaustion,
}

impl Case {
    /// Every case, in the order they run.
    pub const ALL: [Case; 9] = [
        Case::RstMidLine,
        Case::RstInQueue,
        Case::Garbage64K,
        Case::NoNewline1M,
        Case::StalledLine,
        Case::NeverReads,
        Case::Flood1000,
        Case::Hold500,
        Case::FdExhaustion,
    ];
}

/// A fresh client must be served this soon while [`Case::StalledLine`]'s
/// client stalls.
pub const SERVED_WITHIN: Duration = Duration::from_secs(2);
/// A sender gives up when the server has taken nothing for this long.
pub const STALL: Duration = Duration::from_millis(500);
/// How long a flood connect may take before it is abandoned.
pub const FLOOD_PATIENCE: Duration = Duration::from_millis(50);
/// `RLIMIT_NOFILE` of the server in [`Case::FdExhaustion`].
pub const FD_LIMIT: u64 = 64;
/// How long [`Case::FdExhaustion`] holds the server over its limit while
/// measuring its CPU time.
pub const OVERLOAD: Duration = Duration::from_millis(1500);
/// The most CPU (fraction of one core) a server may use while it is out of
/// fds and nobody leaves. Generous: the servers here use 0 to 0.04 (chapter
/// 5's reads `/proc/net/tcp` twice a second); one that spins on a readable
/// listener uses all the CPU it is given, which was 0.32 for chapter 7's
/// thread server without its back-off on a loaded 2-core machine (each
/// failed accept also wrote a line to stderr).
pub const SPIN_LIMIT: f64 = 0.15;

/// How a fresh client checks that the server serves it correctly: given the
/// server's address and how long it may take, `Ok(())` or what went wrong.
pub type Probe = Arc<dyn Fn(SocketAddr, Duration) -> Result<(), String> + Send + Sync>;

/// A server binary to run the suite against.
#[derive(Clone)]
pub struct Server {
    name: String,
    path: String,
    args: Vec<String>,
    probe: Probe,
}

impl Server {
    /// `path` (e.g. `env!("CARGO_BIN_EXE_ch02_tcp")`) run with `args`; the
    /// suite appends `--addr 127.0.0.1:0`. The probe is
    /// [`probe::echo_line`] until [`Server::probe`] says otherwise.
    pub fn new(name: &str, path: &str, args: &[&str]) -> Server {
        Server {
            name: name.to_string(),
            path: path.to_string(),
            args: args.iter().map(|a| a.to_string()).collect(),
            probe: Arc::new(probe::echo_line),
        }
    }

    /// How a fresh client checks it is served.
    pub fn probe(
        mut self,
        probe: impl Fn(SocketAddr, Duration) -> Result<(), String> + Send + Sync + 'static,
    ) -> Server {
        self.probe = Arc::new(probe);
        self
    }

    fn command(&self) -> String {
        format!("{} {} --addr 127.0.0.1:0", self.path, self.args.join(" "))
    }

    fn start(&self, nofile: Option<u64>) -> ServerProcess {
        let mut args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        args.extend(["--addr", "127.0.0.1:0"]);
        ServerProcess::start_with(
            &self.path,
            &args,
            DEADLINE,
            Launch {
                nofile,
                quiet_stderr: true,
            },
        )
    }
}

/// The suite, configured for one server.
pub struct BadClients {
    server: Server,
    skips: Vec<(Case, String)>,
}

/// One failed expectation.
struct Failure {
    case: String,
    did: String,
    expected: String,
    got: String,
}

type Outcome = Result<String, (String, String)>;

impl BadClients {
    /// The whole suite against `server`.
    pub fn new(server: Server) -> BadClients {
        BadClients {
            server,
            skips: Vec::new(),
        }
    }

    /// Leave `case` out, because `reason` (what the server's chapter says
    /// it does instead). The reason is printed with the run.
    pub fn skip(mut self, case: Case, reason: &str) -> BadClients {
        self.skips.push((case, reason.to_string()));
        self
    }

    fn skipped(&self, case: Case) -> Option<&str> {
        self.skips
            .iter()
            .find(|(c, _)| *c == case)
            .map(|(_, r)| r.as_str())
    }

    /// Run every case not skipped; panic with every failure, explained.
    pub fn run(self) {
        raise_own_fd_limit();
        let name = self.server.name.clone();
        for (case, reason) in &self.skips {
            eprintln!("bad clients: {name}: skipped {case:?}: {reason}");
        }
        let started = Instant::now();
        let failures = std::thread::scope(|scope| {
            let exhaustion = (self.skipped(Case::FdExhaustion).is_none())
                .then(|| scope.spawn(|| self.run_fd_exhaustion()));
            let mut failures = self.run_main();
            if let Some(handle) = exhaustion {
                match handle.join() {
                    Ok(more) => failures.extend(more),
                    Err(panic) => std::panic::resume_unwind(panic),
                }
            }
            failures
        });
        eprintln!(
            "bad clients: {name}: {} cases in {:.1} s, {} failed",
            Case::ALL.len() - self.skips.len(),
            started.elapsed().as_secs_f64(),
            failures.len()
        );
        if failures.is_empty() {
            return;
        }
        let mut text = format!(
            "{name} failed the bad-client suite (server: {}):\n",
            self.server.command()
        );
        for f in &failures {
            text.push_str(&format!(
                "\n* {}\n  did:      {}\n  expected: {}\n  got:      {}\n",
                f.case, f.did, f.expected, f.got
            ));
        }
        panic!("{text}");
    }

    /// Every case but the fd exhaustion, on one server process.
    fn run_main(&self) -> Vec<Failure> {
        let mut srv = self.server.start(None);
        let addr = std_addr(&srv.addr);
        let base = fd_targets(srv.pid);
        let probe = Arc::clone(&self.server.probe);
        let mut failures = Vec::new();
        if let Err(got) = probe(addr, DEADLINE) {
            failures.push(Failure {
                case: "probe before any bad client".into(),
                did: "a fresh client, first thing after start".into(),
                expected: "served correctly".into(),
                got,
            });
            return failures;
        }
        for case in Case::ALL {
            if case == Case::FdExhaustion || self.skipped(case).is_some() {
                continue;
            }
            let t = Instant::now();
            let outcome = run_case(case, addr, &probe);
            let took = t.elapsed().as_secs_f64();
            let did = match &outcome {
                Ok(did) | Err((did, _)) => did.clone(),
            };
            eprintln!(
                "bad clients: {}: {case:?} in {took:.2} s: {did}",
                self.server.name
            );
            if let Err((_, got)) = &outcome {
                failures.push(Failure {
                    case: format!("{case:?} ({took:.1} s)"),
                    did: did.clone(),
                    expected: expectation(case),
                    got: got.clone(),
                });
            }
            let probed = match outcome {
                Ok(_) => probe(addr, DEADLINE),
                Err(_) => Ok(()),
            };
            // A server that just died may take a moment to be reaped.
            if probed.is_err() || outcome.is_err() {
                eventually(Duration::from_secs(1), || srv.try_wait().is_some());
            }
            if let Some(status) = srv.try_wait() {
                failures.push(Failure {
                    case: format!("{case:?}: the server died"),
                    did,
                    expected: "the server goes on".into(),
                    got: format!("it exited ({status}); {}", stderr_tail(&srv)),
                });
                return failures;
            }
            if let Err(got) = probed {
                failures.push(Failure {
                    case: format!("{case:?}: probe afterwards"),
                    did: format!("{did}; then a fresh client"),
                    expected: "the fresh client served correctly".into(),
                    got,
                });
            }
        }
        failures.extend(finish("", &mut srv, &base));
        failures
    }

    /// [`Case::FdExhaustion`] on its own server process.
    fn run_fd_exhaustion(&self) -> Vec<Failure> {
        let mut srv = self.server.start(Some(FD_LIMIT));
        let addr = std_addr(&srv.addr);
        let base = fd_targets(srv.pid);
        let mut failures = Vec::new();
        let clients = FD_LIMIT as usize + 32;
        let mut did = format!(
            "server under RLIMIT_NOFILE {FD_LIMIT} (it had {} fds open); {clients} clients connected at once, each sent a line",
            base.len()
        );
        let (held, pending) = connect_many(addr, clients, Duration::from_secs(1));
        for fd in &held {
            let _ = socket::send(
                fd.as_raw_fd(),
                b"hello\n",
                MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL,
            );
        }
        did.push_str(&format!(
            " ({} established, {} still connecting after 1 s)",
            held.len(),
            pending.len()
        ));
        // Let the server accept what it can, then watch it for OVERLOAD.
        let peak_fds = settle_fd_count(srv.pid);
        let before = cpu_ticks(srv.pid);
        let t0 = Instant::now();
        std::thread::sleep(OVERLOAD); // the measurement window, not a sync
        let after = cpu_ticks(srv.pid);
        let wall = t0.elapsed().as_secs_f64();
        did.push_str(&format!(
            "; held them {wall:.1} s (server at {peak_fds} fds), then closed them all"
        ));
        let share = match (before, after) {
            (Some(b), Some(a)) => Some((a - b) as f64 / clock_ticks() / wall),
            _ => None,
        };
        eprintln!(
            "bad clients: {}: FdExhaustion: {did}; server CPU {}",
            self.server.name,
            share.map_or("unknown".into(), |s| format!(
                "{:.1}% of one core",
                s * 100.0
            ))
        );
        let alive = srv.try_wait();
        drop(held);
        drop(pending);
        if let Some(status) = alive {
            failures.push(Failure {
                case: "FdExhaustion: the server died".into(),
                did,
                expected: "the server goes on without fds".into(),
                got: format!("it exited ({status}); {}", stderr_tail(&srv)),
            });
            return failures;
        }
        if let (Some(b), Some(a), Some(share)) = (before, after, share)
            && share > SPIN_LIMIT
        {
            failures.push(Failure {
                case: "FdExhaustion: CPU".into(),
                did: did.clone(),
                expected: format!(
                    "the server waits while it has no fds: under {:.0}% of one core",
                    SPIN_LIMIT * 100.0
                ),
                got: format!(
                    "{:.0}% of one core ({} clock ticks of utime+stime in {wall:.1} s, /proc/{}/stat): it spins",
                    share * 100.0,
                    a - b,
                    srv.pid
                ),
            });
        }
        if let Err(got) = probe_until(&self.server.probe, addr, DEADLINE) {
            failures.push(Failure {
                case: "FdExhaustion: probe after the clients left".into(),
                did: did.clone(),
                expected: "serves again once the clients have left".into(),
                got,
            });
        }
        failures.extend(finish("FdExhaustion: ", &mut srv, &base));
        failures
    }
}

/// The probe after [`Case::FdExhaustion`]'s clients have left, retried
/// until `within` has passed. Each thread of a multi-threaded server has
/// its own view of the flood: one may still be at `RLIMIT_NOFILE` (and shed
/// the probe with its reserve fd, or be backing off) while another is
/// still closing its share. "Serves again once the clients leave" allows
/// it a moment; a server that never serves again still fails, with every
/// distinct answer it gave.
fn probe_until(probe: &Probe, addr: SocketAddr, within: Duration) -> Result<(), String> {
    let t0 = Instant::now();
    let deadline = t0 + within;
    let mut tries = 0;
    let mut answers: Vec<(String, u32)> = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        tries += 1;
        match probe(addr, left) {
            Ok(()) => {
                if tries > 1 {
                    eprintln!(
                        "bad clients: FdExhaustion: served on probe {tries}, {:.0?} after the clients left",
                        t0.elapsed()
                    );
                }
                return Ok(());
            }
            Err(got) => match answers.iter_mut().find(|(a, _)| *a == got) {
                Some((_, n)) => *n += 1,
                None => answers.push((got, 1)),
            },
        }
        // Pacing between attempts (a shed probe fails at once), not a sync.
        std::thread::sleep(Duration::from_millis(20).min(left));
    }
    let seen: Vec<String> = answers.iter().map(|(a, n)| format!("{n}x: {a}")).collect();
    Err(format!(
        "{tries} fresh clients tried over {within:?}, none served: {}",
        seen.join("; ")
    ))
}

/// What every case expects, in one line.
fn expectation(case: Case) -> String {
    match case {
        Case::StalledLine => format!(
            "the server goes on and serves a fresh client within {} s",
            SERVED_WITHIN.as_secs()
        ),
        Case::NeverReads | Case::Hold500 => {
            "the server goes on and serves a fresh client meanwhile".into()
        }
        _ => "the server goes on".into(),
    }
}

/// One case; `Ok(what the client did)` or `Err((what it did, what went
/// wrong))`.
fn run_case(case: Case, addr: SocketAddr, probe: &Probe) -> Outcome {
    match case {
        Case::RstMidLine => {
            let did =
                "connected, sent \"half a li\" (no newline), reset (SO_LINGER {1, 0} + close)";
            let s = connect(addr).map_err(|e| (did.to_string(), e))?;
            (&s).write_all(b"half a li")
                .map_err(|e| (did.to_string(), format!("send: {e}")))?;
            reset(s);
            Ok(did.into())
        }
        Case::RstInQueue => {
            let mut did = String::from(
                "one client connected and stayed silent; 16 more connected and reset at once (SO_LINGER {1, 0} + close), while still in the accept queue if the server was busy; then the first closed",
            );
            let holder = connect(addr).map_err(|e| (did.clone(), e))?;
            let (conns, pending) = connect_many(addr, 16, DEADLINE);
            did.push_str(&format!(" ({} of 16 established)", conns.len()));
            for fd in conns {
                reset_fd(fd);
            }
            drop(pending);
            drop(holder);
            Ok(did)
        }
        Case::Garbage64K => {
            let mut garbage = vec![0u8; 64 * 1024];
            let mut x: u32 = 0x9e37_79b9;
            for (i, b) in garbage.iter_mut().enumerate() {
                // xorshift32, and every byte value once per 256 bytes
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                *b = if i % 2 == 0 { (i / 2) as u8 } else { x as u8 };
            }
            pump_case("64 KiB of binary garbage", addr, &garbage)
        }
        Case::NoNewline1M => pump_case("1 MiB of 'a' with no newline", addr, &[b'a'; 1 << 20]),
        Case::StalledLine => {
            let did = format!(
                "connected, sent \"stalled: half a li\" (no newline) and went silent, connection open; then a fresh client (at most {} s)",
                SERVED_WITHIN.as_secs()
            );
            let s = connect(addr).map_err(|e| (did.clone(), e))?;
            (&s).write_all(b"stalled: half a li")
                .map_err(|e| (did.clone(), format!("send: {e}")))?;
            let t = Instant::now();
            let served = probe(addr, SERVED_WITHIN);
            let took = t.elapsed();
            drop(s);
            match served {
                Ok(()) if took <= SERVED_WITHIN => Ok(did),
                Ok(()) => Err((did, format!("served after {:.1} s", took.as_secs_f64()))),
                Err(e) => Err((did, format!("not served: {e}"))),
            }
        }
        Case::NeverReads => {
            let mut did =
                String::from("connected with SO_RCVBUF 4096, sent lines without ever reading");
            let fd =
                connect_nonblocking(addr, DEADLINE, Some(4096)).map_err(|e| (did.clone(), e))?;
            let line = b"never reads: this line goes out, its answer is never read\n";
            let mut sent = 0usize;
            let cap = 16 << 20;
            let mut ended = "16 MiB sent".to_string();
            while sent < cap {
                match socket::send(fd.as_raw_fd(), line, MsgFlags::MSG_NOSIGNAL) {
                    Ok(n) => sent += n,
                    Err(Errno::EINTR) => {}
                    Err(Errno::EAGAIN) => {
                        if !wait_for(&fd, PollFlags::POLLOUT, STALL) {
                            ended = format!("its sends blocked for {} ms", STALL.as_millis());
                            break;
                        }
                    }
                    Err(e) => {
                        ended = format!("send: {e} (the server dropped it)");
                        break;
                    }
                }
            }
            let queued = settle_unread(addr, &fd);
            did.push_str(&format!(
                " ({sent} bytes, until {ended}; then the server left {queued} bytes unread), connection open; then a fresh client"
            ));
            let served = probe(addr, DEADLINE);
            drop(fd);
            served
                .map(|()| did.clone())
                .map_err(|e| (did, format!("not served: {e}")))
        }
        Case::Flood1000 => {
            let established = std::sync::atomic::AtomicUsize::new(0);
            let t = Instant::now();
            std::thread::scope(|scope| {
                for _ in 0..4 {
                    scope.spawn(|| {
                        for i in 0..250 {
                            let Ok(fd) = connect_nonblocking(addr, FLOOD_PATIENCE, None) else {
                                continue;
                            };
                            established.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            if i % 2 == 0 {
                                reset_fd(fd);
                            }
                        }
                    });
                }
            });
            Ok(format!(
                "opened 1,000 connections from 4 threads and closed each at once, every other one with RST ({} established, the rest abandoned after {} ms; {:.1} s)",
                established.into_inner(),
                FLOOD_PATIENCE.as_millis(),
                t.elapsed().as_secs_f64()
            ))
        }
        Case::Hold500 => {
            let mut did = String::from("opened 500 connections and held them all open");
            let (held, pending) = connect_many(addr, 500, DEADLINE);
            did.push_str(&format!(
                " ({} established within {} s); then a fresh client",
                held.len(),
                DEADLINE.as_secs()
            ));
            if !pending.is_empty() {
                return Err((
                    did,
                    format!("{} connections not established", pending.len()),
                ));
            }
            let served = probe(addr, DEADLINE);
            drop(held);
            served
                .map(|()| did.clone())
                .map_err(|e| (did, format!("not served: {e}")))
        }
        Case::FdExhaustion => Ok("runs on its own server process".into()),
    }
}

/// Send `data` on a fresh connection while reading and discarding whatever
/// comes back, until all is sent, the server closes or resets, or it takes
/// nothing for [`STALL`]; then close.
fn pump_case(what: &str, addr: SocketAddr, data: &[u8]) -> Outcome {
    let mut did = format!("connected, sent {what} while reading whatever came back");
    let fd = connect_nonblocking(addr, DEADLINE, None).map_err(|e| (did.clone(), e))?;
    let raw = fd.as_raw_fd();
    let (mut sent, mut got) = (0usize, 0usize);
    let mut buf = vec![0u8; 64 * 1024];
    let ended = loop {
        if sent == data.len() {
            break "all sent".to_string();
        }
        let mut fds = [PollFd::new(
            fd.as_fd(),
            PollFlags::POLLIN | PollFlags::POLLOUT,
        )];
        match poll(
            &mut fds,
            PollTimeout::try_from(STALL).unwrap_or(PollTimeout::MAX),
        ) {
            Ok(0) => break format!("the server took nothing for {} ms", STALL.as_millis()),
            Ok(_) => {}
            Err(Errno::EINTR) => continue,
            Err(e) => break format!("poll: {e}"),
        }
        let revents = fds[0].revents().unwrap_or(PollFlags::empty());
        if revents.intersects(PollFlags::POLLIN | PollFlags::POLLERR | PollFlags::POLLHUP) {
            match socket::recv(raw, &mut buf, MsgFlags::MSG_DONTWAIT) {
                Ok(0) => break "the server closed the connection".into(),
                Ok(n) => got += n,
                Err(Errno::EAGAIN | Errno::EINTR) => {}
                Err(e) => break format!("recv: {e}"),
            }
        }
        if revents.contains(PollFlags::POLLOUT) {
            let end = (sent + 16 * 1024).min(data.len());
            match socket::send(
                raw,
                &data[sent..end],
                MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL,
            ) {
                Ok(n) => sent += n,
                Err(Errno::EAGAIN | Errno::EINTR) => {}
                Err(e) => break format!("send: {e}"),
            }
        }
    };
    did.push_str(&format!(
        " ({sent} of {} bytes sent, {got} received; ended: {ended}), then closed",
        data.len()
    ));
    drop(fd);
    Ok(did)
}

/// The checks at the end of a server's run: fds back to what they were,
/// no panic on stderr, SIGINT ends it with status 0.
fn finish(prefix: &str, srv: &mut ServerProcess, base: &[String]) -> Vec<Failure> {
    let mut failures = Vec::new();
    let pid = srv.pid;
    let mut now = Vec::new();
    let settled = eventually(DEADLINE, || {
        now = fd_targets(pid);
        now.len() == base.len()
    });
    if !settled {
        let extra: Vec<&String> = now.iter().filter(|t| !base.contains(t)).collect();
        let mut gone: Vec<&String> = base.iter().collect();
        for t in &now {
            if let Some(i) = gone.iter().position(|g| *g == t) {
                gone.remove(i);
            }
        }
        failures.push(Failure {
            case: format!("{prefix}fds back to baseline"),
            did: "every bad client gone".into(),
            expected: format!("{} fds open, as after start (/proc/{pid}/fd)", base.len()),
            got: format!(
                "{} fds after {} s; {} not there at start, e.g. {:?}; {} of those at start gone, e.g. {:?}",
                now.len(),
                DEADLINE.as_secs(),
                extra.len(),
                &extra[..extra.len().min(6)],
                gone.len(),
                &gone[..gone.len().min(6)]
            ),
        });
    }
    let panics: Vec<String> = srv
        .stderr_lines()
        .into_iter()
        .filter(|l| l.contains("panicked"))
        .collect();
    if !panics.is_empty() {
        failures.push(Failure {
            case: format!("{prefix}no panic"),
            did: "read the server's stderr".into(),
            expected: "no panic".into(),
            got: panics.join(" | "),
        });
    }
    srv.signal(libc::SIGINT);
    let exited = eventually(Duration::from_secs(10), || srv.try_wait().is_some());
    match srv.try_wait() {
        Some(status) if status.code() == Some(0) => {}
        Some(status) => failures.push(Failure {
            case: format!("{prefix}SIGINT"),
            did: format!("kill({pid}, SIGINT)"),
            expected: "exit status 0".into(),
            got: format!("{status}; {}", stderr_tail(srv)),
        }),
        None => failures.push(Failure {
            case: format!("{prefix}SIGINT"),
            did: format!("kill({pid}, SIGINT)"),
            expected: "the server exits, status 0".into(),
            got: format!("still running after 10 s (exited: {exited})"),
        }),
    }
    failures
}

/// The server's last stderr lines, for a failure message.
fn stderr_tail(srv: &ServerProcess) -> String {
    let lines = srv.stderr_lines();
    let tail = &lines[lines.len().saturating_sub(8)..];
    if tail.is_empty() {
        "its stderr is empty".into()
    } else {
        format!("its stderr ends: {}", tail.join(" | "))
    }
}

/// The hex form `/proc/net/tcp` gives an IPv4 address: `0100007F:1F90`.
fn proc_net_tcp_addr(addr: SocketAddr) -> Option<String> {
    let SocketAddr::V4(v4) = addr else {
        return None;
    };
    Some(format!(
        "{:08X}:{:04X}",
        u32::from_ne_bytes(v4.ip().octets()),
        v4.port()
    ))
}

/// The server's side of the connection `client` has to `server`: the bytes
/// it has received and not yet read (`rx_queue` in `/proc/net/tcp`).
fn server_unread(server: SocketAddr, client: SocketAddr) -> Option<u64> {
    let (local, remote) = (proc_net_tcp_addr(server)?, proc_net_tcp_addr(client)?);
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    table.lines().skip(1).find_map(|line| {
        let cols: Vec<&str> = line.split_whitespace().collect();
        if cols.get(1) != Some(&local.as_str()) || cols.get(2) != Some(&remote.as_str()) {
            return None;
        }
        let (_, rx) = cols.get(4)?.split_once(':')?;
        u64::from_str_radix(rx, 16).ok()
    })
}

/// Wait (at most [`DEADLINE`]) until the server has read all it is going
/// to read from `fd`'s connection: its unread bytes reach 0 or stay the same
/// for [`STALL`]. Returns them (0 if the connection is not found).
fn settle_unread(server: SocketAddr, fd: &OwnedFd) -> u64 {
    let client = match socket::getsockname::<SockaddrStorage>(fd.as_raw_fd()) {
        Ok(local) => std_addr(&local),
        Err(_) => return 0,
    };
    let deadline = Instant::now() + DEADLINE;
    let mut last = server_unread(server, client).unwrap_or(0);
    let mut since = Instant::now();
    loop {
        if last == 0 || since.elapsed() >= STALL || Instant::now() >= deadline {
            return last;
        }
        std::thread::sleep(Duration::from_millis(20));
        let now = server_unread(server, client).unwrap_or(0);
        if now != last {
            last = now;
            since = Instant::now();
        }
    }
}

/// What each of process `pid`'s fds is (`readlink /proc/PID/fd/N`).
fn fd_targets(pid: i32) -> Vec<String> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    let mut targets: Vec<String> = dir
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .map(|t| t.to_string_lossy().into_owned())
        .collect();
    targets.sort();
    targets
}

/// Wait until process `pid`'s fd count stops changing for 100 ms (at most
/// [`DEADLINE`]); returns it.
fn settle_fd_count(pid: i32) -> usize {
    let deadline = Instant::now() + DEADLINE;
    let mut last = fd_targets(pid).len();
    loop {
        std::thread::sleep(Duration::from_millis(100));
        let now = fd_targets(pid).len();
        if now == last || Instant::now() >= deadline {
            return now;
        }
        last = now;
    }
}

/// utime + stime of process `pid` (all its threads), in clock ticks, from
/// `/proc/PID/stat` (fields 14 and 15, counted after the `)` that ends
/// the command name, which may itself contain spaces).
fn cpu_ticks(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // after ")": field 3 (state) is index 0, so field N is index N - 3
    let utime: u64 = fields.get(14 - 3)?.parse().ok()?;
    let stime: u64 = fields.get(15 - 3)?.parse().ok()?;
    Some(utime + stime)
}

/// Clock ticks per second (`sysconf(_SC_CLK_TCK)`), the unit of `/proc`'s
/// CPU times.
fn clock_ticks() -> f64 {
    // SAFETY: sysconf only reads a configuration value.
    unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64
}

/// This test process needs more fds than the usual soft limit of 1024
/// allows (500 held connections, several servers in parallel): raise the
/// soft `RLIMIT_NOFILE` to the hard one.
fn raise_own_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: lim is a valid rlimit for the calls to read and write.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

fn std_addr(addr: &SockaddrStorage) -> SocketAddr {
    super::std_addr(addr)
}

/// A blocking `std` connection with [`DEADLINE`] timeouts.
fn connect(addr: SocketAddr) -> Result<TcpStream, String> {
    let s = TcpStream::connect_timeout(&addr, DEADLINE).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(DEADLINE)).ok();
    s.set_write_timeout(Some(DEADLINE)).ok();
    Ok(s)
}

/// Close with RST: `SO_LINGER {on, 0 s}`, then `close`.
fn reset(stream: TcpStream) {
    reset_fd(OwnedFd::from(stream));
}

fn reset_fd(fd: OwnedFd) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    let _ = socket::setsockopt(&fd, sockopt::Linger, &linger);
    drop(fd);
}

/// A nonblocking IPv4 TCP socket with `connect` started (and `SO_RCVBUF`
/// set first, if `rcvbuf` says so).
fn start_connect(addr: SocketAddr, rcvbuf: Option<usize>) -> Result<OwnedFd, String> {
    let SocketAddr::V4(v4) = addr else {
        return Err(format!("{addr}: the suite speaks IPv4"));
    };
    let fd = socket::socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(|e| format!("socket: {e}"))?;
    if let Some(n) = rcvbuf {
        socket::setsockopt(&fd, sockopt::RcvBuf, &n).map_err(|e| format!("SO_RCVBUF: {e}"))?;
    }
    match socket::connect(fd.as_raw_fd(), &SockaddrIn::from(v4)) {
        Ok(()) | Err(Errno::EINPROGRESS) => Ok(fd),
        Err(e) => Err(format!("connect({addr}): {e}")),
    }
}

/// Has a started connect finished, and how? `None` while in progress.
fn connect_result(fd: &OwnedFd) -> Option<Result<(), String>> {
    if !wait_for(fd, PollFlags::POLLOUT, Duration::ZERO) {
        return None;
    }
    Some(match socket::getsockopt(fd, sockopt::SocketError) {
        Ok(0) => Ok(()),
        Ok(e) => Err(format!("connect: {}", Errno::from_raw(e))),
        Err(e) => Err(format!("getsockopt(SO_ERROR): {e}")),
    })
}

/// A connection, established within `limit`; the socket stays nonblocking.
fn connect_nonblocking(
    addr: SocketAddr,
    limit: Duration,
    rcvbuf: Option<usize>,
) -> Result<OwnedFd, String> {
    let fd = start_connect(addr, rcvbuf)?;
    if !wait_for(&fd, PollFlags::POLLOUT, limit) {
        return Err(format!("connect({addr}): not established within {limit:?}"));
    }
    connect_result(&fd).unwrap_or(Err("connect: no result".into()))?;
    Ok(fd)
}

/// Start `n` connects at once and wait up to `limit` for them: returns the
/// established ones and those still connecting (failed ones are dropped).
fn connect_many(addr: SocketAddr, n: usize, limit: Duration) -> (Vec<OwnedFd>, Vec<OwnedFd>) {
    let deadline = Instant::now() + limit;
    let mut pending: Vec<OwnedFd> = (0..n)
        .filter_map(|_| start_connect(addr, None).ok())
        .collect();
    let mut done = Vec::new();
    loop {
        let mut still = Vec::new();
        for fd in pending {
            match connect_result(&fd) {
                None => still.push(fd),
                Some(Ok(())) => done.push(fd),
                Some(Err(_)) => {}
            }
        }
        pending = still;
        if pending.is_empty() || Instant::now() >= deadline {
            return (done, pending);
        }
        // Wait for any of them to finish (or 50 ms), then look again.
        let mut fds: Vec<PollFd> = pending
            .iter()
            .map(|fd| PollFd::new(fd.as_fd(), PollFlags::POLLOUT))
            .collect();
        let _ = poll(&mut fds, PollTimeout::from(50u8));
    }
}

/// Wait up to `limit` for `events` on `fd` (errors and hang-ups count).
fn wait_for(fd: &OwnedFd, events: PollFlags, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let mut fds = [PollFd::new(fd.as_fd(), events)];
        match poll(
            &mut fds,
            PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX),
        ) {
            Ok(0) => return false,
            Ok(_) => return true,
            Err(Errno::EINTR) => continue,
            Err(_) => return false,
        }
    }
}

/// Ready-made probes.
pub mod probe {
    use super::*;

    /// A unique line for each probe, so an echo of an old one cannot pass.
    fn unique_line(what: &str) -> String {
        use std::sync::atomic::{AtomicU64, Ordering};
        static N: AtomicU64 = AtomicU64::new(0);
        format!(
            "{what} {} from pid {}\n",
            N.fetch_add(1, Ordering::Relaxed),
            std::process::id()
        )
    }

    /// Connect with `within` as every timeout.
    pub fn connect_within(addr: SocketAddr, within: Duration) -> Result<TcpStream, String> {
        let s = TcpStream::connect_timeout(&addr, within).map_err(|e| format!("connect: {e}"))?;
        s.set_read_timeout(Some(within)).ok();
        s.set_write_timeout(Some(within)).ok();
        Ok(s)
    }

    /// Read until `want` bytes have come, EOF, or the deadline; what came.
    pub fn read_exactly(s: &TcpStream, want: usize, deadline: Instant) -> Vec<u8> {
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while got.len() < want {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || s.set_read_timeout(Some(left)).is_err() {
                break;
            }
            match (&*s).read(&mut buf[..(want - got.len()).min(4096)]) {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
        got
    }

    /// Read until EOF or the deadline; what came, and whether EOF did.
    pub fn read_to_eof(s: &TcpStream, deadline: Instant) -> (Vec<u8>, bool) {
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || s.set_read_timeout(Some(left)).is_err() {
                return (got, false);
            }
            match (&*s).read(&mut buf) {
                Ok(0) => return (got, true),
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(_) => return (got, false),
            }
        }
    }

    /// An echo server: a unique line goes out and comes back byte for byte.
    pub fn echo_line(addr: SocketAddr, within: Duration) -> Result<(), String> {
        let deadline = Instant::now() + within;
        let s = connect_within(addr, within)?;
        let line = unique_line("probe");
        (&s).write_all(line.as_bytes())
            .map_err(|e| format!("send {line:?}: {e}"))?;
        let back = read_exactly(&s, line.len(), deadline);
        if back != line.as_bytes() {
            return Err(format!(
                "sent {line:?}, got back {:?} within {within:?}",
                String::from_utf8_lossy(&back)
            ));
        }
        Ok(())
    }

    /// A server that answers first and closes: the text up to EOF must
    /// satisfy `check` (which says what it wants on failure).
    pub fn reply_to_eof(
        check: impl Fn(&str) -> Result<(), String> + Send + Sync + 'static,
    ) -> impl Fn(SocketAddr, Duration) -> Result<(), String> + Send + Sync + 'static {
        exchange(b"", check)
    }

    /// Request and reply: send `request`, half-close (`shutdown(SHUT_WR)`),
    /// read to EOF; the reply must satisfy `check`. For a request-reply
    /// server (`b"GET / HTTP/1.0\r\n\r\n"`, an upper-case server…).
    pub fn exchange(
        request: &'static [u8],
        check: impl Fn(&str) -> Result<(), String> + Send + Sync + 'static,
    ) -> impl Fn(SocketAddr, Duration) -> Result<(), String> + Send + Sync + 'static {
        move |addr, within| {
            let deadline = Instant::now() + within;
            let s = connect_within(addr, within)?;
            (&s).write_all(request)
                .map_err(|e| format!("send {:?}: {e}", String::from_utf8_lossy(request)))?;
            let _ = s.shutdown(Shutdown::Write);
            let (text, eof) = read_to_eof(&s, deadline);
            let text = String::from_utf8_lossy(&text);
            if !eof {
                return Err(format!("no EOF within {within:?}; got {text:?}"));
            }
            check(&text)
        }
    }
}
