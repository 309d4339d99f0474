//! Fan-out: the gateway's own node subscriptions, one per distinct query, shared by
//! every client subscribed to that query.
//!
//! ```text
//! client subscribe  -> Hub::subscribe(canonical query) -> a live topic: the client's {}
//!                      is queued and it joins; else the topic waits for the node's {}
//! node connection   -> node::run: one node websocket holding up to
//!                      `node_subscriptions_per_connection` topics; reconnects and
//!                      subscribes again when lost, clients keeping their subscriptions
//! node event        -> Topic::dispatch: read once, offered to each subscriber's outbox;
//!                      an outbox that is full cancels that subscriber alone
//! last client gone  -> the node subscription ends `unsubscribe_grace` later
//! ```
//!
//! Locks: the hub's `State`, then a topic's; never held across an await.

mod event;
mod node;
mod topic;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, watch};

use super::metrics::WsMetrics;
use super::outbox::{Outbox, Outgoing, Own};
use super::query::Query;
pub(crate) use event::{answer, error, refused};
use node::Command;
use topic::Topic;

/// What the hub runs under, fixed at startup.
#[derive(Clone, Debug)]
pub(crate) struct HubSettings {
    /// Where each dial goes: the node's websocket (`ws://host:port/websocket`) and its
    /// TLS settings, asked anew at every dial so a lost node's subscriptions move on.
    pub target: NodeTarget,
    pub connect_timeout: Duration,
    pub per_connection: usize,
    pub max_connections: usize,
    pub grace: Duration,
    /// The largest node frame read (an event carries a whole block).
    pub max_frame_bytes: usize,
}

/// Picks the node a hub connection dials.
#[derive(Clone)]
pub(crate) struct NodeTarget(Arc<dyn Fn() -> (String, Arc<rustls::ClientConfig>) + Send + Sync>);

impl NodeTarget {
    pub(crate) fn new(
        pick: impl Fn() -> (String, Arc<rustls::ClientConfig>) + Send + Sync + 'static,
    ) -> NodeTarget {
        NodeTarget(Arc::new(pick))
    }

    pub(crate) fn pick(&self) -> (String, Arc<rustls::ClientConfig>) {
        (self.0)()
    }
}

impl std::fmt::Debug for NodeTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NodeTarget")
    }
}

/// One client's subscription to one topic.
pub(crate) struct Subscriber {
    pub(crate) id: u64,
    /// The query as the hub keys it.
    pub(crate) key: Arc<str>,
    /// The client's JSON-RPC id and query, put into each event.
    own: Arc<Own>,
    outbox: Arc<Outbox>,
}

struct Conn {
    commands: mpsc::UnboundedSender<Command>,
    topics: usize,
}

#[derive(Default)]
struct State {
    topics: HashMap<Arc<str>, Arc<Topic>>,
    conns: Vec<Conn>,
}

pub(crate) struct Hub {
    settings: HubSettings,
    state: Mutex<State>,
    next_id: AtomicU64,
    metrics: WsMetrics,
    me: Weak<Hub>,
}

/// What a client asks to subscribe to.
pub(crate) struct Request<'a> {
    pub key: Arc<str>,
    pub new_block: bool,
    pub client_id: &'a [u8],
    /// The client's own spelling, echoed in each event's `query`.
    pub query: &'a str,
    pub outbox: &'a Arc<Outbox>,
}

impl Hub {
    pub(crate) fn new(settings: HubSettings, metrics: WsMetrics) -> Arc<Hub> {
        Arc::new_cyclic(|me| Hub {
            settings,
            state: Mutex::default(),
            next_id: AtomicU64::new(1),
            metrics,
            me: me.clone(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn metrics(&self) -> &WsMetrics {
        &self.metrics
    }

    /// Joins the client to its query's topic, opening one at the node if there is none.
    /// The client's `{}` (or the node's refusal) reaches it through its outbox, before
    /// any event. `Err` is a refusal to answer at once.
    pub(crate) fn subscribe(&self, req: Request<'_>) -> Result<Arc<Subscriber>, String> {
        let sub = Arc::new(Subscriber {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            key: req.key.clone(),
            own: Arc::new(Own {
                id: Bytes::copy_from_slice(req.client_id),
                query: event::query_json(req.query),
            }),
            outbox: req.outbox.clone(),
        });
        let mut state = self.lock();
        let topic = match state.topics.get(&req.key) {
            Some(topic) => topic.clone(),
            None => self.open_topic(&mut state, req.key, req.new_block)?,
        };
        topic.join(sub.clone());
        self.metrics.client_subscriptions.inc();
        Ok(sub)
    }

    /// A new topic on a node connection with room, opening one if none has.
    fn open_topic(
        &self,
        state: &mut State,
        key: Arc<str>,
        new_block: bool,
    ) -> Result<Arc<Topic>, String> {
        let per = self.settings.per_connection;
        let conn = match state.conns.iter().position(|c| c.topics < per) {
            Some(conn) => conn,
            None if state.conns.len() < self.settings.max_connections => {
                let (tx, rx) = mpsc::unbounded_channel();
                node::spawn(self.me.clone(), state.conns.len(), rx);
                state.conns.push(Conn {
                    commands: tx,
                    topics: 0,
                });
                state.conns.len() - 1
            }
            None => {
                return Err(format!(
                    "this gateway already holds {} distinct queries at the node, its cap \
                     (websocket.max_node_connections × \
                     websocket.node_subscriptions_per_connection)",
                    per * self.settings.max_connections
                ))
            }
        };
        let node_id = format!("cometgate#{}", self.next_id.fetch_add(1, Ordering::Relaxed));
        let topic = Arc::new(Topic::new(key.clone(), node_id, new_block, conn));
        state.conns[conn].topics += 1;
        state.topics.insert(key, topic.clone());
        // The connection task outlives the hub's lock; a send fails only when it is gone.
        let _ = state.conns[conn]
            .commands
            .send(Command::Subscribe(topic.clone()));
        Ok(topic)
    }

    /// NewBlock heights for the gateway's head, from the hub's own NewBlock topic, so
    /// the node encodes no second subscription for them: `None` while the node
    /// subscription is down. The topic stays open for as long as the hub lives.
    pub(crate) fn new_blocks(&self) -> Option<watch::Receiver<Option<u64>>> {
        let query = Query::parse("tm.event='NewBlock'").ok()?;
        let key: Arc<str> = query.canonical().into();
        let mut state = self.lock();
        let topic = match state.topics.get(&key) {
            Some(topic) => topic.clone(),
            None => self.open_topic(&mut state, key, true).ok()?,
        };
        let (tx, rx) = watch::channel(None);
        topic.pin(tx);
        Some(rx)
    }

    /// The client left `sub` (unsubscribe, or its connection closed).
    pub(crate) fn leave(&self, sub: &Subscriber) {
        let topic = self.lock().topics.get(&sub.key).cloned();
        let Some(topic) = topic else { return };
        if topic.remove(sub.id) {
            self.metrics.client_subscriptions.dec();
        }
        self.after_leaving(&topic);
    }

    /// A topic with nobody left ends at the node after the grace period, unless someone
    /// joined meanwhile.
    fn after_leaving(&self, topic: &Arc<Topic>) {
        let Some(emptied) = topic.emptied() else {
            return;
        };
        let hub = self.me.clone();
        let topic = topic.clone();
        let grace = self.settings.grace;
        tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            if let Some(hub) = hub.upgrade() {
                hub.close_if_still_empty(&topic, emptied);
            }
        });
    }

    fn close_if_still_empty(&self, topic: &Arc<Topic>, emptied: u64) {
        let mut state = self.lock();
        // The node unsubscribes by query: only the topic still in the hub may be ended
        // there, never a newer one on the same query.
        if !topic.still_empty(emptied) || !self.forget(&mut state, topic) {
            return;
        }
        topic.end();
        if let Some(conn) = state.conns.get(topic.conn) {
            let _ = conn.commands.send(Command::Unsubscribe(topic.clone()));
        }
    }

    /// Takes `topic` out of the hub (it is no longer found by its query); false if it
    /// was already out.
    fn forget(&self, state: &mut State, topic: &Arc<Topic>) -> bool {
        let same = state
            .topics
            .get(&topic.key)
            .is_some_and(|t| Arc::ptr_eq(t, topic));
        if same {
            state.topics.remove(&topic.key);
            if let Some(conn) = state.conns.get_mut(topic.conn) {
                conn.topics -= 1;
            }
        }
        same
    }

    /// The node refused `topic`: its clients are told, and it is gone. `frame_for`
    /// words it for a subscriber that was already answered `{}` (true) or not.
    fn drop_topic(&self, topic: &Arc<Topic>, frame_for: impl Fn(&Subscriber, bool) -> Bytes) {
        let mut state = self.lock();
        self.forget(&mut state, topic);
        drop(state);
        let gone = topic.end();
        for (sub, answered) in &gone {
            let frame = frame_for(sub, *answered);
            sub.outbox.force(Outgoing::Ended {
                key: sub.key.clone(),
                sub: sub.id,
                frame,
            });
        }
        self.metrics.client_subscriptions.dec_by(gone.len() as i64);
    }
}
