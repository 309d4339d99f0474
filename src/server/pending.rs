//! The connections that have not sent a whole request head yet. When they fill the cap
//! the oldest is closed rather than the newest refused: a slowloris client holds its
//! sockets longest, so evicting the oldest keeps fresh clients served.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

/// Connections that have not sent a whole request head yet, oldest first.
pub(super) struct PendingQueue {
    cap: usize,
    next_id: AtomicU64,
    queue: Mutex<VecDeque<(u64, Arc<Notify>)>>,
}

/// A connection's place in the pending queue; dropped when its head arrives (or it closes).
pub(super) struct PendingTicket {
    id: u64,
    pub(super) evict: Arc<Notify>,
    queue: Arc<PendingQueue>,
}

impl Drop for PendingTicket {
    fn drop(&mut self) {
        let mut q = self.queue.lock();
        if let Some(i) = q.iter().position(|(id, _)| *id == self.id) {
            q.remove(i);
        }
    }
}

impl PendingQueue {
    pub(super) fn new(cap: usize) -> PendingQueue {
        PendingQueue {
            cap: cap.max(1),
            next_id: AtomicU64::new(0),
            queue: Mutex::new(VecDeque::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<(u64, Arc<Notify>)>> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues a new connection; when the queue is full the oldest one is told to close.
    pub(super) fn admit(self: &Arc<Self>) -> (PendingTicket, bool) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let evict = Arc::new(Notify::new());
        let mut q = self.lock();
        let mut evicted = false;
        while q.len() >= self.cap {
            if let Some((_, oldest)) = q.pop_front() {
                oldest.notify_one();
                evicted = true;
            }
        }
        q.push_back((id, evict.clone()));
        drop(q);
        (
            PendingTicket {
                id,
                evict,
                queue: self.clone(),
            },
            evicted,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::FutureExt;

    #[test]
    fn a_full_pending_queue_evicts_its_oldest() {
        let q = Arc::new(PendingQueue::new(2));
        let (a, ea) = q.admit();
        let (b, eb) = q.admit();
        assert!(!ea && !eb);
        drop(b); // its head arrived
        let (_c, ec) = q.admit();
        assert!(!ec);
        let (_d, ed) = q.admit();
        assert!(ed, "a is the oldest and goes");
        assert!(a.evict.notified().now_or_never().is_some());
    }
}
