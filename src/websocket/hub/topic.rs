//! One distinct query: its node subscription's state and the clients that share it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::watch;
use tokio::time::Instant;

use super::event::{self, Event};
use super::{Hub, Subscriber};
use crate::websocket::outbox::{Outgoing, Refused};

/// How far below the last delivered height a NewBlock is a repeat rather than a new chain.
const REPEAT_WINDOW: u64 = 100;
/// What the node says when it cancels a subscriber that falls behind.
const SLOW: &str = "client is not pulling messages fast enough";

pub(super) struct Topic {
    pub(super) key: Arc<str>,
    /// The JSON-RPC id the node's events for this topic carry.
    pub(super) node_id: String,
    /// NewBlock only: its heights are followed, so a gap can be reported.
    pub(super) new_block: bool,
    /// The node connection it lives on.
    pub(super) conn: usize,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// The node has answered the current subscribe with `{}`.
    live: bool,
    ended: bool,
    subscribers: HashMap<u64, Arc<Subscriber>>,
    /// Joined while the node had not yet answered: their `{}` waits for the node's.
    waiting: Vec<Arc<Subscriber>>,
    last_height: Option<u64>,
    /// Counts the times the topic was left empty, so a grace timer knows whether the
    /// emptiness it was started for is still the current one.
    emptied: u64,
    /// The gateway's own follower of NewBlock (the head): it keeps the topic open, and
    /// learns each height, or `None` while the node subscription is down.
    feed: Option<watch::Sender<Option<u64>>>,
}

impl Inner {
    fn is_empty(&self) -> bool {
        self.subscribers.is_empty() && self.waiting.is_empty() && self.feed.is_none()
    }
}

fn ack(sub: &Subscriber) -> Outgoing {
    Outgoing::Frame(event::answer(&sub.own.id, "{}"))
}

impl Topic {
    pub(super) fn new(key: Arc<str>, node_id: String, new_block: bool, conn: usize) -> Topic {
        Topic {
            key,
            node_id,
            new_block,
            conn,
            inner: Mutex::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn join(&self, sub: Arc<Subscriber>) {
        let mut inner = self.lock();
        if inner.live {
            sub.outbox.force(ack(&sub));
            inner.subscribers.insert(sub.id, sub);
        } else {
            inner.waiting.push(sub);
        }
    }

    /// True if `id` was here. One still waiting for the node gets its `{}` first: the
    /// node answers a subscribe before the unsubscribe that follows it.
    pub(super) fn remove(&self, id: u64) -> bool {
        let mut inner = self.lock();
        if let Some(at) = inner.waiting.iter().position(|s| s.id == id) {
            let sub = inner.waiting.swap_remove(at);
            sub.outbox.force(ack(&sub));
            return true;
        }
        inner.subscribers.remove(&id).is_some()
    }

    /// Keeps the topic open for the gateway's own follower, which `feed` tells.
    pub(super) fn pin(&self, feed: watch::Sender<Option<u64>>) {
        self.lock().feed = Some(feed);
    }

    /// If nobody is left (and the topic was not ended), a mark for `still_empty`.
    pub(super) fn emptied(&self) -> Option<u64> {
        let mut inner = self.lock();
        if inner.ended || !inner.is_empty() {
            return None;
        }
        inner.emptied += 1;
        Some(inner.emptied)
    }

    pub(super) fn still_empty(&self, mark: u64) -> bool {
        let inner = self.lock();
        !inner.ended && inner.emptied == mark && inner.is_empty()
    }

    /// Ends the topic: everyone in it, for the caller to tell, each with whether it
    /// had been answered `{}` already.
    pub(super) fn end(&self) -> Vec<(Arc<Subscriber>, bool)> {
        let mut inner = self.lock();
        inner.ended = true;
        inner.live = false;
        inner.feed = None;
        let mut gone: Vec<_> = inner.subscribers.drain().map(|(_, s)| (s, true)).collect();
        gone.extend(inner.waiting.drain(..).map(|s| (s, false)));
        gone
    }

    /// The node answered the subscribe: those waiting get their `{}` and join.
    pub(super) fn acked(&self) {
        let mut inner = self.lock();
        if inner.ended {
            return;
        }
        inner.live = true;
        for sub in std::mem::take(&mut inner.waiting) {
            sub.outbox.force(ack(&sub));
            inner.subscribers.insert(sub.id, sub);
        }
    }

    /// The node connection was lost: subscribers stay, newcomers wait for the node.
    pub(super) fn lost(&self) {
        let mut inner = self.lock();
        inner.live = false;
        if let Some(feed) = &inner.feed {
            feed.send_replace(None);
        }
    }

    /// Clients that joined but never got the node's `{}`: told `frame_for`, and out.
    pub(super) fn fail_waiting(&self) -> Vec<Arc<Subscriber>> {
        std::mem::take(&mut self.lock().waiting)
    }

    /// Nobody holds it: no client, and not the head's feed.
    pub(super) fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// Offers `event` to every subscriber; one whose outbox is full is cancelled as the
    /// node cancels a slow client, and the others never wait for it. True if anyone
    /// left (cancelled, or gone).
    pub(super) fn dispatch(&self, event: &Event, read_at: Instant, hub: &Hub) -> bool {
        let m = hub.metrics();
        let mut inner = self.lock();
        if inner.ended {
            return false;
        }
        if self.new_block {
            if !self.follow_height(&mut inner, event.height, hub) {
                return false;
            }
            if let (Some(feed), Some(height)) = (&inner.feed, event.height) {
                feed.send_replace(Some(height));
            }
        }
        let mut slow = Vec::new();
        let mut closed = Vec::new();
        let mut delivered = 0;
        for sub in inner.subscribers.values() {
            let item = Outgoing::Event {
                own: sub.own.clone(),
                pieces: event.pieces.clone(),
                read_at,
            };
            match sub.outbox.offer(item) {
                Ok(()) => delivered += 1,
                Err(Refused::Full) => slow.push(sub.id),
                Err(Refused::Closed) => closed.push(sub.id),
            }
        }
        m.delivered.inc_by(delivered);
        let left = slow.len() + closed.len();
        m.dropped.inc_by(left as u64);
        for id in closed {
            if inner.subscribers.remove(&id).is_some() {
                m.client_subscriptions.dec();
            }
        }
        for id in slow {
            let Some(sub) = inner.subscribers.remove(&id) else {
                continue;
            };
            m.client_subscriptions.dec();
            m.slow_cancellations.inc();
            tracing::info!(query = %self.key, "websocket client not reading its events: subscription cancelled");
            sub.outbox.force(Outgoing::Ended {
                key: sub.key.clone(),
                sub: sub.id,
                frame: event::cancelled(&sub.own.id, SLOW),
            });
        }
        left > 0
    }

    /// Whether a NewBlock event at `height` is news. After its node was lost, the
    /// subscription may come back on a node a block or two behind the last one: the
    /// blocks clients already have are not sent again. Far lower heights are another
    /// chain starting over, and are followed.
    fn follow_height(&self, inner: &mut Inner, height: Option<u64>, hub: &Hub) -> bool {
        let Some(height) = height else { return true };
        if let Some(last) = inner.last_height {
            if height <= last && last - height <= REPEAT_WINDOW {
                return false;
            }
            if height < last {
                inner.last_height = Some(height);
                return true;
            }
            if height > last.saturating_add(1) {
                let missed = height - last - 1;
                hub.metrics().missed_blocks.inc_by(missed);
                tracing::warn!(
                    query = %self.key,
                    first_missed = last + 1,
                    last_missed = height - 1,
                    missed,
                    "NewBlock events missed while the node subscription was down; \
                     clients see the gap in the heights they receive"
                );
            }
        }
        inner.last_height = Some(inner.last_height.map_or(height, |l| l.max(height)));
        true
    }
}
