//! The mdBook site's structure, checked without mdBook (`make book` builds
//! it): every chapter is in `chapters/SUMMARY.md`, every page it names
//! exists, every `{{#include path:anchor}}` names a file that exists and an
//! anchor that file has, no relative link in the book's pages is dead, and
//! every assignment table says the points of the graded tests it names.
//!
//! Plain test (not graded): `cargo test --test book`.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn chapters() -> PathBuf {
    root().join("chapters")
}

/// `[text](target)` links of a markdown text, outside code blocks.
fn links(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut in_code = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
            continue;
        }
        if in_code {
            continue;
        }
        // Drop inline code spans, where `](` is not a link.
        let mut plain = String::new();
        for (i, part) in line.split('`').enumerate() {
            if i % 2 == 0 {
                plain.push_str(part);
            }
        }
        let mut rest = plain.as_str();
        while let Some(at) = rest.find("](") {
            let after = &rest[at + 2..];
            let Some(end) = after.find(')') else { break };
            out.push(after[..end].trim().to_string());
            rest = &after[end..];
        }
    }
    out
}

/// The markdown pages of the book: the chapters, their README and the
/// book-only pages under `chapters/code/`.
fn pages() -> Vec<PathBuf> {
    let mut out = Vec::new();
    for dir in [chapters(), chapters().join("code")] {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "md") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn every_chapter_and_code_page_is_in_the_summary() {
    let summary_path = chapters().join("SUMMARY.md");
    let summary = std::fs::read_to_string(&summary_path)
        .unwrap_or_else(|e| panic!("read {}: {e}", summary_path.display()));
    let listed = links(&summary);
    let mut missing = Vec::new();
    for page in pages() {
        let rel = page
            .strip_prefix(chapters())
            .unwrap()
            .to_string_lossy()
            .into_owned();
        if rel == "SUMMARY.md" {
            continue;
        }
        if !listed.contains(&rel) {
            missing.push(rel);
        }
    }
    assert!(
        missing.is_empty(),
        "pages not in chapters/SUMMARY.md (add a `- [Title](page.md)` line, in chapter order): {missing:?}"
    );
    // And every page the summary names exists, in chapter order.
    let numbered: Vec<&String> = listed
        .iter()
        .filter(|l| l.chars().next().is_some_and(|c| c.is_ascii_digit()))
        .collect();
    let mut sorted = numbered.clone();
    sorted.sort();
    assert_eq!(
        numbered, sorted,
        "chapters/SUMMARY.md lists the chapters out of order"
    );
    for l in &listed {
        assert!(
            chapters().join(l).is_file(),
            "chapters/SUMMARY.md names {l}, which does not exist"
        );
    }
}

#[test]
fn every_include_names_an_existing_file_and_anchor() {
    let mut problems = Vec::new();
    for page in pages() {
        let text = std::fs::read_to_string(&page).unwrap();
        let mut rest = text.as_str();
        while let Some(at) = rest.find("{{#include ") {
            let after = &rest[at + "{{#include ".len()..];
            let end = after.find("}}").unwrap_or(after.len());
            let spec = after[..end].trim();
            rest = &after[end..];
            let (path, anchor) = match spec.split_once(':') {
                Some((p, a)) => (p, Some(a)),
                None => (spec, None),
            };
            let file = page.parent().unwrap().join(path);
            let Ok(source) = std::fs::read_to_string(&file) else {
                problems.push(format!(
                    "{}: {{{{#include {spec}}}}}: no file {}",
                    page.display(),
                    file.display()
                ));
                continue;
            };
            // A line range (`file:10:20`) has no anchor to check.
            let Some(anchor) = anchor.filter(|a| !a.starts_with(|c: char| c.is_ascii_digit()))
            else {
                continue;
            };
            let has = |marker: &str| {
                source
                    .lines()
                    .any(|l| l.trim() == format!("// {marker}: {anchor}"))
            };
            if !has("ANCHOR") || !has("ANCHOR_END") {
                problems.push(format!(
                    "{}: {{{{#include {spec}}}}}: {} lacks `// ANCHOR: {anchor}` or `// ANCHOR_END: {anchor}`",
                    page.display(),
                    path
                ));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "includes that mdBook cannot resolve:\n  {}",
        problems.join("\n  ")
    );
}

#[test]
fn chapters_themselves_have_no_include_directives() {
    // They are rustdoc pages too (include_str!): a directive would show raw.
    for page in pages() {
        if page.parent() != Some(chapters().as_path()) {
            continue;
        }
        let text = std::fs::read_to_string(&page).unwrap();
        assert!(
            !text.contains("{{#"),
            "{} has an mdBook directive; put quoted code in chapters/code/ instead (rustdoc shows it raw)",
            page.display()
        );
    }
}

/// `accept::accept_all`, `Conn`, `crate::kit`: a rustdoc intra-doc link
/// (the chapters are module docs too), not a file. mdBook shows it as a
/// link to nowhere; rustdoc resolves it.
fn is_rust_path(target: &str) -> bool {
    !target.contains(['.', '/', '#'])
        && target
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

#[test]
fn no_dead_relative_link() {
    let mut dead = Vec::new();
    for page in pages() {
        let text = std::fs::read_to_string(&page).unwrap();
        for link in links(&text) {
            let target = link.split_whitespace().next().unwrap_or("");
            if target.is_empty()
                || target.starts_with('#')
                || target.contains("://")
                || target.starts_with("mailto:")
                || is_rust_path(target)
            {
                continue;
            }
            let path = target.split('#').next().unwrap_or(target);
            let resolved: &Path = &page.parent().unwrap().join(path);
            if !resolved.exists() {
                dead.push(format!("{}: ({target})", page.display()));
            }
        }
    }
    assert!(
        dead.is_empty(),
        "relative links to files that do not exist:\n  {}",
        dead.join("\n  ")
    );
}

/// `points = N;` (then an optional `secs = S;`) before `fn NAME(` in the
/// graded test files of chapter `nn`: each test's points, by name.
fn graded_points(nn: &str) -> std::collections::HashMap<String, u32> {
    let mut out = std::collections::HashMap::new();
    for entry in std::fs::read_dir(root().join("tests")).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !(name.starts_with(&format!("ch{nn}_")) && name.ends_with(".rs")) {
            continue;
        }
        let text = std::fs::read_to_string(entry.path()).unwrap();
        let mut points = None;
        for line in text.lines().map(str::trim) {
            if let Some(n) = line.strip_prefix("points = ") {
                points = n.trim_end_matches(';').parse::<u32>().ok();
            } else if let (Some(p), Some(rest)) = (points, line.strip_prefix("fn ")) {
                let test = rest.split('(').next().unwrap_or("").to_string();
                out.insert(test, p);
                points = None;
            }
        }
    }
    out
}

/// Does `name` match `pattern`, where `*` stands for any run of characters?
fn glob_matches(pattern: &str, name: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == name;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !name.starts_with(first) || !name.ends_with(last) || name.len() < first.len() + last.len() {
        return false;
    }
    let mut rest = &name[first.len()..name.len() - last.len()];
    for part in &parts[1..parts.len() - 1] {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    true
}

/// The graded tests a backticked name in a table stands for: a test name,
/// a `prefix_*` glob, or `stem_{a,b}` alternatives.
fn tests_named(token: &str, points: &std::collections::HashMap<String, u32>) -> Vec<String> {
    if let (Some(open), Some(close)) = (token.find('{'), token.find('}')) {
        let (head, tail) = (&token[..open], &token[close + 1..]);
        return token[open + 1..close]
            .split(',')
            .flat_map(|alt| tests_named(&format!("{head}{alt}{tail}"), points))
            .collect();
    }
    let mut found: Vec<String> = points
        .keys()
        .filter(|t| glob_matches(token, t))
        .cloned()
        .collect();
    found.sort();
    found
}

/// The number a `points` cell says: its integers summed, `N × M` as a product.
fn cell_points(cell: &str) -> u32 {
    // Numbers, and `None` for each `×` sign.
    let mut tokens: Vec<Option<u32>> = Vec::new();
    let mut number = String::new();
    for c in cell.chars().chain([' ']) {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        if !number.is_empty() {
            tokens.push(number.parse().ok());
            number.clear();
        }
        if c == '×' {
            tokens.push(None);
        }
    }
    let mut total = 0;
    let mut i = 0;
    while i < tokens.len() {
        match (tokens[i], tokens.get(i + 1), tokens.get(i + 2)) {
            (Some(a), Some(None), Some(Some(b))) => {
                total += a * b;
                i += 3;
            }
            (Some(a), _, _) => {
                total += a;
                i += 1;
            }
            (None, _, _) => i += 1,
        }
    }
    total
}

/// Every assignment table in a chapter (a table with a `points` column)
/// that names graded tests in backticks says the points those tests are
/// worth: when a test's points change, the prose must change with them.
#[test]
fn assignment_tables_give_the_tests_points() {
    let mut wrong = Vec::new();
    let mut checked = 0;
    for page in pages() {
        let file = page.file_name().unwrap().to_string_lossy().into_owned();
        let Some(nn) = file
            .get(..2)
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        let points = graded_points(nn);
        let text = std::fs::read_to_string(&page).unwrap();
        let mut column = None;
        for (n, line) in text.lines().enumerate() {
            if !line.starts_with('|') {
                column = None;
                continue;
            }
            let cells: Vec<&str> = line
                .trim()
                .trim_matches('|')
                .split('|')
                .map(str::trim)
                .collect();
            if let Some(at) = cells.iter().position(|c| *c == "points") {
                column = Some(at);
                continue;
            }
            let Some(col) = column else { continue };
            if line.chars().all(|c| "|-: ".contains(c)) || cells.len() <= col {
                continue;
            }
            let mut tests = std::collections::BTreeSet::new();
            for (_, cell) in cells.iter().enumerate().filter(|(i, _)| *i != col) {
                for (k, token) in cell.split('`').enumerate() {
                    if k % 2 == 1 {
                        tests.extend(tests_named(token, &points));
                    }
                }
            }
            if tests.is_empty() {
                continue;
            }
            checked += 1;
            let says = cell_points(cells[col]);
            let worth: u32 = tests.iter().map(|t| points[t]).sum();
            if says != worth {
                wrong.push(format!(
                    "chapters/{file}:{}: the table says {:?} points, but the tests it names ({}) are worth {worth}",
                    n + 1,
                    cells[col],
                    tests.iter().cloned().collect::<Vec<_>>().join(", ")
                ));
            }
        }
    }
    assert!(
        checked >= 70,
        "only {checked} table rows named graded tests: is the table format still understood?"
    );
    assert!(
        wrong.is_empty(),
        "assignment tables out of date:\n{}",
        wrong.join("\n")
    );
}
