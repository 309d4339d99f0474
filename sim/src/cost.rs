//! The seed's cost model: every answer holds `size × amplification` bytes of simulated
//! memory for `size / encode rate` seconds; past the limit the node OOMs.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

pub(crate) struct MemoryModel {
    live: AtomicU64,
    peak: AtomicU64,
    oom: AtomicBool,
    oom_count: AtomicU64,
    limit: Option<u64>,
    amplification: f64,
}

/// Memory held by one answer; released on drop.
pub(crate) struct Charge<'a> {
    model: &'a MemoryModel,
    bytes: u64,
}

impl Drop for Charge<'_> {
    fn drop(&mut self) {
        // A restart zeroes `live`; never wrap below zero for charges taken before it.
        let _ = self
            .model
            .live
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| {
                Some(v.saturating_sub(self.bytes))
            });
    }
}

impl MemoryModel {
    pub(crate) fn new(limit: Option<u64>, amplification: f64) -> Self {
        MemoryModel {
            live: AtomicU64::new(0),
            peak: AtomicU64::new(0),
            oom: AtomicBool::new(false),
            oom_count: AtomicU64::new(0),
            limit,
            amplification: amplification.max(0.0),
        }
    }

    /// Charges an answer of `size` bytes. The bool is true when this charge crossed the
    /// limit and the node just died (only the first crossing reports it).
    pub(crate) fn charge(&self, size: usize) -> (Charge<'_>, bool) {
        let bytes = (size as f64 * self.amplification) as u64;
        let now = self.live.fetch_add(bytes, Ordering::SeqCst) + bytes;
        self.peak.fetch_max(now, Ordering::SeqCst);
        let died = match self.limit {
            Some(limit) if now > limit => {
                let first = !self.oom.swap(true, Ordering::SeqCst);
                if first {
                    self.oom_count.fetch_add(1, Ordering::SeqCst);
                }
                first
            }
            _ => false,
        };
        (Charge { model: self, bytes }, died)
    }

    /// How long the encoder keeps an answer of `size` bytes alive.
    pub(crate) fn hold_time(size: usize, bytes_per_sec: u64) -> Duration {
        if bytes_per_sec == 0 {
            return Duration::ZERO;
        }
        Duration::from_secs_f64(size as f64 / bytes_per_sec as f64)
    }

    pub(crate) fn is_oom(&self) -> bool {
        self.oom.load(Ordering::SeqCst)
    }

    /// A restarted process starts with empty memory; the peak stays for the benchmark.
    pub(crate) fn restart(&self) {
        self.live.store(0, Ordering::SeqCst);
        self.oom.store(false, Ordering::SeqCst);
    }

    pub(crate) fn reset_peak(&self) {
        self.peak
            .store(self.live.load(Ordering::SeqCst), Ordering::SeqCst);
    }

    pub(crate) fn live(&self) -> u64 {
        self.live.load(Ordering::SeqCst)
    }
    pub(crate) fn peak(&self) -> u64 {
        self.peak.load(Ordering::SeqCst)
    }
    pub(crate) fn oom_count(&self) -> u64 {
        self.oom_count.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charges_and_ooms_once() {
        let m = MemoryModel::new(Some(1000), 8.0);
        let (a, died) = m.charge(100);
        assert!(!died);
        assert_eq!(m.live(), 800);
        let (b, died) = m.charge(100);
        assert!(died && m.is_oom());
        let (_c, died) = m.charge(1);
        assert!(!died);
        drop((a, b));
        assert_eq!(m.peak(), 1608);
        assert_eq!(
            MemoryModel::hold_time(5_000_000, 50_000_000),
            Duration::from_millis(100)
        );
    }
}
