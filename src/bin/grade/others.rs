//! `grade tests [cargo test selection]`: build the chosen test binaries once,
//! then run them all at the same time, each bounded in time.
//!
//! `cargo test` runs its test binaries one after another. Most of ours wait
//! (on a demo's narration, a server's timeout, a kernel timer) rather than
//! compute, so one after another is mostly waiting: `make test` ran them
//! that way in about 85 s, at once they take as long as the slowest one.
//! Each binary's output is kept and printed whole only when it fails, so
//! the output of parallel runs never interleaves.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::run;

/// A test binary may run this long before it is stopped and failed.
const LIMIT: Duration = Duration::from_secs(600);

/// A built test binary: its cargo target name and where it is.
struct Binary {
    name: String,
    path: PathBuf,
}

/// Build with `cargo test --no-run <selection>`, run every test binary it
/// names at once; `Ok(true)` when all passed.
pub fn run(root: &Path, selection: &[String]) -> Result<bool, String> {
    let mut build = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    build
        .current_dir(root)
        .args([
            "test",
            "--no-run",
            "--message-format=json-render-diagnostics",
        ])
        .args(selection);
    let built = run::run_bounded(build, Duration::from_secs(1800))?;
    eprint!("{}", built.stderr);
    if !built.success {
        return Err("cargo test --no-run failed (the errors are above)".into());
    }
    let binaries = executables(&built.stdout);
    if binaries.is_empty() {
        return Err("cargo test --no-run named no test binary".into());
    }
    eprintln!("grade: running {} test binaries at once", binaries.len());
    let started = Instant::now();
    let runs: Vec<(String, Result<run::Ran, String>, Duration)> = std::thread::scope(|scope| {
        let handles: Vec<_> = binaries
            .iter()
            .map(|b| {
                scope.spawn(move || {
                    let t = Instant::now();
                    let mut cmd = Command::new(&b.path);
                    cmd.current_dir(root).args(["--color", "never"]);
                    (b.name.clone(), run::run_bounded(cmd, LIMIT), t.elapsed())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    (
                        "?".into(),
                        Err("runner thread panicked".into()),
                        Duration::ZERO,
                    )
                })
            })
            .collect()
    });
    let mut runs = runs;
    runs.sort_by(|a, b| a.0.cmp(&b.0));
    let mut all_ok = true;
    let mut empty = 0;
    for (name, ran, took) in &runs {
        match ran {
            // A binary without tests (most programs under --bins) is counted,
            // not listed.
            Ok(ran) if ran.success && ran.stdout.contains("running 0 tests") => empty += 1,
            Ok(ran) if ran.success => {
                println!(
                    "ok     {name:<24} {:>5.1} s  {}",
                    took.as_secs_f64(),
                    summary(&ran.stdout)
                );
            }
            Ok(ran) => {
                all_ok = false;
                let why = if ran.killed {
                    format!("stopped after {} s", LIMIT.as_secs())
                } else {
                    summary(&ran.stdout)
                };
                println!("FAILED {name:<24} {:>5.1} s  {why}", took.as_secs_f64());
                println!("---- {name}: stdout ----\n{}", ran.stdout);
                println!("---- {name}: stderr ----\n{}", ran.stderr);
            }
            Err(e) => {
                all_ok = false;
                println!("FAILED {name:<24} did not run: {e}");
            }
        }
    }
    println!(
        "grade tests: {} binaries ({empty} without tests), {} failed, {:.0} s",
        runs.len(),
        runs.iter()
            .filter(|(_, r, _)| !r.as_ref().is_ok_and(|r| r.success))
            .count(),
        started.elapsed().as_secs_f64()
    );
    Ok(all_ok)
}

/// libtest's closing line (`test result: ok. 17 passed; …`), or the last
/// line when there is none.
fn summary(stdout: &str) -> String {
    stdout
        .lines()
        .rev()
        .find(|l| l.starts_with("test result:"))
        .or_else(|| stdout.lines().rev().find(|l| !l.trim().is_empty()))
        .unwrap_or("")
        .trim_start_matches("test result: ")
        .to_string()
}

/// The test binaries in cargo's JSON messages: every `compiler-artifact`
/// with an `"executable"` whose profile says `"test":true` (`--bins` also
/// builds each binary as a program, for the integration tests to run).
fn executables(json_lines: &str) -> Vec<Binary> {
    let mut out = Vec::new();
    for line in json_lines.lines() {
        // The target object has a `"test"` key of its own (is it tested?):
        // look in the profile's object only.
        let profile = line
            .split_once(r#""profile":{"#)
            .and_then(|(_, rest)| rest.split_once('}'))
            .map_or("", |(p, _)| p);
        if !line.contains(r#""reason":"compiler-artifact""#) || !profile.contains(r#""test":true"#)
        {
            continue;
        }
        let (Some(path), Some(name)) = (field(line, "executable"), field(line, "name")) else {
            continue;
        };
        out.push(Binary {
            name: name.to_string(),
            path: PathBuf::from(path),
        });
    }
    out
}

/// The first `"key":"value"` string in a line of JSON (cargo writes paths and
/// names without escapes on Linux).
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let marker = format!(r#""{key}":""#);
    let start = line.find(&marker)? + marker.len();
    let len = line[start..].find('"')?;
    Some(&line[start..start + len])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_test_executables_from_cargo_json() {
        let json = concat!(
            r#"{"reason":"compiler-artifact","package_id":"x","target":{"kind":["test"],"name":"bad_clients","src_path":"/r/tests/bad_clients.rs","test":true},"profile":{"opt_level":"0","test":true},"executable":"/r/target/debug/deps/bad_clients-1a2b"}"#,
            "\n",
            r#"{"reason":"compiler-artifact","package_id":"x","target":{"kind":["bin"],"name":"ch02_tcp","test":true},"profile":{"opt_level":"0","test":false},"executable":"/r/target/debug/ch02_tcp"}"#,
            "\n",
            r#"{"reason":"build-finished","success":true}"#,
        );
        let found = executables(json);
        assert_eq!(found.len(), 1, "one test binary in the messages");
        assert_eq!(found[0].name, "bad_clients");
        assert_eq!(
            found[0].path,
            PathBuf::from("/r/target/debug/deps/bad_clients-1a2b")
        );
    }

    #[test]
    fn summary_is_libtests_closing_line() {
        let out = "running 2 tests\n..\ntest result: ok. 2 passed; 0 failed\n\n";
        assert_eq!(summary(out), "ok. 2 passed; 0 failed");
    }
}
