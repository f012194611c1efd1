//! Parts 1 and 2: the four-way close as packets, then each of its states
//! held still long enough to look at.

use std::os::fd::AsRawFd;
use std::time::Duration;

use nix::sys::socket::{self, Shutdown};

use super::common::{drain, entry, fill, pair, show_ends, state};
use crate::ch05_handshake::capture::{Access, Capture, Packet, print_packets};
use crate::ch05_handshake::header::flags;
use crate::kit::narrate::{heading, note};
use crate::kit::{Call, Error, Result};
use crate::say;

fn capture(access: &Access, port: u16) -> Result<Option<Capture>> {
    if access.can_capture() {
        Capture::start(&[port]).map(Some)
    } else {
        Ok(None)
    }
}

fn packets(cap: &Option<Capture>) -> Result<Vec<Packet>> {
    match cap {
        Some(c) => c.take(Duration::from_millis(30)),
        None => Ok(Vec::new()),
    }
}

/// Part 1: a close as it usually happens, twice: the passive side closing
/// at once, and closing after a pause.
pub fn fourway(access: &Access) -> Result<()> {
    heading("1. The four-way close (四次握手)");
    for pause in [None, Some(Duration::from_millis(200))] {
        match pause {
            None => note(
                "A: the client's last data and its FIN in one go; the server closes as soon as it reads EOF",
            ),
            Some(p) => note(format!(
                "B: the same, but the server is busy for {} ms before it closes",
                p.as_millis()
            )),
        }
        let p = pair(None)?;
        let cap = capture(access, p.port())?;
        let _ = packets(&cap)?; // the handshake: not this part's subject
        let (c, s) = (p.client.as_raw_fd(), p.server.as_raw_fd());
        // MSG_MORE holds the bytes back ("more is coming"), so close() can
        // put its FIN on the same segment.
        send_more(c, b"last words\n")?;
        say!("client", "send({c}, \"last words\\n\", MSG_MORE) = 11");
        drop(p.client);
        say!("client", "close({c}) = 0        <- active close (主动关闭)");
        let mut buf = [0u8; 64];
        let n = nix::unistd::read(&p.server, &mut buf).call(format!("read({s})"))?;
        let eof = nix::unistd::read(&p.server, &mut buf).call(format!("read({s})"))?;
        let st = state(&p.server)?;
        if let Some(pause) = pause {
            say!(
                "server",
                "read({s}) = {n}; read({s}) = {eof} (EOF: the client's FIN); TCP_INFO: {st}"
            );
            show_ends(p.client_addr, p.server_addr)?;
            std::thread::sleep(pause);
            note(format!("{} ms later:", pause.as_millis()));
            show_ends(p.client_addr, p.server_addr)?;
            drop(p.server);
        } else {
            drop(p.server);
            say!(
                "server",
                "read({s}) = {n}; read({s}) = {eof} (EOF: the client's FIN); TCP_INFO: {st}"
            );
        }
        say!(
            "server",
            "close({s}) = 0        <- passive close (被动关闭)"
        );
        show_ends(p.client_addr, p.server_addr)?;
        let got = packets(&cap)?;
        if cap.is_some() {
            note("packets:");
            print_packets(&got, None);
            describe_close(&got);
        }
    }
    note(
        "every segment after the first SYN has the ACK bit set: FIN+ACK is a FIN that also acknowledges",
    );
    Ok(())
}

/// `send(fd, bytes, MSG_MORE)` in its raw C form (nix has no MSG_MORE).
fn send_more(fd: std::os::fd::RawFd, bytes: &[u8]) -> Result<usize> {
    // SAFETY: the pointer and length describe `bytes`, which outlives the
    // call; the kernel only reads it.
    let n = unsafe { libc::send(fd, bytes.as_ptr().cast(), bytes.len(), libc::MSG_MORE) };
    if n == -1 {
        return Err(Error::last_os(format!("send({fd}, MSG_MORE)")));
    }
    Ok(n as usize)
}

/// Say, from the packets, how the passive side acknowledged the FIN.
fn describe_close(got: &[Packet]) {
    let fins: Vec<&Packet> = got.iter().filter(|p| p.tcp.has(flags::FIN)).collect();
    let [first, second, ..] = fins.as_slice() else {
        return;
    };
    let fin_acked = first.tcp.seq.wrapping_add(first.tcp.payload_len as u32 + 1);
    let ack = got.iter().find(|x| {
        x.tcp.src_port == second.tcp.src_port && x.tcp.has(flags::ACK) && x.tcp.ack == fin_acked
    });
    let how = match ack {
        Some(a) if a.tcp.has(flags::FIN) => {
            "the server's ACK of it rode on the server's own FIN: FIN+ACK in one packet".to_string()
        }
        Some(a) => format!(
            "the server ACKed it {:.1} ms later (a delayed ACK), and sent its FIN when it closed",
            a.at.saturating_duration_since(first.at).as_secs_f64() * 1e3
        ),
        None => "the server's ACK of it is not in the capture".to_string(),
    };
    note(format!(
        "{} packets: the client's FIN{}; {how}; then the client's last ACK",
        got.len(),
        if first.tcp.payload_len > 0 {
            format!(" carrying {} bytes of data", first.tcp.payload_len)
        } else {
            String::new()
        }
    ));
}

/// Part 2: hold each state still by filling buffers: a FIN waits behind
/// data the peer has no room for.
pub fn steps(access: &Access) -> Result<()> {
    heading("2. Each state of the close, held still");
    let p = pair(Some(4096))?;
    let cap = capture(access, p.port())?;
    let _ = packets(&cap)?;
    let (c, s) = (p.client.as_raw_fd(), p.server.as_raw_fd());

    note(
        "step 1: the client fills the server's receive buffer (the server is not reading), then shuts down its sending side",
    );
    let sent = fill(&p.client)?;
    say!(
        "client",
        "write({c}, ...) x N = {sent} bytes, then EAGAIN: the server's window is shut"
    );
    socket::shutdown(c, Shutdown::Write).call(format!("shutdown({c}, SHUT_WR)"))?;
    say!("client", "shutdown({c}, SHUT_WR) = 0");
    say!(
        "client",
        "TCP_INFO({c}): {}   (its FIN waits behind unsent data)",
        state(&p.client)?
    );
    say!(
        "server",
        "TCP_INFO({s}): {}   (no FIN has arrived)",
        state(&p.server)?
    );
    show_ends(p.client_addr, p.server_addr)?;

    note("step 2: the server reads everything; the data arrives, and the FIN with it");
    let (n, end) = drain(&p.server, Duration::from_secs(5));
    end?;
    say!("server", "read({s}) ... = {n} bytes, then 0 (EOF)");
    say!("client", "TCP_INFO({c}): {}", state(&p.client)?);
    say!("server", "TCP_INFO({s}): {}", state(&p.server)?);
    show_ends(p.client_addr, p.server_addr)?;
    let got = packets(&cap)?;
    if let Some(fin) = got.iter().find(|x| x.tcp.has(flags::FIN)) {
        note(format!(
            "the client's FIN rode on a data segment: {}  {}",
            fin.route(),
            fin.summary()
        ));
    }

    note(
        "step 3: the server, in CLOSE_WAIT, may still send: it fills the client's buffer (the client is not reading), then closes",
    );
    let back = fill(&p.server)?;
    say!("server", "write({s}, ...) x N = {back} bytes, then EAGAIN");
    drop(p.server);
    say!(
        "server",
        "close({s}) = 0   (its FIN waits behind {back} bytes the client has no room for)"
    );
    show_ends(p.client_addr, p.server_addr)?;

    note(
        "step 4: the client reads everything; the server's data and FIN arrive; the client ACKs the FIN",
    );
    let (n, end) = drain(&p.client, Duration::from_secs(5));
    end?;
    say!("client", "read({c}) ... = {n} bytes, then 0 (EOF)");
    say!(
        "client",
        "TCP_INFO({c}): {}   (the fd's own socket is done; TIME_WAIT lives on without it)",
        state(&p.client)?
    );
    show_ends(p.client_addr, p.server_addr)?;
    drop(p.client);
    say!("client", "close({c}) = 0");
    match entry(p.client_addr, p.server_addr)? {
        Some(e) => note(format!(
            "after close the TIME_WAIT entry is still there (inode {}), {:.1} s to go",
            e.inode,
            e.timer_when as f64 / super::common::clock_ticks()
        )),
        None => note("after close the entry is gone"),
    }
    let got = packets(&cap)?;
    if cap.is_some() {
        note("the last packets (the server's data and FIN, the client's ACK):");
        let tail: Vec<Packet> = got.iter().rev().take(3).rev().cloned().collect();
        print_packets(&tail, None);
    }
    if tail_missing(&got) {
        return Err(Error::msg("no FIN from the server in the capture"));
    }
    Ok(())
}

fn tail_missing(got: &[Packet]) -> bool {
    !got.is_empty() && !got.iter().any(|p| p.tcp.has(flags::FIN))
}
