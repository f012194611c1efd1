//! The self-check: proof that the graded tests can fail.
//!
//! 1. The reference edition (this tree) gets full marks.
//! 2. The student edition (every solution `todo!()`) gets 0, every graded
//!    test failing: a test that passes on a stub cannot tell right from
//!    wrong, and is named here as a defect.
//! 3. The hang edition (every solution an endless sleep) gets 0, every test
//!    failing, and the whole run of its tests ends within [`HANG_BOUND`]:
//!    no solution can hang the grade run.
//!
//! The student and hang editions are one copy of the tree built once
//! ([`Kind::Switch`]): each stub is the student edition's `todo!()` behind a
//! check of `SOCKBOOK_STUB`, which the hang run sets to `hang`. One build
//! instead of two is most of what the self-check costs after the tree is
//! built. Both are built before any test runs; the hang edition's tests,
//! which only wait out their deadlines asleep, then run beside the
//! reference's, and the student edition's (which fail at once) after.
//!
//! Every test in a graded test binary must pass in the reference, graded or
//! not: `make test` runs those binaries only here, not also in
//! `cargo test`.

use std::path::Path;
use std::time::Duration;

use crate::edition::{self, Kind};
use crate::report;
use crate::run::{self, Grade, Options};

/// The hang edition's tests must all have finished (failed) within this.
pub const HANG_BOUND: Duration = Duration::from_secs(300);

/// Threads for the hang edition: every test waits out its deadline asleep,
/// so run them all at once.
const HANG_THREADS: usize = 64;

/// Run the three checks (on the chapters in `only`, all when empty); print
/// what each found. `Ok(true)` when all hold.
pub fn run(root: &Path, only: &[String]) -> Result<bool, String> {
    let mut ok = true;
    let mut checks_passed = 0;
    let editions_target = root.join("target/editions");
    let reference_options = Options {
        only: only.to_vec(),
        ..Options::default()
    };
    let dir = root.join("target/stubs");
    let regions = edition::write(root, &dir, Kind::Switch)?;
    // Only the binaries the graded tests run are built.
    edition::prune_for_grading(&dir, &edition::graded_bins(root)?)?;
    let edition_options = |hang: bool| Options {
        threads: if hang {
            HANG_THREADS
        } else {
            run::DEFAULT_THREADS
        },
        target_dir: Some(editions_target.clone()),
        progress: false,
        only: only.to_vec(),
        // A stub fails at once (student) or waits out its deadline asleep
        // (hang): either way the chapters can run side by side.
        concurrent: true,
        env: if hang {
            vec![(edition::SWITCH_VAR.to_string(), "hang".to_string())]
        } else {
            Vec::new()
        },
    };

    // Build everything first, so no compiling runs beside the reference's
    // tests; then the hang edition (whose tests only sleep) runs beside the
    // reference, and the student edition after it.
    eprintln!("selfcheck: building the reference and the stub edition ({regions} regions cut)");
    run::build(root, &reference_options)?;
    run::build(&dir, &edition_options(false))?;
    let (reference, hang) = std::thread::scope(|scope| {
        let hang = scope.spawn(|| run::grade(&dir, &edition_options(true)));
        eprintln!(
            "selfcheck 1/3: the reference edition must get full marks (the hang edition runs beside it)"
        );
        let reference = run::grade(root, &reference_options);
        let hang = hang
            .join()
            .unwrap_or_else(|_| Err("the hang edition's grader thread panicked".into()));
        (reference, hang)
    });
    let (reference, hang) = (reference?, hang?);
    report::print_table(&reference);
    for o in reference.outcomes.iter().filter(|o| !o.passed) {
        println!(
            "SELFCHECK: reference fails {}: {}",
            o.full_name(),
            o.first_line()
        );
        ok = false;
    }
    for failed in &reference.ungraded_failures {
        println!("SELFCHECK: reference fails {failed} (a test without points)");
        ok = false;
    }
    for o in reference.skipped() {
        println!(
            "selfcheck: {} skipped here (not counted): {}",
            o.full_name(),
            o.skipped.as_deref().unwrap_or("")
        );
    }
    if reference.outcomes.is_empty() {
        println!("SELFCHECK: no graded tests found");
        ok = false;
    }
    if ok {
        checks_passed += 1;
    }

    eprintln!("selfcheck 2/3: the student edition must get 0");
    let student = run::grade(&dir, &edition_options(false))?;
    for (hang, grade) in [(false, &student), (true, &hang)] {
        let name = if hang { "hang" } else { "student" };
        if hang {
            eprintln!("selfcheck 3/3: the hang edition must get 0 (it ran beside the reference)");
        }
        // The bound is on running the tests, not on compiling them.
        let tests_time = grade.seconds - grade.build_seconds;
        let mut edition_ok = expect_zero(name, grade, &reference);
        if hang && tests_time > HANG_BOUND.as_secs_f64() {
            println!(
                "SELFCHECK: the hang edition's tests took {tests_time:.0} s, over the {} s bound",
                HANG_BOUND.as_secs()
            );
            edition_ok = false;
        }
        if edition_ok {
            checks_passed += 1;
        }
        ok &= edition_ok;
        println!(
            "selfcheck: {name} edition: {} / {} points, {} of {} graded tests failing, {:.0} s",
            grade.score(),
            grade.max_score(),
            grade.outcomes.iter().filter(|o| !o.passed).count(),
            grade.outcomes.len(),
            tests_time
        );
    }
    println!(
        "selfcheck: {}",
        if ok {
            "PASSED: every graded test can fail, none can hang"
        } else {
            "FAILED"
        }
    );
    // The closing line CI reads: the three checks above.
    println!(
        "selfcheck: {checks_passed} passed, {} failed",
        3 - checks_passed
    );
    Ok(ok)
}

/// Every test must fail, and every test of the reference must be there.
fn expect_zero(edition: &str, grade: &Grade, reference: &Grade) -> bool {
    let mut ok = true;
    for o in grade.outcomes.iter().filter(|o| o.earned()) {
        println!(
            "SELFCHECK: {} PASSES in the {edition} edition: it cannot tell a stub from a solution",
            o.full_name()
        );
        ok = false;
    }
    if grade.outcomes.len() != reference.outcomes.len() {
        println!(
            "SELFCHECK: the {edition} edition has {} graded tests, the reference {}",
            grade.outcomes.len(),
            reference.outcomes.len()
        );
        ok = false;
    }
    ok
}
