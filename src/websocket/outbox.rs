//! What waits to be written to one fan-out client, bounded in messages and in bytes.
//! The hub offers events and never waits: an outbox that is full refuses, and the hub
//! cancels that client's subscription, so a slow client costs the others nothing.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use tokio::sync::Notify;
use tokio::time::Instant;

/// A piece of an event's frame.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Piece {
    /// The node's own bytes, shared by every client.
    Node(Bytes),
    /// The client's JSON-RPC id.
    Id,
    /// The client's query, as a JSON string.
    Query,
}

/// What is a subscription's own in each of its events.
#[derive(Debug)]
pub(crate) struct Own {
    /// The JSON-RPC id of its `subscribe`, raw.
    pub id: Bytes,
    /// Its query as the client spelled it, as a JSON string.
    pub query: Bytes,
}

impl Own {
    /// The slices of one event's frame for this subscription.
    pub(crate) fn slices<'a>(&'a self, pieces: &'a [Piece]) -> impl Iterator<Item = &'a [u8]> {
        pieces.iter().map(|p| match p {
            Piece::Node(b) => &b[..],
            Piece::Id => &self.id[..],
            Piece::Query => &self.query[..],
        })
    }

    fn len(&self, pieces: &[Piece]) -> usize {
        self.slices(pieces).map(<[u8]>::len).sum()
    }
}

/// One thing to write.
#[derive(Debug)]
pub(crate) enum Outgoing {
    /// A whole frame: an answer or an error.
    Frame(Bytes),
    /// An event: the node's pieces, with the subscription's own put in.
    Event {
        own: Arc<Own>,
        pieces: Arc<[Piece]>,
        /// When its node frame was read, for the delivery latency.
        read_at: Instant,
    },
    /// The hub ended subscription `sub` (`key` is its query) without the client asking;
    /// `frame` tells the client why.
    Ended {
        key: Arc<str>,
        sub: u64,
        frame: Bytes,
    },
}

impl Outgoing {
    fn bytes(&self) -> usize {
        match self {
            Outgoing::Frame(frame) | Outgoing::Ended { frame, .. } => frame.len(),
            Outgoing::Event { own, pieces, .. } => own.len(pieces),
        }
    }
}

/// Why an event was not queued.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    /// Over the message or byte bound: the client is not keeping up.
    Full,
    /// The connection is gone.
    Closed,
}

#[derive(Default)]
struct Queue {
    items: VecDeque<Outgoing>,
    bytes: usize,
    closed: bool,
}

pub(crate) struct Outbox {
    queue: Mutex<Queue>,
    ready: Notify,
    max_messages: usize,
    max_bytes: usize,
}

impl Outbox {
    pub(crate) fn new(max_messages: usize, max_bytes: usize) -> Arc<Outbox> {
        Arc::new(Outbox {
            queue: Mutex::default(),
            ready: Notify::new(),
            max_messages,
            max_bytes,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        // Nothing panics while holding it; a poisoned queue is still a queue.
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues an event, or says why not; nothing is queued on refusal.
    pub(crate) fn offer(&self, item: Outgoing) -> Result<(), Refused> {
        let mut q = self.lock();
        if q.closed {
            return Err(Refused::Closed);
        }
        let size = item.bytes();
        // An empty queue takes any one event: a block larger than the byte bound is
        // not the client's slowness.
        let over = q.items.len() >= self.max_messages || q.bytes + size > self.max_bytes;
        if over && !q.items.is_empty() {
            return Err(Refused::Full);
        }
        q.bytes += size;
        q.items.push_back(item);
        drop(q);
        self.ready.notify_one();
        Ok(())
    }

    /// Queues an answer past the bounds: there is at most one per subscription call or
    /// cancellation, and dropping it would leave the client waiting forever.
    pub(crate) fn force(&self, item: Outgoing) {
        let mut q = self.lock();
        if q.closed {
            return;
        }
        q.bytes += item.bytes();
        q.items.push_back(item);
        drop(q);
        self.ready.notify_one();
    }

    /// Everything queued, in order.
    pub(crate) fn take(&self, into: &mut Vec<Outgoing>) {
        let mut q = self.lock();
        q.bytes = 0;
        into.extend(q.items.drain(..));
        // A burst can leave a large ring behind; a connection holds it for hours.
        if q.items.capacity() > 16 {
            q.items.shrink_to(16);
        }
    }

    /// Resolves once something is queued (at once if something was queued since the
    /// last call).
    pub(crate) async fn ready(&self) {
        self.ready.notified().await;
    }

    /// The connection ended: what is queued is dropped and nothing more is taken.
    pub(crate) fn close(&self) {
        let mut q = self.lock();
        q.closed = true;
        q.items.clear();
        q.bytes = 0;
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().items.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(n: usize) -> Outgoing {
        let own = Own {
            id: Bytes::from_static(b"1"),
            query: Bytes::new(),
        };
        Outgoing::Event {
            own: Arc::new(own),
            pieces: vec![Piece::Id, Piece::Node(Bytes::from(vec![b'x'; n - 1]))].into(),
            read_at: Instant::now(),
        }
    }

    #[test]
    fn events_are_refused_past_either_bound_and_answers_are_not() {
        let outbox = Outbox::new(3, 100);
        assert_eq!(outbox.offer(event(60)), Ok(()));
        assert_eq!(outbox.offer(event(60)), Err(Refused::Full), "bytes");
        assert_eq!(outbox.offer(event(20)), Ok(()));
        assert_eq!(outbox.offer(event(10)), Ok(()));
        assert_eq!(outbox.offer(event(1)), Err(Refused::Full), "messages");
        outbox.force(Outgoing::Frame(Bytes::from_static(b"{}")));
        assert_eq!(outbox.len(), 4);
        let mut taken = Vec::new();
        outbox.take(&mut taken);
        assert_eq!(taken.len(), 4);
        assert!(matches!(taken[3], Outgoing::Frame(_)), "order kept");
        assert_eq!(outbox.offer(event(90)), Ok(()), "taking frees the bytes");
    }

    #[test]
    fn an_event_over_the_byte_bound_still_reaches_an_empty_queue() {
        let outbox = Outbox::new(3, 100);
        assert_eq!(outbox.offer(event(500)), Ok(()));
        assert_eq!(outbox.offer(event(1)), Err(Refused::Full));
    }

    #[test]
    fn a_closed_outbox_takes_nothing() {
        let outbox = Outbox::new(3, 100);
        outbox.offer(event(5)).unwrap();
        outbox.close();
        assert_eq!(outbox.offer(event(5)), Err(Refused::Closed));
        outbox.force(Outgoing::Frame(Bytes::new()));
        assert_eq!(outbox.len(), 0);
    }

    #[tokio::test]
    async fn ready_remembers_an_offer_made_before_it_was_awaited() {
        let outbox = Outbox::new(3, 100);
        outbox.offer(event(5)).unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(5), outbox.ready())
            .await
            .expect("the offer's wake-up was kept");
    }
}
