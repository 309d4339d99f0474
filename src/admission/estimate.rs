//! What a node call is expected to cost before it runs: its method's recent node time,
//! an exponentially weighted average, or the lane's own average for a method not seen
//! yet. The table is keyed by the method table's names, so it is bounded by them.

use std::collections::HashMap;
use std::time::Duration;

/// The weight of the newest sample: about the last ten calls count.
const WEIGHT: f64 = 0.2;

/// Before any call has been measured: a guess that orders nothing wrongly, since every
/// client is charged the same.
const FIRST_GUESS: f64 = 0.01;

#[derive(Default)]
pub(super) struct Estimates {
    by_method: HashMap<&'static str, f64>,
    lane: Option<f64>,
}

impl Estimates {
    /// The expected node seconds of one call of `method`.
    pub(super) fn of(&self, method: &str) -> f64 {
        self.by_method
            .get(method)
            .copied()
            .or(self.lane)
            .unwrap_or(FIRST_GUESS)
    }

    pub(super) fn record(&mut self, method: &'static str, took: Duration) {
        let seconds = took.as_secs_f64();
        let blend = |old: Option<f64>| match old {
            Some(old) => old + WEIGHT * (seconds - old),
            None => seconds,
        };
        let method_estimate = blend(self.by_method.get(method).copied());
        self.by_method.insert(method, method_estimate);
        self.lane = Some(blend(self.lane));
    }

    /// The lane's average node time, for metrics.
    pub(super) fn lane(&self) -> Option<f64> {
        self.lane
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_estimate_follows_its_method_and_falls_back_to_the_lane() {
        let mut e = Estimates::default();
        assert_eq!(e.of("tx_search"), FIRST_GUESS);
        e.record("tx_search", Duration::from_millis(200));
        assert!((e.of("tx_search") - 0.2).abs() < 1e-9);
        // Unseen methods are charged what the lane's calls cost.
        assert!((e.of("block_results") - 0.2).abs() < 1e-9);
        e.record("block_results", Duration::from_millis(50));
        assert!((e.of("block_results") - 0.05).abs() < 1e-9);
        for _ in 0..50 {
            e.record("tx_search", Duration::from_millis(100));
        }
        assert!(
            (e.of("tx_search") - 0.1).abs() < 1e-3,
            "{}",
            e.of("tx_search")
        );
    }
}
