//! The seed's cost model: every answer holds `size × amplification` bytes of simulated
//! memory while it is served (`size / encode rate` seconds, plus the method's own CPU
//! time, stretched by the CPU model); past the limit the node OOMs. A ballast (memory the
//! node holds for other reasons: a squeeze) counts towards the limit too.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

pub(crate) struct MemoryModel {
    live: AtomicU64,
    peak: AtomicU64,
    oom: AtomicBool,
    oom_count: AtomicU64,
    ballast: AtomicU64,
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
            ballast: AtomicU64::new(0),
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
        let died = self.check(now);
        (Charge { model: self, bytes }, died)
    }

    /// True when `live` bytes of answers plus the ballast cross the limit and the node
    /// just died (only the first crossing reports it).
    fn check(&self, live: u64) -> bool {
        match self.limit {
            Some(limit) if live + self.ballast() > limit => {
                let first = !self.oom.swap(true, Ordering::SeqCst);
                if first {
                    self.oom_count.fetch_add(1, Ordering::SeqCst);
                }
                first
            }
            _ => false,
        }
    }

    /// Memory the node holds besides its answers (a squeeze). True when setting it just
    /// killed the node.
    pub(crate) fn set_ballast(&self, bytes: u64) -> bool {
        self.ballast.store(bytes, Ordering::SeqCst);
        self.check(self.live())
    }

    pub(crate) fn ballast(&self) -> u64 {
        self.ballast.load(Ordering::SeqCst)
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
    }

    #[test]
    fn the_ballast_counts_towards_the_limit() {
        let m = MemoryModel::new(Some(1000), 1.0);
        assert!(!m.set_ballast(900));
        let (_a, died) = m.charge(50);
        assert!(!died);
        let (_b, died) = m.charge(51);
        assert!(died, "900 + 101 > 1000");
        assert_eq!(m.live(), 101, "the ballast is not an answer");
        let fresh = MemoryModel::new(Some(1000), 1.0);
        assert!(fresh.set_ballast(1001), "a ballast alone can kill");
    }
}
