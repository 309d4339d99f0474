//! A semaphore whose size can change under load. Growing adds permits; shrinking
//! forgets the idle ones and records the rest as debt, paid by the next permits to come
//! back (they are forgotten instead of returned). Permits already held stay valid and
//! are released into the new size.
//!
//! Permits are forgotten the moment they are acquired and given back by `Pass::drop`,
//! so every release goes through the debt check; a cancelled wait holds nothing.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Semaphore;

pub(super) struct Gate {
    sem: Semaphore,
    capacity: AtomicUsize,
    debt: AtomicUsize,
    /// Two reloads must not interleave their add/forget arithmetic.
    resizing: Mutex<()>,
}

fn bounded(n: usize) -> usize {
    n.min(Semaphore::MAX_PERMITS)
}

impl Gate {
    pub(super) fn new(capacity: usize) -> Arc<Gate> {
        let capacity = bounded(capacity);
        Arc::new(Gate {
            sem: Semaphore::new(capacity),
            capacity: AtomicUsize::new(capacity),
            debt: AtomicUsize::new(0),
            resizing: Mutex::new(()),
        })
    }

    pub(super) fn capacity(&self) -> usize {
        self.capacity.load(Ordering::Relaxed)
    }

    pub(super) fn try_pass(self: &Arc<Self>) -> Option<Pass> {
        let permit = self.sem.try_acquire().ok()?;
        permit.forget();
        Some(Pass { gate: self.clone() })
    }

    /// Waits for a permit; `None` only if the semaphore were closed, which it never is.
    pub(super) async fn pass(self: &Arc<Self>) -> Option<Pass> {
        let permit = self.sem.acquire().await.ok()?;
        permit.forget();
        Some(Pass { gate: self.clone() })
    }

    pub(super) fn resize(&self, capacity: usize) {
        let _one_at_a_time = self.resizing.lock().unwrap_or_else(|e| e.into_inner());
        let new = bounded(capacity);
        let old = self.capacity.swap(new, Ordering::AcqRel);
        if new > old {
            let grow = new - old;
            let owed = self
                .debt
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |d| {
                    Some(d.saturating_sub(grow))
                })
                .unwrap_or(0);
            self.sem.add_permits(grow - owed.min(grow));
        } else if new < old {
            let cut = old - new;
            let forgotten = self.sem.forget_permits(cut);
            self.debt.fetch_add(cut - forgotten, Ordering::AcqRel);
        }
    }

    fn release(&self) {
        let paid = self
            .debt
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |d| d.checked_sub(1))
            .is_ok();
        if !paid {
            self.sem.add_permits(1);
        }
    }

    #[cfg(test)]
    pub(super) fn available(&self) -> usize {
        self.sem.available_permits()
    }
}

/// One permit of a gate, given back (or paid as debt) on drop.
pub(super) struct Pass {
    gate: Arc<Gate>,
}

impl Drop for Pass {
    fn drop(&mut self) {
        self.gate.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shrinking_below_what_is_held_is_paid_back_on_release() {
        let g = Gate::new(3);
        let held: Vec<Pass> = (0..3).map(|_| g.try_pass().unwrap()).collect();
        g.resize(1);
        assert!(g.try_pass().is_none());
        drop(held);
        assert_eq!(g.available(), 1);
        assert_eq!(g.capacity(), 1);
    }

    #[test]
    fn growing_pays_debt_before_adding_permits() {
        let g = Gate::new(4);
        let held: Vec<Pass> = (0..4).map(|_| g.try_pass().unwrap()).collect();
        g.resize(1);
        g.resize(2);
        drop(held);
        assert_eq!(g.available(), 2);
        g.resize(5);
        assert_eq!(g.available(), 5);
    }

    #[test]
    fn idle_permits_are_removed_at_once() {
        let g = Gate::new(5);
        let p = g.try_pass().unwrap();
        g.resize(2);
        assert_eq!(g.available(), 1);
        drop(p);
        assert_eq!(g.available(), 2);
        g.resize(usize::MAX);
        assert_eq!(g.capacity(), Semaphore::MAX_PERMITS);
    }
}
