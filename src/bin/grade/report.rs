//! The score table and the Gradescope results file.

use std::fmt::Write as _;
use std::path::Path;

use crate::run::Grade;

/// Print: a warning naming the tests this environment cannot run (if
/// any), then chapter, test, points earned / possible, the first line of
/// each failure, and the total.
pub fn print_table(grade: &Grade) {
    for line in skip_warning(grade) {
        println!("{line}");
    }
    let width = grade
        .outcomes
        .iter()
        .map(|o| o.test.name.len())
        .max()
        .unwrap_or(4)
        .max(4);
    println!(
        "{:<14} {:<width$} {:>7}  result",
        "chapter", "test", "points"
    );
    let mut chapter = "";
    for o in &grade.outcomes {
        let shown = if o.test.target == chapter {
            ""
        } else {
            o.test.target.as_str()
        };
        chapter = &o.test.target;
        let verdict = match (&o.skipped, o.passed) {
            (Some(why), _) => format!("SKIPPED (not counted): {why}"),
            (None, true) => "ok".to_string(),
            (None, false) => format!("FAILED: {}", o.first_line()),
        };
        println!(
            "{:<14} {:<width$} {:>3} / {:<2} {}",
            shown,
            o.test.name,
            o.score(),
            o.max_score(),
            verdict
        );
    }
    println!(
        "{:<14} {:<width$} {:>3} / {:<2} {}, {:.1} s",
        "TOTAL",
        "",
        grade.score(),
        grade.max_score(),
        counts(grade),
        grade.seconds
    );
    for note in &grade.notes {
        println!("note: {note}");
    }
}

/// `12 of 15 tests passed` (`, 2 skipped` when some were).
fn counts(grade: &Grade) -> String {
    let passed = grade.outcomes.iter().filter(|o| o.earned()).count();
    let skipped = grade.skipped().count();
    let ran = grade.outcomes.len() - skipped;
    if skipped == 0 {
        format!("{passed} of {ran} tests passed")
    } else {
        format!("{passed} of {ran} tests passed, {skipped} skipped")
    }
}

/// The lines that head the table when tests were skipped: how many, why
/// (each distinct reason once), and that they are left out of the score.
fn skip_warning(grade: &Grade) -> Vec<String> {
    let skipped: Vec<_> = grade.skipped().collect();
    if skipped.is_empty() {
        return Vec::new();
    }
    let mut lines = vec![format!(
        "WARNING: {} graded test(s) cannot run in this environment; they are \
         left out of both the score and the maximum:",
        skipped.len()
    )];
    let mut reasons: Vec<&str> = skipped
        .iter()
        .filter_map(|o| o.skipped.as_deref())
        .collect();
    reasons.sort_unstable();
    reasons.dedup();
    for why in reasons {
        lines.push(format!("WARNING:   {why}"));
    }
    lines
}

/// The summary at the top of the Gradescope page.
fn summary(grade: &Grade) -> String {
    let mut text = format!(
        "{} / {} points: {}.",
        grade.score(),
        grade.max_score(),
        counts(grade)
    );
    for line in skip_warning(grade) {
        text.push('\n');
        text.push_str(&line);
    }
    for note in &grade.notes {
        text.push_str(&format!("\nnote: {note}"));
    }
    // Each distinct failure once (a build error fails every test alike).
    let failed: Vec<_> = grade.outcomes.iter().filter(|o| !o.passed).collect();
    let mut shown: Vec<&str> = Vec::new();
    for o in &failed {
        if shown.contains(&o.output.as_str()) {
            continue;
        }
        shown.push(&o.output);
        let alike = failed.iter().filter(|f| f.output == o.output).count();
        let who = if alike > 1 {
            format!("{} and {} more", o.full_name(), alike - 1)
        } else {
            o.full_name()
        };
        text.push_str(&format!("\nfailed: {who}: {}", o.output));
    }
    text
}

/// `ch02_tcp` → `2`, for the test's `number` (`2.1`, `2.2`, …).
fn chapter_number(target: &str) -> u32 {
    target.get(2..4).and_then(|n| n.parse().ok()).unwrap_or(0)
}

/// Write `results.json` in the Gradescope autograder schema
/// (<https://gradescope-autograders.readthedocs.io/en/latest/specs/>):
/// `score`, `execution_time`, a summary `output`, `visibility`, and
/// `tests[]` with `name`, `number` (`chapter.index`), `tags` (the chapter),
/// `score`, `max_score`, `status`, `visibility` and `output` (the failure
/// explained). A skipped test is listed with its reason and 0 / 0.
pub fn write_json(grade: &Grade, path: &Path) -> Result<(), String> {
    let mut json = String::new();
    let _ = writeln!(json, "{{");
    let _ = writeln!(json, "  \"score\": {},", grade.score());
    let _ = writeln!(json, "  \"max_score\": {},", grade.max_score());
    let _ = writeln!(json, "  \"execution_time\": {:.0},", grade.seconds.ceil());
    let _ = writeln!(json, "  \"output\": {},", quote(&summary(grade)));
    let _ = writeln!(json, "  \"visibility\": \"visible\",");
    let _ = writeln!(json, "  \"tests\": [");
    let mut index_in_chapter = 0;
    let mut chapter = "";
    for (i, o) in grade.outcomes.iter().enumerate() {
        if o.test.target != chapter {
            chapter = &o.test.target;
            index_in_chapter = 0;
        }
        index_in_chapter += 1;
        let comma = if i + 1 == grade.outcomes.len() {
            ""
        } else {
            ","
        };
        let (name, status, output) = match &o.skipped {
            Some(why) => (
                format!("{} (skipped: cannot run here)", o.full_name()),
                String::new(),
                format!("skipped, not counted in the score or the maximum: {why}"),
            ),
            None => (
                o.full_name(),
                format!(
                    "\"status\": \"{}\", ",
                    if o.passed { "passed" } else { "failed" }
                ),
                o.output.clone(),
            ),
        };
        let _ = writeln!(
            json,
            "    {{\"name\": {}, \"number\": \"{}.{index_in_chapter}\", \"tags\": [{}], \"score\": {}, \"max_score\": {}, {status}\"visibility\": \"visible\", \"output\": {}}}{comma}",
            quote(&name),
            chapter_number(chapter),
            quote(chapter.split('_').next().unwrap_or(chapter)),
            o.score(),
            o.max_score(),
            quote(&output)
        );
    }
    let _ = writeln!(json, "  ]");
    let _ = writeln!(json, "}}");
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
    }
    std::fs::write(path, json).map_err(|e| format!("write {}: {e}", path.display()))
}

/// A JSON string literal.
pub fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::quote;

    #[test]
    fn quotes_json() {
        assert_eq!(quote("a\"b\\c\nd\u{1}"), "\"a\\\"b\\\\c\\nd\\u0001\"");
    }
}
