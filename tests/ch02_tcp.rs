//! Graded tests for chapter 2: the counting read/write loops, the iterative
//! echo server, and the echo client. Every peer here is independent of the
//! code under test (`std::net`, raw `nix`/`libc` calls), and every wait has a
//! deadline.

#[macro_use]
mod support;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::socket::{self, SockaddrStorage, sockopt};
use sockbook::ch02_tcp::{
    EchoEnd, EchoStats, echo_exchange, read_exact_counting, serve_echo, write_all_counting,
};
use support::{Background, DEADLINE, std_client};

// ---------------------------------------------------------------- helpers

/// Narration from the code under test would bypass the test harness's
/// output capture: keep it quiet.
fn quiet() {
    sockbook::kit::narrate::set_quiet(true);
}

/// A connected loopback TCP pair made with `std::net`: (client, server).
fn tcp_pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (server, _) = listener.accept().unwrap();
    for s in [&client, &server] {
        s.set_read_timeout(Some(DEADLINE)).unwrap();
        s.set_write_timeout(Some(DEADLINE)).unwrap();
    }
    (client, server)
}

/// A recognisable pattern of `len` bytes (every value 0..=250 appears).
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 251) as u8).collect()
}

/// An `ioctl` that reads one int: `FIONREAD` (bytes waiting to be read) or
/// `TIOCOUTQ` (bytes sent but not yet acknowledged).
fn ioctl_int(fd: RawFd, request: libc::Ioctl) -> i32 {
    let mut value: libc::c_int = 0;
    // SAFETY: both requests write one int through the pointer.
    let rc = unsafe { libc::ioctl(fd, request, &mut value) };
    assert_eq!(rc, 0, "ioctl({fd}, {request}): {}", Errno::last());
    value
}

/// Spin (yielding, never sleeping) until `done()` or the deadline.
fn spin_until(what: &str, deadline: Instant, mut done: impl FnMut() -> bool) {
    while !done() {
        assert!(Instant::now() < deadline, "gave up waiting: {what}");
        std::thread::yield_now();
    }
}

/// Is `fd` writable right now?
fn writable_now(fd: RawFd) -> bool {
    // SAFETY: the caller keeps `fd` open while this runs (see its use).
    let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    let mut fds = [PollFd::new(borrowed, PollFlags::POLLOUT)];
    poll(&mut fds, PollTimeout::ZERO).unwrap() == 1
        && fds[0].revents().unwrap().contains(PollFlags::POLLOUT)
}

/// Set `SO_LINGER {1, 0}` and drop: the close sends RST, not FIN.
fn reset(stream: TcpStream) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    socket::setsockopt(&stream, sockopt::Linger, &linger).unwrap();
    drop(stream);
}

/// The address of a std listener as the workbook takes it.
fn addr_of(listener: &TcpListener) -> SockaddrStorage {
    SockaddrStorage::from(listener.local_addr().unwrap())
}

/// How soon `serve_echo` must return once `stop` is readable: at once, in
/// truth; this leaves room for a loaded machine, and is far shorter than
/// the idle limit of `serve_echo_stops_when_told`.
const STOP_LIMIT: Duration = Duration::from_secs(2);

/// `serve_echo` running on a background thread, on a std listener, with a
/// socket pair as its stop fd.
struct EchoServer {
    addr: SockaddrStorage,
    port: u16,
    stop: UnixStream,
    worker: Background<(sockbook::kit::Result<EchoStats>, TcpListener)>,
}

impl EchoServer {
    fn start(idle: Duration) -> EchoServer {
        EchoServer::start_on(TcpListener::bind("127.0.0.1:0").unwrap(), idle)
    }

    /// The same on a listener the test has prepared (socket options set on
    /// a listener are inherited by the sockets `accept` returns).
    fn start_on(listener: TcpListener, idle: Duration) -> EchoServer {
        quiet();
        let addr = addr_of(&listener);
        let port = listener.local_addr().unwrap().port();
        let (stop, stop_rx) = UnixStream::pair().unwrap();
        let worker = Background::spawn("serve_echo", move || {
            let result = serve_echo(&listener, &stop_rx, idle);
            (result, listener)
        });
        EchoServer {
            addr,
            port,
            stop,
            worker,
        }
    }

    /// Make `stop` readable and collect the result; the listener comes back
    /// so its port can still be checked for leftover connections.
    fn finish(mut self) -> (EchoStats, TcpListener) {
        self.stop.write_all(b"stop").unwrap();
        let (result, listener) = self.worker.join_within(
            STOP_LIMIT,
            "serve_echo after `stop` became readable (it must return at once, \
             even in the middle of a connection)",
        );
        let stats = result.unwrap_or_else(|e| panic!("serve_echo returned an error: {e}"));
        (stats, listener)
    }

    /// How many sockets the server side still holds: the listener is one.
    fn sockets(&self) -> usize {
        support::open_sockets_on_port(self.port)
    }
}

/// A well-behaved client: send `data`, half-close, read the echo to EOF.
/// When it returns, an iterative server has finished every earlier client.
fn echo_via_std(addr: &SockaddrStorage, data: &[u8]) -> Vec<u8> {
    let mut s = std_client(addr);
    s.write_all(data).unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    let mut back = Vec::new();
    s.read_to_end(&mut back)
        .unwrap_or_else(|e| panic!("reading the echo: {e} (got {} bytes)", back.len()));
    back
}

/// A client with a 4 KiB receive buffer that sends all of `data` before it
/// reads: the server's echo fills that buffer and the server's own small
/// send buffer, so its sends come up short and must be continued.
fn echo_via_small_window(addr: &SockaddrStorage, data: &[u8]) -> Vec<u8> {
    let mut s = support::client_with_buffers(addr, Some(4096), None);
    s.write_all(data)
        .unwrap_or_else(|e| panic!("sending {} bytes to serve_echo: {e}", data.len()));
    s.shutdown(Shutdown::Write).unwrap();
    let mut back = Vec::new();
    s.read_to_end(&mut back).unwrap_or_else(|e| {
        panic!(
            "reading the echo of {} bytes: {e} (got {} bytes)",
            data.len(),
            back.len()
        )
    });
    back
}

/// The last client of a bad-input test: it must still be served, and by the
/// time its echo is complete the earlier, misbehaving connections are closed.
fn still_serves(server: &EchoServer) {
    let hello = b"still there?\n".to_vec();
    let back = echo_via_std(&server.addr, &hello);
    assert_eq!(
        back,
        hello,
        "after the misbehaving clients, a well-behaved client sent {:?} ({} bytes), \
         half-closed and read to EOF: serve_echo sent back {:?} ({} bytes, left) \
         instead of the same bytes (right)",
        String::from_utf8_lossy(&hello),
        hello.len(),
        String::from_utf8_lossy(&back),
        back.len()
    );
    let held = server.sockets();
    assert!(
        held <= 2,
        "after the last client's EOF the server still holds {held} sockets on its port \
         (the listener, at most the last connection): earlier connections were not closed"
    );
}

/// Stop the server and check it closed everything but the listener.
fn finish_without_leaks(server: EchoServer) -> EchoStats {
    let (stats, listener) = server.finish();
    let port = listener.local_addr().unwrap().port();
    assert_eq!(
        support::open_sockets_on_port(port),
        1,
        "after serve_echo returned, only the listener may be open on its port"
    );
    stats
}

// ------------------------------------------------- assignment 1: the loops

graded! {
    /// read_exact_counting gathers a message a peer sends one byte at a time.
    points = 2;
    fn read_exact_counting_one_byte_at_a_time() {
        let (reader, mut writer) = tcp_pair();
        let message = pattern(48);
        let reader_raw = reader.as_raw_fd();
        let sent = message.clone();
        // The peer writes one byte, waits until it has been delivered
        // (nothing unacknowledged) and read (nothing waiting), then the next.
        let peer = Background::spawn("one byte at a time", move || {
            let deadline = Instant::now() + DEADLINE;
            for byte in &sent {
                writer.write_all(std::slice::from_ref(byte)).unwrap();
                let w = writer.as_raw_fd();
                spin_until("the byte to be delivered", deadline, || {
                    ioctl_int(w, libc::TIOCOUTQ) == 0
                });
                spin_until("the byte to be read", deadline, || {
                    ioctl_int(reader_raw, libc::FIONREAD) == 0
                });
            }
            sent.len() // write calls made
        });
        let mut buf = vec![0u8; message.len()];
        let (bytes, calls) = read_exact_counting(&reader, &mut buf).unwrap_or_else(|e| panic!("read_exact_counting(&reader, &mut buf) returned an error: {e}"));
        let writes = peer.join_within(DEADLINE, "the one-byte peer");
        assert_eq!(bytes, message.len(), "read_exact_counting into a {}-byte buffer returned this byte count (left); the peer sent {} bytes, one write each (right)", message.len(), message.len());
        assert_eq!(buf, message, "read_exact_counting filled the buffer (left) with other bytes than the peer sent one at a time (right)");
        assert!(
            calls >= 2 && calls <= writes,
            "{calls} read calls for {writes} one-byte writes: each read can only get what \
             has arrived, so it takes more than one, and never more than one per byte"
        );
        assert_eq!(read_exact_counting(&reader, &mut []).unwrap_or_else(|e| panic!("read_exact_counting(&reader, &mut []) returned an error: {e}")), (0, 0), "read_exact_counting with an empty buffer returned (bytes, calls) = left: it should return (0, 0) without calling read");
    }
}

graded! {
    /// read_exact_counting returns the short count at EOF, without an error.
    points = 1;
    fn read_exact_counting_stops_at_eof() {
        let (reader, mut writer) = tcp_pair();
        let message = pattern(10);
        writer.write_all(&message[..4]).unwrap();
        writer.write_all(&message[4..]).unwrap();
        drop(writer); // FIN: EOF after the 10 bytes
        // Wait until the FIN has arrived (POLLRDHUP): the 10 bytes before it
        // are queued by then, so the first read takes all 10.
        let rdhup = PollFlags::from_bits_retain(libc::POLLRDHUP);
        sockbook::kit::wait::wait_for(&reader, rdhup, DEADLINE).unwrap();
        let mut buf = vec![0u8; 64];
        let (bytes, calls) = read_exact_counting(&reader, &mut buf).unwrap_or_else(|e| panic!("read_exact_counting(&reader, &mut buf) returned an error: {e}"));
        assert_eq!(bytes, message.len(), "the peer sent {} bytes then closed (FIN); read_exact_counting into a 64-byte buffer returned {bytes} (left) instead of the {} before EOF (right)", message.len(), message.len());
        assert_eq!(&buf[..bytes], &message[..], "read_exact_counting filled the buffer (left) with other bytes than the peer sent (right)");
        assert_eq!(
            calls, 1,
            "all 10 bytes were waiting, so one read returned them and the next returned 0 \
             (EOF); a read that returns 0 does not count"
        );
    }
}

graded! {
    /// write_all_counting finishes a big write on a nonblocking socket with
    /// small buffers: short writes, EAGAIN, wait, carry on.
    points = 2;
    fn write_all_counting_survives_partial_writes() {
        let (writer, reader) = tcp_pair();
        socket::setsockopt(&writer, sockopt::SndBuf, &4096).unwrap();
        writer.set_nonblocking(true).unwrap();
        let data = pattern(512 * 1024);
        let expected = data.len();
        let writer_raw = writer.as_raw_fd();
        // The reader waits until the writer's buffer is full (a write had
        // to stop short), then drains slowly, in small reads.
        let drain = Background::spawn("slow reader", move || {
            let deadline = Instant::now() + DEADLINE;
            spin_until("the writer's send buffer to fill", deadline, || {
                !writable_now(writer_raw)
            });
            let mut reader = reader;
            let mut got = Vec::with_capacity(expected);
            let mut buf = [0u8; 1000];
            while got.len() < expected {
                let n = reader.read(&mut buf).unwrap();
                assert!(n > 0, "EOF after {} of {expected} bytes", got.len());
                got.extend_from_slice(&buf[..n]);
            }
            got
        });
        let calls = write_all_counting(&writer, &data).unwrap_or_else(|e| panic!("write_all_counting(&writer, &data) returned an error: {e}"));
        let got = drain.join_within(DEADLINE, "the slow reader");
        assert!(got == data, "the reader got different bytes ({} of {})", got.len(), expected);
        assert!(
            calls >= 2 && calls <= data.len(),
            "{calls} write calls: the buffers hold far less than {} bytes, so one call \
             cannot have written it all",
            data.len()
        );
        assert_eq!(write_all_counting(&writer, &[]).unwrap_or_else(|e| panic!("write_all_counting(&writer, &[]) returned an error: {e}")), 0, "write_all_counting with an empty buffer reported this many write calls (left): it should make none (right)");
    }
}

// ------------------------------------------ assignment 2: the echo server

graded! {
    /// serve_echo echoes every byte for clients that come one after another,
    /// counts them, and closes each connection. The server's send buffer
    /// and the 20,000-byte client's receive buffer are small, so the
    /// server's sends come up short: an echo server that ignores short
    /// sends is wrong at its core, so this and the megabyte test carry 7
    /// of the assignment's 13 points.
    points = 4;
    fn serve_echo_echoes_clients_in_turn() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        socket::setsockopt(&listener, sockopt::SndBuf, &4096).unwrap();
        let server = EchoServer::start_on(listener, Duration::from_secs(4));
        assert_eq!(server.sockets(), 1, "only the listener before any client");
        let messages = [b"hello\n".to_vec(), pattern(20_000), b"no newline".to_vec()];
        for m in &messages {
            let back = echo_via_small_window(&server.addr, m);
            assert!(
                &back == m,
                "a client (4 KiB receive buffer; the server's send buffer is 4 KiB too) sent {} bytes, \
                 half-closed and read to EOF: serve_echo sent back {} bytes ({}). When the socket takes \
                 only part of a send, the rest must follow",
                m.len(),
                back.len(),
                if back.len() == m.len() { "different bytes" } else { "bytes missing" }
            );
        }
        let stats = finish_without_leaks(server);
        let total: usize = messages.iter().map(Vec::len).sum();
        assert_eq!(stats.connections, messages.len() as u64, "serve_echo's EchoStats.connections (left); {} clients connected one after another (right)", messages.len());
        assert_eq!(stats.bytes, total as u64, "serve_echo's EchoStats.bytes (left); the clients sent {total} bytes in all, each echoed in full (right)");
        assert_eq!(stats.failed, 0, "serve_echo's EchoStats.failed (left): every client half-closed cleanly, so none failed (right)");
    }
}

graded! {
    /// serve_echo returns when `stop` becomes readable, even in the middle of
    /// a connection, and closes that connection.
    points = 1;
    fn serve_echo_stops_when_told() {
        // An idle limit far past the test's deadline: only `stop` can end
        // the connection in time.
        let server = EchoServer::start(Duration::from_secs(60));
        let mut client = std_client(&server.addr);
        client.write_all(b"a").unwrap();
        let mut one = [0u8; 1];
        client.read_exact(&mut one).unwrap(); // the server is in this connection now
        assert_eq!(&one, b"a", "the client sent \"a\" and should have read \"a\" back");
        let stats = finish_without_leaks(server);
        assert_eq!(stats.connections, 1, "serve_echo's count of connections served: one client connected and reset");
        let mut rest = Vec::new();
        let n = client.read_to_end(&mut rest).unwrap();
        assert_eq!(n, 0, "the server closed the connection it was serving");
    }
}

graded! {
    /// A client that resets in the middle of a line costs the server nothing.
    points = 1;
    fn serve_echo_survives_reset_mid_line() {
        let server = EchoServer::start(Duration::from_secs(4));
        let mut rude = std_client(&server.addr);
        rude.write_all(b"half a li").unwrap();
        reset(rude);
        still_serves(&server);
        let stats = finish_without_leaks(server);
        assert_eq!(stats.connections, 2, "serve_echo's EchoStats.connections (left): the client that reset mid-line and the last client make 2 (right)");
    }
}

graded! {
    /// Binary garbage (every byte value, NULs, invalid UTF-8) is echoed as is.
    points = 1;
    fn serve_echo_survives_binary_garbage() {
        let server = EchoServer::start(Duration::from_secs(4));
        let mut garbage: Vec<u8> = (0..=255u8).rev().cycle().take(4096).collect();
        garbage.extend_from_slice(&[0, 0, 0, 0xff, 0xfe, 0xc3, 0x28]);
        let back = echo_via_std(&server.addr, &garbage);
        assert!(back == garbage, "a client sent {} bytes of binary garbage (every byte value, NULs, invalid UTF-8), half-closed and read to EOF: serve_echo sent back {} bytes, {}", garbage.len(), back.len(), if back.len() == garbage.len() { "but different ones" } else { "not the same count" });
        still_serves(&server);
        finish_without_leaks(server);
    }
}

graded! {
    /// One mebibyte without a newline: echoed whole while the client sends
    /// (the server's sends come up short here: a server that ignores short
    /// sends loses data, the core of the assignment, so 3 points).
    points = 3;
    fn serve_echo_survives_a_megabyte_without_newline() {
        // A small send buffer on the server's side (accepted sockets inherit
        // it from the listener): its sends come up short, so a server that
        // ignores what send returned loses bytes here.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        socket::setsockopt(&listener, sockopt::SndBuf, &4096).unwrap();
        let server = EchoServer::start_on(listener, Duration::from_secs(4));
        let data: Vec<u8> = pattern(1 << 20).into_iter().map(|b| if b == b'\n' { b'.' } else { b }).collect();
        let mut client = std_client(&server.addr);
        let mut sender = client.try_clone().unwrap();
        let to_send = data.clone();
        // Send and read at the same time, or both sides' buffers fill up.
        let send = Background::spawn("send 1 MiB", move || {
            sender.write_all(&to_send).unwrap();
            sender.shutdown(Shutdown::Write).unwrap();
        });
        let mut back = Vec::new();
        client.read_to_end(&mut back).unwrap();
        send.join_within(DEADLINE, "the sender");
        assert!(
            back == data,
            "1 MiB echoed ({} of {} bytes back, {}): the server's sends come up short here; \
             each must go on from where the last one stopped",
            back.len(),
            data.len(),
            if back.len() == data.len() { "different bytes" } else { "bytes missing" }
        );
        still_serves(&server);
        let stats = finish_without_leaks(server);
        assert_eq!(stats.bytes, (data.len() + b"still there?\n".len()) as u64, "serve_echo's EchoStats.bytes (left) should count every byte it echoed: the {} bytes of the 1 MiB client plus the {} of the last client (right)", data.len(), b"still there?\n".len());
    }
}

graded! {
    /// A hundred clients that connect and leave at once: each accepted,
    /// each closed, none left open.
    points = 1;
    fn serve_echo_survives_100_connect_and_leave() {
        let server = EchoServer::start(Duration::from_secs(4));
        for _ in 0..100 {
            drop(std_client(&server.addr));
        }
        still_serves(&server);
        let stats = finish_without_leaks(server);
        assert_eq!(stats.connections, 101, "serve_echo's EchoStats.connections (left): 100 clients that connected and closed at once, and the last client, make 101 (right)");
    }
}

graded! {
    /// A client that connects and says nothing is dropped after `idle`, so
    /// the next client gets served.
    points = 1;
    fn serve_echo_drops_an_idle_client() {
        let idle = Duration::from_millis(300);
        let server = EchoServer::start(idle);
        let mut silent = std_client(&server.addr);
        let started = Instant::now();
        still_serves(&server);
        let mut rest = Vec::new();
        assert_eq!(silent.read_to_end(&mut rest).unwrap(), 0, "the silent client read {} bytes (left) where it should read EOF at once: serve_echo should have closed it after {idle:?} idle", rest.len());
        assert!(started.elapsed() >= idle, "served before the idle limit passed?");
        let stats = finish_without_leaks(server);
        assert_eq!(stats.connections, 2, "two clients connected one after the other: serve_echo's count of connections (the misbehaving one counts too)");
    }
}

graded! {
    /// A client that sends but never reads cannot wedge the server: the
    /// server's send gives up after `idle` (SO_SNDTIMEO, or MSG_DONTWAIT and
    /// a bounded wait), it drops that client, and the next client gets served.
    points = 1;
    fn serve_echo_drops_a_client_that_never_reads() {
        let server = EchoServer::start(Duration::from_millis(300));
        let mut hog = std_client(&server.addr);
        hog.set_write_timeout(Some(Duration::from_secs(4))).unwrap();
        let chunk = pattern(64 * 1024);
        let mut sent = 0usize;
        // Write and never read. The echoes pile up until the server's write
        // blocks; then it stops reading, and our write blocks. A server that
        // gives up on us closes the connection, and our write fails with a
        // reset; a wedged server leaves us blocked until the write timeout.
        let err = loop {
            match hog.write(&chunk) {
                Ok(n) => sent += n,
                Err(e) => break e,
            }
            assert!(sent < 1 << 30, "1 GiB sent to a client that never reads?");
        };
        assert!(
            matches!(
                err.kind(),
                std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
            ),
            "after {sent} bytes the hog's write ended with {err} ({:?}): the server should \
             have dropped it (SO_SNDTIMEO), not stayed stuck in write",
            err.kind()
        );
        still_serves(&server);
        let stats = finish_without_leaks(server);
        assert_eq!(stats.connections, 2, "two clients connected one after the other: serve_echo's count of connections (the misbehaving one counts too)");
    }
}

// ------------------------------------------ assignment 3: the echo client

/// An independent echo server (`std::net`) for one client: echo the first
/// `limit` bytes, then `then` decides how it leaves.
fn std_echo_once(limit: usize, then: fn(TcpStream)) -> (SockaddrStorage, Background<usize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = addr_of(&listener);
    let worker = Background::spawn("std echo server", move || {
        let (mut s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(DEADLINE)).unwrap();
        s.set_write_timeout(Some(DEADLINE)).unwrap();
        // It echoes in small pieces; without TCP_NODELAY, Nagle's algorithm
        // and the client's delayed ACK would stall each piece ~40 ms
        // (chapter 3).
        s.set_nodelay(true).unwrap();
        let mut echoed = 0;
        let mut buf = [0u8; 1500];
        while echoed < limit {
            let want = buf.len().min(limit - echoed);
            let n = s.read(&mut buf[..want]).unwrap();
            if n == 0 {
                break;
            }
            s.write_all(&buf[..n]).unwrap();
            echoed += n;
        }
        then(s);
        echoed
    });
    (addr, worker)
}

/// Leave by half-closing (FIN), then read whatever the client still sends
/// until it closes: a clean early end, no RST.
fn fin_then_drain(mut s: TcpStream) {
    s.shutdown(Shutdown::Write).unwrap();
    let mut sink = Vec::new();
    let _ = s.read_to_end(&mut sink);
}

graded! {
    /// echo_exchange gets every byte back from a working echo server.
    points = 2;
    fn echo_exchange_round_trip() {
        quiet();
        let data = pattern(200_000);
        let (addr, server) = std_echo_once(usize::MAX, fin_then_drain);
        let reply = echo_exchange(&addr, &data, Duration::from_secs(4));
        assert_eq!(reply.end, EchoEnd::Complete, "echo_exchange against a well-behaved echo server should end Complete");
        assert!(reply.echoed == data, "all {} bytes back, in order (got {})", data.len(), reply.echoed.len());
        assert_eq!(server.join_within(DEADLINE, "the std echo server"), data.len(), "the independent std echo server received and echoed this many bytes (left), but echo_exchange was given {} bytes to send (right): it must send all of them before it finishes", data.len());
    }
}

graded! {
    /// When the server closes after echoing part, echo_exchange returns that
    /// part and says the server closed.
    points = 2;
    fn echo_exchange_server_closes_mid_stream() {
        quiet();
        let data = pattern(50_000);
        let limit = 10_000;
        let (addr, server) = std_echo_once(limit, fin_then_drain);
        let reply = echo_exchange(&addr, &data, Duration::from_secs(4));
        let echoed_by_server = server.join_within(DEADLINE, "the std echo server");
        assert_eq!(reply.end, EchoEnd::ServerClosed, "echo_exchange sent {} bytes to a server that echoed {echoed_by_server} then closed (FIN): its reply.end (left) should be ServerClosed (right)", data.len());
        assert!(
            reply.echoed == data[..echoed_by_server],
            "kept exactly what the server echoed ({} bytes), got {}",
            echoed_by_server,
            reply.echoed.len()
        );
    }
}

/// One number from a `/proc/sys` file of numbers (`tcp_wmem` has three).
fn sysctl_field(path: &str, index: usize) -> usize {
    let text = std::fs::read_to_string(path).unwrap();
    text.split_whitespace().nth(index).unwrap().parse().unwrap()
}

graded! {
    /// echo_exchange reads each chunk's echo before sending the next: with
    /// more data than the buffers on both sides can hold, a client that
    /// sends everything first deadlocks with the server.
    points = 1;
    fn echo_exchange_more_than_the_buffers_hold() {
        quiet();
        // What a client that does not read can park in the kernel: its send
        // buffer (which grows at most to tcp_wmem's maximum) and its receive
        // buffer (which grows only as its program reads, so it stays near
        // tcp_rmem's default). Twice both, read on this kernel, is more.
        let wmem_max = sysctl_field("/proc/sys/net/ipv4/tcp_wmem", 2);
        let rmem_default = sysctl_field("/proc/sys/net/ipv4/tcp_rmem", 1);
        let len = 2 * (wmem_max + 4 * rmem_default) + (1 << 20);
        let data = pattern(len);
        // The server's own buffers are small (inherited from the listener).
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        socket::setsockopt(&listener, sockopt::SndBuf, &4096).unwrap();
        socket::setsockopt(&listener, sockopt::RcvBuf, &4096).unwrap();
        let addr = addr_of(&listener);
        let server = Background::spawn("small-buffer echo server", move || {
            let (mut s, _) = listener.accept().unwrap();
            s.set_read_timeout(Some(DEADLINE)).unwrap();
            s.set_write_timeout(Some(DEADLINE)).unwrap();
            s.set_nodelay(true).unwrap();
            let mut buf = [0u8; 16 * 1024];
            let mut echoed = 0;
            // A write that times out means the client stopped reading.
            while let Ok(n) = s.read(&mut buf) {
                if n == 0 || s.write_all(&buf[..n]).is_err() {
                    break;
                }
                echoed += n;
            }
            echoed
        });
        let reply = echo_exchange(&addr, &data, Duration::from_secs(8));
        assert_eq!(
            reply.end,
            EchoEnd::Complete,
            "{len} bytes (more than both sides' buffers hold) must all come back"
        );
        assert!(reply.echoed == data, "echo_exchange ended Complete, but its reply.echoed ({} bytes) is not the {len} bytes it sent, in order", reply.echoed.len());
        assert_eq!(server.join_within(DEADLINE, "the echo server"), len, "the independent small-buffer echo server received and echoed this many bytes (left), but echo_exchange was given {len} bytes to send (right): it must send all of them before it finishes");
    }
}

graded! {
    /// When the server resets mid-stream, echo_exchange returns the error
    /// (naming ECONNRESET or EPIPE) and whatever came back before it.
    points = 1;
    fn echo_exchange_server_resets() {
        quiet();
        let data = pattern(50_000);
        let (addr, server) = std_echo_once(6_000, reset);
        let reply = echo_exchange(&addr, &data, Duration::from_secs(4));
        let echoed_by_server = server.join_within(DEADLINE, "the std echo server");
        assert!(
            reply.echoed.len() <= echoed_by_server && reply.echoed == data[..reply.echoed.len()],
            "echoed must be a prefix of what the server sent back"
        );
        // Every chunk (at most ECHO_CHUNK bytes) that came back whole before
        // the server's 6,000th byte was read before the reset: whatever the
        // chunk size, that is more than half of 6,000.
        assert!(
            reply.echoed.len() > echoed_by_server / 2,
            "only {} bytes kept, but the server echoed {echoed_by_server} before it reset: \
             keep what came back before the error",
            reply.echoed.len()
        );
        match &reply.end {
            EchoEnd::Failed(e) => assert!(
                matches!(e.errno(), Some(Errno::ECONNRESET | Errno::EPIPE)),
                "a reset shows as ECONNRESET or EPIPE, got {e}"
            ),
            other => panic!("a reset must be reported as a failed call, got {other:?}"),
        }
    }
}

graded! {
    /// A server that takes the data and never answers: echo_exchange gives up
    /// at its timeout with Failed(ETIMEDOUT), and closes its socket.
    points = 1;
    fn echo_exchange_gives_up_at_the_timeout() {
        quiet();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = addr_of(&listener);
        // Reads everything and answers nothing, until the client closes.
        let server = Background::spawn("silent server", move || {
            let (mut s, _) = listener.accept().unwrap();
            s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
            let mut sink = Vec::new();
            s.read_to_end(&mut sink).map(|_| sink.len())
        });
        let timeout = Duration::from_millis(300);
        let started = Instant::now();
        let reply = echo_exchange(&addr, b"anyone there?\n", timeout);
        let took = started.elapsed();
        match &reply.end {
            EchoEnd::Failed(e) => assert_eq!(e.errno(), Some(Errno::ETIMEDOUT), "{e}"),
            other => panic!("expected Failed(ETIMEDOUT) after {took:?}, got {other:?}"),
        }
        assert!(reply.echoed.is_empty(), "the silent server echoed nothing, but echo_exchange's reply.echoed holds {} bytes", reply.echoed.len());
        assert!(
            took >= timeout.mul_f64(0.9) && took < timeout + Duration::from_secs(2),
            "gave up after {took:?}; the timeout was {timeout:?}"
        );
        let got = server.join_within(DEADLINE, "the silent server");
        assert!(
            matches!(got, Ok(14)),
            "the server should read the 14 bytes, then EOF when the client closed its \
             socket: {got:?}"
        );
    }
}

graded! {
    /// Connecting where nobody listens: Failed(ECONNREFUSED), nothing echoed.
    points = 1;
    fn echo_exchange_connection_refused() {
        quiet();
        // A port that is surely closed: bound by us, never listened on.
        let holder: OwnedFd = socket::socket(
            socket::AddressFamily::Inet,
            socket::SockType::Stream,
            socket::SockFlag::SOCK_CLOEXEC,
            None,
        )
        .unwrap();
        let any: SockaddrStorage = SockaddrStorage::from("127.0.0.1:0".parse::<std::net::SocketAddr>().unwrap());
        socket::bind(holder.as_raw_fd(), &any).unwrap();
        let closed: SockaddrStorage = socket::getsockname(holder.as_raw_fd()).unwrap();
        let reply = echo_exchange(&closed, b"anyone?", Duration::from_secs(2));
        assert!(reply.echoed.is_empty(), "echo_exchange to {} where nothing listens: nothing can be echoed, but reply.echoed holds {} bytes", support::std_addr(&closed), reply.echoed.len());
        match &reply.end {
            EchoEnd::Failed(e) => assert_eq!(e.errno(), Some(Errno::ECONNREFUSED), "{e}"),
            other => panic!("expected Failed(ECONNREFUSED), got {other:?}"),
        }
        drop(holder);
    }
}
