//! Running a chapter's graded tests with `cargo test` and reading the
//! verdict and the failure message of each from libtest's output.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

/// What one run of a chapter's tests said.
#[derive(Debug, Clone, Default)]
pub struct Verdicts {
    /// Test name → passed?
    pub passed: HashMap<String, bool>,
    /// Test name → its failure message (the panic, without the noise).
    pub messages: HashMap<String, String>,
    /// The compiler's first error, when the tests did not build.
    pub build_error: Option<String>,
}

/// The test target of a chapter: `tests/ch02_tcp.rs` → `ch02_tcp`.
pub fn test_target(root: &Path, chapter: &str) -> Result<String, String> {
    let dir = root.join("tests");
    std::fs::read_dir(&dir)
        .map_err(|e| format!("read {}: {e}", dir.display()))?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with(&format!("{chapter}_")) && n.ends_with(".rs"))
        .map(|n| n.trim_end_matches(".rs").to_string())
        .next()
        .ok_or_else(|| format!("no tests/{chapter}_*.rs"))
}

/// Run `tests` of `chapter` (all its tests when empty).
pub fn run_tests(root: &Path, chapter: &str, tests: &[String]) -> Result<Verdicts, String> {
    let target = test_target(root, chapter)?;
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(root)
        .env("RUST_BACKTRACE", "0")
        .args(["test", "--message-format=short", "--test", &target, "--"])
        .arg("--test-threads=4");
    if !tests.is_empty() {
        cmd.arg("--exact").args(tests);
    }
    let out = cmd
        .output()
        .map_err(|e| format!("run cargo test --test {target}: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let mut v = parse(&stdout);
    if v.passed.is_empty() && !out.status.success() {
        v.build_error = Some(first_error(&stderr));
    }
    Ok(v)
}

/// Read `test NAME ... ok|FAILED` lines and the `---- NAME stdout ----`
/// sections of libtest's output.
pub fn parse(stdout: &str) -> Verdicts {
    let mut v = Verdicts::default();
    let mut section: Option<(String, Vec<String>)> = None;
    for line in stdout.lines() {
        if let Some(rest) = line.strip_prefix("test ")
            && let Some((name, verdict)) = rest.rsplit_once(" ... ")
        {
            let ok = verdict.trim() == "ok";
            if verdict.trim() == "ok" || verdict.trim().starts_with("FAILED") {
                v.passed.insert(name.trim().to_string(), ok);
            }
            continue;
        }
        if let Some(name) = line
            .strip_prefix("---- ")
            .and_then(|r| r.strip_suffix(" stdout ----"))
        {
            if let Some((n, body)) = section.take() {
                v.messages.insert(n, clean(&body));
            }
            section = Some((name.to_string(), Vec::new()));
            continue;
        }
        if line == "failures:" || line.starts_with("test result:") {
            if let Some((n, body)) = section.take() {
                v.messages.insert(n, clean(&body));
            }
            continue;
        }
        if let Some((_, body)) = section.as_mut() {
            body.push(line.to_string());
        }
    }
    if let Some((n, body)) = section.take() {
        v.messages.insert(n, clean(&body));
    }
    v
}

/// The panic message without the `thread '…' panicked at` and backtrace
/// lines.
fn clean(lines: &[String]) -> String {
    let mut in_backtrace = false;
    lines
        .iter()
        .filter(|l| {
            if l.starts_with("stack backtrace:") {
                in_backtrace = true;
            } else if in_backtrace && !l.starts_with("  ") && !l.starts_with("note: Some details") {
                in_backtrace = false;
            }
            !in_backtrace && !l.starts_with("note: Some details")
        })
        .filter(|l| !l.starts_with("note: run with `RUST_BACKTRACE"))
        .map(|l| {
            if l.starts_with("thread '") && l.contains("panicked at") {
                String::new()
            } else {
                l.clone()
            }
        })
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("\n")
}

/// The compiler's first `error…` block from cargo's stderr.
fn first_error(stderr: &str) -> String {
    let mut out = Vec::new();
    for line in stderr.lines() {
        if out.is_empty() {
            if line.starts_with("error") {
                out.push(line);
            }
        } else if line.starts_with("error") || line.starts_with("warning") {
            break;
        } else {
            out.push(line);
        }
    }
    if out.is_empty() {
        stderr.lines().rev().take(20).collect::<Vec<_>>().join("\n")
    } else {
        out.join("\n")
    }
}

/// `HH:MM:SS` UTC, for the watch loop's separator.
pub fn clock() -> String {
    let s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format!("{:02}:{:02}:{:02} UTC", s / 3600 % 24, s / 60 % 60, s % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_verdicts_and_messages() {
        let out = "running 2 tests\ntest a ... ok\ntest b ... FAILED\n\nfailures:\n\n---- b stdout ----\n\nthread 'b' panicked at tests/x.rs:3:5:\nsent 3 bytes, expected 3 back, got 0\nnote: run with `RUST_BACKTRACE=1` environment variable to display a backtrace\n\n\nfailures:\n    b\n\ntest result: FAILED. 1 passed; 1 failed\n";
        let v = parse(out);
        assert_eq!(v.passed.get("a"), Some(&true));
        assert_eq!(v.passed.get("b"), Some(&false));
        assert_eq!(v.messages["b"], "sent 3 bytes, expected 3 back, got 0");
    }
}
