//! `sockbook`: the learner's command. Where am I, what next, why did it
//! fail, and a hint.
//!
//! ```text
//! sockbook progress          every assignment in chapter order: done, failing, not started
//! sockbook next              the next unfinished assignment: its task, its first failing test
//! sockbook watch             `next`, again each time a source file is saved, until all pass
//! sockbook hint [CH FN]      one more hint for the current (or the named) assignment
//! sockbook list              the assignments and the graded tests each one has
//! ```
//!
//! The assignments and their hints are read from `chapters/hints/chNN.md`
//! (instructors may edit them), so it works the same in the reference and
//! the student edition, and after the student has replaced every `todo!()`.
//! It uses std only and runs `cargo test` for the tests.

mod catalogue;
mod runner;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use catalogue::{Assignment, Status};

const USAGE: &str = "\
sockbook — the learner's command (run it with `cargo run --bin sockbook -- VERB`)

  progress          a table of every assignment in chapter order: done (its
                    graded tests pass), failing, or not started (still
                    todo!()), with points, and the next one to do
  next              the next unfinished assignment: chapter, function,
                    file:line, its task; runs just its graded tests and
                    shows the first failure, explained
  watch             `next`, re-run each time a file under src/ or tests/ is
                    saved; moves on when the assignment passes (Ctrl-C stops)
  hint [CH FN]      one more hint (up to three, each more specific) for the
                    current assignment, or for chapter CH's function FN
  list              every assignment with its file and graded tests
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let words: Vec<&str> = args.iter().map(String::as_str).collect();
    let result = match words.as_slice() {
        ["progress"] => progress(&root),
        ["next"] => next(&root).map(|_| ()),
        ["watch"] => watch(&root),
        ["hint"] => hint(&root, None),
        ["hint", ch, name] => hint(&root, Some((ch, name))),
        ["list"] => list(&root),
        [] | ["help"] | ["-h"] | ["--help"] => {
            print!("{USAGE}");
            Ok(())
        }
        _ => Err(format!("unknown arguments {args:?}\n\n{USAGE}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sockbook: {e}");
            ExitCode::from(2)
        }
    }
}

fn list(root: &Path) -> Result<(), String> {
    for a in catalogue::load(root)? {
        println!(
            "{} {:<28} {}:{}  tests: {}",
            a.chapter,
            a.name,
            a.file,
            a.line(root).unwrap_or(0),
            a.tests.join(", ")
        );
    }
    Ok(())
}

fn progress(root: &Path) -> Result<(), String> {
    let all = catalogue::load(root)?;
    let points = catalogue::points(root)?;
    println!("| # | chapter | assignment | points | status |");
    println!("|---:|---|---|---:|---|");
    let mut next_one: Option<&Assignment> = None;
    let (mut got, mut max) = (0, 0);
    // Run each chapter's graded tests once, then read every assignment off.
    let mut verdicts = std::collections::HashMap::new();
    for (i, a) in all.iter().enumerate() {
        let status = if a.is_todo(root) {
            Status::NotStarted
        } else {
            if !verdicts.contains_key(&a.chapter) {
                eprint!("running chapter {}'s graded tests… ", a.chapter);
                let v = runner::run_tests(root, &a.chapter, &[])?;
                eprintln!("done");
                verdicts.insert(a.chapter.clone(), v);
            }
            let v = &verdicts[&a.chapter];
            a.status_from(v)
        };
        let p: u32 = a
            .tests
            .iter()
            .map(|t| points.get(t).copied().unwrap_or(0))
            .sum();
        max += p;
        if status == Status::Done {
            got += p;
        }
        println!(
            "| {} | {} | {} | {p} | {} |",
            i + 1,
            a.chapter,
            a.name,
            status.word()
        );
        if status != Status::Done && next_one.is_none() {
            next_one = Some(a);
        }
    }
    println!("\n{got} of {max} points.");
    match next_one {
        Some(a) => println!(
            "next: {} {} ({}:{}) — `make next` shows its task and first failing test",
            a.chapter,
            a.name,
            a.file,
            a.line(root).unwrap_or(0)
        ),
        None => println!("every assignment passes its graded tests."),
    }
    Ok(())
}

/// Show the next unfinished assignment and run its tests; `Ok(None)` when
/// every assignment passes.
fn next(root: &Path) -> Result<Option<Assignment>, String> {
    for a in catalogue::load(root)? {
        let not_started = a.is_todo(root);
        let verdicts = if not_started {
            None
        } else {
            let v = runner::run_tests(root, &a.chapter, &a.tests)?;
            if a.status_from(&v) == Status::Done {
                continue;
            }
            Some(v)
        };
        show(root, &a, verdicts.as_ref())?;
        return Ok(Some(a));
    }
    println!("Every assignment passes its graded tests. `make grade` for the score table.");
    Ok(None)
}

fn show(root: &Path, a: &Assignment, verdicts: Option<&runner::Verdicts>) -> Result<(), String> {
    let line = a.line(root).unwrap_or(0);
    println!(
        "━━ chapter {} · {} · {}:{}",
        &a.chapter[2..],
        a.name,
        a.file,
        line
    );
    println!();
    for l in a.task(root) {
        println!("  {l}");
    }
    println!();
    let verdicts = match verdicts {
        Some(v) => v.clone(),
        None => runner::run_tests(root, &a.chapter, &a.tests)?,
    };
    if let Some(err) = &verdicts.build_error {
        println!("✗ it does not build yet; the compiler's first error:\n");
        println!("{err}");
        return Ok(());
    }
    let failing: Vec<&String> = a
        .tests
        .iter()
        .filter(|t| verdicts.passed.get(*t) != Some(&true))
        .collect();
    let passed = a.tests.len() - failing.len();
    println!(
        "graded tests: {passed} of {} pass ({})",
        a.tests.len(),
        a.tests.join(", ")
    );
    if let Some(first) = failing.first() {
        println!("\n✗ {first}");
        let msg = verdicts
            .messages
            .get(*first)
            .cloned()
            .unwrap_or_else(|| "(no message: did it run? see `cargo test` output)".into());
        for l in msg.lines() {
            println!("  {l}");
        }
        println!(
            "\nrun it yourself: cargo test --test {} -- --exact {first}",
            runner::test_target(root, &a.chapter)?
        );
        println!("stuck? `make hint` (up to three hints, each more specific)");
    }
    Ok(())
}

/// The newest modification time under `src/` and `tests/`.
fn newest_change(root: &Path) -> SystemTime {
    fn walk(dir: &Path, newest: &mut SystemTime) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let path = e.path();
            if path.is_dir() {
                walk(&path, newest);
            } else if let Ok(m) = e.metadata().and_then(|m| m.modified())
                && m > *newest
            {
                *newest = m;
            }
        }
    }
    let mut newest = SystemTime::UNIX_EPOCH;
    for d in ["src", "tests", "chapters/hints"] {
        walk(&root.join(d), &mut newest);
    }
    newest
}

fn watch(root: &Path) -> Result<(), String> {
    loop {
        let seen = newest_change(root);
        println!("\n────────── {}", runner::clock());
        if next(root)?.is_none() {
            return Ok(());
        }
        println!("\nwatching src/ and tests/: save a file to run again (Ctrl-C stops)");
        while newest_change(root) == seen {
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

fn hint(root: &Path, named: Option<(&str, &str)>) -> Result<(), String> {
    let all = catalogue::load(root)?;
    let a = match named {
        Some((ch, name)) => {
            let ch = catalogue::chapter_id(ch);
            all.into_iter()
                .find(|a| a.chapter == ch && a.name == name)
                .ok_or_else(|| format!("no assignment {name} in {ch} (`sockbook list`)"))?
        }
        None => {
            // The current assignment: the first not done (running tests).
            let mut current = None;
            for a in all {
                if a.is_todo(root) {
                    current = Some(a);
                    break;
                }
                let v = runner::run_tests(root, &a.chapter, &a.tests)?;
                if a.status_from(&v) != Status::Done {
                    current = Some(a);
                    break;
                }
            }
            match current {
                Some(a) => a,
                None => {
                    println!("every assignment passes: no hint needed.");
                    return Ok(());
                }
            }
        }
    };
    let shown = catalogue::bump_hint_level(root, &a)?;
    println!(
        "hints for {} {} ({} of {}):",
        a.chapter,
        a.name,
        shown,
        a.hints.len()
    );
    for (i, h) in a.hints.iter().take(shown).enumerate() {
        println!("\n{}. {}", i + 1, h);
    }
    if shown < a.hints.len() {
        println!("\n(`make hint` again for a more specific one)");
    }
    Ok(())
}
