//! The narrated demo: `cargo run --bin ch07_threads`. Every part runs on
//! loopback, prints the calls it makes, and reads what it claims about the
//! kernel from the kernel (`/proc`, the sockets themselves).

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::socket::SockaddrStorage;

use super::live::Live;
use super::spawn::ServerChild;
use super::{BUSY, Limits, Report, Trigger, pool, proc, reuseport};
use crate::kit::narrate::{heading, note, set_quiet};
use crate::kit::net::{tcp_connect, tcp_listen};
use crate::kit::wait::{read_to_end_within, wait_readable};
use crate::kit::{Error, Result, addr, io};
use crate::say;

const WAIT: Duration = Duration::from_secs(3);

/// A server running on a thread of the demo, with its stop trigger.
struct Bg {
    addr: SockaddrStorage,
    live: Arc<Live>,
    stop: Arc<Trigger>,
    handle: JoinHandle<Result<Report>>,
}

impl Bg {
    fn stop(self) -> Result<Report> {
        self.stop.fire();
        self.handle
            .join()
            .unwrap_or_else(|_| Err(Error::msg("the server thread panicked")))
    }
}

fn thread_server(limits: Limits) -> Result<Bg> {
    let (listener, addr) = tcp_listen("server", &addr::parse("127.0.0.1:0")?, 128)?;
    let stop = Arc::new(Trigger::new()?);
    let live = Live::new();
    let (s, l) = (Arc::clone(&stop), Arc::clone(&live));
    let handle = thread::spawn(move || super::thread::serve(listener, s.fd(), &limits, &l));
    Ok(Bg {
        addr,
        live,
        stop,
        handle,
    })
}

/// Send `msg` on `fd` and read the echo back, narrated.
fn echo(who: &str, fd: &OwnedFd, msg: &[u8]) -> Result<()> {
    io::writen(fd, msg)?;
    wait_readable(fd, WAIT)?;
    let mut back = vec![0u8; msg.len()];
    let n = io::readn(fd, &mut back)?;
    say!(
        who,
        "write({0}, {1:?}) then read({0}) = {2:?}",
        fd.as_raw_fd(),
        String::from_utf8_lossy(msg),
        String::from_utf8_lossy(&back[..n])
    );
    Ok(())
}

/// Connect without narration (for the crowds).
fn quiet_connect(addr: &SockaddrStorage) -> Result<OwnedFd> {
    set_quiet(true);
    let fd = tcp_connect("client", addr);
    set_quiet(false);
    fd
}

/// Run every part of the demo.
pub fn run() -> Result<()> {
    crate::say!(
        "",
        "Chapter 7: one server, many clients at once. (`cargo run --bin ch07_threads -- --help` for more)"
    );
    note("every part runs on 127.0.0.1");
    thread_per_connection()?;
    thread_cost()?;
    thundering_herd()?;
    queue_pool()?;
    fork_and_zombies()?;
    reuseport_spread()?;
    graceful_shutdown()?;
    heading("done");
    note("Try it yourself: `cargo run --bin ch07_threads -- server --design fork --log`");
    note("and `nc 127.0.0.1 7007` from two terminals; watch `ps -o pid,stat,cmd --ppid PID`.");
    Ok(())
}

fn thread_per_connection() -> Result<()> {
    heading("thread per connection, at most 2 at once");
    let bg = thread_server(Limits {
        max_conns: 2,
        ..Limits::default()
    })?;
    let a = tcp_connect("client a", &bg.addr)?;
    let b = tcp_connect("client b", &bg.addr)?;
    echo("client a", &a, b"hello from a\n")?;
    echo("client b", &b, b"hello from b\n")?;
    note(format_args!(
        "the server counts {} live connections and {} connection threads",
        bg.live.conns(),
        bg.live.threads()
    ));
    let c = tcp_connect("client c", &bg.addr)?;
    let reply = read_to_end_within(&c, 256, WAIT)?;
    say!(
        "client c",
        "read({}) = {:?} then EOF",
        c.as_raw_fd(),
        String::from_utf8_lossy(&reply)
    );
    if reply != BUSY.as_bytes() {
        return Err(Error::msg("client c expected the busy line"));
    }
    note("past the bound the server says so and closes, instead of growing without end");
    drop((a, b, c));
    let report = bg.stop()?;
    note(format_args!(
        "stopped: accepted {}, refused {}, threads started {}, joined {}",
        report.accepted, report.refused, report.spawned, report.joined
    ));
    Ok(())
}

fn thread_cost() -> Result<()> {
    heading("what a thread costs");
    let bg = thread_server(Limits {
        max_conns: 1000,
        ..Limits::default()
    })?;
    let n = 100;
    let (threads0, size0, rss0) = (
        proc::threads(0)?,
        proc::status_kb(0, "VmSize").unwrap_or(0),
        proc::status_kb(0, "VmRSS").unwrap_or(0),
    );
    let mut clients = Vec::new();
    for _ in 0..n {
        clients.push(quiet_connect(&bg.addr)?);
    }
    if !bg.live.wait_until(WAIT, |_, threads| threads == n) {
        return Err(Error::msg("the connection threads did not all start"));
    }
    // `Live` counts a thread just before `spawn` creates it: give the last
    // `clone` a moment to show up in /proc/self/task.
    let deadline = Instant::now() + WAIT;
    while proc::threads(0)? < threads0 + n && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    let (threads1, size1, rss1) = (
        proc::threads(0)?,
        proc::status_kb(0, "VmSize").unwrap_or(0),
        proc::status_kb(0, "VmRSS").unwrap_or(0),
    );
    note(format_args!(
        "{n} idle clients: /proc/self/status Threads {threads0} -> {threads1}, VmSize {size0} -> {size1} kB, VmRSS {rss0} -> {rss1} kB"
    ));
    let grown = size1.saturating_sub(size0);
    let stacks = n as u64 * (super::thread::STACK as u64 / 1024 + 4);
    note(format_args!(
        "address space: {stacks} kB is {n} stacks of {} kB plus 4 kB guard pages; the other {} kB ({:.1} x 64 MiB) is glibc's malloc arenas, made per thread up to a cap (8 per CPU), so that part stops growing",
        super::thread::STACK / 1024,
        grown.saturating_sub(stacks),
        grown.saturating_sub(stacks) as f64 / 65536.0
    ));
    note(format_args!(
        "memory actually touched: {} kB per thread",
        rss1.saturating_sub(rss0) / n as u64
    ));
    drop(clients);
    bg.stop()?;
    Ok(())
}

fn thundering_herd() -> Result<()> {
    heading("a pool waiting for one connection: the thundering herd");
    let connect = |addr: &SockaddrStorage| quiet_connect(addr);
    set_quiet(true);
    let polled = pool::herd(4, false, connect);
    let blocked = pool::herd(4, true, connect);
    set_quiet(false);
    let (polled, blocked) = (polled?, blocked?);
    note(format_args!(
        "4 threads in poll() on one listener, 1 connection: {} woke (voluntary_ctxt_switches grew), {} accepted it, {} got EAGAIN",
        polled.woke, polled.won, polled.lost
    ));
    note(format_args!(
        "4 threads in accept() on one listener, 1 connection: {} woke, {} accepted it, {} got EAGAIN",
        blocked.woke, blocked.won, blocked.lost
    ));
    note(
        "Linux wakes one thread blocked in accept (an exclusive wait); poll and select wake them all",
    );
    Ok(())
}

fn queue_pool() -> Result<()> {
    heading("a pool of 2 workers fed through a queue");
    let (listener, at) = tcp_listen("server", &addr::parse("127.0.0.1:0")?, 128)?;
    let stop = Arc::new(Trigger::new()?);
    let live = Live::new();
    let limits = Limits {
        workers: 2,
        ..Limits::default()
    };
    let (s, l) = (Arc::clone(&stop), Arc::clone(&live));
    let handle = thread::spawn(move || pool::queue_pool(listener, s.fd(), &limits, &l, || {}));
    let a = tcp_connect("client a", &at)?;
    let b = tcp_connect("client b", &at)?;
    echo("client a", &a, b"a\n")?;
    echo("client b", &b, b"b\n")?;
    let c = tcp_connect("client c", &at)?;
    io::writen(&c, b"c\n")?;
    match wait_readable(&c, Duration::from_millis(300)) {
        Err(e) if e.errno() == Some(Errno::ETIMEDOUT) => {
            note("client c: no echo after 300 ms: both workers are busy, c waits in the queue")
        }
        Err(e) => return Err(e),
        Ok(()) => note("client c was answered at once (a worker was free after all)"),
    }
    let since = Instant::now();
    drop(a);
    say!("client a", "close()");
    wait_readable(&c, WAIT)?;
    let mut back = [0u8; 2];
    io::readn(&c, &mut back)?;
    note(format_args!(
        "client c got its echo {:?} {} ms after a left and freed a worker",
        String::from_utf8_lossy(&back),
        since.elapsed().as_millis()
    ));
    drop((b, c));
    stop.fire();
    handle
        .join()
        .unwrap_or_else(|_| Err(Error::msg("queue pool panicked")))?;
    Ok(())
}

fn fork_and_zombies() -> Result<()> {
    heading("process per connection, and zombies");
    let exe = std::env::current_exe().map_err(|e| Error::msg(format!("current_exe: {e}")))?;
    let exe = exe.to_string_lossy().to_string();
    let args = |extra: &[&str]| -> Vec<String> {
        [
            "server",
            "--design",
            "fork",
            "--addr",
            "127.0.0.1:0",
            "--log",
            "--grace-ms",
            "1000",
        ]
        .iter()
        .chain(extra)
        .map(|s| s.to_string())
        .collect()
    };
    let server = ServerChild::start(&exe, &args(&["--no-reap"]), None, WAIT)?;
    note(format_args!(
        "started `ch07_threads server --design fork --no-reap` as pid {}",
        server.pid
    ));
    for who in ["client a", "client b", "client c"] {
        let fd = tcp_connect(who, &server.addr)?;
        echo(who, &fd, b"served by a child\n")?;
    } // each client closes here; each child sees EOF and _exits
    let deadline = Instant::now() + WAIT;
    while proc::zombies(server.pid) < 3 && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(10)); // watching /proc: no fd to wait on
    }
    for child in proc::children(server.pid) {
        note(format_args!(
            "/proc/{}/stat: ppid {} state {} {}",
            child.pid,
            server.pid,
            child.state,
            if child.state == 'Z' {
                "(zombie: exited, not reaped)"
            } else {
                ""
            }
        ));
    }
    let (status, lines) = server.stop(WAIT)?;
    for line in lines.iter().filter(|l| l.starts_with("reaped")) {
        say!("server", "{line}");
    }
    note(format_args!(
        "after SIGTERM the server reaped them on its way out: {status}"
    ));

    let server = ServerChild::start(&exe, &args(&[]), None, WAIT)?;
    note(format_args!(
        "now with reaping on SIGCHLD, pid {}",
        server.pid
    ));
    for who in ["client a", "client b"] {
        let fd = tcp_connect(who, &server.addr)?;
        echo(who, &fd, b"hi\n")?;
        drop(fd);
        let line = server.wait_line(WAIT, |l| l.starts_with("reaped"))?;
        say!("server", "{line}");
    }
    note(format_args!(
        "children of {} in /proc now: {:?} (no zombies)",
        server.pid,
        proc::children(server.pid)
    ));
    let (status, _) = server.stop(WAIT)?;
    note(format_args!("SIGTERM: {status}"));
    Ok(())
}

fn reuseport_spread() -> Result<()> {
    heading("SO_REUSEPORT: 4 listeners on one port");
    let listeners = reuseport::listeners("server", &addr::parse("127.0.0.1:0")?, 4, 128)?;
    let at = crate::kit::net::local_addr(&listeners[0])?;
    let stop = Arc::new(Trigger::new()?);
    let live = Live::new();
    let limits = Limits::default();
    let (s, l) = (Arc::clone(&stop), Arc::clone(&live));
    let handle = thread::spawn(move || reuseport::serve(listeners, s.fd(), &limits, &l, || {}));
    let n = 40;
    for _ in 0..n {
        let fd = quiet_connect(&at)?;
        set_quiet(true);
        let r = echo("client", &fd, b"x");
        set_quiet(false);
        r?;
    }
    stop.fire();
    let (total, each) = handle
        .join()
        .unwrap_or_else(|_| Err(Error::msg("reuseport server panicked")))?;
    let spread: Vec<String> = each.iter().map(|r| r.accepted.to_string()).collect();
    note(format_args!(
        "{n} connections from {n} source ports: accepted per listener {} (total {})",
        spread.join(", "),
        total.accepted
    ));
    note("the kernel picks the listener by a hash of the connection's addresses and ports");
    Ok(())
}

fn graceful_shutdown() -> Result<()> {
    heading("graceful shutdown: stop accepting, drain, cut at the deadline");
    let grace = Duration::from_millis(500);
    let bg = thread_server(Limits {
        grace,
        ..Limits::default()
    })?;
    let busy = tcp_connect("busy client", &bg.addr)?;
    let idle = tcp_connect("idle client", &bg.addr)?;
    echo("busy client", &busy, b"before\n")?;
    echo("idle client", &idle, b"hello, then silence\n")?;
    let fired = Instant::now();
    bg.stop.fire();
    note("stop fired (the binary gets it from SIGINT/SIGTERM through a signalfd)");
    // The accept loop closes the listener: connect is soon refused.
    let deadline = Instant::now() + WAIT;
    loop {
        set_quiet(true);
        let r = tcp_connect("late client", &bg.addr);
        set_quiet(false);
        match r {
            Err(e) if e.errno() == Some(Errno::ECONNREFUSED) => {
                say!("late client", "connect({}) = {e}", bg.addr);
                break;
            }
            _ if Instant::now() > deadline => return Err(Error::msg("the listener stayed open")),
            _ => continue,
        }
    }
    echo("busy client", &busy, b"after the stop, still served\n")?;
    drop(busy);
    say!("busy client", "close()");
    let reply = read_to_end_within(&idle, 256, WAIT)?;
    say!(
        "idle client",
        "read({}) = {} bytes: EOF, {} ms after the stop",
        idle.as_raw_fd(),
        reply.len(),
        fired.elapsed().as_millis()
    );
    let report = bg.stop()?;
    note(format_args!(
        "server returned: cut {} connection(s) at the {} ms deadline, joined {} of {} threads",
        report.cut,
        grace.as_millis(),
        report.joined,
        report.spawned
    ));
    Ok(())
}
