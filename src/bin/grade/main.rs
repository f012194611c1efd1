//! The grader: `make grade`, `make student`, and the self-check.
//!
//! ```text
//! grade                      grade this tree: table + target/grade/results.json
//! grade edition student DIR  write the student edition (solutions → todo!())
//! grade edition hang DIR     write the hang edition (solutions → endless sleep)
//! grade selfcheck            reference full marks; student and hang editions 0
//! grade mutants              every wrong solution in tests/mutants/ loses points
//! grade tests [SELECTION]    cargo test's binaries, all at once (make test)
//! grade gradescope           target/gradescope/autograder.zip (see gradescope.rs)
//! grade classroom            .github/workflows/classroom.yml (see classroom.rs)
//! grade submission DIR       a student's checkout graded with this tree's tests
//! ```
//!
//! It uses `std` (and `libc::kill` for a stuck process group) and runs
//! `cargo`, so it works the same in the student
//! edition, which carries its own copy of this file.

mod classroom;
mod edition;
mod gradescope;
mod mutants;
mod others;
mod report;
mod run;
mod selfcheck;
mod source;
mod submission;

use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "\
grade — run the graded tests and score them

usage:
  grade [--root DIR] [--out FILE] [--threads N] [--chapter chNN]...
        [--strict] [--note TEXT]...
        run every graded test in tests/chNN_*.rs (or only those of the
        chapters named), print a table, write a Gradescope results file
        (default target/grade/results.json). A test that cannot run here
        (support::skip) is reported skipped and left out of the score and
        the maximum. --strict: exit 1 unless every test ran and passed
        (for GitHub Classroom); --note: a line for the summary
  grade edition student|hang DIR [--root DIR]
        write the student edition (every solution region becomes todo!())
        or the hang edition (every region becomes an endless sleep) to DIR
  grade selfcheck [--root DIR] [--chapter chNN]...
        prove the tests: the reference edition gets full marks, the student
        and hang editions get 0 with every graded test failing (of the
        chapters named, or all)
  grade mutants [--root DIR] [--chapter chNN]... [--list] [--one-at-a-time]
        apply each classic wrong solution of tests/mutants/chNN*.mut to a copy
        of the tree (target/mutants/), grade its chapter, and require the
        score to drop; --list only checks that every entry still applies
  grade tests [--root DIR] [-- CARGO-TEST-SELECTION...]
        build the test binaries `cargo test --no-run SELECTION` names
        (e.g. --lib --bins --test demo_ch01) and run them all at once,
        each within 10 minutes; a failing binary's output is printed whole
  grade gradescope [--chapter chNN]... [--out ZIP]
        the Gradescope autograder (default target/gradescope/autograder.zip)
  grade classroom [--chapter chNN]... [--out FILE]
        the GitHub Classroom workflow (default .github/workflows/classroom.yml)
  grade submission DIR [--chapter chNN]... [--out FILE] [--strict]
        grade a student's checkout (e.g. a Classroom repository) with this
        tree's tests: only its assignment files are taken (a missing one is
        graded as todo!()), every other file is this tree's, and each file
        under tests/ that the submission changed is named in a note
        (default results file target/submission/results.json)
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match dispatch(&args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("grade: {e}");
            ExitCode::from(2)
        }
    }
}

fn dispatch(args: &[String]) -> Result<ExitCode, String> {
    let mut root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut out: Option<PathBuf> = None;
    let mut threads: usize = run::DEFAULT_THREADS;
    let mut only = Vec::new();
    let mut list = false;
    let mut one_at_a_time = false;
    let mut notes = Vec::new();
    let mut strict = false;
    let mut words = Vec::new();
    let mut passed_on: Vec<String> = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--" => {
                passed_on = it.by_ref().cloned().collect();
            }
            "-h" | "--help" => {
                print!("{USAGE}");
                return Ok(ExitCode::SUCCESS);
            }
            "--root" => root = PathBuf::from(it.next().ok_or("--root needs a directory")?),
            "--out" => out = Some(PathBuf::from(it.next().ok_or("--out needs a file")?)),
            "--list" => list = true,
            "--one-at-a-time" => one_at_a_time = true,
            "--strict" => strict = true,
            "--note" => notes.push(it.next().ok_or("--note needs a text")?.clone()),
            "--chapter" => only.push(it.next().ok_or("--chapter needs a name like ch03")?.clone()),
            "--threads" => {
                threads = it
                    .next()
                    .and_then(|n| n.parse().ok())
                    .filter(|&n| n > 0)
                    .ok_or("--threads needs a positive number")?
            }
            _ => words.push(a.as_str()),
        }
    }
    match words.as_slice() {
        [] => {
            let options = run::Options {
                threads,
                only,
                ..run::Options::default()
            };
            let mut grade = run::grade(&root, &options)?;
            grade.notes.extend(notes);
            report::print_table(&grade);
            let out = out.unwrap_or_else(|| root.join("target/grade/results.json"));
            report::write_json(&grade, &out)?;
            println!("results: {}", out.display());
            let all_ran_and_passed = grade.outcomes.iter().all(|o| o.earned());
            Ok(if strict && !all_ran_and_passed {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            })
        }
        ["gradescope"] => {
            let zip = out.unwrap_or_else(|| root.join("target/gradescope/autograder.zip"));
            let dir = zip.with_file_name("package");
            let files = gradescope::write(&root, &only, &dir, &zip)?;
            println!(
                "gradescope: {} ({} assignment files); upload it as the autograder",
                zip.display(),
                files.len()
            );
            Ok(ExitCode::SUCCESS)
        }
        ["classroom"] => {
            let file = out.unwrap_or_else(|| root.join(".github/workflows/classroom.yml"));
            let points = classroom::write(&root, &only, &file, &gradescope::toolchain()?)?;
            println!("classroom: {} ({points} points)", file.display());
            Ok(ExitCode::SUCCESS)
        }
        ["submission", dir] => {
            let grade = submission::grade(&root, std::path::Path::new(dir), &only, out)?;
            let all_ran_and_passed = grade.outcomes.iter().all(|o| o.earned());
            Ok(if strict && !all_ran_and_passed {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            })
        }
        ["edition", kind, dir] => {
            let kind = edition::Kind::parse(kind)?;
            let n = edition::write(&root, std::path::Path::new(dir), kind)?;
            println!("{kind:?} edition: {} ({n} solution regions replaced)", dir);
            Ok(ExitCode::SUCCESS)
        }
        ["tests"] => Ok(if others::run(&root, &passed_on)? {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        }),
        ["selfcheck"] => Ok(if selfcheck::run(&root, &only)? {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        }),
        ["mutants"] => {
            let options = mutants::MutantOptions {
                only,
                list,
                one_at_a_time,
            };
            Ok(if mutants::run(&root, &options)? {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        _ => Err(format!("unknown arguments {words:?}\n\n{USAGE}")),
    }
}
