//! `make gradescope CHAPTERS="ch02 ch04"`: the Gradescope autograder,
//! `target/gradescope/autograder.zip`.
//!
//! Gradescope unpacks the zip into `/autograder/source`, runs `setup.sh`
//! once (as root) to build its image, then `run_autograder` for every
//! submission, which must leave `/autograder/results/results.json`. The zip
//! holds:
//!
//! | file | what |
//! |---|---|
//! | `setup.sh` | installs what is missing (the pinned Rust toolchain via rustup, a C linker, iproute2), pre-builds the dependencies, the chapters' tests and the grader |
//! | `run_autograder` | copies only the chapters' assignment files from `/autograder/submission`, grades as an unprivileged user, always writes `results.json` |
//! | `autograder.env` | the chapters, the assignment files, the toolchain |
//! | `workbook/` | the workbook: the assigned chapters' solutions cut to `todo!()` (a missing file scores 0), every other chapter as the reference |
//!
//! Every path is under `AUTOGRADER_ROOT` (default `/autograder`), so a test
//! can stand a temporary directory in for it. The zip is made with the
//! `zip` command (Info-ZIP).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::edition::{self, Kind};

/// The grading user when `run_autograder` runs as root: `nobody` exists on
/// every Ubuntu image, so no account needs creating. `setup.sh` gives it the
/// workbook and the toolchain.
pub const GRADER_USER: &str = "nobody";

/// The workbook files a student edits for `chapters` (every chapter when
/// empty): the files under `src/chNN_*/` holding a solution region, as
/// paths relative to `root`, sorted.
pub fn assignment_files(root: &Path, chapters: &[String]) -> Result<Vec<PathBuf>, String> {
    let mut found = Vec::new();
    let src = root.join("src");
    let dirs = std::fs::read_dir(&src).map_err(|e| format!("read_dir {}: {e}", src.display()))?;
    for dir in dirs.filter_map(|d| d.ok()) {
        let name = dir.file_name().to_string_lossy().into_owned();
        let is_chapter = name.len() > 4
            && name.starts_with("ch")
            && name[2..4].chars().all(|c| c.is_ascii_digit());
        if !is_chapter || !(chapters.is_empty() || chapters.iter().any(|c| name.starts_with(c))) {
            continue;
        }
        collect_solution_files(root, &dir.path(), &mut found)?;
    }
    found.sort();
    Ok(found)
}

fn collect_solution_files(root: &Path, dir: &Path, found: &mut Vec<PathBuf>) -> Result<(), String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("read_dir {}: {e}", dir.display()))?;
    for entry in entries.filter_map(|e| e.ok()) {
        let path = entry.path();
        if path.is_dir() {
            collect_solution_files(root, &path, found)?;
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path)
                .map_err(|e| format!("read {}: {e}", path.display()))?;
            if text.lines().any(|l| l.trim() == edition::BEGIN) {
                found.push(path.strip_prefix(root).unwrap_or(&path).to_path_buf());
            }
        }
    }
    Ok(())
}

/// The toolchain the zip pins: this machine's `rustc`, the one the
/// self-check passed with (override with `RUST_TOOLCHAIN`).
pub fn toolchain() -> Result<String, String> {
    if let Ok(pinned) = std::env::var("RUST_TOOLCHAIN") {
        return Ok(pinned);
    }
    let out = Command::new("rustc")
        .arg("--version")
        .output()
        .map_err(|e| format!("rustc --version: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .nth(1)
        .map(str::to_string)
        .ok_or_else(|| format!("rustc --version said {text:?}"))
}

/// Write the package directory `dir` and zip it to `zip`. Returns the
/// assignment files.
pub fn write(
    root: &Path,
    chapters: &[String],
    dir: &Path,
    zip: &Path,
) -> Result<Vec<PathBuf>, String> {
    let files = assignment_files(root, chapters)?;
    if files.is_empty() {
        return Err(format!("no assignment files for chapters {chapters:?}"));
    }
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(|e| format!("remove {}: {e}", dir.display()))?;
    }
    // The student edition, then the reference back for chapters not assigned.
    let workbook = dir.join("workbook");
    edition::write(root, &workbook, Kind::Student)?;
    let assigned: Vec<&PathBuf> = files.iter().collect();
    for other in assignment_files(root, &[])? {
        if !assigned.contains(&&other) {
            std::fs::copy(root.join(&other), workbook.join(&other))
                .map_err(|e| format!("copy {}: {e}", other.display()))?;
        }
    }
    let chapter_words = if chapters.is_empty() {
        "all".to_string()
    } else {
        chapters.join(" ")
    };
    let listed: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
    let env = format!(
        "# Written by `make gradescope`; read by setup.sh and run_autograder.\n\
         CHAPTERS=\"{}\"\n\
         ASSIGNMENT_FILES=\"{}\"\n\
         RUST_TOOLCHAIN=\"{}\"\n\
         GRADER_USER_DEFAULT=\"{GRADER_USER}\"\n",
        if chapters.is_empty() {
            String::new()
        } else {
            chapters.join(" ")
        },
        listed.join(" "),
        toolchain()?,
    );
    write_file(&dir.join("autograder.env"), &env, false)?;
    write_file(&dir.join("setup.sh"), SETUP, true)?;
    write_file(&dir.join("run_autograder"), RUN, true)?;
    if zip.exists() {
        std::fs::remove_file(zip).map_err(|e| format!("remove {}: {e}", zip.display()))?;
    }
    let zip_abs = std::env::current_dir()
        .map_err(|e| e.to_string())?
        .join(zip);
    let status = Command::new("zip")
        .args(["-q", "-r", "-X"])
        .arg(&zip_abs)
        .args(["setup.sh", "run_autograder", "autograder.env", "workbook"])
        .current_dir(dir)
        .status()
        .map_err(|e| format!("run `zip` (install it: apt-get install zip): {e}"))?;
    if !status.success() {
        return Err(format!("zip failed: {status}"));
    }
    eprintln!(
        "gradescope: chapters {chapter_words}; assignment files: {}",
        listed.join(" ")
    );
    Ok(files)
}

fn write_file(path: &Path, text: &str, executable: bool) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).map_err(|e| format!("write {}: {e}", path.display()))?;
    let mode = if executable { 0o755 } else { 0o644 };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| format!("chmod {}: {e}", path.display()))
}

/// `setup.sh`: run once by Gradescope, as root, in a fresh Ubuntu image.
const SETUP: &str = r#"#!/usr/bin/env bash
# Gradescope runs this once, as root, to build the autograder's image:
# install what is missing, then pre-build the dependencies, the chapters'
# tests and the grader, so that grading a submission compiles only the
# student's files (Gradescope's default machine: 0.5 CPU, 10 minutes).
set -euo pipefail
AG="${AUTOGRADER_ROOT:-/autograder}"
SOURCE="$AG/source"
. "$SOURCE/autograder.env"
GRADER_USER="${SOCKBOOK_GRADER_USER-$GRADER_USER_DEFAULT}"

missing=()
command -v cc >/dev/null || missing+=(gcc libc6-dev)    # rustc links with cc
command -v ip >/dev/null || missing+=(iproute2)         # the namespaced labs
# A toolchain is installed unless the right one is there and the grading
# user can run it (one under /root is not readable by `nobody`).
as_grader=()
if [ "$(id -u)" = 0 ] && [ -n "$GRADER_USER" ]; then as_grader=(runuser -u "$GRADER_USER" -- env PATH="$PATH"); fi
if ! "${as_grader[@]}" cargo --version 2>/dev/null | grep -q " $RUST_TOOLCHAIN "; then
    command -v curl >/dev/null || missing+=(curl ca-certificates)
    need_rust=1
fi
if [ "${#missing[@]}" -gt 0 ]; then
    apt-get update -qq && apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# The Rust toolchain, pinned, where the grading user can read it.
: > "$SOURCE/rust.env"
if [ -n "${need_rust:-}" ]; then
    export RUSTUP_HOME="$AG/rust/rustup" CARGO_HOME="$AG/rust/cargo"
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs |
        sh -s -- -y --no-modify-path --profile minimal --default-toolchain "$RUST_TOOLCHAIN"
    export PATH="$CARGO_HOME/bin:$PATH"
    printf 'export RUSTUP_HOME=%q CARGO_HOME=%q PATH=%q\n' \
        "$RUSTUP_HOME" "$CARGO_HOME" "$CARGO_HOME/bin:$PATH" > "$SOURCE/rust.env"
fi
cargo --version

# Pre-build: the grader and every test the chapters need.
cd "$SOURCE/workbook"
if [ -n "${SOCKBOOK_TARGET_DIR:-}" ]; then export CARGO_TARGET_DIR="$SOCKBOOK_TARGET_DIR"; fi
tests=()
for c in $CHAPTERS; do
    for f in tests/"$c"_*.rs; do tests+=(--test "$(basename "$f" .rs)"); done
done
[ -n "$CHAPTERS" ] || tests=(--tests)
cargo build --locked --quiet --bin grade
cargo test --locked --quiet --no-run "${tests[@]}"
mkdir -p "$SOURCE/bin"
cp "${CARGO_TARGET_DIR:-target}/debug/grade" "$SOURCE/bin/grade"
# The unsolved stubs, for a submission that lacks a file.
for f in $ASSIGNMENT_FILES; do
    mkdir -p "$SOURCE/stubs/$(dirname "$f")" && cp "$f" "$SOURCE/stubs/$f"
done

if [ "$(id -u)" = 0 ] && [ -n "$GRADER_USER" ]; then
    chown -R "$GRADER_USER" "$SOURCE/workbook" "${CARGO_TARGET_DIR:-$SOURCE/workbook/target}"
    [ ! -d "$AG/rust" ] || chown -R "$GRADER_USER" "$AG/rust"
fi
echo "setup: ready to grade chapters: ${CHAPTERS:-all}"
"#;

/// `run_autograder`: run by Gradescope for every submission.
const RUN: &str = r#"#!/usr/bin/env bash
# Gradescope runs this for every submission. It copies the student's
# assignment files (and nothing else: tests, grader and support come from
# this autograder), grades them as an unprivileged user, and always leaves
# results.json, even when the submission does not compile (then every test
# fails with the compiler's first error as its output).
set -uo pipefail
AG="${AUTOGRADER_ROOT:-/autograder}"
SOURCE="$AG/source"
. "$SOURCE/autograder.env"
. "$SOURCE/rust.env"
GRADER_USER="${SOCKBOOK_GRADER_USER-$GRADER_USER_DEFAULT}"
WORKBOOK="$SOURCE/workbook"
RESULTS="$AG/results/results.json"
mkdir -p "$AG/results"
if [ -n "${SOCKBOOK_TARGET_DIR:-}" ]; then export CARGO_TARGET_DIR="$SOCKBOOK_TARGET_DIR"; fi

# The submission is the repository itself, or one folder that holds it.
base="$AG/submission"
if [ ! -d "$base/src" ]; then
    for d in "$base"/*/; do [ -d "$d/src" ] && base="${d%/}" && break; done
fi
notes=()
for f in $ASSIGNMENT_FILES; do
    if [ -f "$base/$f" ]; then
        cp "$base/$f" "$WORKBOOK/$f"
    else
        cp "$SOURCE/stubs/$f" "$WORKBOOK/$f"
        notes+=(--note "$f is not in the submission: graded as the unsolved stub")
    fi
done

chapters=()
for c in $CHAPTERS; do chapters+=(--chapter "$c"); done
as_user=()
if [ "$(id -u)" = 0 ] && [ -n "$GRADER_USER" ]; then
    chown -R "$GRADER_USER" "$WORKBOOK"
    as_user=(runuser -u "$GRADER_USER" --)
fi
out="${CARGO_TARGET_DIR:-$WORKBOOK/target}/grade/results.json"
rm -f "$out"
"${as_user[@]}" env PATH="$PATH" CARGO_NET_OFFLINE=true ${RUSTUP_HOME:+RUSTUP_HOME="$RUSTUP_HOME"} \
    ${CARGO_HOME:+CARGO_HOME="$CARGO_HOME"} ${CARGO_TARGET_DIR:+CARGO_TARGET_DIR="$CARGO_TARGET_DIR"} \
    "$SOURCE/bin/grade" --root "$WORKBOOK" --out "$out" "${chapters[@]}" "${notes[@]}" \
    > "$AG/results/grader.log" 2>&1
cat "$AG/results/grader.log"
if [ -s "$out" ]; then
    cp "$out" "$RESULTS"
else
    # The grader itself failed: still give the student a result and a reason.
    reason=$(tail -n 5 "$AG/results/grader.log" | sed 's/\\/\\\\/g; s/"/\\"/g' | tr '\n\t' '  ')
    printf '{"score": 0, "output": "The grader could not run: %s", "tests": []}\n' "$reason" > "$RESULTS"
fi
"#;
