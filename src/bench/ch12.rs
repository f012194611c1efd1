//! Chapter 12's comparisons: the chapter's HTTP server beside nginx
//! (Debian `nginx-light`), the same static files, the same worker count,
//! loaded by `wrk` with the same connections and duration.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::socket::SockaddrStorage;

use super::rounds::{Contender, Measured, Program, Running, Workload};
use super::{Comparison, Figure, Goal, Options};
use crate::kit::{Error, Result};

/// nginx with a config written into a temporary directory: one process
/// (`master_process off`, so its CPU time is that of the pid measured),
/// `sendfile on`, no access log, keep-alive without a request limit, on a
/// loopback port found free just before. nginx prints no `listening on`
/// line, so `start` connects until it answers.
pub struct Nginx {
    /// The directory served.
    pub root: PathBuf,
    /// Where its config, pid file and logs go.
    pub dir: PathBuf,
    /// `tcp_nopush on`: nginx corks the socket (`TCP_CORK`) around head and
    /// body so they leave in full segments, as this server's `MSG_MORE`
    /// does: the baseline. Off is nginx's default, shown beside it.
    pub nopush: bool,
}

impl Contender for Nginx {
    fn name(&self) -> &str {
        if self.nopush {
            "nginx"
        } else {
            "nginx (tcp_nopush off)"
        }
    }

    fn start(&self, cpu: Option<usize>) -> Result<Running> {
        let io = |what: &str, e: std::io::Error| Error::msg(format!("nginx {what}: {e}"));
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| io("free port", e))?
            .port();
        std::fs::create_dir_all(&self.dir).map_err(|e| io("dir", e))?;
        let d = self.dir.display();
        let conf = format!(
            "daemon off;\nmaster_process off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
             events {{ worker_connections 20000; }}\n\
             http {{\n  access_log off;\n  sendfile on;\n  tcp_nopush {nopush};\n  keepalive_requests 1000000;\n  keepalive_timeout 30s;\n\
               client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
               default_type application/octet-stream;\n\
               server {{\n    listen 127.0.0.1:{port};\n    root {};\n  }}\n}}\n",
            self.root.display(),
            nopush = if self.nopush { "on" } else { "off" },
        );
        let conf_path = self.dir.join("nginx.conf");
        std::fs::write(&conf_path, conf).map_err(|e| io("config", e))?;
        let mut command = Command::new("nginx");
        command
            .arg("-p")
            .arg(&self.dir)
            .arg("-c")
            .arg(&conf_path)
            .arg("-e")
            .arg(self.dir.join("error.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(cpu) = cpu {
            command = pinned(command, cpu);
        }
        let mut child = command
            .spawn()
            .map_err(|e| io("spawn (is nginx-light installed?)", e))?;
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(Error::msg(format!(
                    "nginx exited ({status}) before it listened (see {d}/error.log)"
                )));
            }
            if Instant::now() > deadline {
                stop_child(child);
                return Err(Error::msg(format!(
                    "nginx did not listen on {addr} within 5 s (see {d}/error.log)"
                )));
            }
            // Polling a port that is not open yet: nothing to wait on.
            std::thread::sleep(Duration::from_millis(20));
        }
        let pid = child.id() as i32;
        Ok(Running {
            addr: SockaddrStorage::from(addr),
            pid,
            stop: Box::new(move || stop_child(child)),
        })
    }
}

/// `taskset -c CPU` in front of `command`, when taskset exists.
fn pinned(command: Command, cpu: usize) -> Command {
    if Command::new("taskset").arg("-V").output().is_err() {
        return command;
    }
    let mut t = Command::new("taskset");
    t.arg("-c").arg(cpu.to_string()).arg(command.get_program());
    t.args(command.get_args());
    t.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    t
}

/// SIGTERM (nginx: fast shutdown), wait up to 5 s, then SIGKILL.
fn stop_child(mut child: Child) -> String {
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return String::new();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    "nginx did not stop on SIGTERM: killed".into()
}

/// `wrk -t1 -cN -dS --latency http://ADDR/PATH`, its output parsed.
pub struct Wrk {
    pub conns: usize,
    pub path: String,
}

/// Seconds from a wrk latency like `812.00us`, `1.20ms`, `2.01s`.
fn wrk_time_us(text: &str) -> Option<u32> {
    let (number, scale) = if let Some(n) = text.strip_suffix("us") {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix("ms") {
        (n, 1e3)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1e6)
    } else {
        return None;
    };
    number.parse::<f64>().ok().map(|v| (v * scale) as u32)
}

/// Parse wrk's report: `N requests in T`, the `--latency` percentiles,
/// errors.
pub fn parse_wrk(out: &str) -> Result<Measured> {
    let mut m = Measured::default();
    for line in out.lines().map(str::trim) {
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.len() >= 4 && words[1] == "requests" && words[2] == "in" {
            m.ops = words[0].parse().unwrap_or(0);
            let secs = words[3].trim_end_matches(',');
            m.elapsed =
                wrk_time_us(secs).map_or(Duration::ZERO, |us| Duration::from_micros(us.into()));
        } else if words.len() == 2 && words[0] == "50%" {
            m.p50_us = wrk_time_us(words[1]);
        } else if words.len() == 2 && words[0] == "99%" {
            m.p99_us = wrk_time_us(words[1]);
        } else if line.starts_with("Non-2xx or 3xx responses:") {
            m.errors += words.last().and_then(|w| w.parse().ok()).unwrap_or(0);
        } else if line.starts_with("Socket errors:") {
            m.note = line.to_string();
            m.errors += line
                .split(',')
                .filter_map(|p| p.split_whitespace().last()?.parse::<usize>().ok())
                .sum::<usize>();
        }
    }
    if m.ops == 0 || m.elapsed.is_zero() {
        return Err(Error::msg(format!("wrk output not understood:\n{out}")));
    }
    Ok(m)
}

/// wrk's `-d` in whole seconds, at least 1: `secs` rounded up.
fn whole_secs(secs: f64) -> u64 {
    secs.ceil().max(1.0) as u64
}

impl Workload for Wrk {
    fn unit(&self) -> &str {
        "requests"
    }

    fn run(&self, addr: &SockaddrStorage, duration: Duration) -> Result<Measured> {
        let secs = whole_secs(duration.as_secs_f64());
        let out = Command::new("wrk")
            .args([
                "-t1",
                &format!("-c{}", self.conns),
                &format!("-d{secs}s"),
                "--latency",
            ])
            .arg(format!("http://{addr}{}", self.path))
            .output()
            .map_err(|e| Error::msg(format!("wrk (is it installed?): {e}")))?;
        if !out.status.success() {
            return Err(Error::msg(format!(
                "wrk failed: {}",
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        parse_wrk(&String::from_utf8_lossy(&out.stdout))
    }
}

/// The files served: `small.html` (a few hundred bytes) and `big.bin`
/// (1 MiB), in `dir`.
fn make_site(dir: &Path) -> Result<()> {
    let io = |e: std::io::Error| Error::msg(format!("{}: {e}", dir.display()));
    std::fs::create_dir_all(dir).map_err(io)?;
    let small = format!(
        "<!doctype html><title>small</title><p>{}</p>\n",
        "x".repeat(300)
    );
    std::fs::write(dir.join("small.html"), small).map_err(io)?;
    let big: Vec<u8> = (0..1u32 << 20).map(|i| (i % 251) as u8).collect();
    std::fs::write(dir.join("big.bin"), big).map_err(io)
}

/// small: `small.html`; big: the 1 MiB file. 64 connections each.
pub fn comparisons(opts: &Options) -> Result<Vec<Comparison>> {
    let missing: Vec<&str> = [("nginx", "-v"), ("wrk", "--version")]
        .into_iter()
        .filter(|(tool, arg)| Command::new(tool).arg(arg).output().is_err())
        .map(|(tool, _)| tool)
        .collect();
    if !missing.is_empty() {
        eprintln!(
            "bench: chapter 12's table skipped: {} not found (apt-get install nginx-light wrk)",
            missing.join(" and ")
        );
        return Ok(Vec::new());
    }
    let site = opts.out_dir.join("ch12-site");
    make_site(&site)?;
    let root =
        std::fs::canonicalize(&site).map_err(|e| Error::msg(format!("{}: {e}", site.display())))?;
    let wanted = |s: &str| opts.scenarios.is_empty() || opts.scenarios.iter().any(|x| x == s);
    let goals = || {
        vec![
            Goal {
                contender: "ch12".into(),
                figure: Figure::Rate,
                ratio: 1.0,
                why: "issue 16: as fast as nginx".into(),
            },
            Goal {
                contender: "ch12".into(),
                figure: Figure::PerCpuSecond,
                ratio: 1.0,
                why: "issue 16: as frugal as nginx".into(),
            },
            Goal {
                contender: "ch12".into(),
                figure: Figure::P99,
                ratio: 1.0,
                why: "issue 16: p99 no worse than nginx".into(),
            },
        ]
    };
    let contenders = |tag: &str| -> Vec<Box<dyn Contender>> {
        vec![
            Box::new(Nginx {
                root: root.clone(),
                dir: opts.out_dir.join(format!("ch12-nginx-{tag}")),
                nopush: true,
            }),
            Box::new(Nginx {
                root: root.clone(),
                dir: opts.out_dir.join(format!("ch12-nginx-default-{tag}")),
                nopush: false,
            }),
            Box::new(Program {
                name: "ch12".into(),
                program: opts.bin_dir.join("ch12_http"),
                args: [
                    "server",
                    "--root",
                    &root.to_string_lossy(),
                    "--addr",
                    "127.0.0.1:0",
                    "--threads",
                    "1",
                ]
                .iter()
                .map(|s| s.to_string())
                .collect(),
            }),
        ]
    };
    let mut out = Vec::new();
    for (scenario, path, title) in [
        (
            "http-small",
            "/small.html",
            "HTTP: a small file, 64 keep-alive connections (wrk)",
        ),
        (
            "http-big",
            "/big.bin",
            "HTTP: a 1 MiB file, 64 keep-alive connections (wrk)",
        ),
    ] {
        if !wanted(scenario) {
            continue;
        }
        out.push(Comparison {
            chapter: "ch12",
            scenario: scenario.into(),
            title: title.into(),
            baseline: "nginx".into(),
            contenders: contenders(scenario),
            workload: Box::new(Wrk { conns: 64, path: path.into() }),
            goals: goals(),
            notes: vec![
                "both one worker (nginx: worker_processes 1, master_process off; ch12: --threads 1), sendfile, no access log.".into(),
                "baseline nginx: tcp_nopush on (TCP_CORK around head and body, as ch12's MSG_MORE); nginx (tcp_nopush off) is nginx's default, for comparison.".into(),
                "wrk -t1 -c64 --latency, same duration; requests/s, requests per server CPU-second, p99 from wrk.".into(),
                format!(
                    "wrk's -d takes whole seconds: here the warm-up lasts {} s and the measurement {} s.",
                    if opts.warmup > 0.0 { whole_secs(opts.warmup) } else { 0 },
                    whole_secs(opts.secs)
                ),
            ],
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_wrk_output() {
        let out = "Running 1s test @ http://127.0.0.1:8080/small.html\n  1 threads and 64 connections\n  Latency Distribution\n     50%  412.00us\n     75%  500.00us\n     90%    1.10ms\n     99%    2.50ms\n  35123 requests in 1.00s, 12.00MB read\nRequests/sec:  35100.00\n";
        let m = parse_wrk(out).unwrap();
        assert_eq!((m.ops, m.p50_us, m.p99_us), (35123, Some(412), Some(2500)));
        assert_eq!(m.elapsed, Duration::from_secs(1));
    }
}
