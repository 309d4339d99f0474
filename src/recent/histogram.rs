//! Latencies counted in fixed buckets, each √2 wider than the last. Counting is one
//! relaxed add; a window's quantile is read from the difference of two cumulative
//! snapshots, so nothing is ever reset under the writers' feet.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// From 50 µs to about 52 s; the last bucket also takes everything slower.
pub(crate) const BUCKETS: usize = 41;
const FIRST_BOUND: f64 = 50e-6;

/// The upper bound of bucket `i`, in seconds.
fn upper_bound(i: usize) -> f64 {
    FIRST_BOUND * std::f64::consts::SQRT_2.powi(i as i32)
}

fn bucket_of(seconds: f64) -> usize {
    if seconds.is_nan() || seconds <= FIRST_BOUND {
        return 0;
    }
    // Two buckets per doubling; ceil puts a bound's own value in its bucket.
    let i = ((seconds / FIRST_BOUND).log2() * 2.0 - 1e-9).ceil();
    (i as usize).min(BUCKETS - 1)
}

#[derive(Debug)]
pub(crate) struct Histogram {
    counts: [AtomicU64; BUCKETS],
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

impl Histogram {
    pub(crate) fn observe(&self, d: Duration) {
        self.counts[bucket_of(d.as_secs_f64())].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> Counts {
        Counts(std::array::from_fn(|i| {
            self.counts[i].load(Ordering::Relaxed)
        }))
    }
}

/// Cumulative counts per bucket, or, after `since`, the counts of a window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Counts([u64; BUCKETS]);

impl Default for Counts {
    fn default() -> Self {
        Counts([0; BUCKETS])
    }
}

impl Counts {
    /// What was counted after `earlier`.
    pub(crate) fn since(&self, earlier: &Counts) -> Counts {
        Counts(std::array::from_fn(|i| {
            self.0[i].saturating_sub(earlier.0[i])
        }))
    }

    pub(crate) fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    /// The upper bound of the bucket holding the `q` quantile (at most √2 above the
    /// true value); `None` with nothing counted.
    pub(crate) fn quantile(&self, q: f64) -> Option<f64> {
        let total = self.total();
        if total == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, n) in self.0.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Some(upper_bound(i));
            }
        }
        Some(upper_bound(BUCKETS - 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: f64) -> Duration {
        Duration::from_secs_f64(n / 1e3)
    }

    #[test]
    fn a_quantile_is_within_root_two_above_the_truth() {
        for truth in [0.00007, 0.001, 0.0123, 0.25, 3.0, 40.0] {
            let h = Histogram::default();
            h.observe(Duration::from_secs_f64(truth));
            let p = h.snapshot().quantile(0.5).unwrap();
            assert!(
                p >= truth && p <= truth * std::f64::consts::SQRT_2 * 1.000_001,
                "{truth}: {p}"
            );
        }
    }

    #[test]
    fn p50_and_p99_split_a_fast_majority_from_a_slow_tail() {
        let h = Histogram::default();
        for _ in 0..98 {
            h.observe(ms(1.0));
        }
        for _ in 0..2 {
            h.observe(ms(800.0));
        }
        let c = h.snapshot();
        assert!(c.quantile(0.5).unwrap() < 0.0015);
        assert!(c.quantile(0.99).unwrap() >= 0.8);
    }

    #[test]
    fn a_window_is_the_difference_of_two_snapshots() {
        let h = Histogram::default();
        h.observe(ms(500.0));
        let before = h.snapshot();
        h.observe(ms(2.0));
        let window = h.snapshot().since(&before);
        assert_eq!(window.total(), 1);
        assert!(window.quantile(0.99).unwrap() < 0.003);
        assert_eq!(Counts::default().quantile(0.5), None);
    }

    #[test]
    fn the_slowest_land_in_the_last_bucket() {
        assert_eq!(bucket_of(1e6), BUCKETS - 1);
        assert_eq!(bucket_of(0.0), 0);
        assert!(upper_bound(BUCKETS - 1) > 50.0);
    }
}
