//! Identical concurrent misses share one upstream call. The first caller leads and holds a
//! `Ticket`; the others follow its watch channel. A ticket that is dropped, whether the
//! leader finished, was dropped or panicked, takes its flight out of the map, so the map
//! cannot leak; followers of a leader that never published learn it was abandoned.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::watch;

use super::{Cache, Policy};
use crate::error::Rejection;
use crate::methods::CacheKey;
use crate::upstream::Answer;

pub(crate) type Outcome = Option<Result<Answer, Rejection>>;

/// A "latest" fetch is tied to the head it was planned at (see `Policy::flight_tag`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct FlightKey {
    pub key: CacheKey,
    pub tag: u64,
}

struct Flight {
    id: u64,
    /// Shared with the ticket; the channel closes once both are gone.
    outcome: Arc<watch::Sender<Outcome>>,
}

#[derive(Default)]
pub(crate) struct Flights {
    map: Mutex<HashMap<FlightKey, Flight>>,
    next_id: AtomicU64,
}

pub(crate) enum Joined {
    Lead(Ticket),
    Follow(watch::Receiver<Outcome>),
}

impl Flights {
    pub(super) fn join(self: &Arc<Self>, key: FlightKey) -> Joined {
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(flight) = map.get(&key) {
            return Joined::Follow(flight.outcome.subscribe());
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let tx = Arc::new(watch::Sender::new(None));
        map.insert(
            key.clone(),
            Flight {
                id,
                outcome: Arc::clone(&tx),
            },
        );
        Joined::Lead(Ticket {
            flights: Arc::clone(self),
            key,
            id,
            tx,
        })
    }

    pub(super) fn len(&self) -> usize {
        self.map
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Callers waiting on one flight (tests synchronise on it).
    #[cfg(test)]
    pub(crate) fn followers(&self, key: &FlightKey) -> usize {
        let map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        map.get(key).map_or(0, |f| f.outcome.receiver_count())
    }
}

/// The lead of one flight. Publishing hands the outcome to every follower; dropping ends
/// the flight.
pub(crate) struct Ticket {
    flights: Arc<Flights>,
    key: FlightKey,
    id: u64,
    tx: Arc<watch::Sender<Outcome>>,
}

impl Ticket {
    pub(crate) fn publish(&self, outcome: &Result<Answer, Rejection>) {
        self.tx.send_replace(Some(outcome.clone()));
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut map = self
            .flights
            .map
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // Only our own flight: a later one under the same key is not ours to end.
        if map.get(&self.key).is_some_and(|f| f.id == self.id) {
            map.remove(&self.key);
        }
    }
}

/// Waits for a flight's outcome.
pub(crate) async fn outcome(mut rx: watch::Receiver<Outcome>) -> Result<Answer, Rejection> {
    match rx.wait_for(Option::is_some).await {
        Ok(seen) => seen.clone().unwrap_or_else(|| Err(abandoned())),
        Err(_) => Err(abandoned()),
    }
}

pub(crate) fn abandoned() -> Rejection {
    Rejection::UpstreamUnavailable("the request leading this one was abandoned".into())
}

/// Waits on an identical call in flight.
pub(crate) struct Follower {
    pub(super) outcome: watch::Receiver<Outcome>,
}

impl Follower {
    pub(crate) async fn wait(self) -> Result<Answer, Rejection> {
        outcome(self.outcome).await
    }
}

/// Leads one flight. Dropping it without `finish` tells followers it was abandoned.
pub(crate) struct Leader {
    pub(super) cache: Cache,
    pub(super) key: CacheKey,
    pub(super) method: &'static str,
    pub(super) policy: Policy,
    pub(super) asked_height: Option<u64>,
    /// The chain generation the fetch was planned under.
    pub(super) chain: u64,
    pub(super) ticket: Ticket,
}

impl Leader {
    /// The key the answer is stored under.
    pub(crate) fn key(&self) -> &CacheKey {
        &self.key
    }

    /// Whether the answer, once fetched, never changes.
    pub(crate) fn is_immutable(&self) -> bool {
        self.policy.is_immutable()
    }

    /// Whether `answer` would be stored as this flight's for good: what an answer from
    /// the shared tier must be before it is served.
    pub(crate) fn would_keep(&self, answer: &Answer) -> bool {
        self.policy.is_immutable()
            && super::judge(self.method, self.policy, answer) == super::Verdict::Storable
            && super::verdict::answers_for(self.method, self.asked_height, answer)
    }

    /// Hands the result to every follower at once, then stores it if its verdict
    /// allows. The flight stays open until the entry is stored, so that no identical
    /// call slips past to the node meanwhile.
    pub(crate) async fn finish(self, result: &Result<Answer, Rejection>) -> Kept {
        self.ticket.publish(result);
        let policy = self
            .cache
            .caught_up(self.method, self.policy, self.chain, result);
        let Some(entry) =
            self.cache
                .entry_for(self.method, policy, self.asked_height, self.chain, result)
        else {
            return Kept::No;
        };
        let kept = match entry.policy {
            Policy::Immutable => Kept::Immutable,
            _ => Kept::ForNow,
        };
        self.cache.insert(self.key, entry).await;
        kept
    }
}

/// What became of a leader's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kept {
    /// Stored for good: it never changes.
    Immutable,
    /// Stored until the next block, or for a TTL.
    ForNow,
    /// Not stored: a failure, an error answer, too large.
    No,
}
