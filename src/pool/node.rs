//! One node of the pool: its client, its head, its breaker, and what choosing among
//! nodes reads of it (calls in flight, peak-EWMA latency).

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use super::route::{Need, Why};
use crate::breaker::Breaker;
use crate::config::NodeConfig;
use crate::head::Head;
use crate::upstream::Upstream;

/// How fast a latency estimate forgets: a node that was slow a few seconds ago is
/// tried again soon after it recovers.
const DECAY: Duration = Duration::from_secs(5);
/// The estimate of a node nothing has been measured on yet.
const FIRST_ESTIMATE: Duration = Duration::from_millis(5);
/// What a failed call counts as: a node that refuses connections answers fast, and must
/// not look like the fastest node.
pub(super) const FAILURE_PENALTY: Duration = Duration::from_secs(1);

pub(crate) struct Node {
    pub(crate) config: NodeConfig,
    pub(crate) upstream: Upstream,
    pub(crate) head: Head,
    pub(crate) breaker: Breaker,
    pub(crate) tls: Arc<rustls::ClientConfig>,
    /// `max_concurrency`, when the node has one.
    pub(super) limit: Option<Arc<Semaphore>>,
    inflight: AtomicUsize,
    latency: Mutex<PeakEwma>,
    /// Set while the node answers for another chain than the pool's.
    pub(super) ejected: AtomicBool,
    /// Its head follows the fan-out's NewBlock feed (a lone node's), not a websocket of
    /// its own: true only while it is the pool's one node.
    pub(super) fed: bool,
    pub(super) counts: Counts,
}

#[derive(Default)]
pub(crate) struct Counts {
    pub(crate) calls: AtomicU64,
    pub(crate) failures: AtomicU64,
    pub(crate) retries: AtomicU64,
    pub(crate) hedges: AtomicU64,
    pub(crate) ejections: AtomicU64,
}

/// Counts a call in flight on a node for as long as it lives, and times it. A call
/// given up (a hedge answered first) counts its time so far: the node took at least
/// that long, and must not keep looking fast.
pub(super) struct InFlight<'a> {
    node: &'a Node,
    started: Instant,
    finished: bool,
}

impl InFlight<'_> {
    /// The call's outcome: `sick` when the node failed it.
    pub(super) fn finish(mut self, sick: bool) {
        self.finished = true;
        self.node.measured(self.started.elapsed(), !sick);
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if !self.finished {
            self.node.measured(self.started.elapsed(), true);
        }
        self.node.inflight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Node {
    pub(super) fn new(
        config: NodeConfig,
        upstream: Upstream,
        head: Head,
        tls: Arc<rustls::ClientConfig>,
    ) -> Node {
        Node {
            limit: config.max_concurrency.map(|n| Arc::new(Semaphore::new(n))),
            config,
            upstream,
            head,
            breaker: Breaker::new(),
            tls,
            inflight: AtomicUsize::new(0),
            latency: Mutex::new(PeakEwma::new()),
            ejected: AtomicBool::new(false),
            fed: false,
            counts: Counts::default(),
        }
    }

    pub(crate) fn name(&self) -> String {
        super::snapshot::public_url(&self.config.url)
    }

    pub(crate) fn inflight(&self) -> usize {
        self.inflight.load(Ordering::Relaxed)
    }

    pub(super) fn start(&self) -> InFlight<'_> {
        self.inflight.fetch_add(1, Ordering::Relaxed);
        self.counts.calls.fetch_add(1, Ordering::Relaxed);
        InFlight {
            node: self,
            started: Instant::now(),
            finished: false,
        }
    }

    fn measured(&self, elapsed: Duration, ok: bool) {
        let sample = if ok {
            elapsed
        } else {
            self.counts.failures.fetch_add(1, Ordering::Relaxed);
            elapsed.max(FAILURE_PENALTY)
        };
        self.latency().observe(sample, Instant::now());
    }

    fn latency(&self) -> std::sync::MutexGuard<'_, PeakEwma> {
        self.latency.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The smoothed latency choosing reads.
    pub(crate) fn latency_estimate(&self) -> Duration {
        Duration::from_nanos(self.latency().estimate_ns() as u64)
    }

    /// What a call would cost here, relative to the other nodes: calls it would queue
    /// behind, times how long each takes, shared out by weight.
    pub(super) fn load(&self) -> f64 {
        let queued = (self.inflight() + 1) as f64;
        queued * self.latency().estimate_ns() / f64::from(self.config.weight.max(1))
    }

    /// Whether the node may take calls of `need` now, and if not, why.
    pub(crate) fn check(&self, need: &Need, pool: &PoolView) -> Result<(), Why> {
        let head = &self.head;
        if self.ejected.load(Ordering::Relaxed) {
            let chain = head.chain_id().unwrap_or_default();
            return Err(Why::OtherChain(chain));
        }
        if self.breaker.holding_off() {
            return Err(Why::CircuitOpen);
        }
        if let Some(why) = head.rpc_failure() {
            return Err(Why::Down(why));
        }
        let Some(latest) = head.height() else {
            return Err(Why::NoHead);
        };
        if need.latest {
            if head.catching_up() {
                return Err(Why::CatchingUp);
            }
            let behind = pool.best.unwrap_or(latest).saturating_sub(latest);
            if behind > pool.max_lag {
                return Err(Why::Lagging(behind));
            }
        }
        if let Some((low, high)) = need.heights {
            if let Some(earliest) = head.earliest().filter(|e| low < *e) {
                return Err(Why::Pruned(earliest));
            }
            if high > latest {
                return Err(Why::Behind(latest));
            }
        }
        Ok(())
    }
}

/// What every node's eligibility is judged against, read once per choice.
#[derive(Clone, Debug, Default)]
pub(crate) struct PoolView {
    /// The highest head among the nodes that follow the pool's chain and answer.
    pub(crate) best: Option<u64>,
    pub(crate) max_lag: u64,
}

/// Peak-EWMA: a sample above the estimate replaces it at once (a node turning slow is
/// avoided on the next call), one below is blended in as time passes.
struct PeakEwma {
    ns: f64,
    at: Option<Instant>,
}

impl PeakEwma {
    fn new() -> PeakEwma {
        PeakEwma {
            ns: FIRST_ESTIMATE.as_nanos() as f64,
            at: None,
        }
    }

    fn observe(&mut self, sample: Duration, now: Instant) {
        self.ns = self.estimate_at(now);
        let sample = sample.as_nanos() as f64;
        if sample >= self.ns {
            self.ns = sample;
        } else {
            let elapsed = self
                .at
                .map_or(DECAY, |at| now.saturating_duration_since(at));
            let keep = (-elapsed.as_secs_f64() / DECAY.as_secs_f64()).exp();
            self.ns = self.ns * keep + sample * (1.0 - keep);
        }
        self.at = Some(now);
    }

    /// The estimate, drifting back to `FIRST_ESTIMATE` while nothing is measured: a
    /// node avoided for a bad spell is tried again, and measured anew, within seconds.
    fn estimate_ns(&self) -> f64 {
        self.estimate_at(Instant::now())
    }

    fn estimate_at(&self, now: Instant) -> f64 {
        let Some(at) = self.at else { return self.ns };
        let idle = now.saturating_duration_since(at).as_secs_f64();
        let keep = (-idle / DECAY.as_secs_f64()).exp();
        let first = FIRST_ESTIMATE.as_nanos() as f64;
        self.ns * keep + first.min(self.ns) * (1.0 - keep)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slow_sample_counts_at_once_and_fades_as_fast_ones_come() {
        let t0 = Instant::now();
        let mut e = PeakEwma::new();
        e.observe(Duration::from_millis(200), t0);
        assert_eq!(e.estimate_at(t0), 200e6, "a peak replaces the estimate");
        let soon = t0 + Duration::from_millis(10);
        e.observe(Duration::from_millis(10), soon);
        assert!(
            e.estimate_at(soon) > 190e6,
            "one fast sample right after barely moves it"
        );
        let mut at = t0;
        for _ in 0..30 {
            at += Duration::from_secs(1);
            e.observe(Duration::from_millis(10), at);
        }
        assert!(e.estimate_at(at) < 11e6, "{}", e.estimate_at(at));
    }

    #[test]
    fn a_node_left_alone_after_failing_is_tried_again() {
        let t0 = Instant::now();
        let mut e = PeakEwma::new();
        e.observe(FAILURE_PENALTY, t0);
        assert_eq!(e.estimate_at(t0), 1e9);
        let later = e.estimate_at(t0 + DECAY * 4);
        assert!(later < 30e6, "{later}");
        assert!(later >= FIRST_ESTIMATE.as_nanos() as f64);
    }
}
