//! The narrated demo: `cargo run --bin ch02_tcp` with no arguments. A server
//! thread and a client in one process, on loopback, every call said out loud.
//! Each scene gets its own connection on the same listener.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::mpsc;
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::socket::{self, MsgFlags, Shutdown, SockaddrStorage, sockopt};
use nix::unistd;

use super::calls::{accept_peer, close_fd, connect_to, listen_on, show_bytes, tcp_socket};
use crate::kit::error::errno_text;
use crate::kit::narrate::{heading, note};
use crate::kit::{Call, Error, Result, addr, io, net, wait};
use crate::say;

/// Every wait in the demo ends by this; a correct run needs milliseconds.
const WAIT: Duration = Duration::from_secs(5);

/// Run the whole demo.
pub fn run() -> Result<()> {
    say!(
        "",
        "Chapter 2: a TCP server and client. (`cargo run --bin ch02_tcp -- --help` for more)"
    );
    heading("1. The server: socket → bind → listen");
    note(
        "the seed's `new ServerSocket(port)` is these three calls; port 0 asks the kernel to pick",
    );
    let (listener, bound) = listen_on("server", &addr::parse("127.0.0.1:0")?, 16)?;
    note(format!(
        "the listener waits on {bound}; it never carries data, accept() makes a new socket for each client"
    ));

    scene_sequence(&listener, &bound)?;
    scene_byte_stream(&listener, &bound)?;
    scene_flags(&listener, &bound)?;
    scene_short_writes(&listener, &bound)?;
    scene_errors(&bound)?;

    heading("8. Done");
    in_order(|| close_fd("server", listener))?;
    note(
        "this server served one client at a time; the seed starts a thread per connection: chapter 7",
    );
    Ok(())
}

/// Wait (bounded) until `fd` can be read without blocking.
fn ready(fd: impl AsFd) -> Result<()> {
    wait::wait_readable(fd, WAIT)
}

/// One narrated `read(2)`, after a bounded wait.
fn read_said(who: &str, fd: BorrowedFd<'_>, buf: &mut [u8]) -> Result<usize> {
    ready(fd)?;
    let raw = fd.as_raw_fd();
    let n = unistd::read(fd, buf).call(format!("read({raw})"))?;
    if n == 0 {
        say!(who, "read({raw}, {}) = 0 (EOF)", buf.len());
    } else {
        say!(
            who,
            "read({raw}, {}) = {n} {}",
            buf.len(),
            show_bytes(&buf[..n])
        );
    }
    Ok(n)
}

/// Make a call and print its line before the other thread can print what
/// it did in response: holding stdout's (reentrant) lock across both keeps
/// the narration in cause-and-effect order. Only for calls that cannot
/// block waiting for the other thread.
fn in_order<T>(call: impl FnOnce() -> T) -> T {
    let _order = std::io::stdout().lock();
    call()
}

/// One narrated `write(2)`, printed before the peer can react to it.
fn write_said(who: &str, fd: BorrowedFd<'_>, bytes: &[u8]) -> Result<usize> {
    let _order = std::io::stdout().lock();
    let raw = fd.as_raw_fd();
    let n = unistd::write(fd, bytes).call(format!("write({raw})"))?;
    say!(who, "write({raw}, {}) = {n}", show_bytes(bytes));
    Ok(n)
}

/// The server side of a scene: wait (bounded) for the connection, accept it.
fn accept_within(listener: &OwnedFd) -> Result<OwnedFd> {
    ready(listener)?;
    Ok(accept_peer("server", listener)?.0)
}

/// Run `server` on a thread while `client` runs here; both must succeed.
fn with_server<S, C>(server: S, client: C) -> Result<()>
where
    S: FnOnce() -> Result<()> + Send,
    C: FnOnce() -> Result<()>,
{
    std::thread::scope(|s| {
        let server = s.spawn(server);
        let client_result = client();
        let server_result = server
            .join()
            .unwrap_or_else(|_| Err(Error::msg("the demo's server thread panicked")));
        client_result.and(server_result)
    })
}

/// Scenes 2 and 3: connect/accept, the addresses on both ends, one echo,
/// EOF, close.
fn scene_sequence(listener: &OwnedFd, bound: &SockaddrStorage) -> Result<()> {
    heading("2. The client: socket → connect; the server: accept");
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .map(|s| s.split_whitespace().collect::<Vec<_>>().join("-"))
        .unwrap_or_else(|_| "?".into());
    // Only so that scene 3's heading comes after the accept in the output.
    let (accepted_tx, accepted_rx) = mpsc::channel::<()>();
    with_server(
        move || {
            let conn = accept_within(listener)?;
            let raw = conn.as_raw_fd();
            say!("server", "getsockname({raw}) = {}", net::local_addr(&conn)?);
            note(
                "the accepted socket has the listener's port too: a connection is named by both ends",
            );
            let _ = accepted_tx.send(());
            let mut buf = [0u8; 64];
            let n = read_said("server", conn.as_fd(), &mut buf)?;
            write_said("server", conn.as_fd(), &buf[..n])?;
            read_said("server", conn.as_fd(), &mut buf)?;
            in_order(|| close_fd("server", conn))
        },
        || {
            let fd = in_order(|| connect_to("client", bound))?;
            let raw = fd.as_raw_fd();
            let local = net::local_addr(&fd)?;
            say!("client", "getsockname({raw}) = {local}");
            say!("client", "getpeername({raw}) = {}", net::peer_addr(&fd)?);
            note(format!(
                "nobody bound the client: connect() gave it an ephemeral port from ip_local_port_range ({range})"
            ));
            accepted_rx
                .recv_timeout(WAIT)
                .map_err(|_| Error::msg("demo: the server never accepted"))?;

            heading("3. write and read; EOF; close");
            write_said("client", fd.as_fd(), b"hello\n")?;
            let mut buf = [0u8; 64];
            read_said("client", fd.as_fd(), &mut buf)?;
            note("SHUT_WR sends FIN: the server's next read returns 0, end of file");
            in_order(|| {
                socket::shutdown(raw, Shutdown::Write).call(format!("shutdown({raw}, SHUT_WR)"))?;
                say!("client", "shutdown({raw}, SHUT_WR) = 0");
                Ok::<(), Error>(())
            })?;
            read_said("client", fd.as_fd(), &mut buf)?;
            in_order(|| close_fd("client", fd))
        },
    )
}

/// Scene 4: no record boundaries, in both directions.
fn scene_byte_stream(listener: &OwnedFd, bound: &SockaddrStorage) -> Result<()> {
    heading("4. A byte stream: writes and reads do not match up");
    let message = b"one byte at a time\n";
    with_server(
        || {
            let conn = accept_within(listener)?;
            let raw = conn.as_raw_fd();
            let mut go = [0u8; 1];
            read_said("server", conn.as_fd(), &mut go)?;
            for byte in message {
                unistd::write(&conn, std::slice::from_ref(byte)).call(format!("write({raw})"))?;
                if *byte == b' ' {
                    // A slow writer, like someone typing: a pause after each
                    // word. (Not synchronisation: nothing waits for it.)
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
            say!(
                "server",
                "{} x write({raw}, 1 byte) = 1: one call per byte, a pause after each word",
                message.len()
            );
            in_order(|| close_fd("server", conn))
        },
        || {
            let fd = in_order(|| connect_to("client", bound))?;
            note("the client says go, then reads while the server is still writing");
            write_said("client", fd.as_fd(), b"g")?;
            let mut buf = [0u8; 64];
            let mut sizes = Vec::new();
            loop {
                let n = read_said("client", fd.as_fd(), &mut buf)?;
                if n == 0 {
                    break;
                }
                sizes.push(n);
            }
            note(format!(
                "{} writes arrived in {} reads of {:?} bytes: reads follow the timing, not the writes",
                message.len(),
                sizes.len(),
                sizes
            ));
            in_order(|| close_fd("client", fd))
        },
    )?;

    let parts: [&[u8]; 3] = [b"one\n", b"two\n", b"three\n"];
    let total: usize = parts.iter().map(|p| p.len()).sum();
    with_server(
        || {
            let conn = accept_within(listener)?;
            let raw = conn.as_raw_fd();
            let mut buf = [0u8; 64];
            // MSG_PEEK | MSG_WAITALL: wait until all `total` bytes are
            // there, but take none of them; then one read takes them all.
            let flags = MsgFlags::MSG_PEEK | MsgFlags::MSG_WAITALL;
            ready(&conn)?;
            let n = socket::recv(raw, &mut buf[..total], flags)
                .call(format!("recv({raw}, MSG_PEEK|MSG_WAITALL)"))?;
            say!(
                "server",
                "recv({raw}, {total}, MSG_PEEK|MSG_WAITALL) = {n}  (looked, took nothing)"
            );
            let n = read_said("server", conn.as_fd(), &mut buf)?;
            note(format!(
                "3 writes, 1 read of {n} bytes: TCP kept no trace of where one write ended"
            ));
            in_order(|| close_fd("server", conn))
        },
        || {
            let fd = in_order(|| connect_to("client", bound))?;
            for part in parts {
                write_said("client", fd.as_fd(), part)?;
            }
            let mut buf = [0u8; 8];
            read_said("client", fd.as_fd(), &mut buf)?;
            note("a protocol must mark its own boundaries: a newline, a length prefix, or EOF");
            in_order(|| close_fd("client", fd))
        },
    )
}

/// Scene 5: read/write versus send/recv and their flags.
fn scene_flags(listener: &OwnedFd, bound: &SockaddrStorage) -> Result<()> {
    heading("5. send/recv: read/write with flags");
    note("recv(fd, buf, len, 0) is read(fd, buf, len); the flags change one call, not the socket");
    with_server(
        || {
            let conn = accept_within(listener)?;
            let mut go = [0u8; 1];
            read_said("server", conn.as_fd(), &mut go)?;
            write_said("server", conn.as_fd(), b"peek!")?;
            read_said("server", conn.as_fd(), &mut go)?;
            write_said("server", conn.as_fd(), b"wait")?;
            write_said("server", conn.as_fd(), b"all!")?;
            read_said("server", conn.as_fd(), &mut go)?;
            // SO_LINGER {on, 0 s}: close() sends RST instead of FIN.
            let linger = libc::linger {
                l_onoff: 1,
                l_linger: 0,
            };
            let raw = conn.as_raw_fd();
            socket::setsockopt(&conn, sockopt::Linger, &linger)
                .call(format!("setsockopt({raw}, SO_LINGER)"))?;
            say!(
                "server",
                "setsockopt({raw}, SOL_SOCKET, SO_LINGER, {{1, 0}}) = 0"
            );
            note("close() with a zero linger resets the connection (chapter 6)");
            in_order(|| close_fd("server", conn))
        },
        || {
            let fd = in_order(|| connect_to("client", bound))?;
            let raw = fd.as_raw_fd();
            let mut buf = [0u8; 64];

            match socket::recv(raw, &mut buf, MsgFlags::MSG_DONTWAIT) {
                Err(errno) => say!(
                    "client",
                    "recv({raw}, 64, MSG_DONTWAIT) = -1 {}",
                    errno_text(errno)
                ),
                Ok(n) => say!("client", "recv({raw}, 64, MSG_DONTWAIT) = {n}"),
            }
            note("MSG_DONTWAIT: nothing to read, so fail with EAGAIN now instead of blocking");
            write_said("client", fd.as_fd(), b"g")?;

            ready(&fd)?;
            let n = socket::recv(raw, &mut buf, MsgFlags::MSG_PEEK)
                .call(format!("recv({raw}, MSG_PEEK)"))?;
            say!(
                "client",
                "recv({raw}, 64, MSG_PEEK) = {n} {}",
                show_bytes(&buf[..n])
            );
            read_said("client", fd.as_fd(), &mut buf)?;
            note("MSG_PEEK looks without taking: the next read returns the same bytes");
            write_said("client", fd.as_fd(), b"g")?;

            ready(&fd)?;
            let n = socket::recv(raw, &mut buf[..8], MsgFlags::MSG_WAITALL)
                .call(format!("recv({raw}, MSG_WAITALL)"))?;
            say!(
                "client",
                "recv({raw}, 8, MSG_WAITALL) = {n} {}",
                show_bytes(&buf[..n])
            );
            note(
                "MSG_WAITALL: two writes, one recv of all 8 (it still stops early at EOF or a signal)",
            );
            write_said("client", fd.as_fd(), b"g")?;

            ready(&fd)?;
            note("the server reset the connection; sending now fails");
            for _ in 0..2 {
                match socket::send(raw, b"late", MsgFlags::MSG_NOSIGNAL) {
                    Err(errno) => say!(
                        "client",
                        "send({raw}, \"late\", MSG_NOSIGNAL) = -1 {}",
                        errno_text(errno)
                    ),
                    Ok(n) => say!("client", "send({raw}, \"late\", MSG_NOSIGNAL) = {n}"),
                }
            }
            note(
                "the first send reports the reset; later ones say EPIPE, which in C also raises SIGPIPE",
            );
            note(
                "MSG_NOSIGNAL: no SIGPIPE, just the errno (Rust ignores SIGPIPE anyway; chapter 6 shows the signal)",
            );
            in_order(|| close_fd("client", fd))
        },
    )
}

/// Scene 6: a write that takes less than it was given, and `writen`.
fn scene_short_writes(listener: &OwnedFd, bound: &SockaddrStorage) -> Result<()> {
    heading("6. Short writes, short reads: why writen and readn exist");
    let data: Vec<u8> = (0..1u32 << 20).map(|i| (i % 251) as u8).collect();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let expected = data.len();
    with_server(
        move || {
            let conn = accept_within(listener)?;
            let raw = conn.as_raw_fd();
            go_rx
                .recv_timeout(WAIT)
                .map_err(|_| Error::msg("demo: the client never said go"))?;
            let mut buf = vec![0u8; expected];
            let (mut total, mut reads, mut biggest) = (0usize, 0usize, 0usize);
            loop {
                ready(&conn)?;
                let n = unistd::read(&conn, &mut buf).call(format!("read({raw})"))?;
                if n == 0 {
                    break;
                }
                total += n;
                reads += 1;
                biggest = biggest.max(n);
            }
            say!(
                "server",
                "read({raw}, {expected}) x {reads} = {total} bytes in all (largest {biggest}), then 0 (EOF)"
            );
            if total != expected {
                return Err(Error::msg(format!("demo: got {total} of {expected} bytes")));
            }
            note(
                "short reads: the buffer had room for it all, each read returned what had arrived",
            );
            in_order(|| close_fd("server", conn))
        },
        move || {
            let fd = in_order(|| connect_to("client", bound))?;
            let raw = fd.as_raw_fd();
            socket::setsockopt(&fd, sockopt::SndBuf, &4096)
                .call(format!("setsockopt({raw}, SO_SNDBUF, 4096)"))?;
            let sndbuf = socket::getsockopt(&fd, sockopt::SndBuf)
                .call(format!("getsockopt({raw}, SO_SNDBUF)"))?;
            say!(
                "client",
                "setsockopt({raw}, SOL_SOCKET, SO_SNDBUF, 4096) = 0; reads back {sndbuf}"
            );
            net::set_nonblocking(&fd, true)?;
            say!("client", "fcntl({raw}, F_SETFL, O_NONBLOCK) = 0");
            let mut n = 0;
            while n < data.len() {
                match unistd::write(&fd, &data[n..]) {
                    Ok(m) => {
                        say!(
                            "client",
                            "write({raw}, {} bytes) = {m}   <- short",
                            data.len() - n
                        );
                        n += m;
                    }
                    Err(Errno::EAGAIN) => {
                        say!(
                            "client",
                            "write({raw}, {} bytes) = -1 {}",
                            data.len() - n,
                            errno_text(Errno::EAGAIN)
                        );
                        break;
                    }
                    Err(errno) => return Err(Error::sys(format!("write({raw})"), errno)),
                }
            }
            note("the buffers are full until the server reads; a blocking socket would wait here");
            note("a blocking write can be short too (a signal, SO_SNDTIMEO): so loop until done");
            net::set_nonblocking(&fd, false)?;
            say!("client", "fcntl({raw}, F_SETFL, 0) = 0  (blocking again)");
            go_tx
                .send(())
                .map_err(|_| Error::msg("demo: the server thread is gone"))?;
            io::writen(&fd, &data[n..])?;
            say!(
                "client",
                "writen({raw}, {} bytes): a loop of write() until none is left",
                data.len() - n
            );
            in_order(|| {
                socket::shutdown(raw, Shutdown::Write).call(format!("shutdown({raw}, SHUT_WR)"))?;
                say!("client", "shutdown({raw}, SHUT_WR) = 0");
                Ok::<(), Error>(())
            })?;
            ready(&fd)?;
            let mut buf = [0u8; 8];
            read_said("client", fd.as_fd(), &mut buf)?;
            in_order(|| close_fd("client", fd))
        },
    )
}

/// Scene 7: the two errors every beginner meets.
fn scene_errors(bound: &SockaddrStorage) -> Result<()> {
    heading("7. ECONNREFUSED and EADDRINUSE");
    // A port that is certainly closed: bound by us, never listened on.
    let holder = tcp_socket("client", &addr::parse("127.0.0.1:0")?)?;
    let hraw = holder.as_raw_fd();
    socket::bind(hraw, &addr::parse("127.0.0.1:0")?).call(format!("bind({hraw}, 127.0.0.1:0)"))?;
    let closed = net::local_addr(&holder)?;
    say!(
        "client",
        "bind({hraw}, 127.0.0.1:0) = 0 -> {closed}, and no listen()"
    );
    match connect_to("client", &closed) {
        Err(e) if e.errno() == Some(Errno::ECONNREFUSED) => {
            note("nobody listens there: the kernel answered our SYN with RST");
            note("(its socket closed itself: the OwnedFd was dropped on the error path)");
        }
        Err(e) => return Err(e),
        Ok(_) => return Err(Error::msg("demo: connect to a closed port succeeded?")),
    }
    in_order(|| close_fd("client", holder))?;

    let second = tcp_socket("server", bound)?;
    let raw = second.as_raw_fd();
    match socket::bind(raw, bound) {
        Err(errno) => say!("server", "bind({raw}, {bound}) = -1 {}", errno_text(errno)),
        Ok(()) => say!("server", "bind({raw}, {bound}) = 0 (unexpected)"),
    }
    note("one listener per address and port; SO_REUSEADDR (chapter 3) lets a restarted server");
    note(
        "bind while old connections linger in TIME_WAIT (if the old server set it too), but never",
    );
    note("beside a live listener");
    in_order(|| close_fd("server", second))
}
