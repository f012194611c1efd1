//! The `ch10_unix` binary: the demo, one subcommand per part, `server`,
//! `client`, `tcp-server` (the hand-over), and hidden helpers the demo runs
//! as another process.

use std::os::fd::{AsFd, AsRawFd};
use std::path::PathBuf;

use nix::sys::socket::{self, Backlog, SockType};

use super::addr::{self, Name};
use super::cred::{self, Peer};
use super::demo;
use super::handover::{serve_tcp, take_over};
use super::message::{self, ServeConfig};
use crate::kit::args::{Args, usage_error};
use crate::kit::stop::Stop;
use crate::kit::{Call, Error, Result, narrate, net};
use crate::say;

/// Where `server` listens and `client` connects without `--path`/`--abstract`.
pub const DEFAULT_PATH: &str = "/tmp/sockbook-ch10.sock";

/// Where `tcp-server` listens without `--addr`.
pub const DEFAULT_TCP: &str = "127.0.0.1:7010";

/// `--help`.
pub const USAGE: &str = "\
ch10_unix: Unix domain sockets, credentials and passing descriptors

USAGE:
    ch10_unix                       narrated demo of every part below (a few seconds)
    ch10_unix kinds | addresses | filesystem | abstract | credentials | fds |
              seqpacket | handover | dgram | speed
                                    one part of the demo
    ch10_unix server [--path P | --abstract NAME] [--seqpacket]
                                    the request/response server (PING, ECHO text, WHO,
                                    COUNT, CLAIM uid=N pid=N), one request per line
                                    (one per message with --seqpacket). Serves only
                                    its own uid (SO_PEERCRED). Default path
                                    /tmp/sockbook-ch10.sock; a stale file there is
                                    replaced, a live server is not. Ctrl-C stops it
                                    and removes the file.
    ch10_unix client [--path P | --abstract NAME] [--seqpacket] [REQUEST...]
                                    send each REQUEST, print each reply; with none,
                                    print what the peer sends until it closes
    ch10_unix tcp-server [--addr A] [--control P] [--take-over]
                                    one-line TCP server (replies `pid N LINE`) that
                                    hands its listening socket to a successor: start a
                                    second one with --take-over and the same --control,
                                    and the first exits without closing the port.
                                    Defaults 127.0.0.1:7010, /tmp/sockbook-ch10-control.sock

Try: ch10_unix server   then   socat - UNIX-CONNECT:/tmp/sockbook-ch10.sock
     (type PING, WHO, CLAIM uid=0 pid=1; with --seqpacket add ,type=5 to socat's address)
";

/// The binary's `main`.
pub fn main() {
    let args = Args::from_env(USAGE, &["--path", "--abstract", "--addr", "--control"]);
    crate::kit::main_with(|| {
        let part = |f: fn() -> Result<()>| {
            check_options(&args, &[], false);
            f()
        };
        match args.command.as_deref() {
            None => part(demo::run),
            Some("kinds") => part(demo::kinds),
            Some("addresses") => part(demo::addresses),
            Some("filesystem") => part(demo::filesystem),
            Some("abstract") => part(demo::abstract_names),
            Some("credentials") => part(demo::credentials),
            Some("fds") => part(demo::passing_fds),
            Some("seqpacket") => part(demo::seqpacket_server),
            Some("handover") => part(demo::handover),
            Some("dgram") => part(demo::dgram_queue),
            Some("speed") => part(demo::speed),
            Some("server") => {
                check_options(&args, &["--path", "--abstract", "--seqpacket"], false);
                server(&args)
            }
            Some("client") => {
                check_options(&args, &["--path", "--abstract", "--seqpacket"], true);
                client(&args)
            }
            Some("tcp-server") => {
                check_options(&args, &["--addr", "--control", "--take-over"], false);
                tcp_server(&args)
            }
            Some("helper") => helper(&args),
            Some(other) => usage_error(USAGE, &format!("unknown subcommand {other:?}")),
        }
    });
}

fn check_options(args: &Args, known: &[&str], positional: bool) {
    let unknown = args.unknown_options(known);
    if !unknown.is_empty() {
        usage_error(USAGE, &format!("unknown option(s): {}", unknown.join(" ")));
    }
    if !positional && !args.positional.is_empty() {
        usage_error(
            USAGE,
            &format!("unexpected word(s): {}", args.positional.join(" ")),
        );
    }
}

fn name_of(args: &Args) -> Name {
    match (args.value("--path"), args.value("--abstract")) {
        (Some(_), Some(_)) => usage_error(USAGE, "give --path or --abstract, not both"),
        (_, Some(n)) => Name::Abstract(n.as_bytes().to_vec()),
        (Some(p), None) => Name::Path(PathBuf::from(p)),
        (None, None) => Name::Path(PathBuf::from(DEFAULT_PATH)),
    }
}

fn kind_of(args: &Args) -> SockType {
    if args.flag("--seqpacket") {
        SockType::SeqPacket
    } else {
        SockType::Stream
    }
}

/// `server`.
fn server(args: &Args) -> Result<()> {
    let stop = Stop::on_ctrl_c()?;
    let name = name_of(args);
    let kind = kind_of(args);
    narrate::set_quiet(true);
    let listener = match &name {
        Name::Path(p) => addr::bind_path_replacing_stale("server", kind, p),
        Name::Abstract(_) => addr::unix_socket("server", kind)
            .and_then(|fd| addr::unix_bind("server", &fd, &name).map(|_| fd)),
    }
    .and_then(|fd| {
        socket::listen(&fd, Backlog::new(128).map_err(|e| Error::sys("listen", e))?)
            .call("listen")?;
        Ok(fd)
    });
    narrate::set_quiet(false);
    let listener = listener?;
    println!("listening on {name}");
    say!(
        "server",
        "{} on fd {}, serving uid {} only",
        addr::type_name(kind),
        listener.as_raw_fd(),
        cred::my_uid()
    );
    let result = message::serve(
        listener,
        stop.fd(),
        ServeConfig {
            kind,
            ..ServeConfig::default()
        },
    );
    if let Name::Path(p) = &name {
        let _ = std::fs::remove_file(p);
        say!("server", "unlink({}) = 0", p.display());
    }
    let stats = result?;
    say!("server", "stopped: {stats:?}");
    Ok(())
}

/// `client`.
fn client(args: &Args) -> Result<()> {
    narrate::set_quiet(true);
    message::run_client(kind_of(args), &name_of(args), &args.positional, true).map(|_| ())
}

/// `tcp-server`.
fn tcp_server(args: &Args) -> Result<()> {
    let stop = Stop::on_ctrl_c()?;
    let control_path = PathBuf::from(
        args.value("--control")
            .unwrap_or("/tmp/sockbook-ch10-control.sock"),
    );
    let me = format!("pid {}", std::process::id());
    narrate::set_quiet(true);
    let sockets = if args.flag("--take-over") {
        addr::unix_connect(&me, SockType::Stream, &Name::Path(control_path.clone()))
            .and_then(|ch| take_over(ch.as_fd(), 2))
    } else {
        let tcp = args
            .addr_or(DEFAULT_TCP)
            .and_then(|a| net::tcp_listen(&me, &a, 1024));
        let control = addr::bind_path_replacing_stale(&me, SockType::Stream, &control_path)
            .and_then(|fd| {
                socket::listen(&fd, Backlog::new(8).map_err(|e| Error::sys("listen", e))?)
                    .call("listen")?;
                Ok(fd)
            });
        tcp.and_then(|(t, _)| Ok(vec![t, control?]))
    };
    narrate::set_quiet(false);
    let mut sockets = sockets?;
    if sockets.len() != 2 {
        return Err(Error::msg(format!(
            "expected 2 sockets, got {}",
            sockets.len()
        )));
    }
    let control = sockets
        .pop()
        .ok_or_else(|| Error::msg("no control socket"))?;
    let tcp = sockets.pop().ok_or_else(|| Error::msg("no tcp socket"))?;
    println!("listening on {}", net::local_addr(&tcp)?);
    say!(
        &me,
        "tcp fd {}, control {} fd {}",
        tcp.as_raw_fd(),
        control_path.display(),
        control.as_raw_fd()
    );
    let outcome = serve_tcp(tcp, control, &me, stop.fd())?;
    if !outcome.handed_over {
        let _ = std::fs::remove_file(&control_path);
    }
    say!(&me, "done: {outcome:?}");
    Ok(())
}

/// Hidden helpers, run by the demo as another process (another uid, or in
/// another network namespace). Each prints one line.
fn helper(args: &Args) -> Result<()> {
    narrate::set_quiet(true);
    let words: Vec<&str> = args.positional.iter().map(String::as_str).collect();
    match words.as_slice() {
        ["connect", path] => {
            let r = addr::unix_connect("", SockType::Stream, &Name::Path(PathBuf::from(path)));
            println!(
                "{}",
                r.map(|_| "connected".to_string())
                    .unwrap_or_else(|e| e.to_string())
            );
        }
        ["claim", name, uid] => {
            let uid: u32 = uid.parse().map_err(|_| Error::msg("uid"))?;
            let fd = addr::unix_connect(
                "",
                SockType::SeqPacket,
                &Name::Abstract(name.as_bytes().to_vec()),
            )?;
            let me = Peer {
                pid: std::process::id() as i32,
                uid,
                gid: cred::my_gid(),
            };
            match cred::send_with_credentials(&fd, b"I am root", me) {
                Ok(_) => println!(
                    "uid {}: sendmsg(SCM_CREDENTIALS uid={uid}) = ok",
                    cred::my_uid()
                ),
                Err(e) => println!("uid {}: {e}", cred::my_uid()),
            }
        }
        ["netns-connect", name] => {
            if let Some(why) = crate::kit::netns::refusal() {
                println!("no private network namespace here: {why}");
                return Ok(());
            }
            crate::kit::netns::enter_private_netns()?;
            let r = addr::unix_connect(
                "",
                SockType::Stream,
                &Name::Abstract(name.as_bytes().to_vec()),
            );
            println!(
                "in a new network namespace: {}",
                r.map(|_| "connected".to_string())
                    .unwrap_or_else(|e| e.to_string())
            );
        }
        ["fd-echo", max] => {
            let max: usize = max.parse().map_err(|_| Error::msg("max"))?;
            fd_echo(max)?;
        }
        _ => usage_error(
            USAGE,
            "helper: connect PATH | claim NAME UID | netns-connect NAME | fd-echo MAX",
        ),
    }
    Ok(())
}

/// `helper fd-echo MAX`, for the graded tests: fd 3 is a connected Unix
/// socket. Each message that arrives (with up to MAX fds, via
/// [`recv_fds`](super::fds::recv_fds)) is answered with a report
/// `got N truncated B` carrying the same fds back
/// ([`send_fds`](super::fds::send_fds)); then they are closed here. At EOF
/// print how many fds this process had open at the start and at the end.
fn fd_echo(max: usize) -> Result<()> {
    use std::os::fd::{FromRawFd, OwnedFd};
    // SAFETY: the parent handed us fd 3 as our end of a socketpair; nothing
    // else in this process owns it.
    let sock = unsafe { OwnedFd::from_raw_fd(3) };
    let open = || {
        std::fs::read_dir("/proc/self/fd")
            .map(|d| d.count())
            .unwrap_or(0)
    };
    let at_start = open();
    let mut buf = vec![0u8; 256];
    loop {
        let got = super::fds::recv_fds(&sock, &mut buf, max)?;
        if got.len == 0 && got.fds.is_empty() {
            break;
        }
        let report = format!("got {} truncated {}", got.fds.len(), got.fds_truncated);
        let borrowed: Vec<_> = got.fds.iter().map(|f| f.as_fd()).collect();
        super::fds::send_fds(&sock, report.as_bytes(), &borrowed)?;
    }
    println!("open fds at start {at_start} at end {}", open());
    Ok(())
}
