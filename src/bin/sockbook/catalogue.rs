//! The assignments, as `chapters/hints/chNN.md` lists them:
//!
//! ```text
//! ## write_all_counting
//! file: src/ch02_tcp/stream.rs
//! tests: counts_every_write_call, survives_short_writes
//!
//! 1. The first hint: a nudge.
//!
//! 2. A more specific one.
//!
//! 3. The most specific: which call, which case, never the solution.
//! ```

use std::collections::HashMap;
use std::path::Path;

use super::runner::Verdicts;

/// One assignment: a function in a chapter module.
#[derive(Debug, Clone)]
pub struct Assignment {
    /// `ch02`.
    pub chapter: String,
    /// The function's name.
    pub name: String,
    /// Its file, relative to the root.
    pub file: String,
    /// The graded tests that check it.
    pub tests: Vec<String>,
    /// Up to three hints, each more specific.
    pub hints: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Done,
    Failing,
    NotStarted,
}

impl Status {
    pub fn word(self) -> &'static str {
        match self {
            Status::Done => "done",
            Status::Failing => "failing",
            Status::NotStarted => "not started",
        }
    }
}

/// `2`, `02`, `ch2`, `ch02` → `ch02`.
pub fn chapter_id(word: &str) -> String {
    let digits: String = word.chars().filter(char::is_ascii_digit).collect();
    format!("ch{:0>2}", digits)
}

/// Every assignment, in chapter order and, within a chapter, in the order of
/// its hints file.
pub fn load(root: &Path) -> Result<Vec<Assignment>, String> {
    let dir = root.join("chapters/hints");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .map_err(|e| format!("read {}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("ch") && n.ends_with(".md"))
        })
        .collect();
    files.sort();
    let mut all = Vec::new();
    for f in files {
        let chapter = f
            .file_stem()
            .and_then(|s| s.to_str())
            .map(chapter_id)
            .unwrap_or_default();
        let text = std::fs::read_to_string(&f).map_err(|e| format!("read {}: {e}", f.display()))?;
        all.extend(parse(&chapter, &text).map_err(|e| format!("{}: {e}", f.display()))?);
    }
    Ok(all)
}

/// Parse one hints file.
pub fn parse(chapter: &str, text: &str) -> Result<Vec<Assignment>, String> {
    let mut out: Vec<Assignment> = Vec::new();
    let mut current_hint: Option<String> = None;
    let flush = |out: &mut Vec<Assignment>, hint: &mut Option<String>| {
        if let (Some(a), Some(h)) = (out.last_mut(), hint.take()) {
            a.hints.push(h.trim().to_string());
        }
    };
    for (i, line) in text.lines().enumerate() {
        if let Some(name) = line.strip_prefix("## ") {
            flush(&mut out, &mut current_hint);
            out.push(Assignment {
                chapter: chapter.to_string(),
                name: name.trim().to_string(),
                file: String::new(),
                tests: Vec::new(),
                hints: Vec::new(),
            });
            continue;
        }
        let Some(a) = out.last_mut() else { continue };
        if let Some(f) = line.strip_prefix("file: ") {
            a.file = f.trim().to_string();
        } else if let Some(t) = line.strip_prefix("tests: ") {
            a.tests = t
                .split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect();
        } else if let Some(rest) = numbered(line) {
            flush(&mut out, &mut current_hint);
            current_hint = Some(rest.to_string());
        } else if let Some(h) = current_hint.as_mut() {
            h.push('\n');
            h.push_str(line);
        } else if !line.trim().is_empty() {
            return Err(format!(
                "line {}: expected file:, tests: or a numbered hint",
                i + 1
            ));
        }
    }
    flush(&mut out, &mut current_hint);
    for a in &out {
        if a.file.is_empty() || a.tests.is_empty() || a.hints.is_empty() || a.hints.len() > 3 {
            return Err(format!(
                "assignment {} needs a file:, a tests: line and one to three hints",
                a.name
            ));
        }
    }
    Ok(out)
}

/// `1. text` → `text`.
fn numbered(line: &str) -> Option<&str> {
    let (n, rest) = line.split_once(". ")?;
    (!n.is_empty() && n.len() <= 2 && n.chars().all(|c| c.is_ascii_digit())).then_some(rest)
}

impl Assignment {
    fn source(&self, root: &Path) -> String {
        std::fs::read_to_string(root.join(&self.file)).unwrap_or_default()
    }

    /// The 1-based line of `fn NAME`.
    pub fn line(&self, root: &Path) -> Option<usize> {
        let want = format!("fn {}", self.name);
        // `fn serve(` or `fn serve<`, not `fn serve_echo(`.
        let names_it = |l: &str| {
            l.find(&want).is_some_and(|at| {
                (at == 0 || l[..at].ends_with(' ')) && l[at + want.len()..].starts_with(['(', '<'])
            })
        };
        self.source(root)
            .lines()
            .position(|l| !l.trim_start().starts_with("//") && names_it(l))
            .map(|i| i + 1)
    }

    /// Is its body still the student edition's `todo!("chNN: NAME")`?
    pub fn is_todo(&self, root: &Path) -> bool {
        self.source(root)
            .contains(&format!("todo!(\"{}: {}\")", self.chapter, self.name))
    }

    /// Its doc comment: the task.
    pub fn task(&self, root: &Path) -> Vec<String> {
        let src = self.source(root);
        let lines: Vec<&str> = src.lines().collect();
        let Some(at) = self.line(root) else {
            return vec![format!("(fn {} not found in {})", self.name, self.file)];
        };
        let mut doc = Vec::new();
        let mut i = at - 1;
        while i > 0 {
            i -= 1;
            let l = lines[i].trim_start();
            if let Some(d) = l.strip_prefix("///") {
                doc.push(d.strip_prefix(' ').unwrap_or(d).to_string());
            } else if l.starts_with("#[") {
                continue;
            } else {
                break;
            }
        }
        doc.reverse();
        doc
    }

    pub fn status_from(&self, v: &Verdicts) -> Status {
        if v.build_error.is_none() && self.tests.iter().all(|t| v.passed.get(t) == Some(&true)) {
            Status::Done
        } else {
            Status::Failing
        }
    }
}

/// Points of every graded test, by name, from the `points = N;` lines.
pub fn points(root: &Path) -> Result<HashMap<String, u32>, String> {
    let mut map = HashMap::new();
    let dir = root.join("tests");
    for e in std::fs::read_dir(&dir).map_err(|e| format!("read {}: {e}", dir.display()))? {
        let path = e.map_err(|e| e.to_string())?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if !(name.starts_with("ch") && name.ends_with(".rs")) {
            continue;
        }
        let text = std::fs::read_to_string(&path).map_err(|e| e.to_string())?;
        let mut pending = None;
        for line in text.lines().map(str::trim) {
            if let Some(rest) = line.strip_prefix("points = ") {
                pending = rest.split(';').next().and_then(|p| p.trim().parse().ok());
            } else if let Some(rest) = line.strip_prefix("fn ")
                && let Some(p) = pending.take()
            {
                let n: String = rest
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                map.insert(n, p);
            }
        }
    }
    Ok(map)
}

/// Show one more hint for `a` next time: returns how many to show now.
/// Kept in `target/sockbook/hints` (one `chNN name level` line each).
pub fn bump_hint_level(root: &Path, a: &Assignment) -> Result<usize, String> {
    let file = root.join("target/sockbook/hints");
    let text = std::fs::read_to_string(&file).unwrap_or_default();
    let key = format!("{} {}", a.chapter, a.name);
    let mut levels: Vec<(String, usize)> = text
        .lines()
        .filter_map(|l| {
            let (k, n) = l.rsplit_once(' ')?;
            Some((k.to_string(), n.parse().ok()?))
        })
        .collect();
    let level = match levels.iter_mut().find(|(k, _)| *k == key) {
        Some((_, n)) => {
            *n = (*n + 1).min(a.hints.len());
            *n
        }
        None => {
            levels.push((key, 1));
            1
        }
    };
    let out: String = levels.iter().map(|(k, n)| format!("{k} {n}\n")).collect();
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    }
    std::fs::write(&file, out).map_err(|e| format!("write {}: {e}", file.display()))?;
    Ok(level)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_an_entry_with_three_hints() {
        let text = "# Hints\n\n## add\nfile: src/x.rs\ntests: a, b\n\n1. one\n   more\n\n2. two\n\n3. three\n";
        let v = parse("ch09", text).unwrap();
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].tests, ["a", "b"]);
        assert_eq!(v[0].hints, ["one\n   more", "two", "three"]);
    }

    #[test]
    fn an_entry_without_tests_is_an_error() {
        assert!(parse("ch09", "## add\nfile: x\n1. h\n").is_err());
    }

    #[test]
    fn chapter_ids() {
        assert_eq!(chapter_id("2"), "ch02");
        assert_eq!(chapter_id("ch10"), "ch10");
    }
}
