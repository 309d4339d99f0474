//! Follows the chain head: one `tm.event='NewBlock'` subscription on the node's
//! `/websocket`, and `status` polled every `head.poll_interval` whether or not the
//! websocket is up: it follows the head while the websocket is down, and always brings
//! `catching_up`, the chain id and whether the node's HTTP RPC path answers at all. The
//! websocket can keep delivering blocks while every HTTP call fails (CometBFT past
//! `rpc.max_open_connections` accepts connections it never serves; open websockets keep
//! flowing), so readiness reads the last poll, not only the head.
//!
//! The head only ever rises: heights come from the node itself, from events, polls and
//! the answers passing through the gateway (`observe`), and a lower one is an older view.
//! The one exception is a new chain id in `status`: another chain now answers behind the
//! same url (a testnet reset, a restart from an exported genesis). Its heights start
//! over, and `chain_generation` moves on so that nothing kept from the old chain is
//! served again.

mod poll;
mod ws;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::config::HeadConfig;

/// Cheap to clone. The background task ends when every clone is dropped, or on
/// `shutdown`.
#[derive(Clone)]
pub struct Head {
    handle: Arc<Handle>,
}

/// Owned by the `Head` clones only: its drop is what stops the task.
struct Handle {
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
}

pub(crate) struct Shared {
    height: watch::Sender<Option<u64>>,
    state: Mutex<State>,
    stall_after: Duration,
    /// Moves on each time the node reports a different chain id.
    generation: AtomicU64,
    /// Where heights seen in answers go instead (`derived`): the one node's own head, or
    /// nowhere while several nodes answer, since an answer does not say whose it was.
    forward: Mutex<Option<Forward>>,
}

enum Forward {
    To(Head),
    Nowhere,
}

struct State {
    advanced_at: Option<Instant>,
    /// The node's lowest block, from `status`; `None` until a poll brings it.
    earliest: Option<u64>,
    catching_up: bool,
    chain_id: Option<String>,
    source: &'static str,
    /// Why the last `status` poll failed; `None` once one succeeds.
    rpc_failure: Option<String>,
}

impl Shared {
    fn new(stall_after: Duration) -> Shared {
        Shared {
            height: watch::Sender::new(None),
            state: Mutex::new(State {
                advanced_at: None,
                earliest: None,
                catching_up: false,
                chain_id: None,
                source: "none",
                rpc_failure: None,
            }),
            stall_after,
            generation: AtomicU64::new(0),
            forward: Mutex::new(None),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Raises the head; a height at or below it changes nothing.
    pub(crate) fn advance(&self, height: u64) {
        let raised = self.height.send_if_modified(|current| {
            let higher = current.is_none_or(|c| height > c);
            if higher {
                *current = Some(height);
            }
            higher
        });
        if raised {
            self.state().advanced_at = Some(Instant::now());
        }
    }

    /// What `status` says: the head, and the node's view of itself. A chain id unlike
    /// the one seen before replaces the head outright, even with a lower one.
    pub(crate) fn record_status(&self, height: u64, catching_up: bool, chain_id: String) {
        let previous = {
            let mut state = self.state();
            state.catching_up = catching_up;
            state.chain_id.replace(chain_id.clone())
        };
        match previous {
            Some(old) if old != chain_id => {
                self.generation.fetch_add(1, Ordering::AcqRel);
                self.height.send_replace(Some(height));
                self.state().advanced_at = Some(Instant::now());
                tracing::warn!(
                    old = %old,
                    new = %chain_id,
                    height,
                    "the node now serves another chain; nothing cached from the old one is served"
                );
            }
            _ => self.advance(height),
        }
    }

    pub(crate) fn set_source(&self, source: &'static str) {
        self.state().source = source;
    }

    /// What a `status` poll found of the HTTP path; a change is logged once.
    pub(crate) fn polled(&self, outcome: &Result<(), String>) {
        let failure = outcome.as_ref().err().cloned();
        let before = std::mem::replace(&mut self.state().rpc_failure, failure.clone());
        match (before, failure) {
            (None, Some(why)) => {
                tracing::warn!(reason = %why, "the node's HTTP RPC fails status: not ready")
            }
            (Some(_), None) => tracing::info!("the node's HTTP RPC answers status again"),
            _ => {}
        }
    }
}

impl Head {
    /// Starts following the node at `upstream` (its RPC url). Must be called inside a
    /// tokio runtime.
    pub fn spawn(upstream: &http::Uri, config: &HeadConfig) -> Head {
        let tls = crate::upstream::tls::client_config(None);
        Head::spawn_fed(upstream, config, None, tls)
    }

    /// As `spawn`; with a `feed` of NewBlock heights (the fan-out's own subscription,
    /// `None` while it is down), it follows that instead of a websocket of its own.
    pub(crate) fn spawn_fed(
        upstream: &http::Uri,
        config: &HeadConfig,
        feed: Option<watch::Receiver<Option<u64>>>,
        tls: Arc<rustls::ClientConfig>,
    ) -> Head {
        let head = Head::with_stall_after(config.stall_after);
        let shared = Arc::clone(&head.handle.shared);
        let stop = head.handle.stop.subscribe();
        tokio::spawn(ws::run(
            shared,
            upstream.clone(),
            config.clone(),
            feed,
            tls,
            stop,
        ));
        head
    }

    /// A head nobody follows but the caller (`set`); for tests and tools.
    pub fn manual() -> Head {
        Head::with_stall_after(HeadConfig::default().stall_after)
    }

    pub(crate) fn with_stall_after(stall_after: Duration) -> Head {
        Head {
            handle: Arc::new(Handle {
                shared: Arc::new(Shared::new(stall_after)),
                stop: watch::Sender::new(false),
            }),
        }
    }

    /// Sets the head outright (it may go down: tests replay what they need).
    pub fn set(&self, height: u64) {
        let shared = &self.handle.shared;
        if shared.height.send_replace(Some(height)) != Some(height) {
            shared.state().advanced_at = Some(Instant::now());
        }
    }

    pub fn height(&self) -> Option<u64> {
        *self.handle.shared.height.borrow()
    }

    /// Since the head last advanced.
    pub(crate) fn age(&self) -> Option<Duration> {
        self.handle
            .shared
            .state()
            .advanced_at
            .map(|at| at.elapsed())
    }

    pub(crate) fn catching_up(&self) -> bool {
        self.handle.shared.state().catching_up
    }

    /// Why the node's last `status` poll failed (an HTTP error, no answer within
    /// `head.poll_interval`, a refused connection); `None` while it answers.
    pub fn rpc_failure(&self) -> Option<String> {
        self.handle.shared.state().rpc_failure.clone()
    }

    pub fn chain_id(&self) -> Option<String> {
        self.handle.shared.state().chain_id.clone()
    }

    /// Moves on each time the node's chain id changes; answers fetched under an older
    /// generation belong to another chain. One atomic load: it is read on every lookup.
    pub(crate) fn chain_generation(&self) -> u64 {
        self.handle.shared.generation.load(Ordering::Acquire)
    }

    /// No height yet, or none newer within `stall_after`: the chain may have moved on
    /// without us.
    pub(crate) fn blind(&self) -> bool {
        self.age()
            .is_none_or(|age| age >= self.handle.shared.stall_after)
    }

    pub fn stall_after(&self) -> Duration {
        self.handle.shared.stall_after
    }

    pub fn watch(&self) -> watch::Receiver<Option<u64>> {
        self.handle.shared.height.subscribe()
    }

    /// A height seen passing through the gateway; only ever raises the head.
    pub(crate) fn observe(&self, height: u64) {
        let forward = self.handle.shared.forward.lock();
        match &*forward.unwrap_or_else(PoisonError::into_inner) {
            None => self.handle.shared.advance(height),
            Some(Forward::To(node)) => node.observe(height),
            Some(Forward::Nowhere) => {}
        }
    }

    /// A head set by its owner from the heads of several nodes (the pool's consensus),
    /// never by answers it sees: those go to `forward_to`.
    pub(crate) fn derived(stall_after: Duration) -> Head {
        let head = Head::with_stall_after(stall_after);
        *head
            .handle
            .shared
            .forward
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(Forward::Nowhere);
        head
    }

    /// For a `derived` head: the node head that answers' heights now belong to.
    pub(crate) fn forward_to(&self, node: Option<Head>) {
        let mut forward = self
            .handle
            .shared
            .forward
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if forward.is_some() {
            *forward = Some(node.map_or(Forward::Nowhere, Forward::To));
        }
    }

    /// What the derived head's owner read from its nodes: the consensus height, and
    /// whether every node is catching up. With a chain id it takes the path `status`
    /// takes, so a new chain id moves the generation on; without one (no node has
    /// answered `status` yet) the height only rises.
    pub(crate) fn set_consensus(&self, height: u64, catching_up: bool, chain_id: Option<String>) {
        let shared = &self.handle.shared;
        match chain_id {
            Some(chain) => shared.record_status(height, catching_up, chain),
            None => {
                shared.state().catching_up = catching_up;
                shared.advance(height);
            }
        }
    }

    /// Why no node can serve "latest" now, for the derived head's owner, which says so
    /// in its own words; `None` when one can.
    pub(crate) fn set_failure(&self, failure: Option<String>) {
        self.handle.shared.state().rpc_failure = failure;
    }

    /// The node's lowest block (its pruning base), once `status` has said.
    pub(crate) fn earliest(&self) -> Option<u64> {
        self.handle.shared.state().earliest
    }

    /// "websocket" | "polling" | "none".
    #[cfg(test)]
    pub(crate) fn source(&self) -> &'static str {
        self.handle.shared.state().source
    }

    pub fn shutdown(&self) {
        self.handle.stop.send_replace(true);
    }
}

/// Resolves when the task should end: `shutdown` was called or every `Head` is gone.
pub(crate) async fn stopped(stop: &mut watch::Receiver<bool>) {
    // An error means the sender (the last `Head`) is gone.
    let _ = stop.wait_for(|stop| *stop).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn only_rises_and_turns_blind_when_it_stalls() {
        let head = Head::with_stall_after(Duration::from_secs(30));
        assert!(head.blind());
        assert_eq!((head.height(), head.age()), (None, None));
        let mut rx = head.watch();
        head.observe(10);
        assert_eq!(head.height(), Some(10));
        assert!(rx.has_changed().unwrap());
        rx.borrow_and_update();
        head.observe(9);
        head.observe(10);
        assert_eq!(head.height(), Some(10));
        assert!(
            !rx.has_changed().unwrap(),
            "a lower or equal height is no news"
        );
        assert!(!head.blind());
        tokio::time::advance(Duration::from_secs(29)).await;
        assert!(!head.blind());
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(head.blind());
        head.observe(11);
        assert!(!head.blind());
        assert_eq!(head.age(), Some(Duration::ZERO));
        assert_eq!(head.source(), "none");
    }

    #[tokio::test(start_paused = true)]
    async fn a_new_chain_id_replaces_the_head_and_moves_the_generation() {
        let head = Head::manual();
        let shared = &head.handle.shared;
        shared.record_status(50, false, "one".into());
        shared.record_status(40, false, "one".into());
        assert_eq!((head.height(), head.chain_generation()), (Some(50), 0));
        shared.record_status(3, true, "two".into());
        assert_eq!(head.height(), Some(3), "the new chain's heights start over");
        assert_eq!(head.chain_generation(), 1);
        assert_eq!(head.chain_id().as_deref(), Some("two"));
        assert!(head.catching_up());
        shared.record_status(4, false, "two".into());
        assert_eq!((head.height(), head.chain_generation()), (Some(4), 1));
    }

    #[test]
    fn a_failed_poll_is_remembered_until_a_good_one() {
        let head = Head::manual();
        let shared = &head.handle.shared;
        assert_eq!(head.rpc_failure(), None);
        shared.polled(&Err("status answered HTTP 500".into()));
        assert_eq!(
            head.rpc_failure().as_deref(),
            Some("status answered HTTP 500")
        );
        shared.polled(&Err("status timed out after 1s".into()));
        assert_eq!(
            head.rpc_failure().as_deref(),
            Some("status timed out after 1s")
        );
        shared.polled(&Ok(()));
        assert_eq!(head.rpc_failure(), None);
    }

    /// Waits (in virtual time) until only `head` still holds the shared state.
    async fn task_gone(shared: &Arc<Shared>) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Arc::strong_count(shared) > 1 {
            assert!(Instant::now() < deadline, "the head task is still running");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_task_ends_with_the_last_head_or_on_shutdown() {
        let config = HeadConfig {
            websocket: false,
            ..HeadConfig::default()
        };
        // Nothing listens here; the task keeps polling until told to stop.
        let url: http::Uri = "http://127.0.0.1:9/".parse().unwrap();
        let head = Head::spawn(&url, &config);
        let shared = Arc::clone(&head.handle.shared);
        let clone = head.clone();
        drop(head);
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(
            Arc::strong_count(&shared),
            3,
            "a clone keeps the task alive"
        );
        drop(clone);
        task_gone(&shared).await;

        let head = Head::spawn(&url, &config);
        head.shutdown();
        task_gone(&head.handle.shared).await;
        assert_eq!((head.height(), head.source()), (None, "none"));
    }
}
