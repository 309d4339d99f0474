//! Node-call slots. A call needs a permit of its lane (`lanes.<lane>.max_concurrency`)
//! and then one of the total (`upstream.max_concurrency`). The lane permit comes first:
//! a heavy call waiting for its lane holds nothing of the total, so a saturated heavy
//! lane can never starve light calls.
//!
//! Waiting happens in a bounded queue (`lanes.<lane>.max_queue` waiters) for at most
//! `lanes.<lane>.queue_timeout`; past either the call is refused with `Overloaded`.
//! Dropping a waiting call's future gives back its queue place and anything it holds.
//!
//! With `lanes.<lane>.max_per_client`, a call that must wait for the lane first needs
//! one of its client's places in the queue (`shares`), waiting for one outside it: the
//! queue holds at most that many of one client's calls, so a flood from one client
//! waits behind itself while other clients' calls interleave. A free slot is taken by
//! whoever asks, so the share never leaves the node idle. The queue timeout covers both
//! waits.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::client::ClientKey;
use super::gate::{Gate, Pass};
use super::shares::Shares;
use crate::config::{Config, Lane, LaneConfig};
use crate::error::Rejection;

struct LaneState {
    gate: Arc<Gate>,
    max_queue: AtomicUsize,
    queue_timeout_ms: AtomicU64,
    queued: AtomicUsize,
    in_flight: AtomicUsize,
    shares: Arc<Shares>,
    max_per_client: AtomicUsize,
    /// Calls waiting for their client's share, before the lane's queue.
    share_waiting: AtomicUsize,
}

impl LaneState {
    fn new(cfg: &LaneConfig) -> LaneState {
        let s = LaneState {
            gate: Gate::new(cfg.max_concurrency),
            max_queue: AtomicUsize::new(0),
            queue_timeout_ms: AtomicU64::new(0),
            queued: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
            shares: Arc::default(),
            max_per_client: AtomicUsize::new(0),
            share_waiting: AtomicUsize::new(0),
        };
        s.set_queue(cfg);
        s
    }

    fn set_queue(&self, cfg: &LaneConfig) {
        self.max_queue.store(cfg.max_queue, Ordering::Relaxed);
        let ms = u64::try_from(cfg.queue_timeout.as_millis()).unwrap_or(u64::MAX);
        self.queue_timeout_ms.store(ms, Ordering::Relaxed);
        self.max_per_client
            .store(cfg.max_per_client, Ordering::Relaxed);
    }

    fn queue_timeout(&self) -> Duration {
        Duration::from_millis(self.queue_timeout_ms.load(Ordering::Relaxed))
    }
}

struct Inner {
    light: LaneState,
    heavy: LaneState,
    total: Arc<Gate>,
}

impl Inner {
    fn lane(&self, lane: Lane) -> &LaneState {
        match lane {
            Lane::Light => &self.light,
            Lane::Heavy => &self.heavy,
        }
    }
}

pub(super) struct Lanes {
    inner: Arc<Inner>,
}

/// A lane's state for metrics and readiness.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LaneSnapshot {
    pub in_flight: usize,
    pub queued: usize,
    pub capacity: usize,
    pub max_queue: usize,
    /// Clients holding or waiting for a share of this lane (0 without a per-client cap).
    pub busy_clients: usize,
    /// Calls waiting for their client's share, not yet in the queue.
    pub waiting_for_share: usize,
}

/// A slot for one node call, in a lane and in the total. Hold it for the whole upstream
/// exchange (response body included) and drop it.
#[must_use = "the slot is given back as soon as the permit is dropped"]
pub struct LanePermit {
    lane: Lane,
    inner: Arc<Inner>,
    // Order matters only for tidiness: the total is given back before the lane.
    _total: Pass,
    _lane: Pass,
}

impl LanePermit {
    pub fn lane(&self) -> Lane {
        self.lane
    }
}

impl std::fmt::Debug for LanePermit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LanePermit")
            .field("lane", &self.lane)
            .finish()
    }
}

impl Drop for LanePermit {
    fn drop(&mut self) {
        self.inner
            .lane(self.lane)
            .in_flight
            .fetch_sub(1, Ordering::Relaxed);
    }
}

/// A reserved queue place, given back however the wait ends.
struct Place<'a>(&'a AtomicUsize);

impl<'a> Place<'a> {
    fn enter(count: &'a AtomicUsize) -> Place<'a> {
        count.fetch_add(1, Ordering::AcqRel);
        Place(count)
    }
}

impl Drop for Place<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Lanes {
    pub(super) fn new(cfg: &Config) -> Lanes {
        Lanes {
            inner: Arc::new(Inner {
                light: LaneState::new(&cfg.lanes.light),
                heavy: LaneState::new(&cfg.lanes.heavy),
                total: Gate::new(cfg.upstream.max_concurrency),
            }),
        }
    }

    pub(super) fn reconfigure(&self, cfg: &Config) {
        for (lane, c) in [
            (Lane::Light, &cfg.lanes.light),
            (Lane::Heavy, &cfg.lanes.heavy),
        ] {
            let state = self.inner.lane(lane);
            state.set_queue(c);
            state.gate.resize(c.max_concurrency);
        }
        self.inner.total.resize(cfg.upstream.max_concurrency);
    }

    fn permit(&self, lane: Lane, lane_pass: Pass, total: Pass) -> LanePermit {
        self.inner
            .lane(lane)
            .in_flight
            .fetch_add(1, Ordering::Relaxed);
        LanePermit {
            lane,
            inner: self.inner.clone(),
            _total: total,
            _lane: lane_pass,
        }
    }

    pub(super) async fn acquire(
        &self,
        lane: Lane,
        client: &ClientKey,
    ) -> Result<LanePermit, Rejection> {
        let state = self.inner.lane(lane);
        let timeout = state.queue_timeout();
        let deadline = tokio::time::Instant::now() + timeout;
        // A Retry-After under a second reads as "now" to most clients.
        let overloaded = Rejection::Overloaded {
            lane,
            retry_after: timeout.max(Duration::from_secs(1)),
        };
        // The common case: all free, no queue bookkeeping, no timer. A free slot is
        // taken by whoever asks: shares order waiting, they never leave the node idle.
        let held = match state.gate.try_pass() {
            Some(lane_pass) => match self.inner.total.try_pass() {
                Some(total) => return Ok(self.permit(lane, lane_pass, total)),
                None => Some(lane_pass),
            },
            None => None,
        };
        // A call that must wait for the lane first takes one of its client's places in
        // the queue, waiting for one outside it; the place is given back once the call
        // leaves the queue.
        let per_client = state.max_per_client.load(Ordering::Relaxed);
        let _share = if held.is_none() && per_client > 0 {
            match state.shares.try_take(client, per_client) {
                Some(s) => Some(s),
                None => {
                    let _waiting = Place::enter(&state.share_waiting);
                    match tokio::time::timeout_at(deadline, state.shares.take(client, per_client))
                        .await
                    {
                        Ok(Some(s)) => Some(s),
                        _ => return Err(overloaded),
                    }
                }
            }
        } else {
            None
        };
        let max_queue = state.max_queue.load(Ordering::Relaxed);
        if state
            .queued
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |q| {
                (q < max_queue).then_some(q + 1)
            })
            .is_err()
        {
            return Err(overloaded);
        }
        let _place = Place(&state.queued);
        let wait = async {
            let lane_pass = match held {
                Some(p) => p,
                None => state.gate.pass().await?,
            };
            let total = self.inner.total.pass().await?;
            Some((lane_pass, total))
        };
        match tokio::time::timeout_at(deadline, wait).await {
            Ok(Some((lane_pass, total))) => Ok(self.permit(lane, lane_pass, total)),
            _ => Err(overloaded),
        }
    }

    pub(super) fn snapshot(&self, lane: Lane) -> LaneSnapshot {
        let s = self.inner.lane(lane);
        LaneSnapshot {
            in_flight: s.in_flight.load(Ordering::Relaxed),
            queued: s.queued.load(Ordering::Relaxed),
            capacity: s.gate.capacity(),
            max_queue: s.max_queue.load(Ordering::Relaxed),
            busy_clients: s.shares.busy_clients(),
            waiting_for_share: s.share_waiting.load(Ordering::Relaxed),
        }
    }

    pub(super) fn total_capacity(&self) -> usize {
        self.inner.total.capacity()
    }
}

#[cfg(test)]
#[path = "lanes_tests.rs"]
mod tests;
