//! The learner's catalogue (`chapters/hints/chNN.md`, read by
//! `cargo run --bin sockbook`) matches the code: every solution region has
//! an entry, every graded test belongs to an entry, every entry's file,
//! function and tests exist, and each has one to three hints.
//!
//! Plain test (not graded): `cargo test --test learner`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

// The `sockbook` binary's own modules (catalogue uses `super::runner`).
#[allow(dead_code)]
#[path = "../src/bin/sockbook/catalogue.rs"]
mod catalogue;
#[allow(dead_code)]
#[path = "../src/bin/sockbook/runner.rs"]
mod runner;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The name of the function a line declares, as the grader's edition
/// writer finds it (`src/bin/grade/edition.rs`).
fn fn_name(line: &str) -> Option<String> {
    let at = line.find("fn ")?;
    if (at > 0 && !line[..at].ends_with(' ')) || line.starts_with("//") {
        return None;
    }
    let name: String = line[at + 3..]
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    (!name.is_empty()).then_some(name)
}

fn rs_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            rs_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Every solution region: (chapter, function, file relative to the root).
fn regions(root: &Path) -> BTreeSet<(String, String, String)> {
    let mut out = BTreeSet::new();
    let Ok(entries) = std::fs::read_dir(root.join("src")) else {
        return out;
    };
    for e in entries.flatten() {
        let dir = e.file_name().to_string_lossy().into_owned();
        if !(dir.len() > 5
            && dir.starts_with("ch")
            && dir[2..4].chars().all(|c| c.is_ascii_digit()))
        {
            continue;
        }
        let mut files = Vec::new();
        rs_files(&e.path(), &mut files);
        for f in files {
            let text = std::fs::read_to_string(&f).unwrap_or_default();
            let rel = f
                .strip_prefix(root)
                .unwrap_or(&f)
                .to_string_lossy()
                .into_owned();
            let mut last = String::from("?");
            for line in text.lines() {
                let t = line.trim();
                if let Some(n) = fn_name(t) {
                    last = n;
                }
                if t == "// BEGIN SOLUTION" {
                    out.insert((dir[..4].to_string(), last.clone(), rel.clone()));
                }
            }
        }
    }
    out
}

/// Every graded test, by chapter: the `fn` after a `points = N;` line in
/// `tests/chNN_*.rs`.
fn graded_tests(root: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for e in std::fs::read_dir(root.join("tests")).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !(name.starts_with("ch") && name.ends_with(".rs") && name.contains('_')) {
            continue;
        }
        let text = std::fs::read_to_string(e.path()).unwrap();
        let mut pending = false;
        for line in text.lines().map(str::trim) {
            if line.starts_with("points = ") {
                pending = true;
            } else if pending && let Some(n) = fn_name(line) {
                out.entry(name[..4].to_string()).or_default().insert(n);
                pending = false;
            }
        }
    }
    out
}

#[test]
fn every_solution_region_has_an_entry_with_existing_file_function_and_tests() {
    let root = root();
    let all = catalogue::load(&root).unwrap_or_else(|e| {
        panic!("the hints files do not parse: {e} (format: src/bin/sockbook/catalogue.rs)")
    });
    let graded = graded_tests(&root);
    let mut problems = Vec::new();

    // Every region has an entry naming the same chapter, function and file.
    let have_hints: BTreeSet<&str> = all.iter().map(|a| a.chapter.as_str()).collect();
    for (ch, name, file) in regions(&root) {
        if !have_hints.contains(ch.as_str()) {
            problems.push(format!(
                "{ch}: no chapters/hints/{ch}.md, but {file} has a solution region in fn {name}"
            ));
            continue;
        }
        match all.iter().find(|a| a.chapter == ch && a.name == name) {
            None => problems.push(format!(
                "{ch}: fn {name} ({file}) has a solution region but no `## {name}` entry in chapters/hints/{ch}.md"
            )),
            Some(a) if a.file != file => problems.push(format!(
                "{ch} {name}: the hints file says `file: {}`, the region is in {file}",
                a.file
            )),
            Some(_) => {}
        }
    }

    // Every entry's file and function exist, every test it lists is graded,
    // and it has one to three hints.
    for a in &all {
        if !root.join(&a.file).is_file() {
            problems.push(format!(
                "{} {}: file {} does not exist",
                a.chapter, a.name, a.file
            ));
        } else if a.line(&root).is_none() {
            problems.push(format!(
                "{} {}: no `fn {}` in {}",
                a.chapter, a.name, a.name, a.file
            ));
        }
        if !(1..=3).contains(&a.hints.len()) {
            problems.push(format!(
                "{} {}: {} hints, want 1 to 3",
                a.chapter,
                a.name,
                a.hints.len()
            ));
        }
        let known = graded.get(&a.chapter);
        for t in &a.tests {
            if !known.is_some_and(|k| k.contains(t)) {
                problems.push(format!(
                    "{} {}: test {t} is not a graded test of tests/{}_*.rs",
                    a.chapter, a.name, a.chapter
                ));
            }
        }
    }

    // Every graded test of a chapter with hints is listed under some entry.
    for (ch, tests) in &graded {
        if !have_hints.contains(ch.as_str()) {
            continue; // reported above, once per region
        }
        for t in tests {
            if !all.iter().any(|a| &a.chapter == ch && a.tests.contains(t)) {
                problems.push(format!(
                    "{ch}: graded test {t} is listed under no entry of chapters/hints/{ch}.md"
                ));
            }
        }
    }

    assert!(
        problems.is_empty(),
        "the learner's catalogue (chapters/hints/) does not match the code; {} problem(s):\n  {}",
        problems.len(),
        problems.join("\n  ")
    );
}
