//! The path resolver: a request target becomes a file under the root, or a
//! refusal. The one piece of a static server that guards the whole disk.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Why a target was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// 400: not an origin-form path (`/…`), a bad `%` escape, a NUL, an
    /// encoded `/`, or a `..` segment (after decoding). Refused before the
    /// file system is touched.
    BadTarget,
    /// 403: the name exists but its real path (symlinks followed) is outside
    /// the root, or it is not a regular file.
    Forbidden,
    /// 404: no such file.
    NotFound,
}

impl Refusal {
    /// The status code.
    pub fn status(self) -> u16 {
        match self {
            Refusal::BadTarget => 400,
            Refusal::Forbidden => 403,
            Refusal::NotFound => 404,
        }
    }
}

/// Decode `%XX` escapes of one path segment; `None` on a malformed escape.
pub fn percent_decode(segment: &str) -> Option<Vec<u8>> {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let text = std::str::from_utf8(hex).ok()?;
            if !text.bytes().all(|b| b.is_ascii_hexdigit()) {
                return None;
            }
            out.push(u8::from_str_radix(text, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Some(out)
}

// ANCHOR: ch12_resolve
/// Map request `target` to a regular file under `root`, which must already
/// be canonical (`std::fs::canonicalize`, see
/// [`realpath(3)`](https://man7.org/linux/man-pages/man3/realpath.3.html)).
/// A directory means its `index.html`.
///
/// **Assignment.** Cut the query (`?…`) and fragment (`#…`); the rest must
/// start with `/` (else [`Refusal::BadTarget`]). Split on `/` *first*, then
/// percent-decode each segment: a segment that decodes to `..`, or contains
/// a `/` or a NUL once decoded, or has a bad escape, is `BadTarget` (check
/// after decoding: `%2e%2e` is `..`). Skip empty and `.` segments; push the
/// others onto the root. Then find its real path ([`canonical`] follows
/// every symlink; [`real_path`] does the same with fewer system calls and
/// gives the metadata too): not found is `NotFound`; a real path not under
/// the root is `Forbidden`;
/// a directory becomes its `index.html` (checked the same way); anything
/// else that is not a regular file is `Forbidden`.
pub fn resolve(root: &Path, target: &str) -> Result<PathBuf, Refusal> {
    // BEGIN SOLUTION
    let path = target.split(['?', '#']).next().unwrap_or("");
    let Some(path) = path.strip_prefix('/') else {
        return Err(Refusal::BadTarget);
    };
    let mut joined = root.to_path_buf();
    for segment in path.split('/') {
        let decoded = percent_decode(segment).ok_or(Refusal::BadTarget)?;
        if decoded == b".." || decoded.contains(&b'/') || decoded.contains(&0) {
            return Err(Refusal::BadTarget);
        }
        if decoded.is_empty() || decoded == b"." {
            continue;
        }
        joined.push(OsStr::from_bytes(&decoded));
    }
    let (mut real, mut meta) = real_path(root, joined)?;
    if !real.starts_with(root) {
        return Err(Refusal::Forbidden);
    }
    if meta.is_dir() {
        (real, meta) = real_path(root, real.join("index.html"))?;
        if !real.starts_with(root) {
            return Err(Refusal::Forbidden);
        }
    }
    if !meta.is_file() {
        return Err(Refusal::Forbidden);
    }
    Ok(real)
    // END SOLUTION
}
// ANCHOR_END: ch12_resolve

/// Why a file-system call on a request's path failed, as a refusal.
fn refusal(e: std::io::Error) -> Refusal {
    match e.kind() {
        std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory => Refusal::NotFound,
        _ => Refusal::Forbidden,
    }
}

/// The real path of `path` (symlinks followed), or why there is none:
/// [`realpath(3)`](https://man7.org/linux/man-pages/man3/realpath.3.html),
/// which costs a `readlink` for every component of the whole path.
pub fn canonical(path: &Path) -> Result<PathBuf, Refusal> {
    std::fs::canonicalize(path).map_err(refusal)
}

/// The real path of `path` and its metadata (symlinks followed), where
/// `path` is the canonical `root` joined with plain names (no `.`, `..` or
/// empty segment), as [`resolve`] builds it.
///
/// Cheaper than [`canonical`] for the usual case: `lstat` each component
/// below the root ([`lstat(2)`](https://man7.org/linux/man-pages/man2/lstat.2.html),
/// which does not follow a symlink). If none is a symlink, `path` is
/// already its own real path and the last `lstat` describes the file: one
/// `statx` for a file at the top of the root, where `canonicalize` and a
/// `stat` cost a `readlink` per component of the whole path and more. At
/// the first symlink it falls back to [`canonical`].
pub fn real_path(root: &Path, path: PathBuf) -> Result<(PathBuf, std::fs::Metadata), Refusal> {
    let mut at = root.to_path_buf();
    let mut last = None;
    if let Ok(below) = path.strip_prefix(root) {
        for name in below.iter() {
            at.push(name);
            let meta = std::fs::symlink_metadata(&at).map_err(refusal)?;
            if meta.is_symlink() {
                last = None;
                break;
            }
            last = Some(meta);
        }
    }
    match last {
        Some(meta) if at == path => Ok((path, meta)),
        _ => {
            let real = canonical(&path)?;
            let meta = std::fs::metadata(&real).map_err(refusal)?;
            Ok((real, meta))
        }
    }
}
