//! The fair queue's bookkeeping, start-time fair queueing (Goyal et al.) with node time
//! as the cost: each call gets a start tag, the later of the lane's virtual time and
//! its client's last finish tag, and its finish tag adds its expected node time. A freed
//! slot goes to the waiting call with the least start tag, and the virtual time is the
//! start tag of the last call started. Calls are tagged when they are asked for, so a
//! client pays for the node time it asks for, also while it waits for its place.
//!
//! So a client that asked for less than its share starts its next calls behind the
//! virtual time, ahead of every backlogged client's queue, which is what keeps an
//! ordinary client's latency beside a crowd: it waits for a slot, not for the crowd.
//! What it banks that way is capped at `MAX_CREDIT`, so a client back from idle goes
//! ahead for a short burst and then takes turns. A client with many calls asked for has
//! tags far ahead and waits its turn, and one that keeps more than `MAX_BACKLOG` asked
//! for and waiting has its next call taken as starting that far behind its last, so a
//! crowd's calls asked long ago do not go ahead of an ordinary client's asked now.

use std::collections::{HashMap, VecDeque};

use tokio::sync::oneshot;

use super::{Settings, Slot};
use crate::admission::adaptive::Adaptive;
use crate::admission::client::ClientKey;
use crate::admission::estimate::Estimates;

/// How far ahead of the virtual time a client's next call may be tagged, in node
/// seconds: a flooder whose asks ran further ahead is still last in line, and forgiven
/// once the lane has served that much more of everyone.
pub(super) const MAX_LEAD: f64 = 5.0;

/// How far behind the virtual time a client's next call may be tagged, in node seconds:
/// what a client that asked for less than its share may use ahead of the backlogged.
/// An ordinary client's calls come in bursts (a page asks two or three heavy things at
/// once); with less than a few calls' worth, the second call of a burst waits a whole
/// round of the crowd. Bounded in node time, so a returning client delays each of the
/// others by at most this much, whatever its calls cost.
pub(super) const MAX_CREDIT: f64 = 1.0;

/// How much node time a client may have asked for beyond its next call before the
/// rest counts against that call, in node seconds. Start tags alone compare clients
/// by what they were given: a crowd held to its share and an ordinary client asking
/// about as much look alike, and the crowd's calls asked first come first. What tells
/// them apart is what each has asked for and not yet had: a page's burst is well under
/// a second, a crowd keeps seconds waiting.
pub(super) const MAX_BACKLOG: f64 = 1.0;

pub(super) struct Waiter {
    pub seq: u64,
    pub method: &'static str,
    pub estimate: f64,
    /// Start tag, in node seconds of virtual time.
    pub start: f64,
    pub grant: oneshot::Sender<Slot>,
}

pub(super) struct Client {
    /// The finish tag of its last call: where its next one starts at the earliest.
    pub finish: f64,
    pub waiting: VecDeque<Waiter>,
    pub running: usize,
    /// A call of it has ended on this lane since it joined the table.
    pub served: bool,
}

impl Client {
    /// A client new to the lane, or forgotten, joining at `virtual_time`: owed the whole
    /// credit. Every way a client enters the table goes through here.
    pub(super) fn joining(virtual_time: f64) -> Client {
        Client {
            finish: virtual_time - MAX_CREDIT,
            waiting: VecDeque::new(),
            running: 0,
            served: false,
        }
    }

    pub(super) fn idle(&self) -> bool {
        self.waiting.is_empty() && self.running == 0
    }

    /// The tag a freed slot is given by: the call's start tag, and no earlier than its
    /// client's finish less `MAX_BACKLOG`.
    pub(super) fn order(&self, call: &Waiter) -> f64 {
        call.start.max(self.finish - MAX_BACKLOG)
    }

    /// Corrects the finish tag once a call's real node time is known.
    pub(super) fn charge(&mut self, correction: f64) {
        self.finish += correction;
    }
}

pub(super) struct State {
    pub settings: Settings,
    pub limit: usize,
    /// The node guard's hold on the limit (see `FairQueue::set_hold`).
    pub hold: Option<usize>,
    pub running: usize,
    pub queued: usize,
    pub next_seq: u64,
    /// The start tag of the last call started.
    pub virtual_time: f64,
    pub clients: HashMap<ClientKey, Client>,
    /// Clients with a call waiting: whom a freed slot is chosen among.
    pub backlogged: Vec<ClientKey>,
    pub estimates: Estimates,
    /// Sets `limit` from the node's latency; `None`: the limit is what config says.
    pub adaptive: Option<Adaptive>,
    /// The call started past the limit, if any (see `express`).
    pub express: super::express::Express,
}

impl State {
    /// Calls that may run now: the limit, or the guard's hold when lower.
    pub(super) fn allowed(&self) -> usize {
        self.hold.map_or(self.limit, |h| h.min(self.limit))
    }

    /// Tags a new call of `client`: its start tag, its client's finish moved past it.
    pub(super) fn tag(&mut self, client: &ClientKey, estimate: f64) -> f64 {
        self.make_room(client);
        let virtual_time = self.virtual_time;
        let c = self
            .clients
            .entry(client.clone())
            .or_insert_with(|| Client::joining(virtual_time));
        // What a client asked for beyond its share is remembered only so far: a flood
        // that stopped is soon an ordinary client again.
        let start = c
            .finish
            .clamp(virtual_time - MAX_CREDIT, virtual_time + MAX_LEAD);
        c.finish = start + estimate;
        start
    }

    /// A call takes a slot.
    pub(super) fn start(&mut self, client: &ClientKey, start: f64) {
        self.running += 1;
        self.virtual_time = self.virtual_time.max(start);
        if let Some(c) = self.clients.get_mut(client) {
            c.running += 1;
        }
    }

    /// The waiting call with the least start tag, taken no earlier than its client's
    /// finish less `MAX_BACKLOG` (among equals, the one whose client has asked for less
    /// beyond it, then the earliest arrival; the earliest of all when the lane is not
    /// fair).
    pub(super) fn next_waiter(&mut self) -> Option<(ClientKey, Waiter)> {
        let at = self.pick()?;
        self.take(at)
    }

    /// Where in `backlogged` the next call to start is, without taking it.
    pub(super) fn pick(&self) -> Option<usize> {
        let fair = self.settings.fair;
        let (at, _) = self
            .backlogged
            .iter()
            .enumerate()
            .filter_map(|(i, key)| {
                let c = self.clients.get(key)?;
                let front = c.waiting.front()?;
                // Unfair, every tag is the same: arrival order alone decides.
                let (start, asked) = if fair {
                    (c.order(front), c.finish)
                } else {
                    (0.0, 0.0)
                };
                Some((i, (start, asked, front.seq)))
            })
            .min_by(|(_, a), (_, b)| {
                a.0.total_cmp(&b.0)
                    .then(a.1.total_cmp(&b.1))
                    .then(a.2.cmp(&b.2))
            })?;
        Some(at)
    }

    /// Takes the first waiting call of `backlogged[at]`'s client.
    pub(super) fn take(&mut self, at: usize) -> Option<(ClientKey, Waiter)> {
        let key = self.backlogged.get(at)?.clone();
        let c = self.clients.get_mut(&key)?;
        let waiter = c.waiting.pop_front()?;
        if c.waiting.is_empty() {
            self.backlogged.swap_remove(at);
        }
        self.queued -= 1;
        Some((key, waiter))
    }

    /// Keeps the client table within `max_clients` before `client` may be added. Idle
    /// clients owed the whole credit are no different from new ones, so those go first;
    /// then the idle ones least ahead. Clients that are running or waiting are bounded by
    /// the lane's limit and queue, so room is found.
    pub(super) fn make_room(&mut self, client: &ClientKey) {
        let max = self.settings.max_clients.max(1);
        if self.clients.len() < max || self.clients.contains_key(client) {
            return;
        }
        let virtual_time = self.virtual_time;
        self.clients
            .retain(|_, c| !c.idle() || c.finish > virtual_time - MAX_CREDIT);
        if self.clients.len() < max {
            return;
        }
        let mut idle: Vec<f64> = self
            .clients
            .values()
            .filter(|c| c.idle())
            .map(|c| c.finish)
            .collect();
        if idle.is_empty() {
            return;
        }
        let middle = idle.len() / 2;
        let (_, cut, _) = idle.select_nth_unstable_by(middle, f64::total_cmp);
        let cut = *cut;
        self.clients.retain(|_, c| !c.idle() || c.finish > cut);
    }
}
