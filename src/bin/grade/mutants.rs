//! `grade mutants`: proof that the graded tests catch the classic wrong
//! solutions listed in `tests/mutants/chNN*.mut` (format in
//! tests/mutants/README.md).
//!
//! Each entry is applied to one persistent copy of the tree
//! (`target/mutants/tree`, its own build directory `target/mutants/target`,
//! so every build after the first is incremental), only the mutated
//! chapter's test binary is built and run through the ordinary grader, and
//! the file is put back. The entry passes ("caught") when the chapter's score
//! drops below the reference's; it fails the run when the score does not
//! drop, when the tree does not build, or when the entry no longer applies.
//!
//! Speed: one mutant of each of several chapters is applied at once, built
//! once, and those chapters are graded at the same time. That is sound
//! because a chapter's graded tests exercise only its own solution regions
//! and those of the chapters its code names: [`chapter_links`] reads every
//! `chNN_` name in the code and tests of each chapter (and in the shared
//! `src/kit/` and `tests/support/`), and two chapters linked that way, in
//! either direction and through any chain, are never mutated in the same
//! round. `--one-at-a-time` turns the batching off.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::edition::{self, BEGIN, END};
use crate::run::{self, Grade, Options};

/// Tests at once in one test binary. A mutant often makes many tests wait
/// out their deadlines; more at once keeps that cost near one deadline.
const MUTANT_THREADS: usize = 8;

/// One wrong solution from the catalogue.
#[derive(Debug, Clone)]
pub struct Entry {
    /// `ch02`, from the catalogue file's name.
    pub chapter: String,
    /// The mistake in one line.
    pub mistake: String,
    /// The file it changes, relative to the root.
    pub file: String,
    /// The function whose solution region it changes.
    pub assignment: String,
    /// (find, replace) pairs of whole lines.
    pub blocks: Vec<(String, String)>,
    /// Where it is written: `tests/mutants/ch02.mut:14`.
    pub origin: String,
}

/// What running one entry found.
#[derive(Debug, Clone)]
enum Verdict {
    /// The score dropped; the tests that failed (passed in the reference).
    Caught { after: u32, by: Vec<String> },
    /// Full marks (the reference's score) in spite of the mistake.
    Survived,
    /// The mutated tree did not build.
    NoBuild(String),
    /// The find text is not exactly once in a solution region.
    NoApply(String),
    /// The reference itself does not get full marks in this chapter.
    NoReference,
}

/// `grade mutants` options.
#[derive(Debug, Clone, Default)]
pub struct MutantOptions {
    pub only: Vec<String>,
    pub list: bool,
    pub one_at_a_time: bool,
}

/// Every entry of every `tests/mutants/chNN*.mut`, in file order.
pub fn catalogue(root: &Path) -> Result<Vec<Entry>, String> {
    let dir = root.join("tests/mutants");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map_err(|e| format!("read_dir {}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            name.ends_with(".mut") && chapter_prefix(name).is_some()
        })
        .collect();
    files.sort();
    let mut entries = Vec::new();
    for file in files {
        let name = file.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let chapter = chapter_prefix(name).unwrap_or_default();
        let text =
            std::fs::read_to_string(&file).map_err(|e| format!("read {}: {e}", file.display()))?;
        let shown = format!("tests/mutants/{name}");
        entries.extend(parse(&text, &chapter, &shown)?);
    }
    Ok(entries)
}

/// `ch04-chat.mut` → `ch04`.
fn chapter_prefix(name: &str) -> Option<String> {
    let b = name.as_bytes();
    (b.len() >= 4 && b.starts_with(b"ch") && b[2].is_ascii_digit() && b[3].is_ascii_digit())
        .then(|| name[..4].to_string())
}

/// Parse one catalogue file.
pub fn parse(text: &str, chapter: &str, origin: &str) -> Result<Vec<Entry>, String> {
    let mut entries: Vec<Entry> = Vec::new();
    let mut lines = text.lines().enumerate().peekable();
    while let Some((i, line)) = lines.next() {
        let at = |n: usize| format!("{origin}:{}", n + 1);
        if let Some(mistake) = line.strip_prefix("=== ") {
            entries.push(Entry {
                chapter: chapter.to_string(),
                mistake: mistake.trim().to_string(),
                file: String::new(),
                assignment: String::new(),
                blocks: Vec::new(),
                origin: at(i),
            });
            continue;
        }
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let Some(entry) = entries.last_mut() else {
            return Err(format!("{}: text before the first `=== ` entry", at(i)));
        };
        if let Some(file) = line.strip_prefix("file:") {
            entry.file = file.trim().to_string();
        } else if let Some(name) = line.strip_prefix("assignment:") {
            entry.assignment = name.trim().to_string();
        } else if line == "--- find" {
            let mut find = Vec::new();
            let mut replace = Vec::new();
            let mut in_replace = false;
            let mut closed = false;
            for (_, inner) in lines.by_ref() {
                match inner {
                    "--- replace" if !in_replace => in_replace = true,
                    "--- end" if in_replace => {
                        closed = true;
                        break;
                    }
                    _ if in_replace => replace.push(inner),
                    _ => find.push(inner),
                }
            }
            if !closed {
                return Err(format!(
                    "{}: `--- find` without `--- replace` … `--- end`",
                    at(i)
                ));
            }
            if find.iter().all(|l| l.trim().is_empty()) {
                return Err(format!("{}: empty `--- find` block", at(i)));
            }
            entry.blocks.push((find.join("\n"), replace.join("\n")));
        } else {
            return Err(format!("{}: unexpected line {line:?}", at(i)));
        }
    }
    for e in &entries {
        if e.file.is_empty() || e.assignment.is_empty() || e.blocks.is_empty() {
            return Err(format!(
                "{}: an entry needs `file:`, `assignment:` and a find/replace block",
                e.origin
            ));
        }
    }
    Ok(entries)
}

/// The text of `entry.file` with the mistake made. Every find block must
/// occur exactly once, as whole lines, inside a solution region of the
/// function `entry.assignment`.
pub fn apply(text: &str, entry: &Entry) -> Result<String, String> {
    let mut text = text.to_string();
    for (n, (find, replace)) in entry.blocks.iter().enumerate() {
        let block = if entry.blocks.len() > 1 {
            format!("find block {}", n + 1)
        } else {
            "the find text".to_string()
        };
        // Whole lines: match with the newline before and after.
        let padded = format!("\n{text}\n");
        let needle = format!("\n{find}\n");
        let hits: Vec<usize> = padded
            .match_indices(&needle)
            .map(|(at, _)| at) // index of the newline before: = offset in `text`
            .collect();
        match hits.len() {
            1 => {}
            0 => return Err(format!("{block} is not in {}", entry.file)),
            k => return Err(format!("{block} occurs {k} times in {}", entry.file)),
        }
        let start = hits[0];
        let mut end = start + find.len();
        match region_at(&text, start, end) {
            Some(name) if name == entry.assignment => {}
            Some(name) => {
                return Err(format!(
                    "{block} is in the solution region of {name}, not of {}",
                    entry.assignment
                ));
            }
            None => {
                return Err(format!(
                    "{block} is not inside a {BEGIN} … {END} region of {}",
                    entry.file
                ));
            }
        }
        // An empty replace deletes the lines, their newline included.
        if replace.is_empty() && text[end..].starts_with('\n') {
            end += 1;
        }
        let mut out = String::with_capacity(text.len());
        out.push_str(&text[..start]);
        out.push_str(replace);
        out.push_str(&text[end..]);
        text = out;
    }
    Ok(text)
}

/// The function whose solution region holds bytes `start..end` of `text`.
fn region_at(text: &str, start: usize, end: usize) -> Option<String> {
    let mut offset = 0;
    let mut last_fn = String::from("?");
    let mut open: Option<(usize, String)> = None;
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim();
        let line_end = offset + line.len();
        if trimmed == BEGIN {
            open = Some((line_end, last_fn.clone()));
        } else if trimmed == END {
            if let Some((from, name)) = open.take()
                && start >= from
                && end <= offset
            {
                return Some(name);
            }
        } else if open.is_none()
            && let Some(name) = fn_name(trimmed)
        {
            last_fn = name;
        }
        offset = line_end;
    }
    None
}

/// The name in a line that declares a function (as the editions read it).
fn fn_name(line: &str) -> Option<String> {
    if line.starts_with("//") {
        return None;
    }
    let at = line.find("fn ")?;
    if at > 0 && !line[..at].ends_with(' ') {
        return None;
    }
    let name: String = line[at + 3..]
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    (!name.is_empty()).then_some(name)
}

/// For each chapter, the chapters whose solution regions its graded tests
/// may run: itself, every chapter named (`chMM_`) in its code
/// (`src/chNN_*/`, `src/bin/chNN_*.rs`), its tests (`tests/chNN_*.rs`), and
/// the shared code every chapter uses (`src/kit/`, `tests/support/`), and so
/// on through the chapters those name.
pub fn chapter_links(root: &Path) -> Result<BTreeMap<String, BTreeSet<String>>, String> {
    let mut names: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut shared: BTreeSet<String> = BTreeSet::new();
    let mut files = Vec::new();
    for dir in ["src", "tests"] {
        collect_rs(&root.join(dir), &mut files)?;
    }
    for file in files {
        let rel = file.strip_prefix(root).unwrap_or(&file);
        let rel_text = rel.to_string_lossy();
        if rel_text.starts_with("src/bin/grade") || rel_text.starts_with("tests/demo_") {
            continue;
        }
        let owner = rel
            .iter()
            .find_map(|p| chapter_prefix(&p.to_string_lossy()).filter(|_| true));
        let is_shared = rel_text.starts_with("src/kit") || rel_text.starts_with("tests/support");
        if owner.is_none() && !is_shared {
            continue;
        }
        let text =
            std::fs::read_to_string(&file).map_err(|e| format!("read {}: {e}", file.display()))?;
        let named = chapters_named(&text);
        match owner {
            Some(ch) => names.entry(ch).or_default().extend(named),
            None => shared.extend(named),
        }
    }
    // Close over chains.
    let chapters: Vec<String> = names.keys().cloned().collect();
    let mut links: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for ch in &chapters {
        let mut seen: BTreeSet<String> = BTreeSet::new();
        let mut todo: Vec<String> = vec![ch.clone()];
        todo.extend(shared.iter().cloned());
        while let Some(c) = todo.pop() {
            if seen.insert(c.clone())
                && let Some(more) = names.get(&c)
            {
                todo.extend(more.iter().cloned());
            }
        }
        links.insert(ch.clone(), seen);
    }
    Ok(links)
}

/// `chNN` for every `chNN_` (`crate::ch05_handshake`, `sockbook::ch04_select`)
/// in the code of `text`, comment lines and string literals left out: a
/// chapter named only in a message (a hint to run `ch02_tcp`) is no link.
fn chapters_named(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for line in text.lines() {
        let line = line.trim_start();
        if line.starts_with("//") {
            continue;
        }
        // Without string literals (naively: between unescaped quotes).
        let mut code = String::with_capacity(line.len());
        let mut in_string = false;
        let mut escaped = false;
        for c in line.chars() {
            match (in_string, c) {
                (true, '\\') if !escaped => escaped = true,
                (true, '"') if !escaped => in_string = false,
                (true, _) => escaped = false,
                (false, '"') => in_string = true,
                (false, c) => code.push(c),
            }
        }
        let code = code.as_str();
        let b = code.as_bytes();
        for i in 0..b.len().saturating_sub(4) {
            if &b[i..i + 2] == b"ch"
                && b[i + 2].is_ascii_digit()
                && b[i + 3].is_ascii_digit()
                && b[i + 4] == b'_'
                && (i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_'))
            {
                found.insert(code[i..i + 4].to_string());
            }
        }
    }
    found
}

fn collect_rs(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("read_dir {}: {e}", dir.display()))?;
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect_rs(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    Ok(())
}

/// Make `out` a copy of the tree at `root` (no `target/`, no `.git/`, its
/// own workspace, only the binaries graded tests run), rewriting only the files that differ so that cargo's
/// incremental build stays valid. Returns how many files were written.
pub fn sync_tree(root: &Path, out: &Path) -> Result<usize, String> {
    let mut wanted: BTreeSet<PathBuf> = BTreeSet::new();
    let mut written = 0;
    let keep_bins = edition::graded_bins(root)?;
    sync_dir(root, root, out, &keep_bins, &mut wanted, &mut written)?;
    remove_stale(out, &wanted)?;
    Ok(written)
}

fn sync_dir(
    root: &Path,
    dir: &Path,
    out: &Path,
    keep_bins: &BTreeSet<String>,
    wanted: &mut BTreeSet<PathBuf>,
    written: &mut usize,
) -> Result<(), String> {
    std::fs::create_dir_all(out).map_err(|e| format!("mkdir {}: {e}", out.display()))?;
    let entries = std::fs::read_dir(dir).map_err(|e| format!("read_dir {}: {e}", dir.display()))?;
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        if dir == root && (name == "target" || name == ".git") {
            continue;
        }
        let dest = out.join(&name);
        let kind = entry.file_type().map_err(|e| e.to_string())?;
        if kind.is_dir() {
            let rel = path.strip_prefix(root).unwrap_or(&path);
            if edition::for_graded_copy(rel, Vec::new(), keep_bins).is_none() {
                continue;
            }
            wanted.insert(dest.clone());
            sync_dir(root, &path, &dest, keep_bins, wanted, written)?;
        } else if kind.is_file() {
            let bytes =
                std::fs::read(&path).map_err(|e| format!("read {}: {e}", path.display()))?;
            let rel = path.strip_prefix(root).unwrap_or(&path);
            let Some(bytes) = edition::for_graded_copy(rel, bytes, keep_bins) else {
                continue;
            };
            if std::fs::read(&dest).ok().as_deref() != Some(&bytes[..]) {
                std::fs::write(&dest, &bytes)
                    .map_err(|e| format!("write {}: {e}", dest.display()))?;
                *written += 1;
            }
            wanted.insert(dest);
        }
    }
    Ok(())
}

fn remove_stale(dir: &Path, wanted: &BTreeSet<PathBuf>) -> Result<(), String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("read_dir {}: {e}", dir.display()))?;
    for entry in entries.flatten() {
        let path = entry.path();
        if wanted.contains(&path) {
            if path.is_dir() {
                remove_stale(&path, wanted)?;
            }
        } else if path.is_dir() {
            std::fs::remove_dir_all(&path).map_err(|e| format!("rm {}: {e}", path.display()))?;
        } else {
            std::fs::remove_file(&path).map_err(|e| format!("rm {}: {e}", path.display()))?;
        }
    }
    Ok(())
}

/// Run the catalogue. `Ok(true)` when every entry was caught.
pub fn run(root: &Path, options: &MutantOptions) -> Result<bool, String> {
    let started = Instant::now();
    let entries: Vec<Entry> = catalogue(root)?
        .into_iter()
        .filter(|e| options.only.is_empty() || options.only.contains(&e.chapter))
        .collect();
    if entries.is_empty() {
        println!(
            "mutants: no entries in tests/mutants/chNN*.mut for {:?}",
            options.only
        );
        println!("mutants: 0 passed, 0 failed");
        return Ok(options.only.is_empty());
    }
    // Every entry must apply to the tree as it is.
    let mut verdicts: Vec<Option<Verdict>> = vec![None; entries.len()];
    for (i, e) in entries.iter().enumerate() {
        if let Err(why) = mutated_text(root, e) {
            verdicts[i] = Some(Verdict::NoApply(why));
        }
    }
    if options.list {
        for (i, e) in entries.iter().enumerate() {
            let state = match &verdicts[i] {
                Some(Verdict::NoApply(why)) => format!("DOES NOT APPLY: {why}"),
                _ => "applies".to_string(),
            };
            println!(
                "{}  {:<22} {:<55} {}  ({})",
                e.chapter, e.assignment, e.mistake, state, e.origin
            );
        }
        for (ch, linked) in chapter_links(root)? {
            let others: Vec<&str> = linked
                .iter()
                .filter(|c| **c != ch)
                .map(String::as_str)
                .collect();
            if !others.is_empty() {
                println!(
                    "links: {ch} names {} (never mutated in the same round)",
                    others.join(" ")
                );
            }
        }
        let bad = verdicts.iter().filter(|v| v.is_some()).count();
        println!("mutants: {} entries, {bad} do not apply", entries.len());
        return Ok(bad == 0);
    }

    let tree = root.join("target/mutants/tree");
    let target_dir = root.join("target/mutants/target");
    let written = sync_tree(root, &tree)?;
    let links = chapter_links(&tree)?;
    let chapters: BTreeSet<String> = entries.iter().map(|e| e.chapter.clone()).collect();
    eprintln!(
        "mutants: {} entries in {} chapter(s); copy of the tree in {} ({written} files updated)",
        entries.len(),
        chapters.len(),
        tree.display()
    );

    // The reference, graded in the copy: the score each mutant must lower,
    // and the tests that pass there (only those can catch a mutant).
    let grade_options = |only: Vec<String>, concurrent: bool| Options {
        target_dir: Some(target_dir.clone()),
        progress: false,
        concurrent,
        only,
        threads: MUTANT_THREADS,
        // No debug info in the copy's own build directory: linking each
        // test binary and server binary after every mutant is most of a
        // round's build time.
        env: vec![("CARGO_PROFILE_DEV_DEBUG".into(), "0".into())],
    };
    let all: Vec<String> = chapters.iter().cloned().collect();
    let reference_options = |only: Vec<String>| Options {
        threads: run::DEFAULT_THREADS,
        ..grade_options(only, false)
    };
    let mut reference = run::grade(&tree, &reference_options(all.clone()))?;
    if reference
        .outcomes
        .iter()
        .any(|o| o.output.starts_with("the tests did not build"))
    {
        // A run stopped in the middle of a build can leave a broken
        // artifact behind that cargo takes as fresh: rebuild this package.
        eprintln!("mutants: the copy did not build; cleaning its sockbook artifacts and retrying");
        let mut clean =
            std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        clean
            .current_dir(&tree)
            .args(["clean", "--quiet", "-p", "sockbook"])
            .env("CARGO_TARGET_DIR", &target_dir)
            .env("CARGO_PROFILE_DEV_DEBUG", "0");
        let _ = clean.status();
        reference = run::grade(&tree, &reference_options(all))?;
    }
    let mut before: BTreeMap<String, (u32, u32)> = BTreeMap::new();
    for ch in &chapters {
        let (mut score, mut max) = chapter_score(&reference, ch);
        if score != max {
            // Once more, on its own, with the grader's usual thread count: a
            // loaded machine can make a reference test miss its deadline.
            eprintln!("mutants: the reference gets {score} / {max} in {ch}: grading it again");
            let mut again = grade_options(vec![ch.clone()], false);
            again.threads = run::DEFAULT_THREADS;
            let retry = run::grade(&tree, &again)?;
            (score, max) = chapter_score(&retry, ch);
            if score != max || max == 0 {
                println!(
                    "MUTANTS: the reference gets {score} / {max} in {ch}: its entries cannot be judged ({})",
                    retry
                        .outcomes
                        .iter()
                        .filter(|o| !o.passed)
                        .map(|o| format!("{}: {}", o.full_name(), o.first_line()))
                        .collect::<Vec<_>>()
                        .join("; ")
                );
                for (i, e) in entries.iter().enumerate() {
                    if e.chapter == *ch && verdicts[i].is_none() {
                        verdicts[i] = Some(Verdict::NoReference);
                    }
                }
            }
        }
        before.insert(ch.clone(), (score, max));
    }
    eprintln!(
        "mutants: reference graded in {:.0} s (build {:.0} s)",
        reference.seconds, reference.build_seconds
    );

    // Rounds: at most one entry per chapter, no two linked chapters.
    let mut queue: Vec<usize> = (0..entries.len())
        .filter(|&i| verdicts[i].is_none())
        .collect();
    let mut round = 0;
    print_header();
    for (i, e) in entries.iter().enumerate() {
        if let Some(v) = &verdicts[i] {
            print_row(e, before[&e.chapter], v);
        }
    }
    while !queue.is_empty() {
        // Chapters with the most entries left go first, so that the run
        // takes about as many rounds as the longest chain of linked
        // chapters has entries.
        let left = |ch: &str| queue.iter().filter(|&&k| entries[k].chapter == ch).count();
        let mut order = queue.clone();
        order.sort_by_key(|&i| std::cmp::Reverse(left(&entries[i].chapter)));
        let mut batch: Vec<usize> = Vec::new();
        for &i in &order {
            let ch = &entries[i].chapter;
            let clash = batch.iter().any(|&j| {
                let other = &entries[j].chapter;
                other == ch || entries[j].file == entries[i].file || linked(&links, ch, other)
            });
            if !clash && (batch.is_empty() || !options.one_at_a_time) {
                batch.push(i);
            }
        }
        queue.retain(|i| !batch.contains(i));
        round += 1;
        let round_started = Instant::now();
        let (results, build_seconds) = run_batch(&tree, &entries, &batch, &before, &grade_options)?;
        eprintln!(
            "mutants: round {round}: {} of {} ({}) in {:.0} s, build {:.0} s ({:.0} s so far)",
            batch.len(),
            queue.len() + batch.len(),
            batch
                .iter()
                .map(|&i| entries[i].chapter.as_str())
                .collect::<Vec<_>>()
                .join(" "),
            round_started.elapsed().as_secs_f64(),
            build_seconds,
            started.elapsed().as_secs_f64()
        );
        for (i, v) in batch.iter().zip(results) {
            print_row(&entries[*i], before[&entries[*i].chapter], &v);
            verdicts[*i] = Some(v);
        }
    }

    let failed: Vec<(usize, &Verdict)> = verdicts
        .iter()
        .enumerate()
        .filter_map(|(i, v)| v.as_ref().map(|v| (i, v)))
        .filter(|(_, v)| !matches!(v, Verdict::Caught { .. }))
        .collect();
    for (i, v) in &failed {
        let e = &entries[*i];
        let why = match v {
            Verdict::Survived => "still gets full marks: no graded test catches it".to_string(),
            Verdict::NoBuild(err) => format!("does not build: {err}"),
            Verdict::NoApply(why) => format!("no longer applies: {why}"),
            Verdict::NoReference => "not judged: the reference lacks full marks".to_string(),
            Verdict::Caught { .. } => unreachable!(),
        };
        println!(
            "MUTANT FAILED: {} {}: {:?}: {why}",
            e.origin, e.chapter, e.mistake
        );
    }
    println!(
        "mutants: {round} rounds, {:.0} s",
        started.elapsed().as_secs_f64()
    );
    println!(
        "mutants: {} passed, {} failed",
        entries.len() - failed.len(),
        failed.len()
    );
    Ok(failed.is_empty())
}

fn linked(links: &BTreeMap<String, BTreeSet<String>>, a: &str, b: &str) -> bool {
    links.get(a).is_some_and(|s| s.contains(b)) || links.get(b).is_some_and(|s| s.contains(a))
}

/// `ch02_tcp` → `ch02`.
fn chapter_of(target: &str) -> String {
    target.get(..4).unwrap_or(target).to_string()
}

/// (score, max) of one chapter in a grade.
fn chapter_score(grade: &Grade, chapter: &str) -> (u32, u32) {
    grade
        .outcomes
        .iter()
        .filter(|o| chapter_of(&o.test.target) == chapter)
        .fold((0, 0), |(s, m), o| (s + o.score(), m + o.test.points))
}

fn mutated_text(root: &Path, e: &Entry) -> Result<String, String> {
    let path = root.join(&e.file);
    let text = std::fs::read_to_string(&path).map_err(|err| format!("read {}: {err}", e.file))?;
    apply(&text, e)
}

/// Apply the batch's entries, grade their chapters at once, put the files
/// back. When the batch does not build, each entry is tried alone to find
/// which one breaks the build.
fn run_batch(
    tree: &Path,
    entries: &[Entry],
    batch: &[usize],
    before: &BTreeMap<String, (u32, u32)>,
    grade_options: &dyn Fn(Vec<String>, bool) -> Options,
) -> Result<(Vec<Verdict>, f64), String> {
    let mut originals: Vec<(PathBuf, String)> = Vec::new();
    let mut applied: Vec<Result<(), String>> = Vec::new();
    for &i in batch {
        let e = &entries[i];
        let path = tree.join(&e.file);
        let original =
            std::fs::read_to_string(&path).map_err(|err| format!("read {}: {err}", e.file))?;
        match apply(&original, e) {
            Ok(text) => {
                std::fs::write(&path, text).map_err(|err| format!("write {}: {err}", e.file))?;
                originals.push((path, original));
                applied.push(Ok(()));
            }
            Err(why) => applied.push(Err(why)),
        }
    }
    let only: Vec<String> = batch.iter().map(|&i| entries[i].chapter.clone()).collect();
    let options = grade_options(only, batch.len() > 1);
    let mut graded = run::grade(tree, &options);
    if let Ok(grade) = &graded
        && grade.outcomes.iter().any(|o| {
            o.output
                .starts_with("the tests did not build: error: linking with")
        })
        && let Some(dir) = &options.target_dir
    {
        // rustc's incremental cache (opt-level 1) now and then yields
        // objects that do not link ("undefined hidden symbol"): a link
        // error is the build's fault, not the mutant's. Once more without it.
        let _ = std::fs::remove_dir_all(dir.join("debug/incremental"));
        graded = run::grade(tree, &options);
    }
    for (path, original) in originals {
        std::fs::write(&path, original).map_err(|e| format!("restore {}: {e}", path.display()))?;
    }
    let grade = graded?;
    let build_failed = grade
        .outcomes
        .iter()
        .find(|o| o.output.starts_with("the tests did not build"))
        .map(|o| o.output.clone());
    if let Some(err) = build_failed {
        if batch.len() == 1 {
            return Ok((vec![Verdict::NoBuild(err)], grade.build_seconds));
        }
        let mut verdicts = Vec::new();
        let mut build_seconds = grade.build_seconds;
        for &i in batch {
            let (v, s) = run_batch(tree, entries, &[i], before, grade_options)?;
            verdicts.extend(v);
            build_seconds += s;
        }
        return Ok((verdicts, build_seconds));
    }
    let verdicts = batch
        .iter()
        .zip(applied)
        .map(|(&i, applied)| {
            let e = &entries[i];
            if let Err(why) = applied {
                return Verdict::NoApply(why);
            }
            let (after, _) = chapter_score(&grade, &e.chapter);
            let (was, _) = before[&e.chapter];
            if after >= was {
                return Verdict::Survived;
            }
            let by = grade
                .outcomes
                .iter()
                .filter(|o| chapter_of(&o.test.target) == e.chapter && !o.passed)
                .map(|o| format!("{} (-{})", o.test.name, o.test.points))
                .collect();
            Verdict::Caught { after, by }
        })
        .collect();
    Ok((verdicts, grade.build_seconds))
}

fn print_header() {
    println!(
        "{:<5} {:<22} {:<58} {:>9}  caught by",
        "chap", "assignment", "mistake", "points"
    );
}

fn print_row(e: &Entry, (before, _max): (u32, u32), v: &Verdict) {
    let (after, by) = match v {
        Verdict::Caught { after, by } => (after.to_string(), by.join(", ")),
        Verdict::Survived => (before.to_string(), "NOTHING: still full marks".to_string()),
        Verdict::NoBuild(err) => ("-".to_string(), format!("DOES NOT BUILD: {err}")),
        Verdict::NoApply(why) => ("-".to_string(), format!("DOES NOT APPLY: {why}")),
        Verdict::NoReference => (
            "-".to_string(),
            "NOT JUDGED: the reference lacks full marks".to_string(),
        ),
    };
    println!(
        "{:<5} {:<22} {:<58} {:>3} → {:<3}  {by}",
        e.chapter, e.assignment, e.mistake, before, after
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    const SOURCE: &str = "fn add(a: u32) -> u32 {\n    let b = 1;\n    // BEGIN SOLUTION\n    a + b\n    // END SOLUTION\n}\nfn other() {\n    a + b\n}\n";

    fn entry(find: &str, replace: &str, assignment: &str) -> Entry {
        Entry {
            chapter: "ch09".into(),
            mistake: "m".into(),
            file: "f.rs".into(),
            assignment: assignment.into(),
            blocks: vec![(find.into(), replace.into())],
            origin: "t".into(),
        }
    }

    #[test]
    fn parses_the_readme_format() -> Result<(), String> {
        let text = "# comment\n=== htons forgotten\nfile: src/a.rs\nassignment: f\n--- find\n    x\n--- replace\n    y\n    z\n--- end\n\n=== two\nfile: b.rs\nassignment: g\n--- find\nq\n--- replace\n--- end\n";
        let e = parse(text, "ch01", "ch01.mut")?;
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].mistake, "htons forgotten");
        assert_eq!(
            e[0].blocks,
            vec![("    x".to_string(), "    y\n    z".to_string())]
        );
        assert_eq!(e[1].blocks, vec![("q".to_string(), String::new())]);
        assert_eq!(e[1].origin, "ch01.mut:12");
        Ok(())
    }

    #[test]
    fn applies_only_once_inside_the_named_region() {
        // Twice in the file: refused.
        assert!(apply(SOURCE, &entry("    a + b", "    a", "add")).is_err());
        // Outside a region: refused.
        assert!(apply(SOURCE, &entry("    let b = 1;", "    let b = 2;", "add")).is_err());
        // Wrong function named: refused.
        let e = entry("    // BEGIN SOLUTION\n    a + b", "    a", "other");
        assert!(apply(SOURCE, &e).is_err());
        // Partial lines do not match.
        assert!(apply(SOURCE, &entry("a + b", "a", "add")).is_err());
    }

    #[test]
    fn applies_whole_lines() -> Result<(), String> {
        let src = "fn add() {\n    // BEGIN SOLUTION\n    one\n    two\n    // END SOLUTION\n}\n";
        let out = apply(src, &entry("    two", "    three", "add"))?;
        assert_eq!(out, src.replace("two", "three"));
        let out = apply(src, &entry("    one", "", "add"))?;
        assert_eq!(out, src.replace("    one\n", ""));
        Ok(())
    }

    #[test]
    fn names_linked_chapters() {
        let t = "use crate::ch05_handshake::x;\n// ch03_sockopts in a comment\nlet a = sockbook::ch01_sockets::f();\nxch02_no\nsay(\"run ch07_threads\");";
        let names: Vec<String> = chapters_named(t).into_iter().collect();
        assert_eq!(names, vec!["ch01", "ch05"]);
    }
}
