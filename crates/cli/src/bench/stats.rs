//! What every measurement family of `smolvm bench` reports in: [`Stats`] of a sample, and
//! [`Line`]s that set a figure against its floor with a [`Target`] for the ratio.
//!
//! This module depends on no family, so that all of them (and the printing in the parent
//! module) can share it without cycles.

use std::time::Duration;

use serde::Serialize;

/// Median and 95th percentile of a sample, in milliseconds.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Stats {
    /// Median.
    pub median_ms: f64,
    /// 95th percentile (nearest rank).
    pub p95_ms: f64,
    /// Number of samples.
    pub n: usize,
}

/// Median and p95 of `samples` (durations).
pub fn stats(samples: &[Duration]) -> Stats {
    let mut ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
    ms.sort_by(|a, b| a.total_cmp(b));
    let pick = |q: f64| {
        if ms.is_empty() {
            return f64::NAN;
        }
        let rank = ((q * ms.len() as f64).ceil() as usize).clamp(1, ms.len());
        ms[rank - 1]
    };
    let median = if ms.is_empty() {
        f64::NAN
    } else if ms.len() % 2 == 1 {
        ms[ms.len() / 2]
    } else {
        (ms[ms.len() / 2 - 1] + ms[ms.len() / 2]) / 2.0
    };
    Stats {
        median_ms: median,
        p95_ms: pick(0.95),
        n: ms.len(),
    }
}

/// The median of `values` (the lower middle one of an even count); 0 when empty.
///
/// For sizes in bytes, which are reported as one of the values rather than an average.
pub(super) fn median_u64(mut values: Vec<u64>) -> u64 {
    values.sort_unstable();
    match values.len() {
        0 => 0,
        n => values[(n - 1) / 2],
    }
}

/// What a line must reach: an upper bound on its ratio to its floor, and on its median.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Target {
    ratio_at_most: Option<f64>,
    median_at_most_ms: Option<f64>,
}

impl Target {
    /// No target.
    pub(super) const NONE: Target = Target {
        ratio_at_most: None,
        median_at_most_ms: None,
    };

    /// The ratio at most `ratio`.
    pub(super) const fn ratio(ratio: f64) -> Self {
        Target {
            ratio_at_most: Some(ratio),
            median_at_most_ms: None,
        }
    }

    /// The ratio at most `ratio`, and the median at most `median_ms`: for a figure that must
    /// both beat its floor by a margin and stay under an absolute bound.
    pub(super) const fn ratio_and_median(ratio: f64, median_ms: f64) -> Self {
        Target {
            ratio_at_most: Some(ratio),
            median_at_most_ms: Some(median_ms),
        }
    }

    /// Whether `median_ms` and `ratio` reach the target (`None` without one).
    pub(super) fn met(&self, median_ms: f64, ratio: f64) -> Option<bool> {
        if self.ratio_at_most.is_none() && self.median_at_most_ms.is_none() {
            return None;
        }
        Some(
            !matches!(self.ratio_at_most, Some(max) if ratio > max)
                && !matches!(self.median_at_most_ms, Some(max) if median_ms > max),
        )
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.ratio_at_most, self.median_at_most_ms) {
            (None, None) => write!(f, "-"),
            (Some(r), None) => write!(f, "<= {r:?}"),
            (None, Some(ms)) => write!(f, "median <= {ms} ms"),
            (Some(r), Some(ms)) => write!(f, "<= {r:?} and median <= {ms} ms"),
        }
    }
}

/// One line of the table (and of the JSON output): a figure, its floor, their ratio, and the
/// target with whether it is met. The field names are the JSON keys.
#[derive(Debug, Serialize)]
pub(super) struct Line {
    /// What is measured.
    pub(super) name: String,
    /// Its samples.
    pub(super) value: Stats,
    /// What it is compared with.
    pub(super) floor_name: String,
    /// The samples of that.
    pub(super) floor: Stats,
    /// Median of the value over median of the floor.
    pub(super) ratio: f64,
    /// The target, as printed (`-` without one).
    pub(super) target: String,
    /// Whether the target is reached (`null` without a target).
    pub(super) met: Option<bool>,
}

/// The line of `value` against `floor`, with whether it reaches `target`.
pub(super) fn line(
    name: impl Into<String>,
    value: Stats,
    floor_name: impl Into<String>,
    floor: Stats,
    target: Target,
) -> Line {
    let ratio = value.median_ms / floor.median_ms;
    Line {
        name: name.into(),
        value,
        floor_name: floor_name.into(),
        floor,
        ratio,
        target: target.to_string(),
        met: target.met(value.median_ms, ratio),
    }
}

/// `(target ...)`, with whether it is met when there is one.
pub(super) fn target_note(target: &str, met: Option<bool>) -> String {
    match met {
        Some(true) => format!("(target {target}: met)"),
        Some(false) => format!("(target {target}: MISSED)"),
        None => format!("(target {target})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_p95_use_nearest_rank() {
        let samples: Vec<Duration> = (1..=20).map(Duration::from_millis).collect();
        let s = stats(&samples);
        assert_eq!(s.median_ms, 10.5);
        assert_eq!(s.p95_ms, 19.0);
        assert_eq!(stats(&[Duration::from_millis(3)]).p95_ms, 3.0);
        assert!(stats(&[]).median_ms.is_nan());
    }

    #[test]
    fn median_of_sizes() {
        assert_eq!(median_u64(vec![]), 0);
        assert_eq!(median_u64(vec![5, 1, 3]), 3);
        assert_eq!(median_u64(vec![4, 1, 3, 2]), 2);
    }

    #[test]
    fn targets_bound_the_ratio_and_the_median() {
        assert_eq!(Target::NONE.to_string(), "-");
        assert_eq!(Target::NONE.met(1e9, 1e9), None);
        assert_eq!(Target::ratio(2.0).to_string(), "<= 2.0");
        assert_eq!(Target::ratio(1.3).met(500.0, 1.3), Some(true));
        assert_eq!(Target::ratio(1.3).met(500.0, 1.31), Some(false));
        let both = Target::ratio_and_median(0.2, 200.0);
        assert_eq!(both.to_string(), "<= 0.2 and median <= 200 ms");
        assert_eq!(both.met(150.0, 0.1), Some(true));
        assert_eq!(both.met(250.0, 0.1), Some(false));
        assert_eq!(both.met(150.0, 0.3), Some(false));
        let l = line(
            "x",
            stats(&[Duration::from_millis(300)]),
            "y",
            stats(&[Duration::from_millis(1000)]),
            both,
        );
        assert_eq!(l.met, Some(false));
        assert!(target_note(&l.target, l.met).contains("MISSED"));
    }
}
