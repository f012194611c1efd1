//! Helpers shared by the graded tests: a deadline on every test, loopback
//! addresses on port 0, background threads whose panics are not lost, an
//! independent `std::net` client, and an fd-leak check that is safe while
//! other tests run in parallel.
//!
//! Each `tests/chNN_topic.rs` starts with `#[macro_use] mod support;` and
//! declares its graded tests with [`graded!`]. The grader (`make grade`)
//! reads the points from the `points = N;` line beside each test.

#![allow(dead_code)] // each test crate uses a different part of this file

use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use nix::sys::socket::SockaddrStorage;

/// How long one wait in a test may take (a line, a connect, a child's
/// exit): generous for loopback on a loaded machine.
pub const DEADLINE: Duration = Duration::from_secs(5);

/// How long a whole graded test may run before it fails (unless it sets
/// `secs = N;`): room for several waits on a loaded 2-core machine, short
/// enough that a solution that blocks forever fails within seconds. The
/// grader's `DEFAULT_TEST_SECS` is the same number.
pub const TEST_DEADLINE: Duration = Duration::from_secs(10);

/// A graded test, worth `points`, that fails if it runs past `secs` seconds
/// (default [`TEST_DEADLINE`]):
///
/// ```ignore
/// graded! {
///     /// What the test checks, in one line.
///     points = 2;
///     fn echo_returns_every_byte() { ... }
/// }
/// ```
#[allow(unused_macros)] // plain test files (demo_chNN.rs) share this module
macro_rules! graded {
    ($(#[$meta:meta])* points = $points:literal; fn $name:ident() $body:block) => {
        $(#[$meta])*
        #[test]
        fn $name() {
            let _ = $points; // read by the grader from the source
            support::run_within(stringify!($name), support::TEST_DEADLINE, move || $body);
        }
    };
    ($(#[$meta:meta])* points = $points:literal; secs = $secs:literal; fn $name:ident() $body:block) => {
        $(#[$meta])*
        #[test]
        fn $name() {
            let _ = $points; // read by the grader from the source
            support::run_within(
                stringify!($name),
                std::time::Duration::from_secs($secs),
                move || $body,
            );
        }
    };
}

/// Run `body` on its own thread and wait at most `limit` for it. A panic in
/// `body` fails the test with its own message; running past `limit` fails it
/// with a message that says so (the stuck thread is left behind and dies
/// with the test process).
pub fn run_within(name: &str, limit: Duration, body: impl FnOnce() + Send + 'static) {
    let worker = Background::spawn(name, body);
    worker.join_within(limit, name);
}

/// A thread whose result (or panic) the test collects with a deadline.
pub struct Background<T> {
    done: mpsc::Receiver<thread::Result<T>>,
    _handle: JoinHandle<()>,
}

impl<T: Send + 'static> Background<T> {
    /// Start `body` on a named thread.
    pub fn spawn(name: &str, body: impl FnOnce() -> T + Send + 'static) -> Background<T> {
        let (tx, done) = mpsc::channel();
        let handle = thread::Builder::new()
            .name(name.to_string())
            .spawn(move || {
                let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(body));
                let _ = tx.send(result);
            })
            .expect("spawn a test thread");
        Background {
            done,
            _handle: handle,
        }
    }

    /// Wait at most `limit` for the result. Re-raises the thread's panic
    /// (so its message is the test's failure) or panics on timeout.
    pub fn join_within(self, limit: Duration, what: &str) -> T {
        match self.done.recv_timeout(limit) {
            Ok(Ok(value)) => value,
            Ok(Err(panic)) => std::panic::resume_unwind(panic),
            Err(_) => panic!(
                "{what}: no result within {} s (a call that blocks forever?)",
                limit.as_secs_f32()
            ),
        }
    }

    /// The result if the thread has finished, without waiting.
    pub fn try_join(&self) -> Option<thread::Result<T>> {
        self.done.try_recv().ok()
    }
}

/// `127.0.0.1:0`: loopback, any free port.
pub fn loopback_any() -> SockaddrStorage {
    "127.0.0.1:0"
        .parse::<SocketAddr>()
        .map(SockaddrStorage::from)
        .unwrap()
}

/// Convert a nix address to `std`, for the independent `std::net` client.
pub fn std_addr(addr: &SockaddrStorage) -> SocketAddr {
    if let Some(a) = addr.as_sockaddr_in() {
        return SocketAddr::V4((*a).into());
    }
    SocketAddr::V6((*addr.as_sockaddr_in6().expect("an IP address")).into())
}

/// An independent client (`std::net`, not the workbook's code) connected to
/// `addr`, with read and write timeouts of [`DEADLINE`] so it never hangs.
pub fn std_client(addr: &SockaddrStorage) -> TcpStream {
    let stream = TcpStream::connect_timeout(&std_addr(addr), DEADLINE).unwrap_or_else(|e| {
        panic!(
            "the test's own client (std::net) could not connect to the server at {addr} \
                 within {DEADLINE:?}: {e} (refused: nothing listens there any more; timed out: \
                 the listener's accept queue is full or it stopped accepting)"
        )
    });
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    stream.set_write_timeout(Some(DEADLINE)).unwrap();
    stream
}

/// A client socket with small buffers, set *before* `connect` (the receive
/// buffer fixes the window scale the handshake announces), connected to
/// `addr`, with read and write timeouts of [`DEADLINE`]. `None` leaves a
/// buffer to the kernel. The kernel doubles each value
/// ([`socket(7)`](https://man7.org/linux/man-pages/man7/socket.7.html),
/// `SO_RCVBUF`) and setting one turns its autotuning off: the tests use
/// this to make sends come up short and peers stall early.
pub fn client_with_buffers(
    addr: &SockaddrStorage,
    rcvbuf: Option<usize>,
    sndbuf: Option<usize>,
) -> TcpStream {
    use nix::sys::socket::{self, AddressFamily, SockFlag, SockType, sockopt};
    use std::os::fd::AsRawFd;
    let family = if addr.as_sockaddr_in6().is_some() {
        AddressFamily::Inet6
    } else {
        AddressFamily::Inet
    };
    let fd = socket::socket(family, SockType::Stream, SockFlag::SOCK_CLOEXEC, None).unwrap();
    if let Some(size) = rcvbuf {
        socket::setsockopt(&fd, sockopt::RcvBuf, &size).unwrap();
    }
    if let Some(size) = sndbuf {
        socket::setsockopt(&fd, sockopt::SndBuf, &size).unwrap();
    }
    // SO_SNDTIMEO bounds a blocking connect too (socket(7)): a listener
    // whose queue is full cannot hold the test for the SYN retries.
    let deadline = nix::sys::time::TimeVal::new(DEADLINE.as_secs() as _, 0);
    socket::setsockopt(&fd, sockopt::SendTimeout, &deadline).unwrap();
    socket::connect(fd.as_raw_fd(), addr).unwrap_or_else(|e| {
        panic!("the test's own client (rcvbuf {rcvbuf:?}, sndbuf {sndbuf:?}) could not connect to {addr}: {e}")
    });
    let stream = TcpStream::from(fd);
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    stream.set_write_timeout(Some(DEADLINE)).unwrap();
    stream
}

/// How many of this process's open fds are TCP sockets whose *local* port is
/// `port`: the listener plus every connection a server on `port` still holds.
/// Ports are unique to a test, so this is safe while other tests run.
pub fn open_sockets_on_port(port: u16) -> usize {
    let inodes = tcp_inodes_with_local_port(port);
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return 0;
    };
    dir.filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
        .filter_map(|target| {
            let t = target.to_string_lossy();
            t.strip_prefix("socket:[")?
                .strip_suffix(']')?
                .parse::<u64>()
                .ok()
        })
        .filter(|inode| inodes.contains(inode))
        .count()
}

/// Inodes of the entries in `/proc/net/tcp` and `tcp6` with local port `port`.
pub fn tcp_inodes_with_local_port(port: u16) -> Vec<u64> {
    let mut inodes = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            // cols[1] = local "ADDR:PORT" (hex), cols[9] = inode
            let Some(local) = cols.get(1) else { continue };
            let Some((_, hex_port)) = local.rsplit_once(':') else {
                continue;
            };
            let inode = cols.get(9).and_then(|s| s.parse::<u64>().ok());
            if u16::from_str_radix(hex_port, 16) == Ok(port)
                && let Some(inode) = inode.filter(|&i| i != 0)
            {
                inodes.push(inode);
            }
        }
    }
    inodes
}

/// What a finished child process left behind.
#[derive(Debug)]
pub struct Finished {
    pub status: std::process::ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// Run one of the workbook's binaries (`env!("CARGO_BIN_EXE_ch01_sockets")`)
/// with `args`, and wait at most `limit` for it to exit; a child still
/// running then is killed and the test fails.
pub fn run_bin(path: &str, args: &[&str], limit: Duration) -> Finished {
    use std::io::Read;
    use std::process::{Command, Stdio};
    let mut child = Command::new(path)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {path}: {e}"));
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out = Background::spawn("stdout", move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err = Background::spawn("stderr", move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    // stdout reaches EOF when the child exits (or closes it).
    let stdout = match out.done.recv_timeout(limit) {
        Ok(Ok(s)) => s,
        _ => {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{path} {args:?} did not finish within {} s",
                limit.as_secs_f32()
            );
        }
    };
    let stderr = err.join_within(DEADLINE, "stderr of child");
    let status = child.wait().expect("wait for child");
    Finished {
        status,
        stdout,
        stderr,
    }
}

/// Run a demo to its end with [`run_bin`], require exit status 0 and every
/// one of `needles` somewhere in its stdout; returns the run for further
/// checks. A failure names the command and every missing needle, then shows
/// what the demo printed.
#[allow(dead_code)] // not every test binary that includes support runs demos
pub fn run_demo(path: &str, args: &[&str], limit: Duration, needles: &[&str]) -> Finished {
    let run = run_bin(path, args, limit);
    let name = std::path::Path::new(path)
        .file_name()
        .map_or(path.into(), |n| n.to_string_lossy());
    assert!(
        run.status.success(),
        "{name} {args:?} exited with {}\n--- stderr ---\n{}\n--- stdout ---\n{}",
        run.status,
        run.stderr,
        run.stdout
    );
    let missing: Vec<&&str> = needles
        .iter()
        .filter(|n| !run.stdout.contains(**n))
        .collect();
    assert!(
        missing.is_empty(),
        "{name} {args:?} ran, but its output lacks {missing:?}\n--- stdout ---\n{}",
        run.stdout
    );
    run
}

/// A server binary run as a child process (chapter 7 and later).
pub mod server_process;

/// One suite of hostile clients for every server binary (`tests/bad_clients.rs`).
pub mod bad_clients;

/// Report the running test as *skipped* because this environment cannot run
/// it (say why in one line, e.g. [`sockbook::kit::netns::refusal`]), then
/// return from the test. Under plain `cargo test` the test passes with a
/// `skipped:` line on stderr; the grader sets `SOCKBOOK_SKIP_FILE`, reads the
/// line this appends there (`test name<TAB>reason`), and leaves the test out
/// of the score and the maximum. Never call it where the test could run.
pub fn skip(reason: &str) {
    let name = thread::current().name().unwrap_or("?").to_string();
    eprintln!("skipped: {name}: {reason}");
    if let Ok(path) = std::env::var("SOCKBOOK_SKIP_FILE") {
        use std::io::Write;
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = writeln!(f, "{name}\t{}", reason.replace(['\n', '\t'], " "));
        }
    }
}

/// The reason a private user + network namespace is refused here, if it is:
/// `if let Some(why) = support::netns_refused() { return support::skip(why); }`
pub fn netns_refused() -> Option<&'static str> {
    sockbook::kit::netns::refusal()
}

/// Run a test's body in a private user + network namespace (a child
/// process), or report it skipped where that is refused.
pub mod netns_child;
#[allow(unused_imports)] // only the tests that need a namespace use it
pub use netns_child::in_private_netns;
