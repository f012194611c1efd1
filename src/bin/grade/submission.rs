//! `grade submission DIR`: grade a student's checkout with *your* tests.
//!
//! GitHub Classroom runs the graded tests inside the student's repository,
//! where the student can edit them (or the workflow). That run is feedback.
//! For the grade that counts, clone the submissions and run this on each:
//! it copies this tree (tests, grader, every chapter's reference) to
//! `target/submission/tree`, puts in only the student's *assignment files*
//! (the files under `src/chNN_*/` with a solution region, as the Gradescope
//! autograder does; a missing one is cut to `todo!()` and scores 0), grades
//! there, and names every file under `tests/` that differs from yours, so a
//! changed test is seen, not trusted.

use std::path::{Path, PathBuf};

use crate::edition::{self, Kind};
use crate::{gradescope, mutants, report, run};

/// What was taken from the submission and what it changed elsewhere.
#[derive(Debug, Default)]
pub struct Taken {
    /// Assignment files copied from the submission.
    pub copied: Vec<PathBuf>,
    /// Assignment files the submission lacks (cut to `todo!()`).
    pub missing: Vec<PathBuf>,
    /// Files under `tests/` that differ from this tree's (ignored).
    pub changed_tests: Vec<PathBuf>,
}

/// Build the grading tree for `submission` in `tree`: this tree's files,
/// then the submission's assignment files for `chapters` (all when empty).
pub fn prepare(
    root: &Path,
    submission: &Path,
    chapters: &[String],
    tree: &Path,
) -> Result<Taken, String> {
    if !submission.join("src").is_dir() {
        return Err(format!(
            "{}: no src/ directory: is this a checkout of the workbook?",
            submission.display()
        ));
    }
    mutants::sync_tree(root, tree)?;
    let mut taken = Taken::default();
    for rel in gradescope::assignment_files(root, chapters)? {
        let dest = tree.join(&rel);
        match std::fs::read(submission.join(&rel)) {
            Ok(bytes) => {
                std::fs::write(&dest, bytes)
                    .map_err(|e| format!("write {}: {e}", dest.display()))?;
                taken.copied.push(rel);
            }
            Err(_) => {
                let text = std::fs::read_to_string(root.join(&rel))
                    .map_err(|e| format!("read {}: {e}", rel.display()))?;
                let chapter = rel
                    .iter()
                    .map(|p| p.to_string_lossy())
                    .find(|p| p.starts_with("ch"))
                    .map(|p| p.chars().take(4).collect::<String>())
                    .unwrap_or_default();
                let (cut, _) = edition::cut_solutions(&text, &chapter, Kind::Student)?;
                std::fs::write(&dest, cut).map_err(|e| format!("write {}: {e}", dest.display()))?;
                taken.missing.push(rel);
            }
        }
    }
    changed_under(
        root,
        submission,
        Path::new("tests"),
        &mut taken.changed_tests,
    )?;
    Ok(taken)
}

/// Files under `rel` (a directory of `root`) whose bytes differ in
/// `submission`, or that only one side has.
fn changed_under(
    root: &Path,
    submission: &Path,
    rel: &Path,
    out: &mut Vec<PathBuf>,
) -> Result<(), String> {
    let mut names = std::collections::BTreeSet::new();
    for side in [root, submission] {
        if let Ok(entries) = std::fs::read_dir(side.join(rel)) {
            names.extend(entries.flatten().map(|e| e.file_name()));
        }
    }
    for name in names {
        let rel = rel.join(&name);
        let (ours, theirs) = (root.join(&rel), submission.join(&rel));
        if ours.is_dir() || theirs.is_dir() {
            changed_under(root, submission, &rel, out)?;
        } else if std::fs::read(&ours).ok() != std::fs::read(&theirs).ok() {
            out.push(rel);
        }
    }
    Ok(())
}

/// `grade submission DIR`: prepare, grade, print the table with notes, and
/// write the results file. Returns the grade.
pub fn grade(
    root: &Path,
    submission: &Path,
    chapters: &[String],
    out: Option<PathBuf>,
) -> Result<run::Grade, String> {
    let tree = root.join("target/submission/tree");
    let taken = prepare(root, submission, chapters, &tree)?;
    println!(
        "submission: {}: {} assignment files taken, {} missing (graded as todo!()), \
         everything else from this tree",
        submission.display(),
        taken.copied.len(),
        taken.missing.len()
    );
    let options = run::Options {
        only: chapters.to_vec(),
        target_dir: Some(root.join("target/submission/target")),
        ..run::Options::default()
    };
    let mut grade = run::grade(&tree, &options)?;
    for rel in &taken.missing {
        grade.notes.push(format!(
            "{} is missing from the submission: graded as todo!()",
            rel.display()
        ));
    }
    if !taken.changed_tests.is_empty() {
        grade.notes.push(format!(
            "{} file(s) under tests/ differ in the submission from this tree's (the submission's are ignored): {}",
            taken.changed_tests.len(),
            taken
                .changed_tests
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    report::print_table(&grade);
    let out = out.unwrap_or_else(|| root.join("target/submission/results.json"));
    report::write_json(&grade, &out)?;
    println!("results: {}", out.display());
    Ok(grade)
}
