//! Reading the graded tests out of `tests/chNN_topic.rs`: each `graded!`
//! block declares `points = N;` (and perhaps `secs = N;`) just before its
//! `fn name()`.

use std::path::{Path, PathBuf};

/// One graded test as declared in the source.
#[derive(Debug, Clone)]
pub struct Declared {
    /// The test target (`ch02_tcp`), which is also the chapter.
    pub target: String,
    /// The test function's name.
    pub name: String,
    /// Points it is worth.
    pub points: u32,
    /// Its own deadline in seconds, when it sets one.
    pub secs: Option<u32>,
}

/// The graded test files: `tests/chNN_*.rs`, in chapter order.
pub fn graded_files(root: &Path) -> Result<Vec<PathBuf>, String> {
    let dir = root.join("tests");
    let entries =
        std::fs::read_dir(&dir).map_err(|e| format!("read_dir({}): {e}", dir.display()))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| is_graded_file_name(p))
        .collect();
    files.sort();
    Ok(files)
}

fn is_graded_file_name(path: &Path) -> bool {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    let b = name.as_bytes();
    name.ends_with(".rs")
        && b.len() > 5
        && b.starts_with(b"ch")
        && b[2].is_ascii_digit()
        && b[3].is_ascii_digit()
        && b[4] == b'_'
}

/// Every graded test declared in `file`.
pub fn declared_in(file: &Path) -> Result<Vec<Declared>, String> {
    let text =
        std::fs::read_to_string(file).map_err(|e| format!("read {}: {e}", file.display()))?;
    let target = file
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default()
        .to_string();
    let mut found = Vec::new();
    let mut pending: Option<(u32, Option<u32>)> = None;
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("points = ") {
            // `points = 3;` or `points = 3; secs = 10;`
            let mut parts = rest.split(';').map(str::trim);
            let points = parts
                .next()
                .and_then(|p| p.parse::<u32>().ok())
                .ok_or_else(|| format!("{}:{}: bad points line", file.display(), i + 1))?;
            let secs = parts
                .find_map(|p| p.strip_prefix("secs = "))
                .and_then(|s| s.parse::<u32>().ok());
            pending = Some((points, secs));
        } else if let Some(rest) = line.strip_prefix("secs = ") {
            if let Some((_, secs)) = pending.as_mut() {
                *secs = rest.trim_end_matches(';').parse().ok();
            }
        } else if let Some(rest) = line.strip_prefix("fn ")
            && let Some((points, secs)) = pending.take()
        {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            found.push(Declared {
                target: target.clone(),
                name,
                points,
                secs,
            });
        }
    }
    Ok(found)
}
