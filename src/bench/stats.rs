//! The arithmetic of a fair comparison: per-round ratios, their median and
//! their range, and a verdict that refuses to call a difference inside the
//! noise a win.
//!
//! Why per-round ratios: on a small shared machine a server process settles
//! into a fast or a slow "regime" for its whole life (about 10–17 % apart
//! here), and the machine itself drifts. Two contenders measured side by
//! side in the same round see the same drift; the ratio of the two cancels
//! most of it. A fresh process per round makes the rounds independent
//! samples of the regime lottery.
//!
//! Why min–max: with `n` independent rounds, the true median of the ratio
//! lies between the smallest and the largest observed ratio with
//! probability `1 - 2^(1-n)` (each round falls on either side of the true
//! median with probability ½; only "all on one side" misses it): 94 % for
//! 5 rounds, 98 % for 7.

/// The median of `values` (the mean of the two middle ones for an even
/// count); `None` for none.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    })
}

/// A ratio measured over several rounds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    /// How many rounds it rests on.
    pub rounds: usize,
}

impl Spread {
    /// Median and min–max of `values` (non-finite ones are dropped).
    pub fn of(values: &[f64]) -> Option<Spread> {
        let finite: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        Some(Spread {
            median: median(&finite)?,
            min: finite.iter().copied().fold(f64::INFINITY, f64::min),
            max: finite.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            rounds: finite.len(),
        })
    }

    /// Does the range hold `x`? Then the rounds cannot tell the ratio from
    /// `x`.
    pub fn straddles(&self, x: f64) -> bool {
        self.min <= x && x <= self.max
    }

    /// The probability that the true median lies in `[min, max]`, if the
    /// rounds are independent: `1 - 2^(1-n)`.
    pub fn confidence(&self) -> f64 {
        if self.rounds < 2 {
            0.0
        } else {
            1.0 - 0.5f64.powi(self.rounds as i32 - 1)
        }
    }

    /// For a table cell: `1.12 (1.05–1.20)`, or `no clear difference
    /// (0.96–1.08)` when the range straddles 1.
    pub fn cell(&self) -> String {
        if self.rounds < 2 {
            return format!("{:.2} (1 round)", self.median);
        }
        if self.straddles(1.0) {
            format!("no clear difference ({:.2}–{:.2})", self.min, self.max)
        } else {
            format!("{:.2} ({:.2}–{:.2})", self.median, self.min, self.max)
        }
    }

    /// Judge "at least `goal`": met when the whole range is at or above it,
    /// missed when the whole range is below it, otherwise undecided (more
    /// rounds, `--rounds N`, narrow the range).
    pub fn judge(&self, goal: f64) -> Verdict {
        if self.rounds < 2 {
            Verdict::Undecided
        } else if self.min >= goal {
            Verdict::Met
        } else if self.max < goal {
            Verdict::Missed
        } else {
            Verdict::Undecided
        }
    }
}

/// The outcome of a goal judged on a [`Spread`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Met,
    Missed,
    Undecided,
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Verdict::Met => "met (the whole range meets the goal)",
            Verdict::Missed => "missed (the whole range misses the goal)",
            Verdict::Undecided => "undecided (the range straddles the goal: more --rounds)",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[f64::NAN, 1.0]), Some(1.0));
    }

    #[test]
    fn a_range_across_one_is_no_clear_difference() {
        let s = Spread::of(&[0.97, 1.02, 1.10, 1.04, 0.99]).unwrap();
        assert_eq!(s.median, 1.02);
        assert!(s.straddles(1.0));
        assert!(s.cell().starts_with("no clear difference"), "{}", s.cell());
        let win = Spread::of(&[1.06, 1.12, 1.09]).unwrap();
        assert_eq!(win.cell(), "1.09 (1.06–1.12)");
    }

    #[test]
    fn goals_are_judged_on_the_whole_range() {
        let s = Spread::of(&[1.06, 1.12, 1.09]).unwrap();
        assert_eq!(s.judge(1.05), Verdict::Met);
        assert_eq!(s.judge(1.10), Verdict::Undecided);
        assert_eq!(s.judge(1.20), Verdict::Missed);
    }

    #[test]
    fn confidence_of_min_max() {
        let s = Spread::of(&[1.0; 5]).unwrap();
        assert!((s.confidence() - 0.9375).abs() < 1e-9);
    }
}
