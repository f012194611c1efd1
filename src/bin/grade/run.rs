//! Running the graded tests with `cargo test` and reading the results off
//! libtest's plain output.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::source::{self, Declared};

/// Tests run at once in one test binary. They are written to be
/// parallel-safe; a few at a time keeps a 2-core machine responsive.
pub const DEFAULT_THREADS: usize = 4;

/// The deadline a graded test has when it sets none (`TEST_DEADLINE` in
/// tests/support).
pub const DEFAULT_TEST_SECS: u32 = 10;

/// How a grade run is done.
#[derive(Debug, Clone)]
pub struct Options {
    /// `--test-threads` for each test binary.
    pub threads: usize,
    /// `CARGO_TARGET_DIR` for the build, when not the tree's own `target/`.
    pub target_dir: Option<PathBuf>,
    /// Print progress lines.
    pub progress: bool,
    /// Run the chapters' test binaries at the same time (for the hang
    /// edition, whose tests only wait out their deadlines).
    pub concurrent: bool,
    /// Grade only the chapters whose test file starts with one of these
    /// (`ch03`, `ch03_sockopts`); all chapters when empty.
    pub only: Vec<String>,
    /// Extra environment for cargo (e.g. a profile override for a copy of
    /// the tree with its own build directory).
    pub env: Vec<(String, String)>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            threads: DEFAULT_THREADS,
            target_dir: None,
            progress: true,
            only: Vec::new(),
            concurrent: false,
            env: Vec::new(),
        }
    }
}

/// The outcome of one graded test.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub test: Declared,
    pub passed: bool,
    /// The failure's message (empty when it passed).
    pub output: String,
    /// Why this environment cannot run the test (it called
    /// `support::skip`): not counted in the score nor the maximum.
    pub skipped: Option<String>,
}

impl Outcome {
    pub fn score(&self) -> u32 {
        if self.passed && self.skipped.is_none() {
            self.test.points
        } else {
            0
        }
    }
    /// The points this test counts for here: 0 when it was skipped.
    pub fn max_score(&self) -> u32 {
        if self.skipped.is_some() {
            0
        } else {
            self.test.points
        }
    }
    /// Passed, and really ran (not skipped).
    pub fn earned(&self) -> bool {
        self.passed && self.skipped.is_none()
    }
    /// `ch02_tcp::echo_returns_every_byte`
    pub fn full_name(&self) -> String {
        format!("{}::{}", self.test.target, self.test.name)
    }
    /// The first line of the failure, for the table.
    pub fn first_line(&self) -> &str {
        self.output.lines().next().unwrap_or("")
    }
}

/// A whole grade run.
#[derive(Debug, Clone)]
pub struct Grade {
    pub outcomes: Vec<Outcome>,
    pub seconds: f64,
    /// Of which building the tests took.
    pub build_seconds: f64,
    /// Things the grader noticed that are not test results.
    pub notes: Vec<String>,
    /// Tests without points, in the graded test binaries, that failed.
    pub ungraded_failures: Vec<String>,
}

impl Grade {
    pub fn score(&self) -> u32 {
        self.outcomes.iter().map(Outcome::score).sum()
    }
    pub fn max_score(&self) -> u32 {
        self.outcomes.iter().map(Outcome::max_score).sum()
    }
    /// The tests this environment could not run.
    pub fn skipped(&self) -> impl Iterator<Item = &Outcome> {
        self.outcomes.iter().filter(|o| o.skipped.is_some())
    }
}

/// Only build the graded test binaries under `root` (what [`grade`] runs
/// first), so that several grade runs can then run at once without one's
/// compiling slowing the others' tests. A build error is left for
/// [`grade`] to report.
pub fn build(root: &Path, options: &Options) -> Result<(), String> {
    let mut notes = Vec::new();
    let declared = declared_tests(root, options, &mut notes)?;
    let mut build = cargo(root, options);
    build.arg("test").arg("--no-run");
    for tests in &declared {
        build.args(["--test", &tests[0].target]);
    }
    run_bounded(build, Duration::from_secs(1800)).map(|_| ())
}

/// The graded tests of every chapter `options` selects, a list per test
/// file; files without any go to `notes`.
fn declared_tests(
    root: &Path,
    options: &Options,
    notes: &mut Vec<String>,
) -> Result<Vec<Vec<Declared>>, String> {
    let mut declared: Vec<Vec<Declared>> = Vec::new();
    for file in source::graded_files(root)? {
        let stem = file
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default();
        if !options.only.is_empty() && !options.only.iter().any(|c| stem.starts_with(c.as_str())) {
            continue;
        }
        let tests = source::declared_in(&file)?;
        if tests.is_empty() {
            notes.push(format!("{}: no graded tests declared", file.display()));
        } else {
            declared.push(tests);
        }
    }
    Ok(declared)
}

/// Build and run every graded test under `root`.
pub fn grade(root: &Path, options: &Options) -> Result<Grade, String> {
    let started = Instant::now();
    let mut notes = Vec::new();
    let declared = declared_tests(root, options, &mut notes)?;
    let targets: Vec<&str> = declared.iter().map(|t| t[0].target.as_str()).collect();

    if options.progress {
        eprintln!(
            "grade: building {} test target(s) in {}",
            targets.len(),
            root.display()
        );
    }
    let mut build = cargo(root, options);
    build.arg("test").arg("--no-run");
    for t in &targets {
        build.args(["--test", t]);
    }
    let built = run_bounded(build, Duration::from_secs(1800))?;
    let build_error = (!built.success).then(|| first_error(&built.stderr));
    let build_seconds = started.elapsed().as_secs_f64();

    let mut outcomes = Vec::new();
    let mut ungraded_failures = Vec::new();
    if let Some(err) = &build_error {
        for tests in &declared {
            outcomes.extend(tests.iter().map(|t| Outcome {
                test: t.clone(),
                passed: false,
                output: format!("the tests did not build: {err}"),
                skipped: None,
            }));
        }
        return Ok(Grade {
            outcomes,
            seconds: started.elapsed().as_secs_f64(),
            build_seconds,
            notes,
            ungraded_failures: Vec::new(),
        });
    }
    // One test binary per chapter: one after another, or all at once when
    // the tests mostly wait (the hang edition).
    let runs: Vec<Result<(Ran, Duration), String>> = if options.concurrent {
        std::thread::scope(|scope| {
            let handles: Vec<_> = declared
                .iter()
                .map(|tests| scope.spawn(|| run_target(root, options, tests)))
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err("grader thread panicked".into()))
                })
                .collect()
        })
    } else {
        declared
            .iter()
            .map(|tests| run_target(root, options, tests))
            .collect()
    };
    for (tests, ran) in declared.iter().zip(runs) {
        let target = tests[0].target.as_str();
        let (ran, limit) = ran?;
        let mut results = parse_libtest(&ran.stdout);
        if !ran.killed && !ran.success {
            results.extend(rerun_the_unreported(
                root, options, tests, &results, &ran, &mut notes,
            ));
        }
        let skips = read_skips(&skip_file(root, options, target));
        for t in tests {
            let skipped = skips
                .iter()
                .find(|(name, _)| *name == t.name)
                .map(|(_, why)| why.clone());
            let outcome = match results.iter().find(|r| r.name == t.name) {
                Some(r) => Outcome {
                    test: t.clone(),
                    passed: r.passed,
                    output: if r.passed {
                        String::new()
                    } else {
                        r.message.clone()
                    },
                    skipped,
                },
                None if ran.killed => Outcome {
                    test: t.clone(),
                    passed: false,
                    output: format!(
                        "no result: the test binary was stopped after {} s",
                        limit.as_secs()
                    ),
                    skipped: None,
                },
                None => Outcome {
                    test: t.clone(),
                    passed: false,
                    output: "no result: the test did not run (renamed, or not a #[test]?)"
                        .to_string(),
                    skipped: None,
                },
            };
            outcomes.push(outcome);
        }
        for r in &results {
            if !tests.iter().any(|t| t.name == r.name) {
                notes.push(format!(
                    "{target}::{}: a test without points (not graded){}",
                    r.name,
                    if r.passed { "" } else { ", FAILED" }
                ));
                if !r.passed {
                    ungraded_failures.push(format!("{target}::{}: {}", r.name, r.message));
                }
            }
        }
    }
    Ok(Grade {
        outcomes,
        seconds: started.elapsed().as_secs_f64(),
        build_seconds,
        notes,
        ungraded_failures,
    })
}

/// Run one chapter's test binary under `cargo test`, bounded in time.
fn run_target(
    root: &Path,
    options: &Options,
    tests: &[Declared],
) -> Result<(Ran, Duration), String> {
    let target = tests[0].target.as_str();
    if options.progress {
        eprintln!("grade: running {target} ({} graded tests)", tests.len());
    }
    let limit = binary_limit(tests, options.threads);
    let skips = skip_file(root, options, target);
    if let Some(dir) = skips.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
    }
    let _ = std::fs::remove_file(&skips);
    let mut cmd = cargo(root, options);
    cmd.args(["test", "--test", target, "--", "--color", "never"])
        .arg(format!("--test-threads={}", options.threads))
        .env("SOCKBOOK_SKIP_FILE", &skips);
    Ok((run_bounded(cmd, limit)?, limit))
}

/// A test binary that dies (an abort, a segfault: a `fatal runtime error`
/// is not a panic libtest can catch) takes every test still running or
/// not yet started with it. Run each graded test it did not report on
/// again, alone, so the death is charged to the test that causes it and
/// the others get their own result.
fn rerun_the_unreported(
    root: &Path,
    options: &Options,
    tests: &[Declared],
    results: &[Reported],
    ran: &Ran,
    notes: &mut Vec<String>,
) -> Vec<Reported> {
    let missing: Vec<&Declared> = tests
        .iter()
        .filter(|t| !results.iter().any(|r| r.name == t.name))
        .collect();
    if missing.is_empty() {
        return Vec::new();
    }
    let target = tests[0].target.as_str();
    notes.push(format!(
        "{target}: the test binary died ({}); its {} graded test(s) without a result were run again, one at a time",
        last_words(&ran.stderr),
        missing.len()
    ));
    let mut out = Vec::new();
    for t in missing {
        if options.progress {
            eprintln!("grade: running {target}::{} alone", t.name);
        }
        let mut cmd = cargo(root, options);
        cmd.args([
            "test", "--test", target, "--", "--color", "never", "--exact",
        ])
        .arg(&t.name)
        .arg("--test-threads=1")
        .env("SOCKBOOK_SKIP_FILE", skip_file(root, options, target));
        let limit = binary_limit(std::slice::from_ref(t), 1);
        let alone = match run_bounded(cmd, limit) {
            Ok(alone) => alone,
            Err(e) => {
                out.push(Reported {
                    name: t.name.clone(),
                    passed: false,
                    message: e,
                });
                continue;
            }
        };
        match parse_libtest(&alone.stdout)
            .into_iter()
            .find(|r| r.name == t.name)
        {
            Some(r) => out.push(r),
            None if alone.killed => out.push(Reported {
                name: t.name.clone(),
                passed: false,
                message: format!(
                    "no result: the test was stopped after {} s running alone",
                    limit.as_secs()
                ),
            }),
            None if alone.stdout.contains("running 0 tests") => {}
            None => out.push(Reported {
                name: t.name.clone(),
                passed: false,
                message: format!(
                    "the test binary died while this test ran alone: {}",
                    last_words(&alone.stderr)
                ),
            }),
        }
    }
    out
}

/// Why a test binary died, from cargo's stderr: the runtime's `fatal
/// runtime error` line and cargo's `process didn't exit successfully`
/// line (which names the signal), or the last line.
fn last_words(stderr: &str) -> String {
    let lines: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| l.contains("fatal runtime error") || l.contains("didn't exit successfully"))
        .map(|l| {
            // cargo quotes the whole command line: keep what follows it.
            match l.rfind("` (") {
                Some(i) => l[i + 2..].trim_start_matches('(').trim_end_matches(')'),
                None => l,
            }
        })
        .collect();
    if lines.is_empty() {
        stderr
            .lines()
            .rev()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .unwrap_or("no message")
            .to_string()
    } else {
        lines.join("; ")
    }
}

/// Where one test binary's `support::skip` lines go: `test name<TAB>reason`.
fn skip_file(root: &Path, options: &Options, target: &str) -> PathBuf {
    let dir = options
        .target_dir
        .clone()
        .unwrap_or_else(|| root.join("target"));
    let file = dir.join("grade").join(format!("skipped-{target}.tsv"));
    // The test binary runs in the package's directory: give it a full path.
    std::path::absolute(&file).unwrap_or(file)
}

/// The `(test name, reason)` pairs a test binary reported as skipped.
fn read_skips(path: &Path) -> Vec<(String, String)> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.split_once('\t'))
        .map(|(name, why)| (name.to_string(), why.to_string()))
        .collect()
}

/// How long one test binary may run: its tests' deadlines, as many rounds as
/// the thread count needs, plus a margin for start-up.
fn binary_limit(tests: &[Declared], threads: usize) -> Duration {
    let longest = tests
        .iter()
        .map(|t| t.secs.unwrap_or(DEFAULT_TEST_SECS))
        .max()
        .unwrap_or(DEFAULT_TEST_SECS) as u64;
    let rounds = tests.len().div_ceil(threads.max(1)) as u64;
    Duration::from_secs(longest * rounds + 60)
}

fn cargo(root: &Path, options: &Options) -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(root)
        .arg("--color")
        .arg("never")
        .env("RUST_BACKTRACE", "0")
        .env("CARGO_TERM_COLOR", "never");
    if let Some(dir) = &options.target_dir {
        cmd.env("CARGO_TARGET_DIR", dir);
    }
    for (key, value) in &options.env {
        cmd.env(key, value);
    }
    // The grader may itself run under `cargo run`: don't leak its settings.
    cmd.env_remove("CARGO_MANIFEST_DIR")
        .env_remove("CARGO_PRIMARY_PACKAGE");
    cmd
}

/// What a bounded child run produced.
pub struct Ran {
    pub success: bool,
    pub killed: bool,
    pub stdout: String,
    pub stderr: String,
}

/// Run `cmd` in its own process group and wait for *it* to exit, at most
/// `limit` (then the whole group is killed: cargo and the test binary under
/// it). Whatever it left running is killed as soon as it has exited: a
/// child a failing test did not stop (a `socat`, a server) would otherwise
/// hold the output pipes open, and waiting for their end would wait for
/// that child.
pub fn run_bounded(mut cmd: Command, limit: Duration) -> Result<Ran, String> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = cmd.spawn().map_err(|e| format!("spawn {cmd:?}: {e}"))?;
    let group = child.id() as i32;
    let stdout = collect(child.stdout.take());
    let stderr = collect(child.stderr.take());
    let (tx, exited) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    let kill_group = || {
        // SAFETY: kill(2) with a negative pid signals the process group we
        // created for this child; no memory is involved.
        unsafe { libc::kill(-group, libc::SIGKILL) };
    };
    let (status, killed) = match exited.recv_timeout(limit) {
        Ok(status) => (status, false),
        Err(_) => {
            kill_group();
            let status = exited
                .recv()
                .unwrap_or_else(|_| Err(std::io::Error::other("the waiting thread is gone")));
            (status, true)
        }
    };
    kill_group();
    // The group is gone, so the pipes end at once; the grace is for a
    // descendant that left the group and still holds them.
    let grace = Duration::from_secs(5);
    let out = stdout.recv_timeout(grace).unwrap_or_default();
    let err = stderr.recv_timeout(grace).unwrap_or_default();
    let status = status.map_err(|e| format!("wait: {e}"))?;
    Ok(Ran {
        success: status.success() && !killed,
        killed,
        stdout: out,
        stderr: err,
    })
}

/// Read a pipe to its end on a thread; the text arrives on the channel.
fn collect(pipe: Option<impl Read + Send + 'static>) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut text = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut text);
        }
        let _ = tx.send(String::from_utf8_lossy(&text).into_owned());
    });
    rx
}

/// The compiler's first error, as it printed it (the `error…` line, its
/// location and the source lines it points at), up to 12 lines.
fn first_error(stderr: &str) -> String {
    let lines: Vec<&str> = stderr.lines().collect();
    let Some(start) = lines.iter().position(|l| l.starts_with("error")) else {
        return stderr.lines().last().unwrap_or("cargo failed").to_string();
    };
    let block: Vec<&str> = lines[start..]
        .iter()
        .enumerate()
        .take_while(|(i, l)| *i == 0 || !(l.trim().is_empty() || l.starts_with("error")))
        .map(|(_, l)| *l)
        .take(12)
        .collect();
    block.join("\n")
}

/// One test's result as libtest reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reported {
    pub name: String,
    pub passed: bool,
    pub message: String,
}

/// Read `test NAME ... ok|FAILED` lines and each failure's message from the
/// `---- NAME stdout ----` sections.
pub fn parse_libtest(stdout: &str) -> Vec<Reported> {
    let mut results: Vec<Reported> = Vec::new();
    for line in stdout.lines() {
        let Some(rest) = line.strip_prefix("test ") else {
            continue;
        };
        let Some((name, verdict)) = rest.rsplit_once(" ... ") else {
            continue;
        };
        let passed = match verdict.trim() {
            "ok" => true,
            v if v.starts_with("FAILED") => false,
            _ => continue, // ignored
        };
        results.push(Reported {
            name: name.trim().to_string(),
            passed,
            message: String::new(),
        });
    }
    // Failure sections.
    let mut current: Option<(String, Vec<&str>)> = None;
    let mut sections: Vec<(String, Vec<&str>)> = Vec::new();
    for line in stdout.lines() {
        if let Some(name) = line
            .strip_prefix("---- ")
            .and_then(|l| l.strip_suffix(" stdout ----"))
        {
            sections.extend(current.take());
            current = Some((name.to_string(), Vec::new()));
        } else if line == "failures:" || line.starts_with("test result:") {
            sections.extend(current.take());
        } else if let Some((_, body)) = current.as_mut() {
            body.push(line);
        }
    }
    sections.extend(current.take());
    for (name, body) in sections {
        if let Some(r) = results.iter_mut().find(|r| r.name == name) {
            r.message = failure_message(&body);
        }
    }
    for r in results
        .iter_mut()
        .filter(|r| !r.passed && r.message.is_empty())
    {
        r.message = "failed (no message)".to_string();
    }
    results
}

/// The panic message: the lines after `thread '…' panicked at …:`, without
/// the backtrace note. The last panic wins over earlier ones from helper
/// threads only when there is no earlier one.
fn failure_message(body: &[&str]) -> String {
    let mut message = Vec::new();
    let mut in_panic = false;
    for line in body {
        if line.starts_with("thread '") && line.contains("panicked at") {
            if !message.is_empty() {
                break; // the first panic is the cause
            }
            in_panic = true;
            continue;
        }
        if line.starts_with("note: run with `RUST_BACKTRACE") {
            if !message.is_empty() {
                break;
            }
            in_panic = false;
            continue;
        }
        if in_panic && !line.trim().is_empty() {
            message.push(line.trim_end());
        }
    }
    if message.is_empty() {
        body.iter()
            .map(|l| l.trim())
            .filter(|l| !l.is_empty())
            .take(3)
            .collect::<Vec<_>>()
            .join("\n")
    } else {
        message.join("\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A test binary that leaves a child behind holding its stdout (a
    /// failing test's server) must not keep the run waiting for that child.
    #[test]
    fn a_child_left_behind_does_not_hold_the_run() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "sleep 60 & echo done"]);
        let started = Instant::now();
        let ran = run_bounded(cmd, Duration::from_secs(30)).expect("sh runs");
        assert!(
            ran.success && !ran.killed,
            "sh exited 0 by itself: {}",
            ran.stderr
        );
        assert_eq!(ran.stdout.trim(), "done", "its stdout is kept");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the run waited {:?} for the left-behind sleep",
            started.elapsed()
        );
    }

    #[test]
    fn past_the_limit_the_group_is_killed() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo started; sleep 60"]);
        let ran = run_bounded(cmd, Duration::from_millis(500)).expect("sh runs");
        assert!(ran.killed && !ran.success, "sh ran past its limit");
        assert_eq!(
            ran.stdout.trim(),
            "started",
            "what it printed before is kept"
        );
    }

    #[test]
    fn last_words_name_the_runtime_error_and_the_signal() {
        let stderr = "    Finished `test` profile [unoptimized + debuginfo] target(s) in 0.05s\n     Running tests/ch10_unix.rs (target/debug/deps/ch10_unix-0f)\nfatal runtime error: IO Safety violation: owned file descriptor already closed, aborting\nerror: test failed, to rerun pass `--test ch10_unix`\n\nCaused by:\n  process didn't exit successfully: `/t/ch10_unix-0f --color never --exact a` (signal: 6, SIGABRT: process abort signal)\n";
        assert_eq!(
            last_words(stderr),
            "fatal runtime error: IO Safety violation: owned file descriptor already closed, aborting; signal: 6, SIGABRT: process abort signal"
        );
        assert_eq!(last_words("first\nlast line\n\n"), "last line");
    }

    const SAMPLE: &str = "\
running 3 tests
test a_passes ... ok
test b_fails ... FAILED
test c_ignored ... ignored

failures:

---- b_fails stdout ----

thread 'b_fails' panicked at tests/ch01_sockets.rs:10:5:
not yet implemented: ch01: parse_v4
note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace


failures:
    b_fails

test result: FAILED. 1 passed; 1 failed; 1 ignored; 0 measured; 0 filtered out
";

    #[test]
    fn reads_verdicts_and_messages() {
        let r = parse_libtest(SAMPLE);
        assert_eq!(r.len(), 2);
        assert!(r[0].passed);
        assert!(!r[1].passed);
        assert_eq!(r[1].message, "not yet implemented: ch01: parse_v4");
    }
}
