//! The path resolver: a request target becomes a file under the root, or a
//! refusal. The one piece of a static server that guards the whole disk.

use std::ffi::OsStr;
use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::AtFlags;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat, openat2};
use nix::sys::stat::{Mode, fstatat};

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

/// What an `lstat` or `stat` said about a name: its type, from the
/// `S_IFMT` bits of `st_mode`
/// ([`inode(7)`](https://man7.org/linux/man-pages/man7/inode.7.html)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    mode: u32,
}

impl Meta {
    /// From an `st_mode`.
    pub fn from_mode(mode: u32) -> Meta {
        Meta { mode }
    }
    fn kind(self) -> u32 {
        self.mode & libc::S_IFMT
    }
    /// A directory?
    pub fn is_dir(self) -> bool {
        self.kind() == libc::S_IFDIR
    }
    /// A regular file?
    pub fn is_file(self) -> bool {
        self.kind() == libc::S_IFREG
    }
    /// A symbolic link (only `lstat` can say so)?
    pub fn is_symlink(self) -> bool {
        self.kind() == libc::S_IFLNK
    }
}

/// How long the process keeps its `O_PATH` fd for a root before opening
/// the root again (so a directory moved into the root's place is seen
/// within a second).
const ROOT_FD_FRESH: Duration = Duration::from_secs(1);

/// The open root: its path, an `O_PATH` fd for it, and when it was opened.
struct RootDir {
    path: PathBuf,
    fd: Arc<OwnedFd>,
    opened: Instant,
}

/// One open root for the whole process (every loop thread shares it).
static ROOT_DIR: Mutex<Option<RootDir>> = Mutex::new(None);

/// An `O_PATH | O_DIRECTORY` fd for `root`
/// ([`open(2)`](https://man7.org/linux/man-pages/man2/open.2.html)),
/// opened once a second, not once per request: a name looked up *relative
/// to it* (`fstatat`, `openat`) costs the kernel one component, where the
/// absolute path costs one per directory from `/`. The server calls this
/// before it says it is ready, so the fd is part of its resting count.
pub fn hold_root(root: &Path) -> std::io::Result<Arc<OwnedFd>> {
    let mut cached = ROOT_DIR
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(dir) = &*cached
        && dir.path.as_os_str() == root.as_os_str()
        && dir.opened.elapsed() < ROOT_FD_FRESH
    {
        return Ok(Arc::clone(&dir.fd));
    }
    let fd = Arc::new(nix::fcntl::open(
        root,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?);
    *cached = Some(RootDir {
        path: root.to_path_buf(),
        fd: Arc::clone(&fd),
        opened: Instant::now(),
    });
    Ok(fd)
}

/// Run `f` with the fd of [`hold_root`].
fn with_root<T>(root: &Path, f: impl FnOnce(BorrowedFd<'_>) -> T) -> std::io::Result<T> {
    let fd = hold_root(root)?;
    Ok(f(fd.as_fd()))
}

/// `path` below `root` as a relative path, when `path` is `root` joined
/// with plain names (a byte prefix and a `/`), else `None`.
fn below<'a>(root: &Path, path: &'a Path) -> Option<&'a Path> {
    let rest = path
        .as_os_str()
        .as_bytes()
        .strip_prefix(root.as_os_str().as_bytes())?;
    let rest = rest.strip_prefix(b"/")?;
    (!rest.is_empty()).then(|| Path::new(OsStr::from_bytes(rest)))
}

/// `errno` as the refusal it means.
fn refusal_errno(e: Errno) -> Refusal {
    refusal(std::io::Error::from(e))
}

/// The real path of `path` and what it is (symlinks followed), where
/// `path` is the canonical `root` joined with plain names (no `.`, `..` or
/// empty segment), as [`resolve`] builds it.
///
/// Cheaper than [`canonical`] for the usual case: `lstat` each component
/// below the root, relative to an fd for the root
/// ([`fstatat(2)`](https://man7.org/linux/man-pages/man2/fstatat.2.html)
/// with `AT_SYMLINK_NOFOLLOW`, which does not follow a symlink). If none is
/// a symlink, `path` is already its own real path and the last `lstat`
/// describes the file: one `statx` of one name for a file at the top of the
/// root, where `canonicalize` and a `stat` cost a `readlink` per component
/// of the whole path and more. At the first symlink it falls back to
/// [`canonical`].
pub fn real_path(root: &Path, path: PathBuf) -> Result<(PathBuf, Meta), Refusal> {
    let Some(rel) = below(root, &path) else {
        return real_path_slowly(path);
    };
    let found = with_root(root, |dir| {
        let bytes = rel.as_os_str().as_bytes();
        // Each directory on the way, then the name itself: a symlink
        // anywhere sends us the slow way.
        let lstat = |name: &[u8]| {
            fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW)
                .map(|st| Meta::from_mode(st.st_mode))
                .map_err(refusal_errno)
        };
        for (end, _) in bytes.iter().enumerate().filter(|(_, b)| **b == b'/') {
            if lstat(&bytes[..end])?.is_symlink() {
                return Ok(None);
            }
        }
        let meta = lstat(bytes)?;
        Ok((!meta.is_symlink()).then_some(meta))
    })
    .map_err(refusal)?;
    match found? {
        Some(meta) => Ok((path, meta)),
        None => real_path_slowly(path),
    }
}

/// At a symlink: `realpath(3)`, then `stat` of the result.
fn real_path_slowly(path: PathBuf) -> Result<(PathBuf, Meta), Refusal> {
    let real = canonical(&path)?;
    let meta = std::fs::metadata(&real).map_err(refusal)?;
    Ok((real, Meta::from_mode(meta.mode())))
}

/// Open `path`, a real path under `root` that [`resolve`] returned, for
/// reading, relative to the root's fd, refusing any symlink on the way:
/// [`openat2(2)`](https://man7.org/linux/man-pages/man2/openat2.2.html)
/// with `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`. A real path has no
/// symlinks, so one met here was swapped in after `resolve` looked (an
/// attacker racing the server): the kernel refuses it (`ELOOP`) in the same
/// walk that opens the file, where a plain `open` would follow it out of the
/// root. Where `openat2` is missing (Linux before 5.6: `ENOSYS`) or a
/// seccomp filter refuses it (`EPERM`), `openat` with `O_NOFOLLOW` guards
/// the last name only. A path not under `root` is opened as it is.
pub fn open_under(root: &Path, path: &Path) -> std::io::Result<File> {
    let flags = OFlag::O_RDONLY | OFlag::O_CLOEXEC;
    let Some(rel) = below(root, path) else {
        return Ok(File::from(nix::fcntl::open(path, flags, Mode::empty())?));
    };
    let fd = with_root(root, |dir| {
        let how = OpenHow::new()
            .flags(flags)
            .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS);
        match openat2(dir, rel, how) {
            Err(Errno::ENOSYS | Errno::EPERM) => {
                openat(dir, rel, flags | OFlag::O_NOFOLLOW, Mode::empty())
            }
            other => other,
        }
    })??;
    Ok(File::from(fd))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh, canonical directory under the system's temp dir.
    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("sockbook-resolve-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::canonicalize(&dir).unwrap()
    }

    fn read_all(mut file: File) -> String {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut file, &mut text).unwrap();
        text
    }

    #[test]
    fn open_under_refuses_a_symlink_swapped_in_after_resolve() {
        let base = scratch("swap");
        let (root, outside) = (base.join("root"), base.join("outside"));
        std::fs::create_dir_all(root.join("docs")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(root.join("docs/a.txt"), "inside").unwrap();
        std::fs::write(outside.join("a.txt"), "secret").unwrap();
        let resolved = resolve(&root, "/docs/a.txt").expect("a plain file under the root");
        assert_eq!(read_all(open_under(&root, &resolved).unwrap()), "inside");
        // The race: after resolve looked, docs becomes a symlink out.
        std::fs::remove_dir_all(root.join("docs")).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("docs")).unwrap();
        assert_eq!(
            std::fs::read_to_string(&resolved).unwrap(),
            "secret",
            "a plain open of the resolved path now follows the symlink out"
        );
        let probe = hold_root(&root)
            .map(|dir| openat2(dir.as_fd(), ".", OpenHow::new().flags(OFlag::O_PATH)));
        if let Ok(Err(Errno::ENOSYS | Errno::EPERM)) = probe {
            eprintln!("skipped: openat2 is not available here (only the last name is guarded)");
        } else {
            match open_under(&root, &resolved) {
                Ok(file) => panic!(
                    "open_under followed a symlink swapped in after resolve and read {:?}",
                    read_all(file)
                ),
                Err(e) => assert_eq!(e.raw_os_error(), Some(libc::ELOOP), "{e}"),
            }
        }
        let _ = std::fs::remove_dir_all(&base);
    }
}
