//! One lane's node-call slots, handed out fairly between clients.
//!
//! A free slot is taken at once by whoever asks, so the node is never left idle. When
//! all slots are busy, calls wait, and each freed slot goes by start-time fair queueing
//! weighted by node time (see `state`): a client that asked for less than its share
//! goes ahead of every client with a queue, for a bounded credit of node time, and
//! clients with queues take turns by the node time they have been given; a client's own
//! calls keep their order. Node time is what a call
//! really cost the node (the time its slot was held), counted as an estimate (its
//! method's recent average) when the call is queued and corrected when it ends.
//!
//! The number of slots is the lane's limit (fixed, or set by the adaptive limiter), and
//! the node guard can hold it lower: to as many calls as the node's memory has room for,
//! or to none, when nothing new starts and the waiting keep waiting. On an adaptive lane
//! one call may run past the limit, borrowing the next freed slot, for a client the
//! lane owes node time (see `express`).
//! Memory is bounded: the queue by `max_queue`, the client table by `max_clients`
//! (idle clients that are owed nothing go first).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use tokio::sync::oneshot;
use tokio::time::Instant;

mod express;
mod state;

use super::adaptive::{Adaptive, Sample};
use super::client::ClientKey;
use super::estimate::Estimates;
use super::usage::Board;
use express::{Express, Seen};
use state::{State, Waiter};

/// What a fair queue runs under; all of it can change on reload.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct Settings {
    /// Off: first come, first served (what the fairness is measured against).
    pub fair: bool,
    pub max_queue: usize,
    pub max_clients: usize,
}

/// Why a call was not queued.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Full {
    Queue,
}

pub(super) struct FairQueue {
    state: Mutex<State>,
    /// Where each call's node time goes once its slot is released: the live view.
    usage: OnceLock<Arc<Board>>,
}

/// A running call's slot: held for the whole node exchange, given back on drop, when
/// the call's real node time is charged and the next waiting call starts.
#[must_use = "the slot is given back as soon as it is dropped"]
pub(super) struct Slot {
    queue: Arc<FairQueue>,
    client: ClientKey,
    method: &'static str,
    estimate: f64,
    started: Instant,
    /// Calls running on the lane when this one started, itself included.
    running_at_start: usize,
    seen: Seen,
}

/// A queued call; dropping it before its slot comes takes it out of the queue.
pub(super) struct Ticket {
    queue: Arc<FairQueue>,
    client: ClientKey,
    seq: u64,
    grant: oneshot::Receiver<Slot>,
}

/// A call's tag, taken when it was asked for (see `FairQueue::ask`).
#[derive(Clone, Copy, Debug)]
pub(super) struct Asked {
    method: &'static str,
    estimate: f64,
    start: f64,
}

/// A lane's state for metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(super) struct Snapshot {
    pub limit: usize,
    /// The node time a call of this lane takes, smoothed (seconds).
    pub latency: Option<f64>,
    pub running: usize,
    pub queued: usize,
    pub clients: usize,
    /// The node guard's hold: at most this many calls start (0: none).
    pub hold: Option<usize>,
    /// Calls started one past the limit for a client owed node time (see `express`).
    pub express_starts: u64,
}

impl FairQueue {
    pub(super) fn new(limit: usize, settings: Settings) -> Arc<FairQueue> {
        Arc::new(FairQueue {
            state: Mutex::new(State {
                settings,
                limit,
                hold: None,
                running: 0,
                queued: 0,
                next_seq: 0,
                virtual_time: 0.0,
                clients: HashMap::new(),
                backlogged: Vec::new(),
                estimates: Estimates::default(),
                adaptive: None,
                express: Express::default(),
            }),
            usage: OnceLock::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A slot, if one is free and nobody waits for one.
    pub(super) fn try_now(
        self: &Arc<Self>,
        client: &ClientKey,
        method: &'static str,
    ) -> Option<Slot> {
        let now = Instant::now();
        let mut state = self.lock();
        if !state.backlogged.is_empty() || state.running >= state.allowed() {
            return None;
        }
        let estimate = state.estimates.of(method);
        let start = state.tag(client, estimate);
        state.start(client, start);
        let charge = (estimate, state.running, state.seen(false));
        drop(state);
        Some(self.slot(client.clone(), method, charge, now))
    }

    /// Tags a call as it is asked for, before it may wait for its client's place in the
    /// queue: a client is charged for the node time it asks for, so one that keeps more
    /// calls waiting than its share is behind for all of them.
    pub(super) fn ask(&self, client: &ClientKey, method: &'static str) -> Asked {
        let mut state = self.lock();
        let estimate = state.estimates.of(method);
        let start = state.tag(client, estimate);
        Asked {
            method,
            estimate,
            start,
        }
    }

    /// A place in the queue for a call already asked for.
    pub(super) fn queue_asked(
        self: &Arc<Self>,
        client: &ClientKey,
        asked: Asked,
    ) -> Result<Ticket, Full> {
        let mut state = self.lock();
        if state.queued >= state.settings.max_queue {
            return Err(Full::Queue);
        }
        let (tx, rx) = oneshot::channel();
        let seq = state.next_seq;
        state.next_seq += 1;
        state.queued += 1;
        state.make_room(client);
        // A call asked for long ago keeps its client's order but never goes ahead of
        // the virtual time: a crowd's calls waiting for their places would otherwise
        // enter, one after another, ahead of an ordinary client's call asked just now.
        let start = asked.start.max(state.virtual_time);
        // Dropped by `make_room` between its ask and now: it joins as any new client.
        let virtual_time = state.virtual_time;
        let c = state
            .clients
            .entry(client.clone())
            .or_insert_with(|| state::Client::joining(virtual_time));
        let first = c.waiting.is_empty();
        c.waiting.push_back(Waiter {
            seq,
            method: asked.method,
            estimate: asked.estimate,
            start,
            grant: tx,
        });
        if first {
            state.backlogged.push(client.clone());
        }
        // A slot may be free: the call only queued because of its share wait.
        self.dispatch(state);
        Ok(Ticket {
            queue: self.clone(),
            client: client.clone(),
            seq,
            grant: rx,
        })
    }

    fn slot(
        self: &Arc<Self>,
        client: ClientKey,
        method: &'static str,
        (estimate, running_at_start, seen): (f64, usize, Seen),
        now: Instant,
    ) -> Slot {
        Slot {
            queue: self.clone(),
            client,
            method,
            estimate,
            started: now,
            running_at_start,
            seen,
        }
    }

    /// Sets the number of slots. Raising it starts waiting calls at once; lowering it
    /// lets running calls finish.
    pub(super) fn set_limit(self: &Arc<Self>, limit: usize) {
        let mut state = self.lock();
        state.adaptive = None;
        state.limit = limit;
        self.dispatch(state);
    }

    /// Lets the node's latency set the number of slots, between `min` and `max`. A
    /// limiter already running keeps what it learned: all of it when its bounds stay,
    /// each method's unloaded time when they change.
    pub(super) fn set_adaptive(self: &Arc<Self>, min: usize, max: usize) {
        let mut state = self.lock();
        let adaptive = match state.adaptive.take() {
            Some(a) if a.bounds() == (min, max) => a,
            Some(a) => a.rebound(min, max),
            None => Adaptive::new(min, max),
        };
        state.limit = adaptive.limit();
        state.adaptive = Some(adaptive);
        self.dispatch(state);
    }

    /// Reports each released slot's client and node time to `board` from now on.
    pub(super) fn report_to(&self, board: Arc<Board>) {
        let _ = self.usage.set(board);
    }

    pub(super) fn set_settings(&self, settings: Settings) {
        self.lock().settings = settings;
    }

    pub(super) fn max_queue(&self) -> usize {
        self.lock().settings.max_queue
    }

    /// The node guard's hold: no more than `hold` calls run (`Some(0)`: nothing new
    /// starts); `None` lets the limit alone decide.
    pub(super) fn set_hold(self: &Arc<Self>, hold: Option<usize>) {
        let mut state = self.lock();
        state.hold = hold;
        self.dispatch(state);
    }

    pub(super) fn snapshot(&self) -> Snapshot {
        let state = self.lock();
        Snapshot {
            limit: state.limit,
            latency: state.estimates.lane(),
            running: state.running,
            queued: state.queued,
            clients: state.clients.len(),
            hold: state.hold,
            express_starts: state.express.starts,
        }
    }

    /// Starts waiting calls while slots are free, least recent use first, then perhaps
    /// one past the limit (see `express`). The grants are sent after the lock is
    /// released: a grant whose waiter has gone is dropped, and dropping a slot takes the
    /// lock again.
    fn dispatch(self: &Arc<Self>, mut state: MutexGuard<'_, State>) {
        let now = Instant::now();
        let mut grants = Vec::new();
        while state.running < state.allowed() {
            let Some((client, waiter)) = state.next_waiter() else {
                break;
            };
            grants.push(self.grant(&mut state, client, waiter, false, now));
        }
        if let Some((client, waiter)) = state.express_pick().and_then(|at| state.take(at)) {
            state.express_started();
            grants.push(self.grant(&mut state, client, waiter, true, now));
        }
        drop(state);
        for (tx, slot) in grants {
            let _ = tx.send(slot);
        }
    }

    fn grant(
        self: &Arc<Self>,
        state: &mut State,
        client: ClientKey,
        waiter: Waiter,
        express: bool,
        now: Instant,
    ) -> (oneshot::Sender<Slot>, Slot) {
        state.start(&client, waiter.start);
        let charge = (waiter.estimate, state.running, state.seen(express));
        (waiter.grant, self.slot(client, waiter.method, charge, now))
    }

    fn release(self: &Arc<Self>, slot: &Slot) {
        let now = Instant::now();
        let used = now.saturating_duration_since(slot.started);
        if let Some(board) = self.usage.get() {
            board.charge(&slot.client, used, now.into_std());
        }
        let mut state = self.lock();
        let running = state.running;
        state.running -= 1;
        state.estimates.record(slot.method, used);
        let undisturbed = state.express_ended(slot.seen);
        if let Some(adaptive) = state.adaptive.as_mut().filter(|_| undisturbed) {
            let sample = Sample {
                method: slot.method,
                took: used,
                running_at_start: slot.running_at_start,
                running,
            };
            adaptive.record(sample);
            state.limit = adaptive.limit();
        }
        if let Some(c) = state.clients.get_mut(&slot.client) {
            c.running -= 1;
            c.served = true;
            c.charge(used.as_secs_f64() - slot.estimate);
        }
        self.dispatch(state);
    }

    fn cancel(&self, client: &ClientKey, seq: u64) {
        let mut state = self.lock();
        let Some(c) = state.clients.get_mut(client) else {
            return;
        };
        let Some(at) = c.waiting.iter().position(|w| w.seq == seq) else {
            return; // already granted: the slot travels in the channel and is dropped
        };
        c.waiting.remove(at);
        let now_empty = c.waiting.is_empty();
        state.queued -= 1;
        if now_empty {
            state.backlogged.retain(|k| k != client);
        }
    }
}

impl Ticket {
    /// Waits for the slot. Cancel-safe: dropping the wait gives the place back.
    pub(super) async fn granted(mut self) -> Option<Slot> {
        (&mut self.grant).await.ok()
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.queue.cancel(&self.client, self.seq);
    }
}

impl Slot {
    /// Node time is counted from here: the slot may have waited for the total.
    pub(super) fn started_now(mut self) -> Slot {
        self.started = Instant::now();
        self
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let queue = self.queue.clone();
        queue.release(self);
    }
}

#[cfg(test)]
mod express_tests;
#[cfg(test)]
mod tests;
