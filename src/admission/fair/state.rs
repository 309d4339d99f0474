//! The fair queue's bookkeeping: each client's recent node time and waiting calls, and
//! which waiting call a freed slot goes to.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::Instant;

use super::{Settings, Slot};
use crate::admission::adaptive::Adaptive;
use crate::admission::client::ClientKey;
use crate::admission::estimate::Estimates;

pub(super) struct Waiter {
    pub seq: u64,
    pub method: &'static str,
    pub estimate: f64,
    pub grant: oneshot::Sender<Slot>,
}

#[derive(Default)]
pub(super) struct Client {
    /// Node seconds used, decayed to `at`.
    pub usage: f64,
    pub at: Option<Instant>,
    pub waiting: VecDeque<Waiter>,
    pub running: usize,
}

impl Client {
    pub(super) fn usage_at(&self, now: Instant, half_life: Duration) -> f64 {
        match self.at {
            Some(at) if !half_life.is_zero() => {
                let halvings =
                    now.saturating_duration_since(at).as_secs_f64() / half_life.as_secs_f64();
                self.usage * (-halvings).exp2()
            }
            _ => self.usage,
        }
    }

    pub(super) fn charge(&mut self, seconds: f64, now: Instant, half_life: Duration) {
        self.usage = (self.usage_at(now, half_life) + seconds).max(0.0);
        self.at = Some(now);
    }

    pub(super) fn idle(&self) -> bool {
        self.waiting.is_empty() && self.running == 0
    }
}

pub(super) struct State {
    pub settings: Settings,
    pub limit: usize,
    pub paused: bool,
    pub running: usize,
    pub queued: usize,
    pub next_seq: u64,
    pub clients: HashMap<ClientKey, Client>,
    /// Clients with a call waiting: whom a freed slot is chosen among.
    pub backlogged: Vec<ClientKey>,
    pub estimates: Estimates,
    /// Sets `limit` from the node's latency; `None`: the limit is what config says.
    pub adaptive: Option<Adaptive>,
}

impl State {
    /// A call takes a slot: counted, and charged its estimate.
    pub(super) fn start(&mut self, client: &ClientKey, estimate: f64, now: Instant) {
        self.running += 1;
        self.make_room(client, now);
        let half_life = self.settings.half_life;
        let c = self.clients.entry(client.clone()).or_default();
        c.running += 1;
        c.charge(estimate, now, half_life);
    }

    /// The waiting call of the backlogged client with the least recent use (the
    /// earliest arrival among equals; the earliest of all when the lane is not fair).
    pub(super) fn next_waiter(&mut self, now: Instant) -> Option<(ClientKey, Waiter)> {
        let half_life = self.settings.half_life;
        let fair = self.settings.fair;
        let (at, _) = self
            .backlogged
            .iter()
            .enumerate()
            .filter_map(|(i, key)| {
                let c = self.clients.get(key)?;
                let front = c.waiting.front()?;
                // Unfair, everyone has used the same: arrival order alone decides.
                let used = if fair {
                    c.usage_at(now, half_life)
                } else {
                    0.0
                };
                Some((i, (used, front.seq)))
            })
            .min_by(|(_, a), (_, b)| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)))?;
        let key = self.backlogged[at].clone();
        let c = self.clients.get_mut(&key)?;
        let waiter = c.waiting.pop_front()?;
        if c.waiting.is_empty() {
            self.backlogged.swap_remove(at);
        }
        self.queued -= 1;
        Some((key, waiter))
    }

    /// Keeps the client table within `max_clients` before `client` may be added: idle
    /// clients whose use has decayed the most go first. Clients that are running or
    /// waiting are bounded by the lane's limit and queue, so room is always found.
    pub(super) fn make_room(&mut self, client: &ClientKey, now: Instant) {
        let max = self.settings.max_clients.max(1);
        if self.clients.len() < max || self.clients.contains_key(client) {
            return;
        }
        let half_life = self.settings.half_life;
        // Drop every idle client whose use has decayed to nothing; if that frees too
        // little, the idle half with the least use.
        self.clients
            .retain(|_, c| !c.idle() || c.usage_at(now, half_life) > 1e-6);
        if self.clients.len() < max {
            return;
        }
        let mut idle: Vec<f64> = self
            .clients
            .values()
            .filter(|c| c.idle())
            .map(|c| c.usage_at(now, half_life))
            .collect();
        if idle.is_empty() {
            return;
        }
        let middle = idle.len() / 2;
        let (_, cut, _) = idle.select_nth_unstable_by(middle, f64::total_cmp);
        let cut = *cut;
        self.clients
            .retain(|_, c| !c.idle() || c.usage_at(now, half_life) > cut);
    }
}
