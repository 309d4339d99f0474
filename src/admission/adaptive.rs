//! A lane's adaptive limit: how many node calls may run at once, following the node's
//! latency. The algorithm is tower-acc's Gradient2 (Netflix's gradient2): it compares
//! the long-run latency with the latest and shrinks the limit when calls queue inside
//! the node, grows it while latency holds. `[lanes.<lane>] max_concurrency` is its
//! ceiling and `min_concurrency` its floor.

use std::time::Duration;

use tower_acc::{Algorithm, Gradient2};

/// The latency rise tolerated before the limit shrinks: a node answering in 1.5× its
/// usual time is busy, not yet queueing.
const TOLERANCE: f64 = 1.5;

pub(super) struct Adaptive {
    algorithm: Gradient2,
    bounds: (usize, usize),
}

impl Adaptive {
    pub(super) fn new(min: usize, max: usize) -> Adaptive {
        let bounds = (min, max);
        let (min, max) = (min.max(1), max.max(min.max(1)));
        // Start where a static lane would have been, within the bounds.
        let initial = 4.clamp(min, max);
        Adaptive {
            algorithm: Gradient2::builder()
                .initial_limit(initial)
                .min_limit(min)
                .max_limit(max)
                .rtt_tolerance(TOLERANCE)
                .build(),
            bounds,
        }
    }

    /// One finished call: how long it held its slot, and how many were running then.
    pub(super) fn record(&mut self, took: Duration, running: usize) {
        self.algorithm.update(took, running, false, false);
    }

    /// The floor and ceiling it was made with.
    pub(super) fn bounds(&self) -> (usize, usize) {
        self.bounds
    }

    pub(super) fn limit(&self) -> usize {
        self.algorithm.max_concurrency()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settle(a: &mut Adaptive, took: Duration, rounds: usize) {
        for _ in 0..rounds {
            let running = a.limit();
            a.record(took, running);
        }
    }

    #[test]
    fn the_limit_grows_while_latency_holds_and_shrinks_when_it_rises() {
        let mut a = Adaptive::new(1, 32);
        assert_eq!(a.limit(), 4);
        settle(&mut a, Duration::from_millis(50), 400);
        let grown = a.limit();
        assert!(grown > 8, "a node answering steadily gets more: {grown}");
        // The node slows down fourfold: calls queue inside it.
        settle(&mut a, Duration::from_millis(200), 50);
        let shrunk = a.limit();
        assert!(shrunk < grown / 2, "{grown} -> {shrunk}");
    }

    #[test]
    fn the_limit_stays_within_its_floor_and_ceiling() {
        let mut a = Adaptive::new(2, 6);
        settle(&mut a, Duration::from_millis(10), 500);
        assert_eq!(a.limit(), 6);
        for took in [100, 400, 1600, 6400] {
            settle(&mut a, Duration::from_millis(took), 50);
        }
        assert_eq!(a.limit(), 2);
    }
}
