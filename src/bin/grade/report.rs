//! The score table and the Gradescope results file.

use std::fmt::Write as _;
use std::path::Path;

use crate::run::Grade;

/// Print: chapter, test, points earned / possible, the first line of each
/// failure, and the total.
pub fn print_table(grade: &Grade) {
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
        let verdict = if o.passed {
            "ok".to_string()
        } else {
            format!("FAILED: {}", o.first_line())
        };
        println!(
            "{:<14} {:<width$} {:>3} / {:<2} {}",
            shown,
            o.test.name,
            o.score(),
            o.test.points,
            verdict
        );
    }
    let passed = grade.outcomes.iter().filter(|o| o.passed).count();
    println!(
        "{:<14} {:<width$} {:>3} / {:<2} {passed} of {} tests passed, {:.1} s",
        "TOTAL",
        "",
        grade.score(),
        grade.max_score(),
        grade.outcomes.len(),
        grade.seconds
    );
    for note in &grade.notes {
        println!("note: {note}");
    }
}

/// Write `results.json` in the Gradescope autograder schema: `score`,
/// `execution_time`, and `tests[]` with `name`, `score`, `max_score`,
/// `status` and `output`.
pub fn write_json(grade: &Grade, path: &Path) -> Result<(), String> {
    let mut json = String::new();
    let _ = writeln!(json, "{{");
    let _ = writeln!(json, "  \"score\": {},", grade.score());
    let _ = writeln!(json, "  \"max_score\": {},", grade.max_score());
    let _ = writeln!(json, "  \"execution_time\": {:.0},", grade.seconds.ceil());
    let _ = writeln!(json, "  \"tests\": [");
    for (i, o) in grade.outcomes.iter().enumerate() {
        let comma = if i + 1 == grade.outcomes.len() {
            ""
        } else {
            ","
        };
        let _ = writeln!(
            json,
            "    {{\"name\": {}, \"score\": {}, \"max_score\": {}, \"status\": \"{}\", \"output\": {}}}{comma}",
            quote(&o.full_name()),
            o.score(),
            o.test.points,
            if o.passed { "passed" } else { "failed" },
            quote(&o.output)
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
