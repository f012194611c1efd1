//! The mdBook site's structure, checked without mdBook (`make book` builds
//! it): every chapter is in `chapters/SUMMARY.md`, every page it names
//! exists, every `{{#include path:anchor}}` names a file that exists and an
//! anchor that file has, and no relative link in the book's pages is dead.
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
