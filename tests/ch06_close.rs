//! Graded tests for chapter 6: a graceful close, telling how a peer left,
//! and a half-closing client that delivers its whole input.

#[macro_use]
mod support;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::socket::{
    AddressFamily, SockFlag, SockType, SockaddrStorage, connect, setsockopt, socket, sockopt,
};
use sockbook::ch06_close::{PeerLeft, graceful_close, half_close_exchange, how_peer_left};

/// A listener on 127.0.0.1:0 and its address for nix.
fn listener() -> (TcpListener, SockaddrStorage) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let a = SockaddrStorage::from(l.local_addr().unwrap());
    (l, a)
}

/// A client socket (nix), optionally with small buffers, connected to `addr`.
fn client(addr: &SockaddrStorage, bufs: Option<usize>) -> OwnedFd {
    let fd = socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .unwrap();
    if let Some(n) = bufs {
        setsockopt(&fd, sockopt::RcvBuf, &n).unwrap();
        setsockopt(&fd, sockopt::SndBuf, &n).unwrap();
    }
    connect(fd.as_raw_fd(), addr).unwrap();
    fd
}

fn local_port(fd: &OwnedFd) -> u16 {
    let a: SockaddrStorage = nix::sys::socket::getsockname(fd.as_raw_fd()).unwrap();
    a.as_sockaddr_in().unwrap().port()
}

/// The accepted side, with timeouts so a test server thread never hangs.
fn accept(l: &TcpListener) -> TcpStream {
    let (s, _) = l.accept().unwrap();
    s.set_read_timeout(Some(support::DEADLINE)).unwrap();
    s.set_write_timeout(Some(support::DEADLINE)).unwrap();
    s
}

/// A tag that differs between runs, so no expected value is written in.
fn tag() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{}-{nanos}", std::process::id())
}

graded! {
    /// graceful_close sends FIN (the server reads EOF), returns what the
    /// server sent after that, and leaves no socket open.
    points = 2;
    fn graceful_close_sends_fin_and_collects_the_rest() {
        let (l, addr) = listener();
        let tail = format!("tail {}\n", tag());
        let expect = tail.clone();
        let server = support::Background::spawn("server", move || {
            let mut s = accept(&l);
            let mut got = Vec::new();
            s.read_to_end(&mut got).unwrap(); // returns at the client's FIN
            s.write_all(tail.as_bytes()).unwrap();
            got
        });
        let fd = client(&addr, None);
        let port = local_port(&fd);
        let got = graceful_close(fd, Duration::from_secs(3)).unwrap_or_else(|e| panic!("graceful_close(fd, 3 s) on a connection whose server answers the FIN with {expect:?} and closes failed: {e}"));
        assert_eq!(String::from_utf8_lossy(&got), expect, "the client connected, called graceful_close; the server read to EOF (the FIN) and then sent {expect:?}: graceful_close should return exactly those bytes (read after shutdown(SHUT_WR), until the server's FIN)");
        let server_read = server.join_within(support::DEADLINE, "server");
        assert!(server_read.is_empty(), "the client sent nothing, yet the server read {} bytes before EOF", server_read.len());
        assert_eq!(support::open_sockets_on_port(port), 0, "after graceful_close returned, this many sockets (left) are still open on the client's port {port}: graceful_close takes the fd by value and must close it (right: 0)");
    }
}

graded! {
    /// graceful_close keeps reading until EOF, however much comes first
    /// (draining is the point of a graceful close: a close that does not
    /// drain loses most of the assignment's points, so 4 of its 7).
    points = 4;
    fn graceful_close_drains_a_long_reply() {
        let (l, addr) = listener();
        let n = 300_000 + (std::process::id() as usize % 1000);
        let server = support::Background::spawn("server", move || {
            let mut s = accept(&l);
            let mut sink = Vec::new();
            s.read_to_end(&mut sink).unwrap();
            s.write_all(&vec![b'z'; n]).unwrap();
        });
        let fd = client(&addr, None);
        let got = graceful_close(fd, Duration::from_secs(3)).unwrap_or_else(|e| panic!("graceful_close(fd, 3 s) on a connection whose server sends {n} bytes after the FIN, then closes, failed: {e}"));
        assert_eq!(got.len(), n, "the server sent {n} bytes after the client's FIN; graceful_close should read them all until EOF");
        assert!(got.iter().all(|&b| b == b'z'), "the server sent only b'z' bytes; graceful_close returned others");
        server.join_within(support::DEADLINE, "server");
    }
}

graded! {
    /// graceful_close gives up with ETIMEDOUT when the peer never closes.
    points = 1;
    fn graceful_close_gives_up_on_a_silent_peer() {
        let (l, addr) = listener();
        let fd = client(&addr, None);
        // The server's side: open, silent, never closed until the end.
        let s = accept(&l);
        let limit = Duration::from_millis(300);
        let t = Instant::now();
        let result = graceful_close(fd, limit);
        let took = t.elapsed();
        let err = result.err().unwrap_or_else(|| {
            panic!("graceful_close(fd, {limit:?}) returned Ok after {took:?}, but the server never sent FIN (it stays open and silent): it should fail with ETIMEDOUT")
        });
        assert_eq!(err.errno(), Some(Errno::ETIMEDOUT), "graceful_close(fd, {limit:?}) with a server that never closes failed after {took:?} with {err}: its errno (left) should be ETIMEDOUT (right)");
        assert!(took >= limit - Duration::from_millis(20), "graceful_close(fd, {limit:?}) with a server that never closes gave up after {took:?}, before its deadline");
        assert!(took < Duration::from_secs(2), "graceful_close(fd, {limit:?}) with a server that never closes gave up only after {took:?}: it should stop at its deadline");
        drop(s);
    }
}

graded! {
    /// how_peer_left reports an orderly close (FIN) and every byte before
    /// it: more than any one read returns, so the count must add up reads.
    points = 1;
    fn how_peer_left_sees_fin() {
        let (l, addr) = listener();
        let n = 300_000 + (std::process::id() as usize % 5000);
        let server = support::Background::spawn("server", move || {
            let mut s = accept(&l);
            for chunk in vec![b'a'; n].chunks(10_000) {
                s.write_all(chunk).unwrap();
            }
            // dropping `s` closes it: FIN
        });
        // Small buffers: the bytes cannot all be waiting at once.
        let fd = client(&addr, Some(16 * 1024));
        let left = how_peer_left(&fd, Duration::from_secs(3)).unwrap_or_else(|e| panic!("how_peer_left(fd, 3 s) with a server that writes {n} bytes then closes (FIN) failed: {e}"));
        server.join_within(support::DEADLINE, "server");
        assert_eq!(left, PeerLeft::Fin { bytes: n }, "the server wrote {n} bytes and closed (FIN): how_peer_left should count every byte, then see read() return 0");
    }
}

graded! {
    /// how_peer_left reports an abort (RST): SO_LINGER {1, 0} on the peer,
    /// and a peer that closes with our data unread.
    points = 2;
    fn how_peer_left_sees_reset() {
        let (l, addr) = listener();
        let server = support::Background::spawn("server", move || {
            let s = accept(&l);
            let off = libc::linger { l_onoff: 1, l_linger: 0 };
            setsockopt(&s, sockopt::Linger, &off).unwrap();
            // dropping `s` now sends RST
        });
        let fd = client(&addr, None);
        server.join_within(support::DEADLINE, "server");
        assert_eq!(
            how_peer_left(&fd, Duration::from_secs(3)).unwrap_or_else(|e| panic!("how_peer_left(fd, 3 s) with a server that closed with SO_LINGER {{1, 0}} (RST) failed: {e}: a reset is an answer, not an error")),
            PeerLeft::Reset { bytes: 0 }, "the server closed with SO_LINGER {{1, 0}}, sending RST and no data: how_peer_left's answer (left) should be Reset with 0 bytes (right); read() fails with ECONNRESET"
        );

        let (l, addr) = listener();
        let fd = client(&addr, None);
        let s = accept(&l);
        nix::unistd::write(&fd, format!("unread {}\n", tag()).as_bytes()).unwrap();
        // Wait until our bytes sit in the peer's receive queue, then close it.
        sockbook::kit::wait::wait_readable(&s, support::DEADLINE).unwrap();
        drop(s);
        assert_eq!(
            how_peer_left(&fd, Duration::from_secs(3)).unwrap_or_else(|e| panic!("how_peer_left(fd, 3 s) with a server that closed with our bytes unread (RST) failed: {e}: a reset is an answer, not an error")),
            PeerLeft::Reset { bytes: 0 }, "the client wrote a line, the server closed without reading it (so the kernel sends RST, not FIN), and sent no data: how_peer_left's answer (left) should be Reset with 0 bytes (right)"
        );
    }
}

graded! {
    /// how_peer_left reports silence when the deadline passes, with the
    /// bytes that came meanwhile, and returns on time.
    points = 1;
    fn how_peer_left_reports_silence() {
        let (l, addr) = listener();
        let fd = client(&addr, None);
        let mut s = accept(&l);
        let n = 10 + (std::process::id() as usize % 90);
        s.write_all(&vec![b'q'; n]).unwrap();
        let limit = Duration::from_millis(300);
        let t = Instant::now();
        let left = how_peer_left(&fd, limit).unwrap_or_else(|e| panic!("how_peer_left(fd, {limit:?}) with a server that writes {n} bytes and stays open failed: {e}: silence is an answer, not an error"));
        let took = t.elapsed();
        assert_eq!(left, PeerLeft::Silent { bytes: n }, "the peer wrote {n} bytes and then stayed silent, neither FIN nor RST, for longer than the {limit:?} limit: how_peer_left's answer (left) should be Silent with those {n} bytes (right)");
        assert!(took >= limit - Duration::from_millis(20), "how_peer_left(fd, {limit:?}) with a silent peer returned {left:?} after {took:?}, before its deadline");
        assert!(took < Duration::from_secs(2), "how_peer_left(fd, {limit:?}) with a silent peer returned only after {took:?}: it should stop at its deadline");
        drop(s);
    }
}

/// An upper-casing server on one connection with small buffers: it
/// answers each chunk as it reads it (blocking), and after EOF sends
/// `done N\n`. Run on a background thread.
fn upper_server(l: TcpListener, small: usize) -> support::Background<usize> {
    support::Background::spawn("upper-server", move || {
        let mut s = accept(&l);
        setsockopt(&s, sockopt::RcvBuf, &small).unwrap();
        setsockopt(&s, sockopt::SndBuf, &small).unwrap();
        let mut buf = [0u8; 8192];
        let mut total = 0;
        loop {
            let n = s.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            total += n;
            s.write_all(&buf[..n].to_ascii_uppercase()).unwrap();
        }
        s.write_all(format!("done {total}\n").as_bytes()).unwrap();
        total
    })
}

graded! {
    /// half_close_exchange delivers an input far larger than the buffers
    /// to a server that answers as it reads, without deadlock, and returns
    /// every reply and the server's last word after EOF.
    points = 3;
    fn half_close_exchange_delivers_a_large_input() {
        let (l, addr) = listener();
        // 64 KiB buffers (the kernel doubles them): about 0.5 MiB can sit in
        // the four buffers; the input is several times that.
        let server = upper_server(l, 65536);
        let fd = client(&addr, Some(65536));
        let input: Vec<u8> = (0..60_000)
            .flat_map(|i| format!("line {i} of the input, {}\n", i * 7919 % 104_729).into_bytes())
            .collect();
        let got = half_close_exchange(&fd, &input, Duration::from_secs(4)).unwrap_or_else(|e| panic!("half_close_exchange(fd, {} bytes of input, 4 s) with an upper-casing server (64 KiB buffers) that answers as it reads failed: {e}", input.len()));
        let total = server.join_within(support::DEADLINE, "server");
        assert_eq!(total, input.len(), "the upper-casing server read this many bytes before EOF (left), but half_close_exchange was given {} bytes to send (right)", input.len());
        let mut expect = input.to_ascii_uppercase();
        expect.extend_from_slice(format!("done {}\n", input.len()).as_bytes());
        assert_eq!(got.len(), expect.len(), "{} bytes of input, upper-cased back plus a final \"done N\" line: half_close_exchange returned {} bytes, expected {}", input.len(), got.len(), expect.len());
        assert!(got == expect, "half_close_exchange returned the right number of bytes, but not the upper-cased input followed by \"done {}\\n\": first difference at byte {}", input.len(), got.iter().zip(&expect).position(|(a, b)| a != b).unwrap_or(got.len()));
    }
}

graded! {
    /// half_close_exchange really half-closes: a server that answers only
    /// after EOF still gets its answer through, and the socket is blocking
    /// again afterwards.
    points = 1;
    fn half_close_exchange_gets_the_answer_after_eof() {
        let (l, addr) = listener();
        let server = support::Background::spawn("server", move || {
            let mut s = accept(&l);
            let mut got = Vec::new();
            s.read_to_end(&mut got).unwrap(); // only the client's FIN ends this
            let reply = format!("{} bytes, checksum {}\n", got.len(), got.iter().map(|&b| b as u64).sum::<u64>());
            s.write_all(reply.as_bytes()).unwrap();
            reply
        });
        let fd = client(&addr, None);
        let input = format!("question {}\n", tag()).repeat(50);
        let got = half_close_exchange(&fd, input.as_bytes(), Duration::from_secs(3)).unwrap_or_else(|e| panic!("half_close_exchange(fd, {} bytes of input, 3 s) with a server that answers only after reading EOF failed: {e}", input.len()));
        let reply = server.join_within(support::DEADLINE, "server");
        assert_eq!(String::from_utf8_lossy(&got), reply, "the client sent {} bytes; the server answers only once it reads EOF (the client's shutdown(SHUT_WR)), then closes: half_close_exchange returned left, the server sent right", input.len());
        let flags = nix::fcntl::fcntl(&fd, nix::fcntl::FcntlArg::F_GETFL).unwrap();
        assert!(
            !nix::fcntl::OFlag::from_bits_truncate(flags).contains(nix::fcntl::OFlag::O_NONBLOCK),
            "after half_close_exchange returned, O_NONBLOCK is still set on the socket (fcntl F_GETFL): it must be put back in blocking mode"
        );
    }
}
