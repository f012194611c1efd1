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
//! Why this range: with `n` independent rounds, each round's ratio falls
//! on either side of the true median with probability ½, so the true
//! median lies between the smallest and the largest observed ratio with
//! probability `1 - 2^(1-n)` (only "all on one side" misses it): 93.75 %
//! for 5 rounds, 98 % for 7. That confidence grows with every round while
//! the min–max range only widens, so from 9 rounds on the range is the
//! `k`-th smallest to the `k`-th largest ratio, `k` as large as keeps the
//! confidence at [`LEVEL`] or above (the binomial sum in [`coverage`]):
//! 2nd–8th of 9 (96 %), 3rd–10th of 12 (96 %), 4th–12th of 15 (96 %).
//! More rounds then narrow the range, as they should.

/// The least confidence a range may have: that of 5 rounds' min–max.
pub const LEVEL: f64 = 0.9375;

/// The probability that the true median lies between the `k`-th smallest
/// and the `k`-th largest of `n` independent samples:
/// `1 - 2 · P(Binomial(n, ½) < k)`.
pub fn coverage(n: usize, k: usize) -> f64 {
    if k == 0 || 2 * k > n {
        return 0.0;
    }
    let mut below = 0.0;
    let mut choose = 1.0; // C(n, i)
    for i in 0..k {
        if i > 0 {
            choose = choose * (n - i + 1) as f64 / i as f64;
        }
        below += choose;
    }
    1.0 - 2.0 * below * 0.5f64.powi(n as i32)
}

/// `1st`, `2nd`, `3rd`, `4th`, … `11th`, `12th`, `13th`, `21st`.
pub fn ordinal(k: usize) -> String {
    let suffix = match (k % 10, k % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{k}{suffix}")
}

/// Which order statistic bounds the range of `n` rounds: the largest `k`
/// whose [`coverage`] is at least [`LEVEL`] (1, min–max, when none is).
pub fn order_k(n: usize) -> usize {
    let mut k = 1;
    while 2 * (k + 1) <= n && coverage(n, k + 1) >= LEVEL {
        k += 1;
    }
    k
}

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
    /// The range's lower end: the smallest ratio, or from 9 rounds on the
    /// `k`-th smallest ([`order_k`]).
    pub low: f64,
    /// The range's upper end: the largest, or the `k`-th largest.
    pub high: f64,
    /// How many rounds it rests on.
    pub rounds: usize,
}

impl Spread {
    /// Median and range of `values` (non-finite ones are dropped).
    pub fn of(values: &[f64]) -> Option<Spread> {
        let mut finite: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        if finite.is_empty() {
            return None;
        }
        finite.sort_by(f64::total_cmp);
        let n = finite.len();
        let k = order_k(n);
        Some(Spread {
            median: median(&finite)?,
            low: finite[k - 1],
            high: finite[n - k],
            rounds: n,
        })
    }

    /// Does the range hold `x`? Then the rounds cannot tell the ratio from
    /// `x`.
    pub fn straddles(&self, x: f64) -> bool {
        self.low <= x && x <= self.high
    }

    /// The probability that the true median lies in the range, if the
    /// rounds are independent ([`coverage`]).
    pub fn confidence(&self) -> f64 {
        if self.rounds < 2 {
            0.0
        } else {
            coverage(self.rounds, order_k(self.rounds))
        }
    }

    /// For a table cell: `1.12 (1.05–1.20)`, or `no clear difference
    /// (0.96–1.08)` when the range straddles 1.
    pub fn cell(&self) -> String {
        if self.rounds < 2 {
            return format!("{:.2} (1 round)", self.median);
        }
        if self.straddles(1.0) {
            format!("no clear difference ({:.2}–{:.2})", self.low, self.high)
        } else {
            format!("{:.2} ({:.2}–{:.2})", self.median, self.low, self.high)
        }
    }

    /// Judge "at least `goal`": met when the whole range is at or above it,
    /// missed when the whole range is below it, otherwise undecided (from 9
    /// rounds on, more rounds, `--rounds N`, narrow the range).
    pub fn judge(&self, goal: f64) -> Verdict {
        if self.rounds < 2 {
            Verdict::Undecided
        } else if self.low >= goal {
            Verdict::Met
        } else if self.high < goal {
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
        assert!((coverage(7, 1) - 0.984375).abs() < 1e-9);
    }

    #[test]
    fn ordinals() {
        let got: Vec<String> = [1, 2, 3, 4, 11, 12, 13, 21, 22].map(ordinal).to_vec();
        assert_eq!(
            got,
            [
                "1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd"
            ]
        );
    }

    #[test]
    fn more_rounds_narrow_the_range_at_the_same_confidence() {
        // Up to 8 rounds: min–max (the 2nd–7th of 8 would be 93.0 %).
        assert_eq!((order_k(5), order_k(7), order_k(8)), (1, 1, 1));
        assert!(coverage(8, 2) < LEVEL);
        // 9 rounds: 2nd–8th, 96.1 %; 12: 3rd–10th, 96.1 %; 15: 4th–12th.
        assert_eq!((order_k(9), order_k(12), order_k(15)), (2, 3, 4));
        assert!((coverage(9, 2) - 0.9609375).abs() < 1e-9);
        assert!((coverage(12, 3) - 0.961_425_781_25).abs() < 1e-9);
        for n in 5..40 {
            assert!(coverage(n, order_k(n)) >= LEVEL, "n = {n}");
        }
        let nine = [0.90, 1.01, 1.02, 1.03, 1.04, 1.05, 1.06, 1.07, 1.30];
        let s = Spread::of(&nine).unwrap();
        assert_eq!((s.low, s.high, s.median), (1.01, 1.07, 1.04));
        assert_eq!(
            s.judge(1.0),
            Verdict::Met,
            "one outlier each side no longer decides"
        );
    }
}
