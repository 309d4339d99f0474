//! The memory budget of answers being read from the node (`upstream.max_inflight_bytes`):
//! every read reserves the bytes it buffers before it buffers them.
//!
//! A read whose length the node declared (Content-Length) reserves it all at once. A
//! chunked answer (CometBFT sends every large answer chunked) does not know its size, so
//! its reservation grows as bytes arrive; reads that grow while holding bytes could wait
//! on each other for ever. Two rules keep every read able to finish, without refusing
//! any (the banker's algorithm, for one resource):
//!
//! - a read under way grows only when, after the grant, the reads in flight can still
//!   all finish in some order, each up to its claim (its declared length, or the
//!   response cap), from what is free and what the reads before it give back;
//! - reads start in arrival order: while the oldest read waits for its first bytes, no
//!   later read starts, so a read needing the whole budget is never starved by small
//!   ones; it waits only for the reads already under way.
//!
//! A claim is at most the whole budget: an answer larger than the budget (within the
//! response cap) takes all of it and is read alone.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::Notify;

/// What a chunked read reserves first; most answers end within it.
pub(crate) const FIRST_CHUNK: u64 = 64 * 1024;

pub(crate) struct Budget {
    total: u64,
    state: Mutex<State>,
    /// Woken whenever bytes are given back.
    released: Notify,
    /// `cometgate_upstream_inflight_bytes`: bytes reserved now.
    reserved: Gauge,
}

#[derive(Default)]
struct State {
    free: u64,
    next_id: u64,
    reads: Vec<Read>,
}

#[derive(Clone, Copy)]
struct Read {
    id: u64,
    held: u64,
    claim: u64,
}

impl State {
    /// Whether giving `grant` more bytes to read `id` leaves every read able to finish.
    fn safe_after(&self, id: u64, grant: u64) -> bool {
        let Some(mut free) = self.free.checked_sub(grant) else {
            return false;
        };
        let mut needs: Vec<(u64, u64)> = self
            .reads
            .iter()
            .map(|r| {
                let held = r.held + if r.id == id { grant } else { 0 };
                (r.claim.saturating_sub(held), held)
            })
            .collect();
        // With one resource, the smallest remaining need first is the best order there is.
        needs.sort_unstable();
        for (need, held) in needs {
            if need > free {
                return false;
            }
            free += held;
        }
        true
    }

    /// A read that has not started may take its first bytes only as the oldest waiting.
    fn first_in_line(&self, id: u64) -> bool {
        self.reads
            .iter()
            .filter(|r| r.held == 0 && r.claim > 0)
            .map(|r| r.id)
            .min()
            == Some(id)
    }
}

impl Budget {
    pub(crate) fn new(total: u64, reserved: Gauge) -> Arc<Budget> {
        Arc::new(Budget {
            total,
            state: Mutex::new(State {
                free: total,
                ..State::default()
            }),
            released: Notify::new(),
            reserved,
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers a read that will buffer at most `claim` bytes (its declared length, or
    /// the response cap); nothing is reserved until `grow_to`.
    pub(crate) fn open(self: &Arc<Self>, claim: u64) -> Reservation {
        let claim = claim.min(self.total);
        let mut state = self.state();
        let id = state.next_id;
        state.next_id += 1;
        state.reads.push(Read { id, held: 0, claim });
        Reservation {
            budget: Arc::clone(self),
            id,
            held: 0,
            claim,
        }
    }

    /// Bytes reserved now, all reads together (what the gauge shows).
    #[cfg(test)]
    pub(crate) fn reserved(&self) -> u64 {
        self.total - self.state().free
    }
}

/// One read's share of the budget, given back when dropped.
pub(crate) struct Reservation {
    budget: Arc<Budget>,
    id: u64,
    held: u64,
    claim: u64,
}

impl Reservation {
    /// Bytes this read may buffer now.
    pub(crate) fn held(&self) -> u64 {
        self.held
    }

    /// Reserves at least `need` bytes in all (never past the claim), `want` if that can be
    /// had as readily, waiting as long as the rules above say. The caller's deadline
    /// bounds the wait; dropping the future leaves the reservation as it was.
    pub(crate) async fn grow_to(&mut self, need: u64, want: u64) {
        let need = need.min(self.claim);
        let want = want.clamp(need, self.claim);
        while self.held < need {
            let budget = Arc::clone(&self.budget);
            let released = budget.released.notified();
            tokio::pin!(released);
            // Registered before the check, so a release in between is not missed.
            released.as_mut().enable();
            if self.try_grow(want - self.held) || self.try_grow(need - self.held) {
                return;
            }
            released.await;
        }
    }

    fn try_grow(&mut self, grant: u64) -> bool {
        let budget = &self.budget;
        let mut state = budget.state();
        let starting = self.held == 0;
        if (starting && !state.first_in_line(self.id)) || !state.safe_after(self.id, grant) {
            return false;
        }
        state.free -= grant;
        if let Some(read) = state.reads.iter_mut().find(|r| r.id == self.id) {
            read.held += grant;
        }
        self.held += grant;
        budget.reserved.set((budget.total - state.free) as i64);
        drop(state);
        if starting {
            // The next read in line may now start.
            budget.released.notify_waiters();
        }
        true
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let budget = &self.budget;
        let mut state = budget.state();
        state.free += self.held;
        state.reads.retain(|r| r.id != self.id);
        budget.reserved.set((budget.total - state.free) as i64);
        drop(state);
        budget.released.notify_waiters();
    }
}

#[cfg(test)]
#[path = "budget_tests.rs"]
mod tests;
