//! The student and hang editions: a complete copy of the workbook in which
//! every solution region, the lines from `// BEGIN SOLUTION` to
//! `// END SOLUTION`, is replaced by one line:
//!
//! - student: `todo!("chNN: function_name")`, so the assignment is visible
//!   and every graded test of it fails at once;
//! - hang: an endless sleep, so every graded test of it must fail by its
//!   deadline: the proof that no graded test can hang the grade run.

use std::path::Path;

/// The marker lines, matched after trimming white space.
pub const BEGIN: &str = "// BEGIN SOLUTION";
pub const END: &str = "// END SOLUTION";

/// Lint allowances put at the top of the student edition's `src/lib.rs`:
/// a stub leaves parameters and imports unused, which is not the student's
/// fault.
const STUB_ALLOWANCES: &str = "#![allow(unused_variables, unused_imports, unused_mut, dead_code, unreachable_code, clippy::diverging_sub_expression)]\n";

/// Which edition to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Student,
    Hang,
    /// For the self-check: one build that is the student edition, or the
    /// hang edition when `SOCKBOOK_STUB=hang` is in the environment of the
    /// tests (and so of the programs they start). The stub is the student
    /// edition's `todo!()` behind a check of that variable.
    Switch,
}

/// The environment variable that turns a [`Kind::Switch`] edition's stubs
/// into endless sleeps.
pub const SWITCH_VAR: &str = "SOCKBOOK_STUB";

impl Kind {
    pub fn parse(word: &str) -> Result<Kind, String> {
        match word {
            "student" => Ok(Kind::Student),
            "hang" => Ok(Kind::Hang),
            other => Err(format!("unknown edition {other:?} (student or hang)")),
        }
    }
}

/// Copy the tree at `root` to `out` (replacing `out`), cutting solutions.
/// Returns how many regions were replaced.
pub fn write(root: &Path, out: &Path, kind: Kind) -> Result<usize, String> {
    let root = root
        .canonicalize()
        .map_err(|e| format!("{}: {e}", root.display()))?;
    if out.exists() {
        std::fs::remove_dir_all(out).map_err(|e| format!("remove {}: {e}", out.display()))?;
    }
    let mut regions = 0;
    copy_dir(&root, &root, out, kind, &mut regions)?;
    // The copy must be its own package, even when it sits inside the
    // reference checkout (target/student): give it its own workspace root.
    let manifest = out.join("Cargo.toml");
    let text = read(&manifest)?;
    if !text.lines().any(|l| l.trim() == "[workspace]") {
        write_file(&manifest, &format!("{text}\n[workspace]\n"))?;
    }
    let lib = out.join("src/lib.rs");
    if lib.exists() {
        write_file(&lib, &format!("{STUB_ALLOWANCES}{}", read(&lib)?))?;
    }
    Ok(regions)
}

fn copy_dir(
    root: &Path,
    dir: &Path,
    out: &Path,
    kind: Kind,
    regions: &mut usize,
) -> Result<(), String> {
    std::fs::create_dir_all(out).map_err(|e| format!("mkdir {}: {e}", out.display()))?;
    let entries = std::fs::read_dir(dir).map_err(|e| format!("read_dir {}: {e}", dir.display()))?;
    for entry in entries {
        let entry = entry.map_err(|e| e.to_string())?;
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        // Build output and version control are not part of an edition.
        if dir == root && (name == "target" || name == ".git") {
            continue;
        }
        let file_type = entry.file_type().map_err(|e| e.to_string())?;
        let dest = out.join(&*name);
        if file_type.is_dir() {
            copy_dir(root, &path, &dest, kind, regions)?;
        } else if file_type.is_file() {
            if name.ends_with(".rs") {
                let rel = path.strip_prefix(root).unwrap_or(&path);
                let (text, n) = cut_solutions(&read(&path)?, &chapter_of(rel), kind)
                    .map_err(|e| format!("{}: {e}", rel.display()))?;
                *regions += n;
                write_file(&dest, &text)?;
            } else {
                std::fs::copy(&path, &dest).map_err(|e| format!("copy {}: {e}", path.display()))?;
            }
        }
    }
    Ok(())
}

/// `src/ch02_tcp/echo.rs` → `ch02`; anything else → its file stem.
fn chapter_of(rel: &Path) -> String {
    for part in rel.iter() {
        let part = part.to_string_lossy();
        if part.len() >= 4
            && part.starts_with("ch")
            && part[2..4].chars().all(|c| c.is_ascii_digit())
        {
            return part[..4].to_string();
        }
    }
    rel.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Replace every solution region in `text`. Returns the new text and the
/// number of regions.
pub fn cut_solutions(text: &str, chapter: &str, kind: Kind) -> Result<(String, usize), String> {
    let mut out = String::with_capacity(text.len());
    let mut lines = text.lines().enumerate();
    let mut last_fn = String::from("?");
    let mut regions = 0;
    while let Some((i, line)) = lines.next() {
        let trimmed = line.trim();
        if let Some(name) = fn_name(trimmed) {
            last_fn = name;
        }
        if trimmed == END {
            return Err(format!("line {}: {END} without {BEGIN}", i + 1));
        }
        if trimmed != BEGIN {
            out.push_str(line);
            out.push('\n');
            continue;
        }
        let indent = &line[..line.len() - line.trim_start().len()];
        // Skip to the END marker.
        let mut closed = false;
        for (_, inner) in lines.by_ref() {
            match inner.trim() {
                t if t == END => {
                    closed = true;
                    break;
                }
                t if t == BEGIN => return Err(format!("line {}: nested {BEGIN}", i + 1)),
                _ => {}
            }
        }
        if !closed {
            return Err(format!("line {}: {BEGIN} without {END}", i + 1));
        }
        regions += 1;
        let hang = "loop { std::thread::sleep(std::time::Duration::from_secs(3600)); }";
        let stub = match kind {
            Kind::Student => format!("todo!(\"{chapter}: {last_fn}\")"),
            Kind::Hang => hang.to_string(),
            Kind::Switch => format!(
                "{{ if std::env::var_os(\"{SWITCH_VAR}\").is_some_and(|v| v == \"hang\") {{ {hang} }} todo!(\"{chapter}: {last_fn}\") }}"
            ),
        };
        out.push_str(indent);
        out.push_str(&stub);
        out.push('\n');
    }
    Ok((out, regions))
}

/// The name in a line that declares a function (`pub fn name(`, `fn name<`).
fn fn_name(line: &str) -> Option<String> {
    let at = line.find("fn ")?;
    if at > 0 && !line[..at].ends_with(' ') {
        return None;
    }
    if line.starts_with("//") {
        return None;
    }
    let name: String = line[at + 3..]
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    (!name.is_empty()).then_some(name)
}

/// The binaries the graded tests run: every `CARGO_BIN_EXE_name` in
/// `tests/chNN_*.rs` and `tests/support/`.
pub fn graded_bins(root: &Path) -> Result<std::collections::BTreeSet<String>, String> {
    let mut files = crate::source::graded_files(root)?;
    if let Ok(entries) = std::fs::read_dir(root.join("tests/support")) {
        files.extend(entries.flatten().map(|e| e.path()));
    }
    let mut bins = std::collections::BTreeSet::new();
    for file in files
        .iter()
        .filter(|f| f.extension().is_some_and(|e| e == "rs"))
    {
        // Code lines only: a doc comment may name a binary as an example.
        let text: String = read(file)?
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n");
        for (at, _) in text.match_indices("CARGO_BIN_EXE_") {
            let name: String = text[at + "CARGO_BIN_EXE_".len()..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                bins.insert(name);
            }
        }
    }
    Ok(bins)
}

/// For a copy of the tree that only runs graded tests: `None` drops the
/// file at `rel` (a binary no graded test runs: building it would only cost
/// time), otherwise its bytes, with `Cargo.toml` made a workspace of its own
/// and without `default-run` (which may name a dropped binary).
pub fn for_graded_copy(
    rel: &Path,
    bytes: Vec<u8>,
    keep_bins: &std::collections::BTreeSet<String>,
) -> Option<Vec<u8>> {
    let mut parts = rel.iter().map(|p| p.to_string_lossy());
    if let (Some(first), Some(second), Some(bin)) = (parts.next(), parts.next(), parts.next())
        && first == "src"
        && second == "bin"
    {
        let name = bin.strip_suffix(".rs").unwrap_or(&bin);
        if !keep_bins.contains(name) {
            return None;
        }
    }
    if rel == Path::new("Cargo.toml") {
        let text = String::from_utf8_lossy(&bytes);
        let mut out: String = text
            .lines()
            .filter(|l| !l.trim_start().starts_with("default-run"))
            .map(|l| format!("{l}\n"))
            .collect();
        if !text.lines().any(|l| l.trim() == "[workspace]") {
            out.push_str("\n[workspace]\n");
        }
        return Some(out.into_bytes());
    }
    Some(bytes)
}

/// Make the edition at `dir` one for graded runs only ([`for_graded_copy`]).
pub fn prune_for_grading(
    dir: &Path,
    keep_bins: &std::collections::BTreeSet<String>,
) -> Result<(), String> {
    let bin_dir = dir.join("src/bin");
    if let Ok(entries) = std::fs::read_dir(&bin_dir) {
        for entry in entries.flatten() {
            let rel = Path::new("src/bin").join(entry.file_name());
            if for_graded_copy(&rel, Vec::new(), keep_bins).is_none() {
                let path = entry.path();
                if path.is_dir() {
                    std::fs::remove_dir_all(&path)
                } else {
                    std::fs::remove_file(&path)
                }
                .map_err(|e| format!("rm {}: {e}", path.display()))?;
            }
        }
    }
    let manifest = dir.join("Cargo.toml");
    let bytes =
        std::fs::read(&manifest).map_err(|e| format!("read {}: {e}", manifest.display()))?;
    if let Some(text) = for_graded_copy(Path::new("Cargo.toml"), bytes, keep_bins) {
        std::fs::write(&manifest, text)
            .map_err(|e| format!("write {}: {e}", manifest.display()))?;
    }
    Ok(())
}

fn read(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("read {}: {e}", path.display()))
}

fn write_file(path: &Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("write {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "pub fn add(a: u32, b: u32) -> u32 {\n    // BEGIN SOLUTION\n    a + b\n    // END SOLUTION\n}\n";

    #[test]
    fn student_stub_names_chapter_and_function() -> Result<(), String> {
        let (text, n) = cut_solutions(SAMPLE, "ch09", Kind::Student)?;
        assert_eq!(n, 1);
        assert_eq!(
            text,
            "pub fn add(a: u32, b: u32) -> u32 {\n    todo!(\"ch09: add\")\n}\n"
        );
        Ok(())
    }

    #[test]
    fn hang_stub_sleeps() -> Result<(), String> {
        let (text, _) = cut_solutions(SAMPLE, "ch09", Kind::Hang)?;
        assert!(text.contains("loop { std::thread::sleep"));
        assert!(!text.contains("a + b"));
        Ok(())
    }

    #[test]
    fn switch_stub_is_both() -> Result<(), String> {
        let (text, _) = cut_solutions(SAMPLE, "ch09", Kind::Switch)?;
        assert!(text.contains("SOCKBOOK_STUB"));
        assert!(text.contains("loop { std::thread::sleep"));
        assert!(text.contains("todo!(\"ch09: add\")"));
        assert!(!text.contains("a + b"));
        Ok(())
    }

    #[test]
    fn unbalanced_markers_are_errors() {
        assert!(cut_solutions("// BEGIN SOLUTION\nx\n", "c", Kind::Student).is_err());
        assert!(cut_solutions("x\n// END SOLUTION\n", "c", Kind::Student).is_err());
    }

    #[test]
    fn graded_copy_drops_unused_bins_and_default_run() {
        let keep: std::collections::BTreeSet<String> = ["ch04_select".to_string()].into();
        let drop = |p: &str| for_graded_copy(Path::new(p), b"x".to_vec(), &keep).is_none();
        assert!(drop("src/bin/ch01_sockets.rs"));
        assert!(drop("src/bin/grade/main.rs"));
        assert!(!drop("src/bin/ch04_select.rs"));
        assert!(!drop("src/ch01_sockets/mod.rs"));
        let manifest = b"[package]\ndefault-run = \"ch01_sockets\"\n".to_vec();
        let out = for_graded_copy(Path::new("Cargo.toml"), manifest, &keep).unwrap_or_default();
        let out = String::from_utf8_lossy(&out);
        assert!(!out.contains("default-run"));
        assert!(out.contains("[workspace]"));
    }

    #[test]
    fn chapter_from_path() {
        assert_eq!(chapter_of(Path::new("src/ch02_tcp/echo.rs")), "ch02");
        assert_eq!(chapter_of(Path::new("src/kit/io.rs")), "io");
    }
}
