//! When to hedge a heavy read: after a fixed time, or after the heavy lane's recent
//! node latency at a quantile, read from the last `KEPT` heavy calls.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use crate::config::HedgeAfter;

/// Heavy calls remembered: 256 durations, 4 KiB.
const KEPT: usize = 256;
/// Below this many, a quantile says too little: no hedging yet.
const FEWEST: usize = 20;

#[derive(Default)]
pub(super) struct HeavyLatency {
    recent: Mutex<VecDeque<Duration>>,
}

impl HeavyLatency {
    pub(super) fn record(&self, took: Duration) {
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        if recent.len() == KEPT {
            recent.pop_front();
        }
        recent.push_back(took);
    }

    /// How long a heavy read waits before a second node is asked too, if at all.
    pub(super) fn delay(&self, hedge: HedgeAfter) -> Option<Duration> {
        let q = match hedge {
            HedgeAfter::Fixed(after) => return Some(after),
            HedgeAfter::Quantile(q) => q,
        };
        let mut sorted: Vec<Duration> = {
            let recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
            if recent.len() < FEWEST {
                return None;
            }
            recent.iter().copied().collect()
        };
        sorted.sort_unstable();
        let at = ((sorted.len() - 1) as f64 * q).round() as usize;
        sorted.get(at).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quantile_reads_the_recent_heavy_calls_once_there_are_enough() {
        let l = HeavyLatency::default();
        let fixed = HedgeAfter::Fixed(Duration::from_millis(300));
        assert_eq!(l.delay(fixed), Some(Duration::from_millis(300)));
        let p90 = HedgeAfter::Quantile(0.9);
        for ms in 1..FEWEST as u64 {
            l.record(Duration::from_millis(ms));
        }
        assert_eq!(l.delay(p90), None, "too few to judge");
        for ms in FEWEST as u64..=100 {
            l.record(Duration::from_millis(ms));
        }
        assert_eq!(l.delay(p90), Some(Duration::from_millis(90)));
        // Only the last KEPT count: a node that got slower moves the quantile.
        for _ in 0..KEPT {
            l.record(Duration::from_secs(1));
        }
        assert_eq!(l.delay(p90), Some(Duration::from_secs(1)));
    }
}
