//! Order statistics over measured durations: medians and the nearest-rank p50/p95 the
//! report shows. Every figure the harness prints is a median or a percentile of samples
//! taken in the same run, never an absolute threshold.

use std::time::Duration;

use serde::Serialize;

/// A latency distribution, in milliseconds (what the table and the JSON show).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Summary {
    /// Number of samples.
    pub n: usize,
    /// Median (nearest rank).
    pub p50_ms: f64,
    /// 95th percentile (nearest rank).
    pub p95_ms: f64,
    /// Arithmetic mean.
    pub mean_ms: f64,
    /// Smallest sample.
    pub min_ms: f64,
    /// Largest sample.
    pub max_ms: f64,
}

/// Milliseconds as a float.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The nearest-rank percentile `p` (0–100) of sorted samples; `None` when empty.
pub fn percentile(sorted: &[Duration], p: f64) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// The median of unsorted samples; `None` when empty.
pub fn median(samples: &[Duration]) -> Option<Duration> {
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    percentile(&sorted, 50.0)
}

impl Summary {
    /// Summarizes samples; `None` when there are none.
    pub fn of(samples: &[Duration]) -> Option<Summary> {
        let mut sorted = samples.to_vec();
        sorted.sort_unstable();
        let total: Duration = sorted.iter().sum();
        Some(Summary {
            n: sorted.len(),
            p50_ms: ms(percentile(&sorted, 50.0)?),
            p95_ms: ms(percentile(&sorted, 95.0)?),
            mean_ms: ms(total) / sorted.len() as f64,
            min_ms: ms(*sorted.first()?),
            max_ms: ms(*sorted.last()?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    #[test]
    fn nearest_rank_percentiles() {
        let samples: Vec<Duration> = (1..=100).map(d).collect();
        let s = Summary::of(&samples).unwrap();
        assert_eq!(s.n, 100);
        assert_eq!(s.p50_ms, 50.0);
        assert_eq!(s.p95_ms, 95.0);
        assert_eq!(s.min_ms, 1.0);
        assert_eq!(s.max_ms, 100.0);
        assert_eq!(s.mean_ms, 50.5);
    }

    #[test]
    fn small_and_empty_sets() {
        assert_eq!(Summary::of(&[]), None);
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[d(7)]), Some(d(7)));
        // Unsorted input; the lower middle for an even count.
        assert_eq!(median(&[d(9), d(1), d(5), d(3)]), Some(d(3)));
        let s = Summary::of(&[d(2), d(1)]).unwrap();
        assert_eq!((s.p50_ms, s.p95_ms), (1.0, 2.0));
    }
}
