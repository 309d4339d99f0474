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

/// A connection's wait for its first request head, shared by the service, which ends
/// it, and the connection's task, which closes the connection if evicted meanwhile.
#[derive(Clone)]
pub(super) struct HeadWait {
    ticket: Arc<Mutex<Option<PendingTicket>>>,
    evict: Option<Arc<Notify>>,
}

impl HeadWait {
    pub(super) fn new(ticket: Option<PendingTicket>) -> HeadWait {
        HeadWait {
            evict: ticket.as_ref().map(|t| t.evict.clone()),
            ticket: Arc::new(Mutex::new(ticket)),
        }
    }

    /// The connection stops counting as pending.
    pub(super) fn arrived(&self) {
        if let Ok(mut ticket) = self.ticket.lock() {
            ticket.take();
        }
    }

    /// Completes if the connection is evicted while still without a head; never
    /// otherwise. A head that arrived in the meantime wins: its request is served.
    pub(super) async fn evicted(self) {
        if let Some(evict) = &self.evict {
            evict.notified().await;
            if self.ticket.lock().map(|t| t.is_some()).unwrap_or(false) {
                return;
            }
        }
        std::future::pending().await
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

#[cfg(test)]
mod head_wait_tests {
    use super::*;
    use futures_util::FutureExt;

    #[tokio::test]
    async fn an_evicted_connection_without_a_head_closes_and_one_with_a_head_stays() {
        let q = Arc::new(PendingQueue::new(1));
        let (first, _) = q.admit();
        let waiting = HeadWait::new(Some(first));
        let (second, evicted) = q.admit();
        assert!(evicted);
        assert!(waiting.clone().evicted().now_or_never().is_some());

        let served = HeadWait::new(Some(second));
        served.arrived();
        let (_third, evicted) = q.admit();
        assert!(!evicted, "a connection with a head left the queue");
        assert!(served.evicted().now_or_never().is_none());
        assert!(HeadWait::new(None).evicted().now_or_never().is_none());
    }
}
