//! What one run saw: latencies in an HDR histogram (microseconds), answers by HTTP status,
//! and transport errors by kind.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;

/// The outcome of one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Status(u16),
    /// No HTTP answer: refused, reset, timed out. The string is a short class name.
    Failed(&'static str),
}

impl Outcome {
    pub fn is_ok(&self) -> bool {
        matches!(self, Outcome::Status(s) if (200..300).contains(s))
    }
}

#[derive(Clone, Debug)]
pub struct Recorder {
    pub latency_us: Histogram<u64>,
    pub statuses: BTreeMap<u16, u64>,
    pub failures: BTreeMap<&'static str, u64>,
    /// 2xx answers to heavy-lane calls (`mix::is_heavy`): the heavy throughput.
    pub heavy_ok: u64,
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder::new()
    }
}

impl Recorder {
    pub fn new() -> Recorder {
        Recorder {
            // 1 µs to 2 minutes at 3 significant digits: ~100 KB, fine per client.
            latency_us: Histogram::new_with_bounds(1, 120_000_000, 3).expect("valid bounds"),
            statuses: BTreeMap::new(),
            failures: BTreeMap::new(),
            heavy_ok: 0,
        }
    }

    /// Records one call, counting it towards the heavy throughput when `heavy` and ok.
    pub fn record_call(&mut self, latency: Duration, outcome: &Outcome, heavy: bool) {
        self.record(latency, outcome);
        if heavy && outcome.is_ok() {
            self.heavy_ok += 1;
        }
    }

    pub fn record(&mut self, latency: Duration, outcome: &Outcome) {
        let us = (latency.as_micros() as u64).clamp(1, 120_000_000);
        self.latency_us.saturating_record(us);
        match outcome {
            Outcome::Status(s) => *self.statuses.entry(*s).or_default() += 1,
            Outcome::Failed(kind) => *self.failures.entry(kind).or_default() += 1,
        }
    }

    pub fn merge(&mut self, other: &Recorder) {
        let _ = self.latency_us.add(&other.latency_us);
        for (s, n) in &other.statuses {
            *self.statuses.entry(*s).or_default() += n;
        }
        for (k, n) in &other.failures {
            *self.failures.entry(k).or_default() += n;
        }
        self.heavy_ok += other.heavy_ok;
    }

    pub fn count(&self) -> u64 {
        self.latency_us.len()
    }

    pub fn ok(&self) -> u64 {
        self.statuses
            .iter()
            .filter(|(s, _)| (200..300).contains(*s))
            .map(|(_, n)| n)
            .sum()
    }

    /// Everything that was not a 2xx answer: refusals (429/503) count here too, because
    /// to the client that sent it a refused request is a failed one.
    pub fn errors(&self) -> u64 {
        self.count() - self.ok()
    }

    pub fn quantile_ms(&self, q: f64) -> f64 {
        if self.count() == 0 {
            return 0.0;
        }
        self.latency_us.value_at_quantile(q) as f64 / 1000.0
    }

    /// Points of the latency CDF, (milliseconds, fraction at or below), for charts.
    pub fn cdf_points(&self) -> Vec<(f64, f64)> {
        if self.count() == 0 {
            return Vec::new();
        }
        self.latency_us
            .iter_quantiles(4)
            .map(|v| {
                (
                    v.value_iterated_to() as f64 / 1000.0,
                    v.quantile_iterated_to(),
                )
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_errors_and_percentiles() {
        let mut r = Recorder::new();
        for i in 1..=1000u64 {
            r.record(Duration::from_micros(i * 10), &Outcome::Status(200));
        }
        r.record(Duration::from_millis(1), &Outcome::Status(429));
        r.record(Duration::from_millis(1), &Outcome::Failed("refused"));
        assert_eq!(r.count(), 1002);
        assert_eq!(r.ok(), 1000);
        assert_eq!(r.errors(), 2);
        let p50 = r.quantile_ms(0.5);
        assert!((4.9..=5.1).contains(&p50), "{p50}");
        let mut other = Recorder::new();
        other.record(Duration::from_secs(1), &Outcome::Status(200));
        r.merge(&other);
        assert_eq!(r.count(), 1003);
        assert!(r.quantile_ms(1.0) >= 999.0);
        let cdf = r.cdf_points();
        assert!(cdf.windows(2).all(|w| w[0].0 <= w[1].0 && w[0].1 <= w[1].1));
        assert!((cdf.last().unwrap().1 - 1.0).abs() < 1e-9);
    }

    #[test]
    fn empty_recorder_reports_zeros() {
        let r = Recorder::new();
        assert_eq!(r.quantile_ms(0.99), 0.0);
        assert!(r.cdf_points().is_empty());
        assert_eq!(r.errors(), 0);
    }
}
