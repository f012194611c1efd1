//! Chapter 7's graded tests: thread per connection with a bound, graceful
//! shutdown, reaping children, and a thousand clients at once against every
//! design. Each checks what the server gave back: fds (`/proc/self/fd`
//! against `/proc/net/tcp`), threads (the server's own count, and every
//! thread joined), children and zombies (`/proc/PID/stat`).

#[macro_use]
mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sockbook::ch07_threads::{self as ch07, BUSY, Limits, Live, Report, Trigger, proc};
use sockbook::kit::net::{local_port, tcp_listen};
use support::server_process::{ServerProcess, eventually};
use support::{Background, loopback_any, open_sockets_on_port, std_client};

const BIN: &str = env!("CARGO_BIN_EXE_ch07_threads");

/// A thread-per-connection server under test, on its own port.
struct Running {
    port: u16,
    addr: nix::sys::socket::SockaddrStorage,
    live: Arc<Live>,
    stop: Arc<Trigger>,
    server: Background<sockbook::kit::Result<Report>>,
}

fn start(limits: Limits) -> Running {
    sockbook::kit::narrate::set_quiet(true);
    let (listener, addr) = tcp_listen("test", &loopback_any(), 128).unwrap();
    let port = local_port(&listener).unwrap();
    let stop = Arc::new(Trigger::new().unwrap());
    let live = Live::new();
    let (s, l) = (Arc::clone(&stop), Arc::clone(&live));
    let server = Background::spawn("thread server", move || {
        ch07::thread::serve(listener, s.fd(), &limits, &l)
    });
    Running {
        port,
        addr,
        live,
        stop,
        server,
    }
}

fn limits(max_conns: usize, grace_ms: u64) -> Limits {
    Limits {
        max_conns,
        workers: 2,
        grace: Duration::from_millis(grace_ms),
    }
}

/// Send `msg` and read exactly as many bytes back; they must be the same.
fn echo(stream: &mut TcpStream, msg: &[u8]) {
    let peer = stream
        .peer_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    stream.write_all(msg).unwrap_or_else(|e| {
        panic!("sending {msg:?} to the echo server at {peer} failed: {e} (by hand: nc {peer})")
    });
    let mut back = vec![0u8; msg.len()];
    stream.read_exact(&mut back).unwrap_or_else(|e| {
        panic!(
            "sent {msg:?} to the echo server at {peer}, expected the same {} bytes back, \
             the read failed: {e} (EOF: the server closed the connection; a timeout: it never answered)",
            msg.len()
        )
    });
    assert_eq!(
        back, msg,
        "sent {msg:?} to {peer}: the echo differs from what was sent"
    );
}

/// Everything the peer sends until it closes.
fn read_to_eof(stream: &mut TcpStream) -> Vec<u8> {
    let mut all = Vec::new();
    stream.read_to_end(&mut all).unwrap_or_else(|e| {
        panic!(
            "reading until the server closes failed after {} bytes: {e}",
            all.len()
        )
    });
    all
}

graded! {
    /// Thread per connection: three clients served at once (one of them in
    /// the middle of a message), each by its own thread, all threads gone
    /// and all fds closed when the clients leave and the server stops.
    points = 3;
    fn thread_per_connection_serves_clients_at_once() {
        let srv = start(limits(8, 2000));
        let mut a = std_client(&srv.addr);
        let mut b = std_client(&srv.addr);
        let mut c = std_client(&srv.addr);
        // a sends half a line and then waits: an iterative server would now
        // sit in read(a), and b and c would never get an answer.
        a.write_all(b"first half, ").unwrap_or_else(|e| panic!("client a: sending \"first half, \" to the server failed: {e}"));
        echo(&mut b, b"b is served while a waits\n");
        echo(&mut c, b"and so is c\n");
        a.write_all(b"second half\n").unwrap_or_else(|e| panic!("client a: sending \"second half\\n\" after b and c were served failed: {e}"));
        let mut back = vec![0u8; b"first half, second half\n".len()];
        a.read_exact(&mut back).unwrap_or_else(|e| {
            panic!("client a sent \"first half, \", waited while b and c were served, then \"second half\\n\": expected those {} bytes echoed, the read failed: {e}", back.len())
        });
        assert!(back == b"first half, second half\n", "client a sent \"first half, \" then (after b and c were served) \"second half\\n\"; the echo was {:?}", String::from_utf8_lossy(&back));
        assert_eq!(srv.live.conns(), 3, "three clients (a, b, c) are connected: Live::conns() should be 3");
        assert_eq!(srv.live.threads(), 3, "three clients (a, b, c) are connected: one thread per connection, Live::threads() should be 3");
        drop((a, b, c));
        assert!(
            srv.live.wait_until(Duration::from_secs(3), |conns, threads| conns == 0 && threads == 0),
            "after the clients closed: {} connections, {} threads still live",
            srv.live.conns(),
            srv.live.threads()
        );
        assert_eq!(open_sockets_on_port(srv.port), 1, "a, b and c closed and their threads ended: only the listener should be left open on port {}", srv.port);
        srv.stop.fire();
        let report = srv.server.join_within(Duration::from_secs(3), "serve() after the stop fd fired, every client gone").unwrap_or_else(|e| panic!("serve() should return Ok(Report) after the stop fd fired; it returned {e}"));
        assert_eq!(report.accepted, 3, "3 clients connected to serve(); Report::accepted");
        assert_eq!(report.spawned, 3, "one thread per connection");
        assert_eq!(report.joined, report.spawned, "every connection thread spawned should be joined before serve() returns; report {report:?}");
        assert_eq!(report.refused, 0, "3 clients with a limit above 3: none should be refused; report {report:?}");
        assert_eq!(open_sockets_on_port(srv.port), 0, "after serve() returned, the listener and every connection on port {} should be closed", srv.port);
    }
}

graded! {
    /// The bound: with max_conns = 2, a third client gets the busy line and
    /// EOF; once a client leaves, the next one is served again.
    points = 3;
    fn thread_bound_refuses_past_the_limit() {
        let srv = start(limits(2, 2000));
        let mut a = std_client(&srv.addr);
        let mut b = std_client(&srv.addr);
        echo(&mut a, b"a\n");
        echo(&mut b, b"b\n");
        let mut c = std_client(&srv.addr);
        assert_eq!(
            String::from_utf8_lossy(&read_to_eof(&mut c)),
            BUSY,
            "the third client is refused with the busy line, then EOF"
        );
        assert_eq!(srv.live.conns(), 2, "max_conns 2, a and b served, c refused: Live::conns() should stay 2 (a refused client takes no place)");
        drop(a);
        assert!(srv.live.wait_until(Duration::from_secs(3), |conns, _| conns <= 1), "client a closed; within 3 s its connection thread should end and live count drop to 1 (got {})", srv.live.conns());
        let mut d = std_client(&srv.addr);
        echo(&mut d, b"d gets a's place\n");
        echo(&mut b, b"b is still served\n");
        drop((b, c, d));
        srv.stop.fire();
        let report = srv.server.join_within(Duration::from_secs(3), "serve() after the stop fd fired, every client gone").unwrap_or_else(|e| panic!("serve() should return Ok(Report) after the stop fd fired; it returned {e}"));
        assert_eq!(report.accepted, 4, "4 clients (a, b, c, d) connected; Report::accepted counts the refused one too");
        assert_eq!(report.refused, 1, "max_conns 2: of clients a, b, c, d only c (the third while a and b were open) should be refused (echo::refuse)");
        assert_eq!(report.spawned, 3, "a, b and d were served: 3 connection threads (spawn_connection), none for the refused c");
        assert_eq!(report.joined, 3, "a, b and d were served by 3 threads: all 3 should be joined; report {report:?}");
        assert_eq!(open_sockets_on_port(srv.port), 0, "after serve() returned, no socket should be left open on port {} (the refused c's too)", srv.port);
    }
}

graded! {
    /// Graceful shutdown: after the stop the listener is closed (new
    /// clients are refused by the kernel), an open connection is still
    /// served, and the server returns as soon as it closes, cutting nothing.
    points = 2;
    fn graceful_shutdown_lets_connections_finish() {
        let srv = start(limits(8, 4000));
        let mut a = std_client(&srv.addr);
        echo(&mut a, b"before the stop\n");
        srv.stop.fire();
        // The listener closes: connect is refused (probes that slip in
        // before it closes are dropped at once).
        let refused = eventually(Duration::from_secs(3), || {
            match TcpStream::connect(support::std_addr(&srv.addr)) {
                Err(e) => e.kind() == ErrorKind::ConnectionRefused,
                Ok(_) => false,
            }
        });
        assert!(refused, "after the stop fd fired, connect() to {} still succeeded for 3 s: serve() should close the listener at once (the kernel then refuses new clients)", support::std_addr(&srv.addr));
        echo(&mut a, b"after the stop, still served\n");
        assert!(srv.server.try_join().is_none(), "after the stop, client a was still connected: serve() should wait for it (up to the 4 s grace), yet it has already returned");
        let closed_at = Instant::now();
        drop(a);
        let report = srv.server.join_within(Duration::from_secs(3), "serve() after the stop, once client a (the last one) closed").unwrap_or_else(|e| panic!("serve() should return Ok(Report) once the last client closed after the stop; it returned {e}"));
        assert!(
            closed_at.elapsed() < Duration::from_secs(3),
            "the server returned when a closed, not at the deadline"
        );
        assert_eq!(report.cut, 0, "a closed within the grace period: nothing had to be cut; report {report:?}");
        assert_eq!(report.joined, report.spawned, "every connection thread spawned should be joined; report {report:?}");
        assert_eq!(srv.live.threads(), 0, "after stop and drain, every connection thread should have been joined (live threads left)");
        assert_eq!(open_sockets_on_port(srv.port), 0, "no fd left behind");
    }
}

graded! {
    /// Graceful shutdown's deadline: two idle clients that never close are
    /// cut (they read EOF) once the grace period has passed, and the server
    /// returns with every thread joined and every fd closed.
    points = 2;
    fn graceful_shutdown_cuts_stragglers_at_the_deadline() {
        let grace = Duration::from_millis(300);
        let srv = start(limits(8, grace.as_millis() as u64));
        let mut a = std_client(&srv.addr);
        let mut b = std_client(&srv.addr);
        echo(&mut a, b"a\n");
        echo(&mut b, b"b\n");
        let fired = Instant::now();
        srv.stop.fire();
        let report = srv.server.join_within(Duration::from_secs(4), "serve() after the stop fd fired, 2 idle clients left to cut after the 300 ms grace").unwrap_or_else(|e| panic!("serve() should return Ok(Report) once the grace period has cut the idle clients; it returned {e}"));
        let took = fired.elapsed();
        assert!(took >= grace, "cut after {took:?}, before the {grace:?} grace period");
        assert_eq!(report.cut, 2, "two idle clients still open at the end of the {grace:?} grace: both should be cut; report {report:?}");
        let rest_a = read_to_eof(&mut a);
        assert!(rest_a.is_empty(), "client a was cut: it should read EOF and nothing else; it read {:?}", String::from_utf8_lossy(&rest_a));
        let rest_b = read_to_eof(&mut b);
        assert!(rest_b.is_empty(), "client b was cut: it should read EOF and nothing else; it read {:?}", String::from_utf8_lossy(&rest_b));
        assert_eq!(report.joined, report.spawned, "every connection thread spawned should be joined, cut ones too; report {report:?}");
        assert_eq!(srv.live.threads(), 0, "after stop and drain, every connection thread should have been joined (live threads left)");
        assert_eq!(open_sockets_on_port(srv.port), 0, "no fd left behind");
    }
}

graded! {
    /// `drain` on its own: one connection whose thread needs a moment to
    /// leave after its peer goes. At the deadline drain cuts it (the peer
    /// reads EOF) and returns only once it has left, reporting 1 open, 1 cut.
    points = 1;
    fn drain_returns_once_the_cut_connection_has_left() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        client.set_read_timeout(Some(support::DEADLINE)).unwrap();
        let (conn, _) = listener.accept().unwrap();
        let fd = Arc::new(std::os::fd::OwnedFd::from(conn));
        let live = Live::new();
        let ticket = live.enter(&fd);
        let server_side = Arc::clone(&fd);
        let left = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let left_flag = Arc::clone(&left);
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 64];
            // Blocks until the cut (EOF), then takes a while to clean up.
            while let Ok(n) = nix::unistd::read(&*server_side, &mut buf) {
                if n == 0 {
                    break;
                }
            }
            std::thread::sleep(Duration::from_millis(300));
            left_flag.store(true, std::sync::atomic::Ordering::SeqCst);
            drop(ticket);
        });
        let grace = Duration::from_millis(200);
        let began = Instant::now();
        let drained = ch07::drain(&live, grace).unwrap_or_else(|e| panic!("drain(&live, grace) returned an error: {e}"));
        let took = began.elapsed();
        assert!(took >= grace, "drain returned after {took:?}, before the {grace:?} deadline");
        assert!(
            left.load(std::sync::atomic::Ordering::SeqCst) && live.conns() == 0,
            "drain returned while the cut connection was still live ({} live)",
            live.conns()
        );
        assert_eq!(drained, ch07::Drained { open: 1, cut: 1 }, "one connection was open and did not finish within the grace period: drain should report open 1, and cut 1 (Live::cut_all)");
        let rest = read_to_eof(&mut client);
        assert!(rest.is_empty(), "drain cut the connection: its peer should read EOF and nothing else; it read {:?}", String::from_utf8_lossy(&rest));
        thread.join().unwrap();
    }
}

graded! {
    /// Fork per connection: one child per client while they are connected
    /// (seen in /proc). Three clients leave while the server is stopped
    /// (SIGSTOP), so their three SIGCHLDs arrive as one: all three must be
    /// reaped anyway, without waiting for the fourth child, which is still
    /// serving, and the server must go on accepting. At SIGTERM the
    /// straggler is killed at the deadline and reaped with code 128 + SIGTERM;
    /// the server exits 0.
    points = 3;
    fn fork_server_reaps_every_child() {
        let mut srv = ServerProcess::start(
            BIN,
            &["server", "--design", "fork", "--addr", "127.0.0.1:0", "--log", "--grace-ms", "300"],
            support::DEADLINE,
        );
        let mut clients: Vec<TcpStream> = (0..4).map(|_| std_client(&srv.addr)).collect();
        for (i, c) in clients.iter_mut().enumerate() {
            echo(c, format!("client {i}\n").as_bytes());
        }
        let children = proc::children(srv.pid);
        assert_eq!(children.len(), 4, "4 clients connected and echoed: the fork server should have one child per connection (/proc); its children: {children:?}");
        assert!(children.iter().all(|c| c.state != 'Z'), "4 clients still connected: no child should have exited (state Z) yet; its children: {children:?}");
        let mut held = clients.remove(0);
        // Stop the server, let three children exit: one SIGCHLD stays
        // pending for all three (signals of one kind do not queue).
        srv.signal(libc::SIGSTOP);
        drop(clients);
        let three_zombies = eventually(Duration::from_secs(3), || proc::zombies(srv.pid) == 3);
        srv.signal(libc::SIGCONT);
        assert!(three_zombies, "with the server stopped (SIGSTOP), 3 of 4 clients closed: within 3 s their 3 children should have exited (state Z); children: {:?}", proc::children(srv.pid));
        for k in 1..=3 {
            wait_reaped(&srv, Duration::from_secs(3), &format!(
                "3 children exited while the server was stopped (their SIGCHLDs merged into one); reaped line {k} of 3"));
        }
        let left = proc::children(srv.pid);
        assert_eq!(left.len(), 1, "3 children exited while one SIGCHLD was pending: all 3 should be reaped (waitpid(-1, WNOHANG) in a loop), the held client's child left serving; children: {left:?}");
        assert!(left.iter().all(|c| c.state != 'Z'), "after the reaping no zombie (state Z) should be left; children: {left:?}");
        // Reaping did not wait for the held child: the server still serves
        // it, and still accepts.
        echo(&mut held, b"still served\n");
        let mut late = std_client(&srv.addr);
        echo(&mut late, b"a new client is accepted\n");
        drop(late);
        wait_reaped(&srv, Duration::from_secs(3), "a late client came and closed; its child exits");
        let straggler = proc::children(srv.pid);
        assert_eq!(straggler.len(), 1, "a late client came and left (its child reaped): only the held client's child should be left; children: {straggler:?}");
        srv.signal(libc::SIGTERM);
        let (status, lines) = srv.wait_exit(Duration::from_secs(4));
        assert_eq!(status.code(), Some(0), "the fork server should exit 0 after SIGTERM; it exited with {status}; printed {lines:?}; stderr {:?}", srv.stderr_lines());
        let killed = format!("reaped pid={} code={}", straggler[0].pid, 128 + libc::SIGTERM);
        assert!(
            lines.contains(&killed),
            "the straggler killed at the deadline is reaped as {killed:?}; printed {lines:?}"
        );
        assert!(lines.iter().any(|l| l.starts_with("stopped:")), "after SIGTERM the fork server should print its `stopped: …` line before exiting; it printed {lines:?}");
        drop(held);
    }
}

/// Wait at most `limit` for the fork server's next `reaped pid=… code=…`
/// line (what `reap_children` reported); `what` says which exit it is for.
fn wait_reaped(srv: &ServerProcess, limit: Duration, what: &str) -> String {
    let deadline = Instant::now() + limit;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match srv.next_line(left) {
            Some(line) if line.starts_with("reaped pid=") => return line,
            Some(line) => seen.push(line),
            None => panic!(
                "{what}: expected a `reaped pid=… code=…` line (reap_children must waitpid(-1, \
                 WNOHANG) in a loop until no exited child is left) within {limit:?}; other lines \
                 {seen:?}; children now {:?}; stderr {:?}",
                proc::children(srv.pid),
                srv.stderr_lines()
            ),
        }
    }
}

/// 1,000 clients connect at once, each sends a message and waits for the
/// echo (or the busy line), then all close. The server must still be
/// running, its fds, threads and children must return to what they were
/// before, and SIGTERM must still end it with exit status 0.
fn thousand_clients(design: &str) {
    ch07::server::raise_fd_limit()
        .unwrap_or_else(|e| panic!("test setup: raise RLIMIT_NOFILE for 1,000 clients: {e}"));
    let srv = ServerProcess::start(
        BIN,
        &[
            "server",
            "--design",
            design,
            "--addr",
            "127.0.0.1:0",
            "--grace-ms",
            "1000",
        ],
        support::DEADLINE,
    );
    let fds_before = proc::fds(srv.pid).unwrap();
    let threads_before = proc::threads(srv.pid).unwrap();
    let mut load = ch07::load::LoadConfig::new(srv.addr);
    load.conns = 1000;
    load.size = 64;
    // Long enough that a loaded machine serves someone: a fork of 1,000
    // children or 1,000 new threads may hold both CPUs for a while.
    load.duration = Duration::from_secs(1);
    load.connect_timeout = Duration::from_secs(3);
    let result = ch07::load::run(&load).unwrap_or_else(|e| {
        panic!("{design}: the load generator (1,000 clients, 64-byte messages, 1 s) failed: {e}")
    });
    assert!(
        result.round_trips > 0,
        "{design}: 1,000 clients each sent 64-byte messages for 1 s: no message came back echoed at all \
         ({} connects failed, {} connections broken, {} starved)",
        result.connect_failed,
        result.broken,
        result.starved
    );
    // The connections are closed now (dropped at the end of the run).
    let mut srv = srv;
    let settled = eventually(Duration::from_secs(4), || {
        proc::fds(srv.pid).ok() == Some(fds_before)
            && proc::threads(srv.pid).ok() == Some(threads_before)
            && proc::children(srv.pid).is_empty()
    });
    assert!(
        settled,
        "{design}: after the clients left: fds {} (before {fds_before}), threads {} (before {threads_before}), children {} ({} zombies){}",
        proc::fds(srv.pid).unwrap_or(0),
        proc::threads(srv.pid).unwrap_or(0),
        proc::children(srv.pid).len(),
        proc::zombies(srv.pid),
        match srv.try_wait() {
            Some(status) => format!(
                "; the server has exited ({status}); stderr {:?}",
                srv.stderr_lines()
            ),
            None => String::new(),
        }
    );
    // Still alive and serving.
    let mut one = TcpStream::connect_timeout(&support::std_addr(&srv.addr), support::DEADLINE)
        .unwrap_or_else(|e| {
            panic!(
                "{design}: after the 1,000 clients left, a new client could not connect: {e}{}",
                match srv.try_wait() {
                    Some(status) => format!(
                        "; the server has exited ({status}); stderr {:?}",
                        srv.stderr_lines()
                    ),
                    None => String::new(),
                }
            )
        });
    one.set_read_timeout(Some(support::DEADLINE)).unwrap();
    one.set_write_timeout(Some(support::DEADLINE)).unwrap();
    echo(&mut one, b"still here\n");
    drop(one);
    // And it still shuts down cleanly (through the drain).
    srv.signal(libc::SIGTERM);
    let (status, lines) = srv.wait_exit(Duration::from_secs(3));
    assert_eq!(
        status.code(),
        Some(0),
        "{design}: the server should exit 0 after SIGTERM; it exited with {status}; printed {lines:?}; stderr {:?}",
        srv.stderr_lines()
    );
}

graded! {
    /// 1,000 clients at once against thread per connection: no crash, and
    /// fds and threads return to their baseline.
    points = 1;
    secs = 15;
    fn thousand_clients_thread() {
        thousand_clients("thread");
    }
}

graded! {
    /// 1,000 clients at once against the accept pool.
    points = 1;
    secs = 15;
    fn thousand_clients_pool() {
        thousand_clients("pool");
    }
}

graded! {
    /// 1,000 clients at once against the queue pool.
    points = 1;
    secs = 15;
    fn thousand_clients_queue() {
        thousand_clients("queue");
    }
}

graded! {
    /// 1,000 clients at once against fork per connection: every child reaped.
    points = 1;
    secs = 15;
    fn thousand_clients_fork() {
        thousand_clients("fork");
    }
}

graded! {
    /// 1,000 clients at once against the SO_REUSEPORT listeners.
    points = 1;
    secs = 15;
    fn thousand_clients_reuseport() {
        thousand_clients("reuseport");
    }
}

// ---------------------------------------------------------------------------
// queue_pool: a bounded pool fed through a bounded queue

/// `ch07_threads server --design queue --workers W --max Q`, and its thread
/// count once it said `listening` (every worker started by then).
fn start_queue_server(workers: usize, max: usize) -> (ServerProcess, usize) {
    ch07::server::raise_fd_limit()
        .unwrap_or_else(|e| panic!("test setup: raise RLIMIT_NOFILE: {e}"));
    let (w, q) = (workers.to_string(), max.to_string());
    let srv = ServerProcess::start(
        BIN,
        &[
            "server",
            "--design",
            "queue",
            "--workers",
            &w,
            "--max",
            &q,
            "--addr",
            "127.0.0.1:0",
            "--grace-ms",
            "1000",
        ],
        support::DEADLINE,
    );
    let threads = proc::threads(srv.pid).unwrap();
    assert!(
        threads > workers,
        "the queue server has {threads} threads once it says `listening`: the main thread plus \
         {workers} workers should all be there (start them before on_ready)"
    );
    (srv, threads)
}

/// What a client of the queue server got back for its line.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Answer {
    /// Its own line, echoed: a worker serves it.
    Echo,
    /// The busy line and EOF: refused.
    Busy,
    /// Nothing yet.
    Nothing,
}

/// One client: connected, line sent, bytes received so far.
struct Waiter {
    stream: TcpStream,
    line: Vec<u8>,
    got: Vec<u8>,
    eof: bool,
}

impl Waiter {
    fn connect(addr: &nix::sys::socket::SockaddrStorage, i: usize) -> Waiter {
        let mut stream = std_client(addr);
        let line = format!("client {i}\n").into_bytes();
        stream.write_all(&line).unwrap_or_else(|e| {
            panic!(
                "client {i}: sending {:?} to the queue server failed: {e}",
                String::from_utf8_lossy(&line)
            )
        });
        stream.set_nonblocking(true).unwrap();
        Waiter {
            stream,
            line,
            got: Vec::new(),
            eof: false,
        }
    }

    /// Read what has arrived, without waiting.
    fn pump(&mut self) {
        let mut buf = [0u8; 256];
        while !self.eof {
            match self.stream.read(&mut buf) {
                Ok(0) => self.eof = true,
                Ok(n) => self.got.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::ConnectionReset => self.eof = true,
                Err(e) => panic!(
                    "a client of the queue server sent {:?}, had read {:?}, then read failed: {e}",
                    String::from_utf8_lossy(&self.line),
                    String::from_utf8_lossy(&self.got)
                ),
            }
        }
    }

    fn answer(&self) -> Answer {
        if self.got == self.line {
            Answer::Echo
        } else if self.got == BUSY.as_bytes() && self.eof {
            Answer::Busy
        } else if !self.eof
            && (self.line.starts_with(&self.got) || BUSY.as_bytes().starts_with(&self.got))
        {
            Answer::Nothing // nothing, or part of an answer, so far
        } else {
            panic!(
                "a client of the queue server sent {:?} and got {:?} (eof {}): neither its echo \
                 nor the busy line",
                String::from_utf8_lossy(&self.line),
                String::from_utf8_lossy(&self.got),
                self.eof
            )
        }
    }
}

/// Pump every waiter until `done` says so or `limit` passes (waiting in
/// poll on their sockets, not sleeping); true if done.
fn pump_until(waiters: &mut [Waiter], limit: Duration, done: impl Fn(&[Waiter]) -> bool) -> bool {
    use std::os::fd::AsFd;
    let deadline = Instant::now() + limit;
    loop {
        for w in waiters.iter_mut() {
            w.pump();
        }
        if done(waiters) {
            return true;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        let mut fds: Vec<nix::poll::PollFd> = waiters
            .iter()
            .filter(|w| !w.eof)
            .map(|w| nix::poll::PollFd::new(w.stream.as_fd(), nix::poll::PollFlags::POLLIN))
            .collect();
        let ms = left.as_millis().min(100) as u16;
        let _ = nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(ms));
    }
}

fn count(waiters: &[Waiter], a: Answer) -> usize {
    waiters.iter().filter(|w| w.answer() == a).count()
}

/// SIGTERM, exit 0, and the `stopped:` line's numbers.
fn stop_queue_server(mut srv: ServerProcess) -> std::collections::HashMap<String, u64> {
    srv.signal(libc::SIGTERM);
    let (status, lines) = srv.wait_exit(Duration::from_secs(4));
    assert_eq!(
        status.code(),
        Some(0),
        "the queue server should exit 0 after SIGTERM (close the queue so the workers leave, \
         drain, join them); it exited with {status}; printed {lines:?}; stderr {:?}",
        srv.stderr_lines()
    );
    let stopped = lines
        .iter()
        .find(|l| l.starts_with("stopped:"))
        .unwrap_or_else(|| panic!("after SIGTERM the queue server should print a `stopped: accepted=… refused=… spawned=… joined=…` line; it printed {lines:?}"));
    stopped
        .split_whitespace()
        .filter_map(|w| w.split_once('='))
        .map(|(k, v)| (k.to_string(), v.parse().unwrap_or(u64::MAX)))
        .collect()
}

graded! {
    /// 2 workers, a queue of 2: a and b are served at once, c and d wait in
    /// the queue (not refused), e is refused with the busy line; when a and
    /// b leave, c and d are served. The process never has more threads
    /// than when it started listening, and stops cleanly on SIGTERM.
    points = 3;
    secs = 20;
    fn queue_pool_serves_n_queues_q_refuses_the_rest() {
        let (srv, threads0) = start_queue_server(2, 2);
        let fds0 = proc::fds(srv.pid).unwrap();
        let mut ab: Vec<Waiter> = (0..2).map(|i| Waiter::connect(&srv.addr, i)).collect();
        assert!(
            pump_until(&mut ab, support::DEADLINE, |w| count(w, Answer::Echo) == 2),
            "with 2 idle workers, clients a and b should both be served at once; got {:?} {}",
            ab.iter().map(Waiter::answer).collect::<Vec<_>>(),
            if ab.iter().any(|w| w.answer() == Answer::Busy) {
                "(one was refused while a worker was idle: the bound is on connections waiting in \
                 the queue, not on those in service)"
            } else {
                "(a worker that holds the queue's lock while it serves makes the pool one thread wide)"
            }
        );
        let mut cd: Vec<Waiter> = (2..4).map(|i| Waiter::connect(&srv.addr, i)).collect();
        let mut e = vec![Waiter::connect(&srv.addr, 4)];
        let refused = pump_until(&mut e, support::DEADLINE, |w| w[0].answer() != Answer::Nothing);
        assert!(
            refused && e[0].answer() == Answer::Busy,
            "2 workers busy and 2 clients queued: a fifth client should get {BUSY:?} and EOF; got \
             {:?} (eof {}). {}",
            String::from_utf8_lossy(&e[0].got),
            e[0].eof,
            if e[0].got == BUSY.as_bytes() {
                "The busy line came but no EOF: close the refused connection"
            } else {
                "A queue that is unbounded, or a blocking send into it, never refuses"
            }
        );
        for w in cd.iter_mut() {
            w.pump();
        }
        assert!(
            cd.iter().all(|w| w.answer() == Answer::Nothing),
            "c and d should wait in the queue while both workers serve a and b; they got {:?}",
            cd.iter().map(Waiter::answer).collect::<Vec<_>>()
        );
        let threads = proc::threads(srv.pid).unwrap();
        assert_eq!(
            threads, threads0,
            "the pool's thread count changed under load: {threads0} when listening, {threads} \
             with 4 clients: no thread per connection in a pool"
        );
        drop(ab);
        assert!(
            pump_until(&mut cd, support::DEADLINE, |w| count(w, Answer::Echo) == 2),
            "a and b left, so the workers should take c and d from the queue; got {:?}",
            cd.iter().map(Waiter::answer).collect::<Vec<_>>()
        );
        drop((cd, e));
        let settled = eventually(Duration::from_secs(4), || proc::fds(srv.pid).ok() == Some(fds0));
        assert!(
            settled,
            "after every client left, the server has {} fds open, {fds0} before: a connection \
             not closed (the refused one?)",
            proc::fds(srv.pid).unwrap_or(0)
        );
        let report = stop_queue_server(srv);
        for (key, want) in [("accepted", 5), ("refused", 1), ("spawned", 2), ("joined", 2)] {
            assert_eq!(report.get(key), Some(&want), "5 clients (a..e), 2 workers, queue 2, e refused: {key} in the `stopped:` line should be {want}; the line's numbers: {report:?}");
        }
    }
}

graded! {
    /// A crowd of 40 against 3 workers and a queue of 5: exactly 3 are
    /// served at once, at most 5 wait, the others get the busy line; the
    /// waiting ones are served once the first leave; the thread count never
    /// moves, and fds return to the baseline.
    points = 2;
    secs = 25;
    fn queue_pool_holds_its_bounds_under_a_crowd() {
        let (workers, max, crowd) = (3usize, 5usize, 40usize);
        let (srv, threads0) = start_queue_server(workers, max);
        let fds0 = proc::fds(srv.pid).unwrap();
        let mut all: Vec<Waiter> = (0..crowd).map(|i| Waiter::connect(&srv.addr, i)).collect();
        let settled = pump_until(&mut all, Duration::from_secs(8), |w| {
            count(w, Answer::Echo) == workers && count(w, Answer::Nothing) <= max
        });
        let (echo, busy, waiting) =
            (count(&all, Answer::Echo), count(&all, Answer::Busy), count(&all, Answer::Nothing));
        assert!(
            settled,
            "{crowd} clients, {workers} workers, a queue of {max}: expected {workers} served, at \
             most {max} waiting and the rest refused; got {echo} served, {waiting} waiting, \
             {busy} refused"
        );
        let threads = proc::threads(srv.pid).unwrap();
        assert_eq!(threads, threads0, "the pool's thread count changed under a crowd of {crowd}: {threads0} when listening, {threads} now: no thread per connection in a pool");
        // The served ones leave: the waiting ones must be served now, each
        // closed as soon as it has its echo (which frees its worker).
        let (served, mut rest): (Vec<Waiter>, Vec<Waiter>) =
            all.into_iter().partition(|w| w.answer() == Answer::Echo);
        drop(served);
        let deadline = Instant::now() + Duration::from_secs(8);
        let mut later = 0;
        while rest.iter().any(|w| w.answer() == Answer::Nothing) {
            assert!(
                Instant::now() < deadline,
                "after the {workers} served clients left, {} of the {waiting} queued clients \
                 still got nothing within 8 s ({later} were served meanwhile): a queued connection must be \
                 served, not forgotten",
                count(&rest, Answer::Nothing)
            );
            pump_until(&mut rest, Duration::from_millis(200), |w| {
                w.iter().any(|x| x.answer() == Answer::Echo)
            });
            let before = rest.len();
            rest.retain(|w| w.answer() != Answer::Echo);
            later += before - rest.len();
        }
        assert!(
            later <= max,
            "{later} clients were served after waiting: more than the queue of {max} can hold"
        );
        assert!(
            later >= 1,
            "nobody waited in the queue: every client past the {workers} workers was refused"
        );
        let refused = count(&rest, Answer::Busy) as u64;
        drop(rest);
        let settled = eventually(Duration::from_secs(4), || {
            proc::fds(srv.pid).ok() == Some(fds0) && proc::threads(srv.pid).ok() == Some(threads0)
        });
        assert!(
            settled,
            "after the crowd left: fds {} (before {fds0}), threads {} (before {threads0})",
            proc::fds(srv.pid).unwrap_or(0),
            proc::threads(srv.pid).unwrap_or(0)
        );
        let report = stop_queue_server(srv);
        assert_eq!(report.get("accepted"), Some(&(crowd as u64)), "{crowd} clients connected: accepted= in the `stopped:` line; its numbers: {report:?}");
        assert_eq!(report.get("refused"), Some(&refused), "the clients read {refused} busy lines: refused= in the `stopped:` line; its numbers: {report:?}");
        assert_eq!(report.get("joined"), Some(&(workers as u64)), "{workers} workers: joined= in the `stopped:` line; its numbers: {report:?}");
    }
}
