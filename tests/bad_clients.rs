//! Every long-running server of the workbook against the same hostile
//! clients (`tests/support/bad_clients.rs`): resets, garbage, a megabyte
//! without a newline, a staller, a client that never reads, a flood, 500
//! held connections, fd exhaustion. Not graded: these are the workbook's
//! own servers, and each must survive. A server that is naive on purpose
//! skips exactly the cases its chapter says it fails, with that reason.

#[macro_use]
mod support;

use std::io::Write;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use support::bad_clients::probe::{self, connect_within};
use support::bad_clients::{BadClients, Case, Server};

const CH02: &str = env!("CARGO_BIN_EXE_ch02_tcp");
const CH03: &str = env!("CARGO_BIN_EXE_ch03_sockopts");
const CH04: &str = env!("CARGO_BIN_EXE_ch04_select");
const CH05: &str = env!("CARGO_BIN_EXE_ch05_handshake");
const CH06: &str = env!("CARGO_BIN_EXE_ch06_close");
const CH07: &str = env!("CARGO_BIN_EXE_ch07_threads");

/// Chapter 2's reason: an iterative server serves one client at a time.
const ITERATIVE_CH02: &str = "iterative: one client at a time, so a silent or non-reading client holds the next one up to --idle (chapter 2, pitfalls: \"One slow client freezes my server\")";

#[test]
fn ch02_echo_server() {
    let server = Server::new("ch02 echo server", CH02, &["server"]);
    BadClients::new(server)
        .skip(Case::StalledLine, ITERATIVE_CH02)
        .skip(Case::NeverReads, ITERATIVE_CH02)
        .skip(
            Case::Hold500,
            "iterative: the first held connection is served, the other 499 wait in a backlog of 128 (chapter 2: \"it connects (the kernel queues it) but gets no echo until the first one leaves\")",
        )
        .run();
}

#[test]
fn ch02_daytime_server() {
    let server = Server::new("ch02 daytime server", CH02, &["daytime-server"]).probe(
        probe::reply_to_eof(|text| {
            if text.ends_with("-UTC\r\n") && text.lines().count() == 1 {
                Ok(())
            } else {
                Err(format!(
                    "expected one line ending \"-UTC\\r\\n\" (RFC 867), got {text:?}"
                ))
            }
        }),
    );
    BadClients::new(server).run();
}

#[test]
fn ch03_options_server() {
    let server =
        Server::new("ch03 options server", CH03, &["server"]).probe(probe::reply_to_eof(|text| {
            if text.contains("SO_RCVBUF: ") && text.contains("TCP_INFO: ") {
                Ok(())
            } else {
                Err(format!(
                    "expected lines SO_RCVBUF: … and TCP_INFO: …, got {text:?}"
                ))
            }
        }));
    BadClients::new(server)
        .skip(
            Case::Hold500,
            "iterative with a backlog of 16: one client at a time, each for at most ~2.5 s, so 500 cannot be held at once (chapter 3, `server`)",
        )
        .run();
}

/// Chapter 4's chat: two fresh clients each get their welcome line, one
/// says a unique line, the other gets it prefixed with the sender's address
/// (lines from other clients may come first: skipped).
fn chat_probe(addr: SocketAddr, within: Duration) -> Result<(), String> {
    let deadline = Instant::now() + within;
    let a = connect_within(addr, within)?;
    let b = connect_within(addr, within)?;
    let mut a_lines = Lines::new(&a)?;
    let mut b_lines = Lines::new(&b)?;
    for (who, lines) in [("a", &mut a_lines), ("b", &mut b_lines)] {
        let welcome = lines.next(deadline);
        if !welcome.starts_with("* welcome ") {
            return Err(format!(
                "client {who}: expected \"* welcome …\", got {welcome:?}"
            ));
        }
    }
    let line = format!("chat probe from {}\n", std::process::id());
    (&a).write_all(line.as_bytes())
        .map_err(|e| format!("send: {e}"))?;
    let want = format!("{}: {line}", a.local_addr().map_err(|e| e.to_string())?);
    let (mut others, mut last) = (0usize, String::new());
    while Instant::now() < deadline {
        let got = b_lines.next(deadline);
        if got == want {
            return Ok(());
        }
        if got.is_empty() {
            break;
        }
        others += 1;
        last = got;
    }
    Err(format!(
        "client a sent {line:?}; b expected {want:?}, got {others} other lines (the last {last:?}) and then nothing"
    ))
}

/// Lines from a stream, each read by a deadline.
struct Lines {
    reader: std::io::BufReader<std::net::TcpStream>,
}

impl Lines {
    fn new(s: &std::net::TcpStream) -> Result<Lines, String> {
        let clone = s.try_clone().map_err(|e| format!("dup: {e}"))?;
        Ok(Lines {
            reader: std::io::BufReader::new(clone),
        })
    }

    /// The next line, or what came of it by `deadline` ("" on EOF).
    fn next(&mut self, deadline: Instant) -> String {
        use std::io::BufRead;
        let mut line = Vec::new();
        while !line.ends_with(b"\n") {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || self.reader.get_ref().set_read_timeout(Some(left)).is_err() {
                break;
            }
            match self.reader.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
        String::from_utf8_lossy(&line).into_owned()
    }
}

#[test]
fn ch04_select_chat_server() {
    let server = Server::new("ch04 select chat", CH04, &["server"]).probe(chat_probe);
    BadClients::new(server).run();
}

#[test]
fn ch04_poll_chat_server() {
    let server = Server::new("ch04 poll chat", CH04, &["server", "--poll"]).probe(chat_probe);
    BadClients::new(server).run();
}

#[test]
fn ch04_select_echo_server() {
    BadClients::new(Server::new(
        "ch04 select --echo",
        CH04,
        &["server", "--echo"],
    ))
    .run();
}

#[test]
fn ch04_poll_echo_server() {
    BadClients::new(Server::new(
        "ch04 poll --echo",
        CH04,
        &["server", "--poll", "--echo"],
    ))
    .run();
}

/// Chapter 5's reason: the listener never accepts.
const NEVER_ACCEPTS: &str = "never accepts: past backlog + 1 queued connections every further one waits in SYN_SENT or SYN_RECV, and nobody is ever served (chapter 5, `server`)";

#[test]
fn ch05_listener_that_never_accepts() {
    // Served means: still listening, with its queue as the kernel keeps it.
    let server = Server::new(
        "ch05 listener that never accepts",
        CH05,
        &["server", "--backlog", "64"],
    )
    .probe(|addr, _within| {
        let port = format!(":{:04X} ", addr.port());
        let table = std::fs::read_to_string("/proc/net/tcp").map_err(|e| e.to_string())?;
        table
            .lines()
            .any(|l| l.contains(&port) && l.split_whitespace().nth(3) == Some("0A"))
            .then_some(())
            .ok_or_else(|| format!("no LISTEN entry for port {} in /proc/net/tcp", addr.port()))
    });
    BadClients::new(server)
        .skip(Case::Flood1000, NEVER_ACCEPTS)
        .skip(Case::Hold500, NEVER_ACCEPTS)
        .run();
}

/// Chapter 6's reason: its server is iterative, like chapter 2's.
const ITERATIVE_CH06: &str = "iterative: one client at a time with a 30 s idle limit, so a silent or non-reading client holds the next one (chapter 6, `server`)";

#[test]
fn ch06_upper_case_server() {
    let server = Server::new("ch06 upper-case server", CH06, &["server"]).probe(probe::exchange(
        b"probe\n",
        |text| {
            let want = "PROBE\nbye: 6 bytes\n";
            if text == want {
                Ok(())
            } else {
                Err(format!(
                    "sent \"probe\\n\" and FIN; expected {want:?} then EOF, got {text:?}"
                ))
            }
        },
    ));
    BadClients::new(server)
        .skip(Case::StalledLine, ITERATIVE_CH06)
        .skip(Case::NeverReads, ITERATIVE_CH06)
        .skip(Case::Hold500, ITERATIVE_CH06)
        .run();
}

fn ch07(design: &'static str) -> Server {
    Server::new(
        &format!("ch07 {design}"),
        CH07,
        &["server", "--design", design, "--grace-ms", "1000"],
    )
}

/// Chapter 7's reason: a pool of N serves N clients at once.
const POOL: &str = "a pool of 4 workers serves 4 clients at once; the others wait in the accept queue or the pool's queue (chapter 7, Pools)";

#[test]
fn ch07_thread_per_connection() {
    BadClients::new(ch07("thread")).run();
}

#[test]
fn ch07_accept_pool() {
    BadClients::new(ch07("pool"))
        .skip(Case::Hold500, POOL)
        .run();
}

#[test]
fn ch07_queue_pool() {
    BadClients::new(ch07("queue"))
        .skip(Case::Hold500, POOL)
        .run();
}

#[test]
fn ch07_fork_per_connection() {
    BadClients::new(ch07("fork")).run();
}

#[test]
fn ch07_reuseport() {
    BadClients::new(ch07("reuseport")).run();
}

const CH09: &str = env!("CARGO_BIN_EXE_ch09_epoll");

fn ch09(name: &'static str, args: &[&str]) -> Server {
    let mut words = vec!["server"];
    words.extend_from_slice(args);
    Server::new(name, CH09, &words)
}

#[test]
fn ch09_epoll_level_triggered() {
    BadClients::new(ch09("ch09 epoll single", &["--design", "single"])).run();
}

#[test]
fn ch09_epoll_edge_triggered() {
    BadClients::new(ch09("ch09 epoll et", &["--design", "et"])).run();
}

#[test]
fn ch09_epoll_reuseport() {
    BadClients::new(ch09(
        "ch09 epoll reuseport",
        &["--design", "reuseport", "--threads", "3"],
    ))
    .run();
}

#[test]
fn ch09_epoll_exclusive() {
    BadClients::new(ch09(
        "ch09 epoll exclusive",
        &["--design", "exclusive", "--threads", "3"],
    ))
    .run();
}

#[test]
fn ch09_epoll_chat_server() {
    let server = Server::new("ch09 epoll chat", CH09, &["chat"]).probe(chat_probe);
    BadClients::new(server).run();
}

#[test]
fn ch09_epoll_idle_timeouts() {
    BadClients::new(ch09("ch09 epoll idle", &["--idle-ms", "3000"])).run();
}

const CH12: &str = env!("CARGO_BIN_EXE_ch12_http");

#[test]
fn ch12_http_server() {
    let root = std::env::temp_dir().join(format!("ch12-bad-clients-{}", std::process::id()));
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("index.html"), "<h1>probe</h1>\n").unwrap();
    let root_arg = root.to_string_lossy().into_owned();
    let server = Server::new(
        "ch12 http server",
        CH12,
        &["server", "--root", &root_arg, "--threads", "2"],
    )
    .probe(probe::exchange(
        b"GET /index.html HTTP/1.0\r\n\r\n",
        |text| {
            if text.starts_with("HTTP/1.1 200 OK\r\n") && text.ends_with("<h1>probe</h1>\n") {
                Ok(())
            } else {
                Err(format!(
                    "sent GET /index.html HTTP/1.0 and FIN; expected 200 and the page, got {text:?}"
                ))
            }
        },
    ));
    BadClients::new(server).run();
    let _ = std::fs::remove_dir_all(&root);
}
