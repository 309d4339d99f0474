//! Who has been costing the node over the last minute: each client's node time, node
//! calls and refusals, for the operator's live view (`/admin/state`).
//!
//! Fed by what admission already knows when it knows it: a lane slot's release (the
//! client and the node time it held) and a refused call. Nothing is added to a cache
//! hit. Memory is bounded twice: the window is a fixed ring of buckets per client, and
//! the table holds at most [`TRACKED`] clients; past that, the quarter that used the
//! least goes, so the clients the node spends its time on are the ones kept.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::client::ClientKey;

/// The window the view sums over: [`BUCKETS`] buckets of [`BUCKET`] each. A bucket
/// falls out whole, so the window spans between 50 and 60 seconds.
pub(crate) const BUCKET: Duration = Duration::from_secs(10);
pub(crate) const BUCKETS: usize = 6;

/// Clients the table remembers. Four times what the page shows, so that a client
/// climbing into the top is already being counted before it gets there.
pub(crate) const TRACKED: usize = 256;

/// What one client (or everyone) did within one bucket.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Tally {
    node_micros: u64,
    node_calls: u64,
    refusals: u64,
}

impl Tally {
    fn add(&mut self, other: Tally) {
        self.node_micros += other.node_micros;
        self.node_calls += other.node_calls;
        self.refusals += other.refusals;
    }
}

/// A fixed ring of per-bucket tallies; a slot is reused once its bucket has left the
/// window.
#[derive(Clone, Debug, Default)]
struct Window {
    tallies: [Tally; BUCKETS],
    /// Which bucket (counted from the board's start) each slot holds.
    epochs: [u64; BUCKETS],
}

impl Window {
    fn add(&mut self, epoch: u64, tally: Tally) {
        let slot = (epoch % BUCKETS as u64) as usize;
        if self.epochs[slot] != epoch {
            self.epochs[slot] = epoch;
            self.tallies[slot] = Tally::default();
        }
        self.tallies[slot].add(tally);
    }

    fn sum(&self, epoch: u64) -> Tally {
        let mut total = Tally::default();
        for (tally, at) in self.tallies.iter().zip(self.epochs) {
            if at + (BUCKETS as u64) > epoch && at <= epoch {
                total.add(*tally);
            }
        }
        total
    }
}

/// One client's last minute, as the page shows it.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct ClientUse {
    pub client: ClientKey,
    pub node_seconds: f64,
    pub node_calls: u64,
    pub refusals: u64,
}

/// The top clients and what everyone used, over the same window.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct TopClients {
    pub top: Vec<ClientUse>,
    /// Node time of every client's calls, those no longer in the table included.
    pub node_seconds: f64,
    pub node_calls: u64,
    pub refusals: u64,
    /// Clients in the table now (at most `capacity`).
    pub tracked: usize,
    pub capacity: usize,
    pub window: Duration,
}

struct Table {
    clients: HashMap<ClientKey, Window>,
    everyone: Window,
}

pub(crate) struct Board {
    started: Instant,
    table: Mutex<Table>,
}

impl Default for Board {
    fn default() -> Self {
        Board::new(Instant::now())
    }
}

impl Board {
    pub(crate) fn new(started: Instant) -> Board {
        Board {
            started,
            table: Mutex::new(Table {
                clients: HashMap::with_capacity(TRACKED),
                everyone: Window::default(),
            }),
        }
    }

    fn epoch(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.started).as_secs() / BUCKET.as_secs()
    }

    /// A node call of `client`'s ended after holding its slot for `used`.
    pub(crate) fn charge(&self, client: &ClientKey, used: Duration, at: Instant) {
        let tally = Tally {
            node_micros: u64::try_from(used.as_micros()).unwrap_or(u64::MAX),
            node_calls: 1,
            refusals: 0,
        };
        self.add(client, tally, at);
    }

    /// One of `client`'s calls was refused.
    pub(crate) fn refused(&self, client: &ClientKey, at: Instant) {
        let tally = Tally {
            refusals: 1,
            ..Tally::default()
        };
        self.add(client, tally, at);
    }

    fn add(&self, client: &ClientKey, tally: Tally, at: Instant) {
        let epoch = self.epoch(at);
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        table.everyone.add(epoch, tally);
        if let Some(window) = table.clients.get_mut(client) {
            window.add(epoch, tally);
            return;
        }
        if table.clients.len() >= TRACKED {
            table.make_room(epoch);
        }
        let mut window = Window::default();
        window.add(epoch, tally);
        table.clients.insert(client.clone(), window);
    }

    /// The `n` clients with the most node time in the window, most first.
    pub(crate) fn top(&self, n: usize, at: Instant) -> TopClients {
        let epoch = self.epoch(at);
        let table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        let mut used: Vec<(&ClientKey, Tally)> = table
            .clients
            .iter()
            .map(|(k, w)| (k, w.sum(epoch)))
            .filter(|(_, t)| *t != Tally::default())
            .collect();
        used.sort_by(|a, b| {
            (b.1.node_micros, b.1.refusals, b.1.node_calls).cmp(&(
                a.1.node_micros,
                a.1.refusals,
                a.1.node_calls,
            ))
        });
        let everyone = table.everyone.sum(epoch);
        TopClients {
            top: used
                .into_iter()
                .take(n)
                .map(|(client, t)| ClientUse {
                    client: client.clone(),
                    node_seconds: t.node_micros as f64 / 1e6,
                    node_calls: t.node_calls,
                    refusals: t.refusals,
                })
                .collect(),
            node_seconds: everyone.node_micros as f64 / 1e6,
            node_calls: everyone.node_calls,
            refusals: everyone.refusals,
            tracked: table.clients.len(),
            capacity: TRACKED,
            window: BUCKET * BUCKETS as u32,
        }
    }
}

impl Table {
    /// Forgets the clients with nothing in the window, and if that is not a quarter of
    /// the table, the quarter that used the node least: one pass pays for many inserts.
    fn make_room(&mut self, epoch: u64) {
        self.clients.retain(|_, w| w.sum(epoch) != Tally::default());
        let keep = TRACKED - TRACKED / 4;
        if self.clients.len() <= keep {
            return;
        }
        let mut scored: Vec<((u64, u64), ClientKey)> = self
            .clients
            .iter()
            .map(|(k, w)| {
                let t = w.sum(epoch);
                ((t.node_micros, t.refusals), k.clone())
            })
            .collect();
        let cut = self.clients.len() - keep;
        scored.select_nth_unstable_by_key(cut, |(score, _)| *score);
        for (_, key) in &scored[..cut] {
            self.clients.remove(key);
        }
    }
}

#[cfg(test)]
#[path = "usage_tests.rs"]
mod tests;
