//! The instructor's set-ups and fair grading: the GitHub Classroom workflow,
//! the Gradescope zip end to end (`make gradescope-check`: slow, so
//! `#[ignore]`d here and run by .ci/run), and skipped tests, for real, in
//! an environment that refuses user namespaces.

#[macro_use]
mod support;

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const GRADE: &str = env!("CARGO_BIN_EXE_grade");
const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// A scratch directory of this test's own under `target/`, emptied.
fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(ROOT).join("target/classroom-tests").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
    dir
}

/// Run `command`, fail with its output unless it exits 0.
fn run_ok(command: &mut Command, what: &str) -> Output {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot start {command:?}: {e}"));
    assert!(
        out.status.success(),
        "{what}: {command:?} exited {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The points of each graded chapter, read straight from the test sources
/// (every `points = N;` line), independently of the grader's parser.
fn points_per_chapter() -> Vec<(String, u32)> {
    let mut chapters = Vec::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(Path::new(ROOT).join("tests"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy().into_owned();
            n.len() > 5 && n.starts_with("ch") && n[2..4].bytes().all(|b| b.is_ascii_digit())
        })
        .collect();
    files.sort();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let points: u32 = text
            .lines()
            .filter_map(|l| l.trim().strip_prefix("points = "))
            .map(|rest| {
                rest.split(';')
                    .next()
                    .unwrap()
                    .trim()
                    .parse::<u32>()
                    .unwrap()
            })
            .sum();
        let stem = file.file_stem().unwrap().to_string_lossy().into_owned();
        chapters.push((stem[..4].to_string(), points));
    }
    chapters
}

/// The value after `key:` on a line of `step` (a block of YAML lines).
fn field<'a>(step: &'a [&'a str], key: &str) -> Option<&'a str> {
    step.iter()
        .find_map(|l| l.trim().strip_prefix(&format!("{key}:")))
        .map(str::trim)
}

#[test]
fn classroom_workflow_steps_carry_the_graded_points() {
    let dir = scratch("workflow");
    let file = dir.join("classroom.yml");
    let expected: Vec<(String, u32)> = points_per_chapter();
    let some: Vec<&(String, u32)> = expected
        .iter()
        .filter(|(c, _)| c == "ch02" || c == "ch04")
        .collect();
    for (chapters, want) in [
        (vec![], expected.iter().collect::<Vec<_>>()),
        (vec!["ch02", "ch04"], some),
    ] {
        let mut cmd = Command::new(GRADE);
        cmd.arg("classroom").arg("--out").arg(&file);
        for c in &chapters {
            cmd.args(["--chapter", c]);
        }
        run_ok(&mut cmd, "grade classroom");
        let yaml = std::fs::read_to_string(&file).unwrap();
        // What Classroom generates around the steps.
        for must in [
            "permissions:\n  checks: write\n  actions: read\n  contents: read\n",
            "    if: github.actor != 'github-classroom[bot]'\n",
            "'on':\n- push\n- repository_dispatch\n",
            "uses: actions/checkout@v4",
            "kernel.apparmor_restrict_unprivileged_userns=0",
        ] {
            assert!(
                yaml.contains(must),
                "{} lacks {must:?}:\n{yaml}",
                file.display()
            );
        }
        assert!(
            !yaml.contains('\t'),
            "tabs are not YAML indentation:\n{yaml}"
        );
        // Split into steps: each starts with `    - name:`.
        let lines: Vec<&str> = yaml.lines().collect();
        let starts: Vec<usize> = (0..lines.len())
            .filter(|&i| lines[i].starts_with("    - name:"))
            .collect();
        let steps: Vec<&[&str]> = starts
            .iter()
            .enumerate()
            .map(|(k, &s)| &lines[s..*starts.get(k + 1).unwrap_or(&lines.len())])
            .collect();
        let graders: Vec<&&[&str]> = steps
            .iter()
            .filter(|s| {
                field(s, "uses") == Some("classroom-resources/autograding-command-grader@v1")
            })
            .collect();
        let got: Vec<(String, u32)> = graders
            .iter()
            .map(|s| {
                let id = field(s, "id").expect("a grader step has an id").to_string();
                let points = field(s, "max-score")
                    .and_then(|p| p.parse().ok())
                    .expect("max-score");
                let command = field(s, "command").expect("command");
                assert!(
                    command.contains(&format!("--chapter {id} --strict")),
                    "step {id} grades another chapter: {command}"
                );
                (id, points)
            })
            .collect();
        let want: Vec<(String, u32)> = want.iter().map(|(c, p)| (c.clone(), *p)).collect();
        assert_eq!(
            got, want,
            "grader steps (chapter, max-score) vs points = N; in tests/ for {chapters:?}"
        );
        // The reporter comes last and reads every grader step.
        let reporter = steps.last().expect("steps");
        assert_eq!(
            field(reporter, "uses"),
            Some("classroom-resources/autograding-grading-reporter@v1"),
            "last step"
        );
        let ids: Vec<&str> = got.iter().map(|(c, _)| c.as_str()).collect();
        assert_eq!(
            field(reporter, "runners"),
            Some(ids.join(",").as_str()),
            "reporter runners"
        );
        for id in &ids {
            let env = format!(
                "{}_RESULTS: \"${{{{steps.{id}.outputs.result}}}}\"",
                id.to_uppercase()
            );
            assert!(
                reporter.iter().any(|l| l.trim() == env),
                "reporter lacks {env}"
            );
        }
    }
}

/// A private user + network namespace can be made here, tried without the
/// kit: util-linux's `unshare -Urn`, and iproute2's `ip`.
fn namespace_works_independently() -> bool {
    let unshare = Command::new("unshare").args(["-Urn", "true"]).output();
    let ip = Command::new("ip").arg("-V").output();
    matches!(unshare, Ok(o) if o.status.success()) && matches!(ip, Ok(o) if o.status.success())
}

#[test]
fn nothing_is_skipped_where_it_could_run() {
    // Every skip in the workbook goes through kit::netns::refusal (or
    // kit::lab::refusal): it must agree with an independent attempt.
    let works = namespace_works_independently();
    let refusal = sockbook::kit::lab::refusal();
    if works {
        assert_eq!(
            refusal, None,
            "`unshare -Urn true` works here, yet the kit would skip"
        );
    } else {
        assert!(
            refusal.is_some(),
            "`unshare -Urn true` or `ip` fails here, yet the kit would not skip"
        );
    }
}

/// Start `command` in a new user namespace in which
/// `user.max_user_namespaces` is 0 (the sysctl is per user namespace, and
/// we are its root): inside, every `unshare(CLONE_NEWUSER)` fails with
/// ENOSPC, as on a machine that turned user namespaces off.
fn where_user_namespaces_are_refused(command: &mut Command) -> &mut Command {
    // SAFETY: getuid/getgid cannot fail.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    let uid_map = format!("0 {uid} 1");
    let gid_map = format!("0 {gid} 1");
    let write = |path: &std::ffi::CStr, text: &str| -> std::io::Result<()> {
        // SAFETY: open/write/close on a NUL-terminated path and a live buffer.
        unsafe {
            let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
            if fd == -1 {
                return Err(std::io::Error::last_os_error());
            }
            let n = libc::write(fd, text.as_ptr().cast(), text.len());
            libc::close(fd);
            if n != text.len() as isize {
                return Err(std::io::Error::last_os_error());
            }
        }
        Ok(())
    };
    // SAFETY: between fork and exec only async-signal-safe calls (unshare,
    // open, write, close) on strings prepared before the fork.
    unsafe {
        command.pre_exec(move || {
            if libc::unshare(libc::CLONE_NEWUSER) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            write(c"/proc/self/setgroups", "deny")?;
            write(c"/proc/self/uid_map", &uid_map)?;
            write(c"/proc/self/gid_map", &gid_map)?;
            write(c"/proc/sys/user/max_user_namespaces", "0")
        })
    }
}

#[test]
fn a_lab_test_in_a_private_namespace() {
    // Runs for real here (in a child inside a namespace); the test below
    // runs it again where namespaces are refused.
    support::in_private_netns(|| {
        let lab = sockbook::kit::lab::Lab::new().expect("Lab::new");
        let a = lab.host("a").expect("host a");
        let links = a.ip(&["-br", "link"]).expect("ip -br link in a");
        assert!(links.starts_with("lo "), "a new node has only lo: {links}");
    });
}

#[test]
fn where_namespaces_are_refused_a_test_skips_with_the_reason() {
    if !namespace_works_independently() {
        // This machine refuses already: the test above showed the skip.
        return support::skip("no user namespaces here to restrict further");
    }
    let dir = scratch("refused");
    let skips = dir.join("skipped.tsv");
    let exe = std::env::current_exe().unwrap();
    let mut cmd = Command::new(&exe);
    cmd.args([
        "a_lab_test_in_a_private_namespace",
        "--exact",
        "--nocapture",
    ])
    .env("SOCKBOOK_SKIP_FILE", &skips);
    where_user_namespaces_are_refused(&mut cmd);
    let out = run_ok(&mut cmd, "the lab test where user namespaces are refused");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("1 passed"),
        "the test did not run:\n{stdout}"
    );
    let text = std::fs::read_to_string(&skips).unwrap_or_default();
    let line = text.lines().next().unwrap_or_else(|| {
        panic!(
            "no skip recorded in {} (stderr: {})",
            skips.display(),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let (name, why) = line.split_once('\t').expect("name<TAB>reason");
    assert_eq!(
        name, "a_lab_test_in_a_private_namespace",
        "skip line {line:?}"
    );
    assert!(
        why.contains("user.max_user_namespaces=0")
            && why.contains("sysctl -w user.max_user_namespaces="),
        "the reason names the setting and how to allow it: {why}"
    );
}

/// A tiny graded chapter: one test that runs anywhere (2 points), one that
/// needs a private namespace (5 points) and skips, the way the workbook's
/// do, where it cannot have one.
const FIXTURE_TEST: &str = r#"
macro_rules! graded {
    (points = $p:literal; fn $name:ident() $body:block) => {
        #[test]
        fn $name() { let _ = $p; $body }
    };
}

fn skip(reason: &str) {
    let name = std::thread::current().name().unwrap().to_string();
    let path = std::env::var("SOCKBOOK_SKIP_FILE").unwrap();
    let mut text = std::fs::read_to_string(&path).unwrap_or_default();
    text.push_str(&format!("{name}\t{reason}\n"));
    std::fs::write(path, text).unwrap();
}

graded! {
    points = 2;
    fn runs_anywhere() { assert_eq!(1 + 1, 2); }
}

graded! {
    points = 5;
    fn needs_a_private_namespace() {
        let out = std::process::Command::new("unshare").args(["-Urn", "true"]).output().unwrap();
        if !out.status.success() {
            return skip(&format!("unshare -Urn: {}", String::from_utf8_lossy(&out.stderr).trim()));
        }
    }
}
"#;

fn fixture(dir: &Path) {
    std::fs::create_dir_all(dir.join("tests")).unwrap();
    std::fs::create_dir_all(dir.join("src")).unwrap();
    std::fs::write(
        dir.join("Cargo.toml"),
        "[package]\nname = \"fixture\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[workspace]\n",
    )
    .unwrap();
    std::fs::write(dir.join("src/lib.rs"), "").unwrap();
    std::fs::write(dir.join("tests/ch99_fixture.rs"), FIXTURE_TEST).unwrap();
}

#[test]
fn the_grader_leaves_skipped_tests_out_of_score_and_maximum() {
    if !namespace_works_independently() {
        return support::skip("no user namespaces here to restrict further");
    }
    let dir = scratch("fixture");
    fixture(&dir);
    let grade = |refused: bool| -> (String, String) {
        let results = dir.join(if refused { "refused.json" } else { "here.json" });
        let mut cmd = Command::new(GRADE);
        cmd.arg("--root").arg(&dir).arg("--out").arg(&results);
        if refused {
            where_user_namespaces_are_refused(&mut cmd);
        }
        let out = run_ok(&mut cmd, "grade the fixture");
        (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            std::fs::read_to_string(&results).unwrap(),
        )
    };
    // Here: both tests run, 7 / 7, no warning.
    let (table, json) = grade(false);
    assert!(
        table.contains(" 7 / 7 ") && !table.contains("WARNING"),
        "grading here:\n{table}"
    );
    assert!(
        json.contains("\"score\": 7,") && json.contains("\"max_score\": 7,"),
        "{json}"
    );
    // Refused: the namespace test is skipped with the reason, out of both.
    let (table, json) = grade(true);
    let first = table.lines().next().unwrap_or("");
    assert!(
        first.starts_with("WARNING: 1 graded test(s) cannot run in this environment"),
        "the table must open with the warning:\n{table}"
    );
    assert!(
        table.contains("No space left on device"),
        "the reason (ENOSPC) is shown:\n{table}"
    );
    assert!(table.contains("SKIPPED (not counted)"), "{table}");
    assert!(
        table.contains("  2 / 2  1 of 1 tests passed, 1 skipped"),
        "fair total:\n{table}"
    );
    assert!(
        json.contains("\"score\": 2,") && json.contains("\"max_score\": 2,"),
        "{json}"
    );
    let skipped = json
        .lines()
        .find(|l| l.contains("needs_a_private_namespace"))
        .expect("the skipped test is listed");
    assert!(
        skipped.contains("\"score\": 0, \"max_score\": 0,")
            && skipped.contains("skipped, not counted"),
        "listed with its reason and 0 / 0: {skipped}"
    );
    assert!(
        !skipped.contains("\"status\""),
        "a skipped test is neither passed nor failed: {skipped}"
    );
}

/// Unpack the zip into `ag/source` (a stand-in for /autograder), run its
/// setup.sh once, and return the environment both scripts need.
fn unpacked_autograder(ag: &Path, zip: &Path, target: &Path) -> Vec<(String, String)> {
    std::fs::create_dir_all(ag.join("source")).unwrap();
    run_ok(
        Command::new("unzip")
            .arg("-q")
            .arg(zip)
            .current_dir(ag.join("source")),
        "unzip the autograder",
    );
    for f in ["setup.sh", "run_autograder"] {
        assert!(
            ag.join("source").join(f).is_file(),
            "{f} is not at the zip's root"
        );
    }
    let env = vec![
        ("AUTOGRADER_ROOT".to_string(), ag.display().to_string()),
        // Reuse a warm target dir of our own; grade as ourselves (the zip
        // grades as `nobody` when Gradescope runs it as root).
        (
            "SOCKBOOK_TARGET_DIR".to_string(),
            target.display().to_string(),
        ),
        ("SOCKBOOK_GRADER_USER".to_string(), String::new()),
    ];
    let mut setup = Command::new("bash");
    setup.arg(ag.join("source/setup.sh")).envs(env.clone());
    scrub_cargo_env(&mut setup);
    run_ok(&mut setup, "setup.sh");
    env
}

/// The variables cargo sets for this test must not leak into the builds.
fn scrub_cargo_env(cmd: &mut Command) {
    for (key, _) in std::env::vars() {
        if key.starts_with("CARGO_") && key != "CARGO_HOME" {
            cmd.env_remove(key);
        }
    }
}

/// Put `files` (path, text) in a fresh submission, run `run_autograder`,
/// and return results.json.
fn submit(ag: &Path, env: &[(String, String)], files: &[(&str, String)]) -> String {
    let sub = ag.join("submission");
    let _ = std::fs::remove_dir_all(&sub);
    for (path, text) in files {
        let dest = sub.join(path);
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        std::fs::write(&dest, text).unwrap();
    }
    let _ = std::fs::remove_file(ag.join("results/results.json"));
    let mut run = Command::new("bash");
    run.arg(ag.join("source/run_autograder"))
        .envs(env.iter().cloned());
    scrub_cargo_env(&mut run);
    run_ok(&mut run, "run_autograder");
    std::fs::read_to_string(ag.join("results/results.json"))
        .expect("results.json is always written")
}

#[test]
#[ignore = "minutes: builds the autograder three times; run by `make gradescope-check`"]
fn gradescope_zip_end_to_end() {
    let dir = scratch("gradescope");
    let zip = dir.join("autograder.zip");
    run_ok(
        Command::new(GRADE)
            .args(["gradescope", "--chapter", "ch01", "--out"])
            .arg(&zip),
        "grade gradescope",
    );
    let ag = dir.join("autograder");
    let target = Path::new(ROOT).join("target/classroom-tests-target");
    let env = unpacked_autograder(&ag, &zip, &target);
    let assignment = "src/ch01_sockets/mod.rs";
    let reference = std::fs::read_to_string(Path::new(ROOT).join(assignment)).unwrap();
    let stub = std::fs::read_to_string(ag.join("source/workbook").join(assignment)).unwrap();
    assert!(
        stub.contains("todo!(\"ch01"),
        "the zip's workbook holds the stubs, not the solutions"
    );
    let max = points_per_chapter()
        .into_iter()
        .find(|(c, _)| c == "ch01")
        .unwrap()
        .1;

    let full = submit(&ag, &env, &[(assignment, reference.clone())]);
    assert!(
        full.contains(&format!("\"score\": {max},\n  \"max_score\": {max},")),
        "the reference must get {max} / {max}:\n{full}"
    );
    for field in [
        "\"execution_time\":",
        "\"output\":",
        "\"visibility\": \"visible\"",
        "\"number\": \"1.1\"",
        "\"tags\": [\"ch01\"]",
    ] {
        assert!(full.contains(field), "results.json lacks {field}:\n{full}");
    }
    assert!(
        !full.contains("skipped"),
        "nothing may be skipped on this machine:\n{full}"
    );

    let zero = submit(&ag, &env, &[(assignment, stub.clone())]);
    assert!(
        zero.contains("\"score\": 0,"),
        "the student edition must get 0:\n{zero}"
    );
    assert!(
        zero.contains("not yet implemented: ch01"),
        "failures say why:\n{zero}"
    );

    // A submission in one folder, that does not compile.
    let broken = format!("{reference}\npub fn broken() -> u32 {{ \"not a number\" }}\n");
    let bad = submit(&ag, &env, &[(&format!("sockbook/{assignment}"), broken)]);
    assert!(
        bad.contains("\"score\": 0,"),
        "a build failure gets 0:\n{bad}"
    );
    assert!(
        bad.contains("the tests did not build: error[E0308]: mismatched types")
            && bad.contains("src/ch01_sockets/mod.rs"),
        "every test's output is the compiler's first error, with its place:\n{bad}"
    );

    let missing = submit(&ag, &env, &[("README.md", "nothing here".into())]);
    assert!(
        missing.contains("is not in the submission"),
        "a missing file is named:\n{missing}"
    );
}

#[test]
#[ignore = "a minute: builds a copy of the tree; run by `make gradescope-check`"]
fn submission_is_graded_with_our_tests_not_its_own() {
    let dir = scratch("submission");
    let sub = dir.join("student");
    run_ok(
        Command::new(GRADE).arg("edition").arg("student").arg(&sub),
        "grade edition student",
    );
    // A student who solved nothing but made every chapter 1 test return at
    // once: in their own repository, every test passes.
    let tampered = sub.join("tests/ch01_sockets.rs");
    let text = std::fs::read_to_string(&tampered).unwrap();
    let mut cheat = String::new();
    for line in text.lines() {
        cheat.push_str(line);
        cheat.push('\n');
        if line.starts_with("    fn ") && line.ends_with("() {") {
            cheat.push_str("        return;\n");
        }
    }
    std::fs::write(&tampered, cheat).unwrap();
    let max = points_per_chapter()
        .into_iter()
        .find(|(c, _)| c == "ch01")
        .unwrap()
        .1;
    let results = dir.join("results.json");
    let grade = |what: &str| {
        let out = run_ok(
            Command::new(GRADE)
                .arg("submission")
                .arg(&sub)
                .args(["--chapter", "ch01", "--out"])
                .arg(&results),
            what,
        );
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        (std::fs::read_to_string(&results).unwrap(), stdout)
    };

    let (json, stdout) = grade("grade submission (tests tampered, nothing solved)");
    assert!(
        json.contains("\"score\": 0,"),
        "graded with our tests, the unsolved chapter gets 0 whatever its own tests say:\n{json}\n{stdout}"
    );
    assert!(
        stdout.contains("1 file(s) under tests/ differ")
            && stdout.contains("tests/ch01_sockets.rs"),
        "the changed test file is named:\n{stdout}"
    );

    // Now solved (the reference file stands in): full marks.
    let solved = "src/ch01_sockets/mod.rs";
    std::fs::copy(Path::new(ROOT).join(solved), sub.join(solved)).unwrap();
    let (json, stdout) = grade("grade submission (solved)");
    assert!(
        json.contains(&format!("\"score\": {max},")),
        "the solved chapter gets {max} / {max}:\n{json}\n{stdout}"
    );

    // Without the file at all: graded as todo!(), and named.
    std::fs::remove_file(sub.join(solved)).unwrap();
    let (json, stdout) = grade("grade submission (file missing)");
    assert!(
        json.contains("\"score\": 0,"),
        "a missing assignment file is graded as todo!():\n{json}"
    );
    assert!(
        stdout.contains("src/ch01_sockets/mod.rs is missing from the submission"),
        "the missing file is named:\n{stdout}"
    );
}
