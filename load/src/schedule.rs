//! Open-loop arrival schedule. Each request has an intended send time fixed before the run
//! starts; latency is measured from that time, so a server that stalls is charged for the
//! requests that should have been sent during the stall (no coordinated omission).

use std::time::Duration;

/// A constant arrival rate, `rate` requests per second, for `duration`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Schedule {
    pub rate: f64,
    pub duration: Duration,
}

impl Schedule {
    pub fn new(rate: f64, duration: Duration) -> Schedule {
        assert!(rate > 0.0 && rate.is_finite(), "rate must be positive");
        Schedule { rate, duration }
    }

    /// How many requests the run sends in total.
    pub fn total(&self) -> u64 {
        (self.rate * self.duration.as_secs_f64()).floor() as u64
    }

    /// Offset from the start at which request `i` is meant to leave. Computed from `i`
    /// rather than by adding an interval repeatedly, so rounding never drifts.
    pub fn intended(&self, i: u64) -> Duration {
        Duration::from_nanos((i as f64 * 1e9 / self.rate).round() as u64)
    }

    /// Requests that should have left by `elapsed` (the next index to send).
    pub fn due_by(&self, elapsed: Duration) -> u64 {
        let due = (elapsed.as_secs_f64() * self.rate).floor() as u64 + 1;
        due.min(self.total())
    }
}

/// Poisson arrivals at `rate` per second for `duration`: exponential gaps drawn from a
/// seeded generator, so every target sees the same arrival times. Real clients do not
/// coordinate; their calls sometimes land together, which an even schedule never does.
pub fn poisson(rate: f64, duration: Duration, seed: u64) -> Vec<Duration> {
    assert!(rate > 0.0 && rate.is_finite(), "rate must be positive");
    let mut rng = crate::rng::Rng::new(seed);
    let mut t = 0.0;
    let mut out = Vec::new();
    loop {
        // 1 - unit() is in (0, 1]: the logarithm is finite.
        t += -(1.0 - rng.unit()).ln() / rate;
        if t >= duration.as_secs_f64() {
            return out;
        }
        out.push(Duration::from_secs_f64(t));
    }
}

/// Latency as an open-loop client sees it: from the intended send time to completion,
/// never negative even if the clock read before the intended time.
pub fn latency_from_intended(intended: Duration, done: Duration) -> Duration {
    done.saturating_sub(intended)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn total_is_rate_times_duration() {
        assert_eq!(Schedule::new(100.0, Duration::from_secs(10)).total(), 1000);
        assert_eq!(Schedule::new(2.5, Duration::from_secs(2)).total(), 5);
        assert_eq!(
            Schedule::new(1000.0, Duration::from_millis(1500)).total(),
            1500
        );
    }

    #[test]
    fn intended_times_are_evenly_spaced_without_drift() {
        let s = Schedule::new(3.0, Duration::from_secs(100));
        assert_eq!(s.intended(0), Duration::ZERO);
        assert_eq!(s.intended(3), Duration::from_secs(1));
        assert_eq!(s.intended(299), Duration::from_nanos(99_666_666_667));
        let s = Schedule::new(7000.0, Duration::from_secs(10));
        assert_eq!(s.intended(70_000), Duration::from_secs(10));
    }

    #[test]
    fn due_by_counts_sends_whose_time_has_come() {
        let s = Schedule::new(10.0, Duration::from_secs(1));
        assert_eq!(s.due_by(Duration::ZERO), 1);
        assert_eq!(s.due_by(Duration::from_millis(99)), 1);
        assert_eq!(s.due_by(Duration::from_millis(100)), 2);
        assert_eq!(s.due_by(Duration::from_secs(5)), 10);
        for i in 0..10 {
            assert!(s.due_by(s.intended(i)) > i);
        }
    }

    #[test]
    fn poisson_arrivals_keep_their_rate_and_sometimes_bunch() {
        let at = poisson(10.0, Duration::from_secs(1000), 3);
        assert!((9_500..10_500).contains(&at.len()), "{}", at.len());
        assert!(at.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(at, poisson(10.0, Duration::from_secs(1000), 3), "seeded");
        // Gaps under a tenth of the mean: about 1 - e^-0.1 = 9.5% of them.
        let close = at
            .windows(2)
            .filter(|w| w[1] - w[0] < Duration::from_millis(10))
            .count();
        assert!((700..1200).contains(&close), "{close}");
    }

    #[test]
    fn a_stall_is_charged_to_the_requests_it_delayed() {
        let s = Schedule::new(100.0, Duration::from_secs(1));
        // The server froze for 500 ms from t=0: request 10 (meant for t=100ms) finishes at
        // t=501ms, so its latency is 401 ms, not the 1 ms the send-to-reply time shows.
        let done = Duration::from_millis(501);
        assert_eq!(
            latency_from_intended(s.intended(10), done),
            Duration::from_millis(401)
        );
        assert_eq!(
            latency_from_intended(Duration::from_secs(2), done),
            Duration::ZERO
        );
    }
}
