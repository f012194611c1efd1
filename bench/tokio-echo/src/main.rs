//! tokio-echo: the benchmark's peer. The echo server most Rust programmers
//! would reach for: `#[tokio::main]` (the multi-threaded runtime; pinned to
//! one CPU by the benchmark, it runs one worker), a task per connection,
//! `read` then `write_all`, listening with the workbook servers' backlog
//! (4096) so a crowd of connects is not cut short by a smaller queue. It follows the workbook's server convention:
//! `--addr A` (default 127.0.0.1:7008), `listening on IP:PORT` first, a
//! clean exit on Ctrl-C or SIGTERM.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;
use tokio::signal::unix::{SignalKind, signal};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let mut addr = String::from("127.0.0.1:7008");
    while let Some(a) = args.next() {
        match a.as_str() {
            "--addr" => addr = args.next().unwrap_or(addr),
            "-h" | "--help" => {
                println!("tokio-echo [--addr IP:PORT]: an echo server on tokio, for make bench");
                return Ok(());
            }
            other => {
                eprintln!("tokio-echo: unknown argument {other:?}");
                std::process::exit(2);
            }
        }
    }
    // The same backlog as the workbook's servers (BACKLOG = 4096 in
    // src/ch07_threads/server.rs); `TcpListener::bind` would ask for 128.
    let addr: std::net::SocketAddr = addr.parse().map_err(|e| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{addr}: {e}"))
    })?;
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    let listener = socket.listen(4096)?;
    println!("listening on {}", listener.local_addr()?);
    let mut term = signal(SignalKind::terminate())?;
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((mut stream, _)) => {
                    tokio::spawn(async move {
                        let mut buf = vec![0u8; 16 * 1024];
                        loop {
                            let n = match stream.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => n,
                            };
                            if stream.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    });
                }
                // EMFILE and friends: wait a moment rather than spin or die.
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
            },
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
        }
    }
    Ok(())
}
