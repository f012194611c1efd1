//! Head and body in one segment or two: the same responses sent three ways
//! and the segments counted by the kernel.
//!
//! A response is a head (a few hundred bytes, with
//! [`sendmsg(2)`](https://man7.org/linux/man-pages/man2/sendmsg.2.html)) and
//! a body (with [`sendfile(2)`](https://man7.org/linux/man-pages/man2/sendfile.2.html)).
//! The server sets `TCP_NODELAY` ([`tcp(7)`](https://man7.org/linux/man-pages/man7/tcp.7.html)),
//! so nothing waits for Nagle: each call's bytes leave at once, and a head
//! sent alone is a segment of its own. Two ways to tell TCP "more follows":
//!
//! - `MSG_MORE` on the head's `sendmsg`: hold this partial segment for the
//!   next call (sendfile, which pushes when it sends its last byte);
//! - `TCP_CORK` set around the head and the body: hold every partial
//!   segment until the option is cleared.
//!
//! The count is the server socket's `tcpi_data_segs_out` from `TCP_INFO`
//! (segments that carried data, each segment of a GSO batch counted), read
//! before and after; the client's `tcpi_data_segs_in` is read beside it.

use std::fs::File;
use std::io::{IoSlice, Read, Write};
use std::mem::{offset_of, size_of};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::path::Path;
use std::time::Duration;

use nix::sys::socket::{MsgFlags, sendmsg};

use crate::kit::tcp::{TcpInfo, tcp_info};
use crate::kit::{Call, Error, Result};

/// `MSG_MORE` (nix has no name for it).
const MSG_MORE: MsgFlags = MsgFlags::from_bits_retain(libc::MSG_MORE);

// The kernel's `struct tcp_info` (include/uapi/linux/tcp.h): 8 bytes of
// u8 fields, 24 u32, 4 u64, then tcpi_segs_out, tcpi_segs_in, and four
// more u32 ending with tcpi_data_segs_out. libc's struct must agree.
const _: () = assert!(offset_of!(libc::tcp_info, tcpi_segs_out) == 136);
const _: () = assert!(offset_of!(libc::tcp_info, tcpi_data_segs_in) == 152);
const _: () = assert!(offset_of!(libc::tcp_info, tcpi_data_segs_out) == 156);

/// How the head is sent before the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coalesce {
    /// `sendmsg(head)`, then `sendfile(body)`: no hint.
    Plain,
    /// `sendmsg(head, MSG_MORE)`, then `sendfile(body)`.
    MsgMore,
    /// `TCP_CORK` = 1, `sendmsg(head)`, `sendfile(body)`, `TCP_CORK` = 0.
    Cork,
}

impl Coalesce {
    /// All three, in the order the demo shows them.
    pub const ALL: [Coalesce; 3] = [Coalesce::Plain, Coalesce::MsgMore, Coalesce::Cork];

    /// What the mode does, in a few words.
    pub fn describe(self) -> &'static str {
        match self {
            Coalesce::Plain => "sendmsg(head); sendfile(body)",
            Coalesce::MsgMore => "sendmsg(head, MSG_MORE); sendfile(body)",
            Coalesce::Cork => "TCP_CORK=1; sendmsg; sendfile; TCP_CORK=0",
        }
    }
}

/// What one run counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Count {
    /// How the heads were sent.
    pub mode: Coalesce,
    /// Responses sent.
    pub responses: u32,
    /// Bytes of one response (head + body).
    pub response_bytes: u64,
    /// The server socket's `tcpi_data_segs_out`, after minus before.
    pub data_segs_out: u32,
    /// The server socket's `tcpi_segs_out` (pure ACKs included).
    pub segs_out: u32,
    /// The client socket's `tcpi_data_segs_in`, after minus before.
    pub peer_data_segs_in: u32,
    /// The server socket's MSS (`tcpi_snd_mss`).
    pub mss: u32,
}

/// The three counters this module reads, if the kernel filled them in (the
/// length `getsockopt` returned covers `tcpi_data_segs_out`; Linux 4.6+).
fn counters(info: &TcpInfo, what: &str) -> Result<(u32, u32, u32)> {
    let end = offset_of!(libc::tcp_info, tcpi_data_segs_out) + size_of::<u32>();
    if !info.covers(end) {
        return Err(Error::msg(format!(
            "getsockopt({what}, TCP_INFO) returned {} bytes; tcpi_data_segs_out ends at byte {end} (Linux 4.6 or later)",
            info.len
        )));
    }
    let raw = &info.raw;
    Ok((
        raw.tcpi_data_segs_out,
        raw.tcpi_segs_out,
        raw.tcpi_data_segs_in,
    ))
}

/// `setsockopt(fd, IPPROTO_TCP, TCP_CORK, &on, 4)`, in the raw libc form.
fn cork(fd: BorrowedFd<'_>, on: bool) -> Result<()> {
    let value: libc::c_int = on.into();
    // SAFETY: the pointer and length describe `value`, alive for the call.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_CORK,
            (&raw const value).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == -1 {
        return Err(Error::last_os(format!(
            "setsockopt({}, TCP_CORK, {})",
            fd.as_raw_fd(),
            value
        )));
    }
    Ok(())
}

/// Send one response on a blocking socket: `head`, then `len` bytes of
/// `file` from offset 0, the head sent as `mode` says.
pub fn send_response(
    socket: BorrowedFd<'_>,
    head: &[u8],
    file: &File,
    len: usize,
    mode: Coalesce,
) -> Result<()> {
    let raw = socket.as_raw_fd();
    if mode == Coalesce::Cork {
        cork(socket, true)?;
    }
    let flags = match mode {
        Coalesce::MsgMore => MsgFlags::MSG_NOSIGNAL | MSG_MORE,
        _ => MsgFlags::MSG_NOSIGNAL,
    };
    let mut sent = 0;
    while sent < head.len() {
        sent += sendmsg::<()>(raw, &[IoSlice::new(&head[sent..])], &[], flags, None)
            .call(format!("sendmsg({raw}, head, {flags:?})"))?;
    }
    let mut offset: libc::off_t = 0;
    while (offset as usize) < len {
        let left = len - offset as usize;
        // SAFETY: both fds are open for the call; `offset` is a valid off_t.
        let n = unsafe { libc::sendfile(raw, file.as_raw_fd(), &mut offset, left) };
        match n {
            -1 if nix::errno::Errno::last() == nix::errno::Errno::EINTR => {}
            -1 => return Err(Error::last_os(format!("sendfile({raw}, file, {left})"))),
            0 => return Err(Error::msg("sendfile: the file shrank")),
            _ => {}
        }
    }
    if mode == Coalesce::Cork {
        cork(socket, false)?;
    }
    Ok(())
}

/// Send `responses` responses, each a head and the whole of `body` (a
/// file), on a fresh loopback connection, the way `mode` says, and count
/// the segments. The client works like a browser without pipelining: it
/// sends a request, reads the whole response, then sends the next; the
/// server reads each request before it answers. Both sockets have
/// `TCP_NODELAY`, as the chapter's server does.
pub fn count(body: &Path, responses: u32, mode: Coalesce) -> Result<Count> {
    let io = |what: &str| {
        let what = what.to_string();
        move |e: std::io::Error| Error::msg(format!("{what}: {e}"))
    };
    let file = File::open(body).map_err(io(&format!("open {}", body.display())))?;
    let len = file
        .metadata()
        .map_err(io("fstat"))?
        .len()
        .try_into()
        .map_err(|_| Error::msg("body too large"))?;
    let head = format!(
        "HTTP/1.1 200 OK\r\nServer: sockbook-ch12\r\nContent-Type: application/octet-stream\r\nContent-Length: {len}\r\n\r\n"
    )
    .into_bytes();
    let response_bytes = (head.len() + len) as u64;
    const REQUEST: &[u8] = b"GET /body HTTP/1.1\r\nHost: segments\r\n\r\n";

    let listener = TcpListener::bind("127.0.0.1:0").map_err(io("bind 127.0.0.1:0"))?;
    let addr = listener.local_addr().map_err(io("getsockname"))?;
    let client = TcpStream::connect(addr).map_err(io(&format!("connect {addr}")))?;
    let (server, _) = listener.accept().map_err(io("accept"))?;
    for s in [&client, &server] {
        s.set_nodelay(true).map_err(io("TCP_NODELAY"))?;
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .map_err(io("SO_RCVTIMEO"))?;
    }

    let reader = std::thread::spawn(move || -> Result<u32> {
        let mut client = client;
        let (_, _, in_before) = counters(&tcp_info(client.as_fd())?, "client")?;
        let mut buf = vec![0u8; 64 * 1024];
        for i in 0..responses {
            client
                .write_all(REQUEST)
                .map_err(io(&format!("client: write request {i}")))?;
            let mut got = 0u64;
            while got < response_bytes {
                let want = buf.len().min((response_bytes - got) as usize);
                let n = client
                    .read(&mut buf[..want])
                    .map_err(io(&format!("client: read response {i} after {got} bytes")))?;
                if n == 0 {
                    return Err(Error::msg(format!(
                        "client: EOF in response {i} after {got} of {response_bytes} bytes"
                    )));
                }
                got += n as u64;
            }
        }
        let (_, _, in_after) = counters(&tcp_info(client.as_fd())?, "client")?;
        Ok(in_after.wrapping_sub(in_before))
    });

    let (data_before, all_before, _) = counters(&tcp_info(server.as_fd())?, "server")?;
    let mut server_r = &server;
    let mut request = [0u8; REQUEST.len()];
    for i in 0..responses {
        server_r
            .read_exact(&mut request)
            .map_err(io(&format!("server: read request {i}")))?;
        send_response(server.as_fd(), &head, &file, len, mode)?;
    }
    let peer_data_segs_in = reader
        .join()
        .map_err(|_| Error::msg("the client thread panicked"))??;
    let info = tcp_info(server.as_fd())?;
    let (data_after, all_after, _) = counters(&info, "server")?;
    Ok(Count {
        mode,
        responses,
        response_bytes,
        data_segs_out: data_after.wrapping_sub(data_before),
        segs_out: all_after.wrapping_sub(all_before),
        peer_data_segs_in,
        mss: info.raw.tcpi_snd_mss,
    })
}

/// A file of `size` bytes in the temp dir, removed on drop.
pub struct BodyFile {
    /// Its path.
    pub path: std::path::PathBuf,
}

impl BodyFile {
    /// Write it.
    pub fn new(size: usize) -> Result<BodyFile> {
        let path = std::env::temp_dir().join(format!(
            "ch12-segments-{}-{size}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let bytes: Vec<u8> = (0..size).map(|i| b'a' + (i % 26) as u8).collect();
        std::fs::write(&path, bytes).map_err(|e| Error::msg(format!("{}: {e}", path.display())))?;
        Ok(BodyFile { path })
    }
}

impl Drop for BodyFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Count each mode for a body of `size` bytes and print a table.
pub fn run(responses: u32, size: usize) -> Result<Vec<Count>> {
    let body = BodyFile::new(size)?;
    let mut counts = Vec::new();
    for mode in Coalesce::ALL {
        counts.push(count(&body.path, responses, mode)?);
    }
    let first = counts[0];
    println!(
        "{responses} responses of {} bytes each ({size}-byte body), one loopback connection, TCP_NODELAY, MSS {}:",
        first.response_bytes, first.mss
    );
    println!(
        "  {:<44} {:>10} {:>12} {:>10}",
        "how the head is sent", "data segs", "per response", "all segs"
    );
    for c in &counts {
        println!(
            "  {:<44} {:>10} {:>12.2} {:>10}",
            c.mode.describe(),
            c.data_segs_out,
            f64::from(c.data_segs_out) / f64::from(c.responses),
            c.segs_out
        );
    }
    println!(
        "  (data segs: the server's tcpi_data_segs_out; the client counted {} in, in the same order; all segs: tcpi_segs_out, pure ACKs included)",
        counts
            .iter()
            .map(|c| c.peer_data_segs_in.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(counts)
}
