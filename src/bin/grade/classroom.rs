//! `make classroom CHAPTERS="ch02 ch04"`: `.github/workflows/classroom.yml`
//! for GitHub Classroom, in the format Classroom itself generates: one
//! `classroom-resources/autograding-command-grader` step per chapter worth
//! the chapter's points, then `autograding-grading-reporter` with every
//! step's result; the `permissions` block and the guard that keeps the
//! workflow from running on Classroom's own commits.
//!
//! A command-grader step is all or nothing: it gives its points when its
//! command exits 0. The command is `grade --chapter chNN --strict`, which
//! exits 0 only when every graded test of the chapter passed and none was
//! skipped, so a runner that cannot run a test cannot give its points away.
//! GitHub's Ubuntu 24.04 runners restrict unprivileged user namespaces
//! (AppArmor); the workflow's first steps lift that, pin the toolchain and
//! build the tests, so the graded steps' timeouts cover running only.

use std::fmt::Write as _;
use std::path::Path;

use crate::source;

/// One step per chapter: `(chapter, test target, points)`.
pub fn chapters(root: &Path, only: &[String]) -> Result<Vec<(String, String, u32)>, String> {
    let mut steps = Vec::new();
    for file in source::graded_files(root)? {
        let target = file
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_string();
        if !only.is_empty() && !only.iter().any(|c| target.starts_with(c.as_str())) {
            continue;
        }
        let points: u32 = source::declared_in(&file)?.iter().map(|t| t.points).sum();
        if points > 0 {
            let chapter = target.split('_').next().unwrap_or(&target).to_string();
            steps.push((chapter, target, points));
        }
    }
    Ok(steps)
}

/// The workflow's text.
pub fn workflow(steps: &[(String, String, u32)], toolchain: &str) -> String {
    let mut y = String::new();
    y.push_str(
        "# Written by `make classroom`: GitHub Classroom autograding for this workbook.\n\
         name: Autograding Tests\n\
         'on':\n\
         - push\n\
         - repository_dispatch\n\
         permissions:\n  checks: write\n  actions: read\n  contents: read\n\
         jobs:\n  run-autograding-tests:\n    runs-on: ubuntu-latest\n\
         \x20   if: github.actor != 'github-classroom[bot]'\n    steps:\n\
         \x20   - name: Checkout code\n      uses: actions/checkout@v4\n\
         \x20   - name: Allow private network namespaces\n\
         \x20     # Ubuntu 24.04 runners restrict unprivileged user namespaces\n\
         \x20     # (AppArmor); chapters 5, 6, 8 and 11 need one. See kit::netns.\n\
         \x20     run: sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0 || true\n",
    );
    let _ = write!(
        y,
        "    - name: Rust toolchain and build\n      run: |\n        rustup default {toolchain}\n        cargo build --locked --quiet --bin grade\n        cargo test --locked --quiet --no-run{}\n",
        steps
            .iter()
            .map(|(_, target, _)| format!(" --test {target}"))
            .collect::<String>()
    );
    for (chapter, target, points) in steps {
        let _ = write!(
            y,
            "    - name: {chapter}\n      id: {chapter}\n      uses: classroom-resources/autograding-command-grader@v1\n      with:\n        test-name: {target}\n        setup-command: ''\n        command: cargo run --quiet --bin grade -- --chapter {chapter} --strict\n        timeout: 10\n        max-score: {points}\n"
        );
    }
    y.push_str(
        "    - name: Autograding Reporter\n      uses: classroom-resources/autograding-grading-reporter@v1\n      env:\n",
    );
    for (chapter, _, _) in steps {
        let _ = writeln!(
            y,
            "        {}_RESULTS: \"${{{{steps.{chapter}.outputs.result}}}}\"",
            chapter.to_uppercase()
        );
    }
    let runners: Vec<&str> = steps.iter().map(|(c, _, _)| c.as_str()).collect();
    let _ = writeln!(y, "      with:\n        runners: {}", runners.join(","));
    y
}

/// Write the workflow for `only` (every chapter when empty) to `out`.
pub fn write(root: &Path, only: &[String], out: &Path, toolchain: &str) -> Result<u32, String> {
    let steps = chapters(root, only)?;
    if steps.is_empty() {
        return Err(format!("no graded chapters match {only:?}"));
    }
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
    }
    std::fs::write(out, workflow(&steps, toolchain))
        .map_err(|e| format!("write {}: {e}", out.display()))?;
    Ok(steps.iter().map(|s| s.2).sum())
}
