//! The ratio table: for every contender, the median over rounds of its
//! per-round ratio to the baseline measured in the same round, with the
//! range of [`super::stats::Spread`] (min–max up to 8 rounds), for three figures: operations per second, operations
//! per server CPU-second, and p99 latency.

use std::fmt::Write as _;

use super::rounds::Sample;
use super::stats::{Spread, median};

/// One row: a contender's figures against the baseline.
#[derive(Debug, Clone)]
pub struct Row {
    pub contender: String,
    /// Median operations per second over its rounds.
    pub rate: Option<f64>,
    /// Median operations per server CPU-second.
    pub per_cpu: Option<f64>,
    /// Median p99 latency, microseconds.
    pub p99_us: Option<f64>,
    /// Ratios to the baseline, round by round (`None` for the baseline).
    pub rate_ratio: Option<Spread>,
    pub cpu_ratio: Option<Spread>,
    /// p99 of the contender over p99 of the baseline: below 1 is better.
    pub p99_ratio: Option<Spread>,
    pub errors: usize,
    pub disturbed: usize,
    pub notes: Vec<String>,
}

/// Pair every round's sample of each contender with the baseline's sample
/// of the same round and summarise.
pub fn rows(samples: &[Sample], baseline: &str, order: &[String]) -> Vec<Row> {
    let base_of = |round: usize| {
        samples
            .iter()
            .find(|s| s.contender == baseline && s.round == round)
    };
    order
        .iter()
        .map(|name| {
            let mine: Vec<&Sample> = samples.iter().filter(|s| &s.contender == name).collect();
            let pick = |f: &dyn Fn(&Sample) -> Option<f64>| -> Option<f64> {
                median(&mine.iter().filter_map(|s| f(s)).collect::<Vec<_>>())
            };
            let ratio = |f: &dyn Fn(&Sample) -> Option<f64>| -> Option<Spread> {
                if name == baseline {
                    return None;
                }
                let per_round: Vec<f64> = mine
                    .iter()
                    .filter_map(|s| Some(f(s)? / f(base_of(s.round)?)?))
                    .collect();
                Spread::of(&per_round)
            };
            let mut notes: Vec<String> = Vec::new();
            for s in &mine {
                if !s.note.is_empty() && !notes.contains(&s.note) {
                    notes.push(s.note.clone());
                }
            }
            Row {
                contender: name.clone(),
                rate: pick(&Sample::rate),
                per_cpu: pick(&Sample::per_cpu_second),
                p99_us: pick(&Sample::p99_us),
                rate_ratio: ratio(&Sample::rate),
                cpu_ratio: ratio(&Sample::per_cpu_second),
                p99_ratio: ratio(&Sample::p99_us),
                errors: mine
                    .iter()
                    .filter_map(|s| s.measured.as_ref())
                    .map(|m| m.errors)
                    .sum(),
                disturbed: mine.iter().filter(|s| s.disturbed).count(),
                notes,
            }
        })
        .collect()
}

fn us(v: Option<f64>) -> String {
    match v {
        None => "-".into(),
        Some(us) if us >= 10_000.0 => format!("{:.0} ms", us / 1000.0),
        Some(us) if us >= 1000.0 => format!("{:.1} ms", us / 1000.0),
        Some(us) => format!("{us:.0} us"),
    }
}

/// The table in Markdown, readable as is in a terminal.
pub fn table(rows: &[Row], baseline: &str, unit: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| design | {unit}/s | × {baseline}: {unit}/s | {unit} per server CPU-s | × {baseline}: per CPU-s | p99 | × {baseline}: p99 (lower is better) | errors | note |"
    );
    let _ = writeln!(out, "|---|---:|---|---:|---|---:|---|---:|---|");
    let cell = |s: &Option<Spread>, is_base: bool| match s {
        _ if is_base => "1 (baseline)".to_string(),
        Some(s) => s.cell(),
        None => "-".to_string(),
    };
    for r in rows {
        let is_base = r.contender == baseline;
        let mut note = r.notes.join("; ");
        if r.disturbed > 0 {
            note = format!(
                "{} round(s) disturbed by other CPU use; {note}",
                r.disturbed
            );
        }
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.contender,
            r.rate.map_or("-".into(), |v| format!("{v:.0}")),
            cell(&r.rate_ratio, is_base),
            r.per_cpu.map_or("-".into(), |v| format!("{v:.0}")),
            cell(&r.cpu_ratio, is_base),
            us(r.p99_us),
            cell(&r.p99_ratio, is_base),
            r.errors,
            note.trim_end_matches("; ")
        );
    }
    out
}

/// Every sample as CSV, one line each, for your own analysis.
pub fn csv(chapter: &str, scenario: &str, samples: &[Sample]) -> String {
    let mut out = String::new();
    for s in samples {
        let m = s.measured.clone().unwrap_or_default();
        let _ = writeln!(
            out,
            "{chapter},{scenario},{},{},{},{:.3},{:.1},{:.3},{},{},{},{:.3},{},{}",
            s.contender,
            s.round,
            m.ops,
            m.elapsed.as_secs_f64(),
            m.rate(),
            s.server_cpu,
            m.p50_us.map_or(String::new(), |v| v.to_string()),
            m.p99_us.map_or(String::new(), |v| v.to_string()),
            m.errors,
            s.other_cpu,
            s.disturbed,
            s.note.replace([',', '\n'], ";")
        );
    }
    out
}

/// The CSV header matching [`csv`].
pub const CSV_HEADER: &str = "chapter,scenario,contender,round,ops,secs,ops_per_s,server_cpu_s,p50_us,p99_us,errors,other_cpu,disturbed,note\n";
