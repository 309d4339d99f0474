//! Node-call slots. A call needs a slot of its lane (`lanes.<lane>.max_concurrency`,
//! handed out fairly between clients by `fair`) and then one of the total
//! (`upstream.max_concurrency`). The lane slot comes first: a heavy call waiting for its
//! lane holds nothing of the total, so a saturated heavy lane can never starve light
//! calls.
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
use super::fair::{self, FairQueue, Slot};
use super::gate::{Gate, Pass};
use super::shares::Shares;
use super::usage::Board;
use crate::config::{Config, Lane, LaneConfig};
use crate::error::Rejection;

/// Clients a lane remembers the node time of; past it the least recent are forgotten.
const MAX_CLIENTS: usize = 65_536;

struct LaneState {
    queue: Arc<FairQueue>,
    /// `max_concurrency`: the limit, or with `adaptive` its ceiling.
    ceiling: AtomicUsize,
    queue_timeout_ms: AtomicU64,
    shares: Arc<Shares>,
    max_per_client: AtomicUsize,
    /// Calls waiting for their client's share, before the lane's queue.
    share_waiting: AtomicUsize,
}

fn queue_settings(cfg: &LaneConfig) -> fair::Settings {
    fair::Settings {
        fair: cfg.fair,
        max_queue: cfg.max_queue,
        max_clients: MAX_CLIENTS,
    }
}

impl LaneState {
    fn new(cfg: &LaneConfig) -> LaneState {
        let s = LaneState {
            queue: FairQueue::new(cfg.max_concurrency, queue_settings(cfg)),
            ceiling: AtomicUsize::new(cfg.max_concurrency),
            queue_timeout_ms: AtomicU64::new(0),
            shares: Arc::default(),
            max_per_client: AtomicUsize::new(0),
            share_waiting: AtomicUsize::new(0),
        };
        s.configure(cfg);
        s
    }

    fn configure(&self, cfg: &LaneConfig) {
        self.queue.set_settings(queue_settings(cfg));
        self.ceiling.store(cfg.max_concurrency, Ordering::Relaxed);
        if cfg.adaptive {
            self.queue
                .set_adaptive(cfg.min_concurrency, cfg.max_concurrency);
        } else {
            self.queue.set_limit(cfg.max_concurrency);
        }
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
    /// Both lanes' node time by client, for the live view.
    usage: Arc<Board>,
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
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LaneSnapshot {
    pub in_flight: usize,
    pub queued: usize,
    /// Calls that may run at once now: the configured or the adaptive limit. One more
    /// may be in flight on an adaptive lane (an express call, see `fair::express`).
    pub capacity: usize,
    /// `max_concurrency`: what `capacity` is, or with `adaptive` may grow to.
    pub ceiling: usize,
    pub max_queue: usize,
    /// Clients holding or waiting for a share of this lane (0 without a per-client cap).
    pub busy_clients: usize,
    /// Calls waiting for their client's share, not yet in the queue.
    pub waiting_for_share: usize,
    /// The node time a call of this lane takes, smoothed, in seconds.
    pub latency: Option<f64>,
    /// Held by the node guard: nothing new starts.
    pub paused: bool,
    /// The node guard's hold: at most this many calls, for the node's memory.
    pub hold: Option<usize>,
    /// Calls started one past the adaptive limit for a client owed node time.
    pub express_starts: u64,
}

/// A slot for one node call, in a lane and in the total. Hold it for the whole upstream
/// exchange (response body included) and drop it: its lane learns what it cost.
#[must_use = "the slot is given back as soon as the permit is dropped"]
pub(crate) struct LanePermit {
    lane: Lane,
    // The total is given back before the lane slot, whose drop may start the next call.
    _total: Pass,
    _slot: Slot,
}

impl LanePermit {
    #[cfg(test)]
    pub(crate) fn lane(&self) -> Lane {
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

/// A reserved place, given back however the wait ends.
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
        let inner = Inner {
            light: LaneState::new(&cfg.lanes.light),
            heavy: LaneState::new(&cfg.lanes.heavy),
            total: Gate::new(cfg.upstream.max_concurrency),
            usage: Arc::default(),
        };
        for lane in [&inner.light, &inner.heavy] {
            lane.queue.report_to(inner.usage.clone());
        }
        Lanes {
            inner: Arc::new(inner),
        }
    }

    /// Node time, node calls and refusals by client over the last minute.
    pub(super) fn usage(&self) -> &Board {
        &self.inner.usage
    }

    pub(super) fn reconfigure(&self, cfg: &Config) {
        for (lane, c) in [
            (Lane::Light, &cfg.lanes.light),
            (Lane::Heavy, &cfg.lanes.heavy),
        ] {
            self.inner.lane(lane).configure(c);
        }
        self.inner.total.resize(cfg.upstream.max_concurrency);
    }

    /// A slot of `lane` for a call of `method`, charged to `client`.
    pub(super) async fn acquire(
        &self,
        lane: Lane,
        client: &ClientKey,
        method: &'static str,
    ) -> Result<LanePermit, Rejection> {
        let state = self.inner.lane(lane);
        let timeout = state.queue_timeout();
        let deadline = tokio::time::Instant::now() + timeout;
        // A Retry-After under a second reads as "now" to most clients.
        let overloaded = Rejection::Overloaded {
            lane,
            retry_after: timeout.max(Duration::from_secs(1)),
        };
        let slot = match state.queue.try_now(client, method) {
            Some(slot) => slot,
            None => {
                let wait = self.wait_for_slot(state, client, method);
                match tokio::time::timeout_at(deadline, wait).await {
                    Ok(Some(slot)) => slot,
                    _ => return Err(overloaded),
                }
            }
        };
        let total = match self.inner.total.try_pass() {
            Some(total) => total,
            None => match tokio::time::timeout_at(deadline, self.inner.total.pass()).await {
                Ok(Some(total)) => total,
                _ => return Err(overloaded),
            },
        };
        Ok(LanePermit {
            lane,
            _total: total,
            _slot: slot.started_now(),
        })
    }

    /// The queue, after one of the client's places in it (with a per-client cap): a
    /// flood from one client then waits behind itself, outside the queue, and cannot
    /// fill it. `None`: the queue is full.
    async fn wait_for_slot(
        &self,
        state: &LaneState,
        client: &ClientKey,
        method: &'static str,
    ) -> Option<Slot> {
        let asked = state.queue.ask(client, method);
        let per_client = state.max_per_client.load(Ordering::Relaxed);
        let _share = if per_client > 0 {
            match state.shares.try_take(client, per_client) {
                Some(share) => Some(share),
                None => {
                    let _waiting = Place::enter(&state.share_waiting);
                    Some(state.shares.take(client, per_client).await?)
                }
            }
        } else {
            None
        };
        state.queue.queue_asked(client, asked).ok()?.granted().await
    }

    pub(super) fn snapshot(&self, lane: Lane) -> LaneSnapshot {
        let s = self.inner.lane(lane);
        let q = s.queue.snapshot();
        LaneSnapshot {
            in_flight: q.running,
            queued: q.queued,
            capacity: q.limit,
            ceiling: s.ceiling.load(Ordering::Relaxed),
            max_queue: s.queue.max_queue(),
            busy_clients: s.shares.busy_clients(),
            waiting_for_share: s.share_waiting.load(Ordering::Relaxed),
            latency: q.latency,
            paused: q.hold == Some(0),
            hold: q.hold,
            express_starts: q.express_starts,
        }
    }

    /// The node guard's hold on a lane (see `FairQueue::set_hold`).
    pub(super) fn hold(&self, lane: Lane, hold: Option<usize>) {
        self.inner.lane(lane).queue.set_hold(hold);
    }

    pub(super) fn total_capacity(&self) -> usize {
        self.inner.total.capacity()
    }
}

#[cfg(test)]
#[path = "lanes_tests.rs"]
mod tests;
