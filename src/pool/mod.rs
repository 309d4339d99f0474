//! The nodes behind the gateway (`[[upstream.nodes]]`, or the one `upstream.url`), and
//! which of them takes each node call.
//!
//! ```text
//! call      Need::of(calls): pinned heights, or "latest"
//!   choose  every node checked (`Node::check`): chain, up, breaker, catching up, lag,
//!           pruning base, head -> power of two choices on load (calls in flight x
//!           peak-EWMA latency / weight); none eligible -> the best fallback, which
//!           answers its own error ("height 5 is not available, lowest height is 300")
//!   attempt breaker -> the node's own concurrency -> the node call within the deadline
//!   hedge   a heavy read unanswered after `upstream.hedge_after` also goes to a second
//!           node; the first good answer wins
//!   retry   a read whose node failed (connect, reset, timeout, 5xx) and no hedge reached
//!           a second node goes once to another, if a quarter of `upstream.timeout` is
//!           left; a broadcast never does
//! ```
//!
//! Each node has its own head (`status` and its NewBlock websocket). `consensus` turns
//! them into the gateway's head: the lowest head among the nodes eligible for
//! "latest", so a question the cache pins to it can go to any of them.

mod choose;
mod consensus;
mod hedge;
mod node;
mod route;
mod snapshot;
#[cfg(test)]
mod tests;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::{watch, Notify};
use tokio::time::Instant;

use crate::breaker::BreakerState;
use crate::config::{Config, HeadConfig, HedgeAfter, NodeConfig, UpstreamConfig};
use crate::error::Rejection;
use crate::head::Head;
use crate::methods::{Canonical, Lane};
use crate::upstream::{tls, Answer, Budget, Upstream};

pub(crate) use node::{Node, PoolView};
pub(crate) use route::{Need, Why};
pub(crate) use snapshot::{public_url, NodeSnapshot};

/// Settings a reload may change.
#[derive(Clone, Copy)]
struct Settings {
    timeout: Duration,
    max_lag: u64,
    hedge_after: Option<HedgeAfter>,
}

impl Settings {
    fn of(c: &UpstreamConfig) -> Settings {
        Settings {
            timeout: c.timeout,
            max_lag: c.max_lag_blocks,
            hedge_after: c.hedge_after,
        }
    }
}

pub(crate) struct Pool {
    nodes: ArcSwap<Vec<Arc<Node>>>,
    settings: ArcSwap<Settings>,
    /// Every node's answers share one memory budget.
    budget: Arc<Budget>,
    upstream: UpstreamConfig,
    head: HeadConfig,
    /// The chain most nodes answer for; a node on another is ejected.
    chain: Mutex<Option<String>>,
    /// Wakes `consensus` when the node list changes.
    reloaded: Notify,
    /// The heavy lane's recent node latency, for `hedge_after = "p95"`.
    heavy: hedge::HeavyLatency,
}

impl Pool {
    /// The configured nodes, each following its head. `feed` (the fan-out's NewBlock
    /// heights) is given to a lone node, which then needs no websocket of its own.
    /// `derived` becomes the gateway's head, fed by `consensus` until the pool is gone.
    pub(crate) fn spawn(
        config: &Config,
        budget: Arc<Budget>,
        feed: Option<watch::Receiver<Option<u64>>>,
        derived: &Head,
    ) -> Arc<Pool> {
        let pool = Pool::empty(config, budget);
        let list = config.upstream.node_list();
        let feed = feed.filter(|_| list.len() == 1);
        let nodes = list
            .into_iter()
            .map(|n| pool.build(n, feed.clone()))
            .collect();
        pool.nodes.store(Arc::new(nodes));
        let pool = Arc::new(pool);
        tokio::spawn(consensus::follow(Arc::downgrade(&pool), derived.clone()));
        pool
    }

    /// One node whose head is `head`, driven by the caller (tests drive it by hand).
    pub(crate) fn with_head(config: &Config, budget: Arc<Budget>, head: Head) -> Arc<Pool> {
        let pool = Pool::empty(config, budget);
        let node = NodeConfig {
            ca_file: config.upstream.ca_file.clone(),
            ..NodeConfig::new(config.upstream.url.clone())
        };
        let node = pool.node(node, |_, _| head);
        pool.nodes.store(Arc::new(vec![Arc::new(node)]));
        Arc::new(pool)
    }

    fn empty(config: &Config, budget: Arc<Budget>) -> Pool {
        Pool {
            nodes: ArcSwap::from_pointee(Vec::new()),
            settings: ArcSwap::from_pointee(Settings::of(&config.upstream)),
            budget,
            upstream: config.upstream.clone(),
            head: config.head.clone(),
            chain: Mutex::new(None),
            reloaded: Notify::new(),
            heavy: hedge::HeavyLatency::default(),
        }
    }

    /// A node following its own head, fed by `feed` when given.
    fn build(&self, config: NodeConfig, feed: Option<watch::Receiver<Option<u64>>>) -> Arc<Node> {
        let fed = feed.is_some();
        let mut node = self.node(config, |url, tls| {
            Head::spawn_fed(url, &self.head, feed, tls.clone())
        });
        node.fed = fed;
        Arc::new(node)
    }

    /// A node with its client and TLS settings, and the head `head` makes for it.
    fn node(
        &self,
        config: NodeConfig,
        head: impl FnOnce(&http::Uri, &Arc<rustls::ClientConfig>) -> Head,
    ) -> Node {
        let tls = tls::client_config(config.ca_file.as_deref());
        let upstream = Upstream::new(
            &self.upstream,
            config.url.clone(),
            self.budget.clone(),
            tls.clone(),
        );
        let head = head(&config.url, &tls);
        Node::new(config, upstream, head, tls)
    }

    /// Applies a reloaded node list: a node whose settings are unchanged stays as it is
    /// (its head, breaker, latency and calls in flight); a new or changed one starts
    /// fresh; a removed one finishes the calls it has and is then dropped.
    pub(crate) fn reconfigure(&self, config: &Config) {
        self.settings
            .store(Arc::new(Settings::of(&config.upstream)));
        let old = self.nodes.load_full();
        let list = config.upstream.node_list();
        if list.iter().eq(old.iter().map(|n| &n.config)) {
            return;
        }
        // A lone node fed by the fan-out's subscription starts over beside others: the
        // hub may then be on another node, whose heights are not this one's.
        let alone = list.len() == 1;
        let nodes: Vec<Arc<Node>> = list
            .into_iter()
            .map(|wanted| {
                let kept = old.iter().find(|n| n.config == wanted && (alone || !n.fed));
                match kept {
                    Some(kept) => kept.clone(),
                    None => self.build(wanted, None),
                }
            })
            .collect();
        let names: Vec<String> = nodes.iter().map(|n| n.name()).collect();
        tracing::info!(nodes = ?names, "the node list changed");
        self.nodes.store(Arc::new(nodes));
        self.reloaded.notify_one();
    }

    pub(crate) fn nodes(&self) -> Arc<Vec<Arc<Node>>> {
        self.nodes.load_full()
    }

    /// The best head among the nodes that answer for the pool's chain.
    pub(crate) fn view(&self) -> PoolView {
        let best = self
            .nodes
            .load()
            .iter()
            .filter(|n| !n.ejected.load(std::sync::atomic::Ordering::Relaxed))
            .filter(|n| n.head.rpc_failure().is_none())
            .filter_map(|n| n.head.height())
            .max();
        PoolView {
            best,
            max_lag: self.settings.load().max_lag,
        }
    }

    /// Whether every node's breaker keeps calls off it now.
    pub(crate) fn holding_off(&self) -> bool {
        self.nodes.load().iter().all(|n| n.breaker.holding_off())
    }

    /// The pool's breaker, as one: closed while any node's is.
    pub(crate) fn breaker_state(&self) -> BreakerState {
        let states: Vec<BreakerState> = self
            .nodes
            .load()
            .iter()
            .map(|n| n.breaker.state())
            .collect();
        [BreakerState::Closed, BreakerState::HalfOpen]
            .into_iter()
            .find(|s| states.contains(s))
            .unwrap_or(BreakerState::Open)
    }

    /// Refuses at once when every node's breaker is holding off, before a lane slot is
    /// waited for.
    pub(crate) fn admit(&self) -> Result<(), Rejection> {
        if !self.holding_off() {
            return Ok(());
        }
        let retry_after = (self.nodes.load().iter())
            .map(|n| n.breaker.retry_after())
            .min()
            .unwrap_or_default();
        Err(Rejection::CircuitOpen { retry_after })
    }

    /// The node a new websocket to the chain should go to: one eligible for "latest", or
    /// else any node on the pool's chain. Breakers judge HTTP calls; a node whose HTTP
    /// side fails may still serve its websocket, as CometBFT past its connection cap does.
    pub(crate) fn websocket_node(&self) -> Option<Arc<Node>> {
        let need = Need {
            latest: true,
            heights: None,
        };
        let nodes = self.nodes.load();
        let eligible = self.eligible(&need, None);
        if !eligible.is_empty() {
            return Some(choose::two_choices(&eligible));
        }
        (nodes.iter())
            .find(|n| !n.ejected.load(std::sync::atomic::Ordering::Relaxed))
            .or_else(|| nodes.first())
            .cloned()
    }

    /// The calls, answered by one node (or a second, after a node failure). One answer
    /// per call, in order.
    pub(crate) async fn call(
        &self,
        lane: Lane,
        calls: &[&Canonical],
    ) -> Result<Vec<Answer>, Rejection> {
        let need = Need::of(calls);
        let settings = **self.settings.load();
        let deadline = Instant::now() + settings.timeout;
        let repeatable = route::idempotent(calls);
        let first = self.choose(&need, None)?;
        let hedge = (settings.hedge_after)
            .filter(|_| repeatable && lane == Lane::Heavy)
            .and_then(|h| self.heavy.delay(h));
        let (result, two_asked) = match hedge {
            Some(after) => {
                self.hedged(&first, &need, lane, calls, deadline, after)
                    .await
            }
            None => (self.attempt(&first, lane, calls, deadline).await, false),
        };
        // Once more, on another node, with time for it: a call reaches two nodes at most.
        let failed = matches!(&result, Err(r) if route::node_failed(r));
        let left = deadline.saturating_duration_since(Instant::now());
        if !failed || !repeatable || two_asked || left < settings.timeout / 4 {
            return result;
        }
        let Ok(second) = self.choose(&need, Some(&first)) else {
            return result;
        };
        second
            .counts
            .retries
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::debug!(from = %first.name(), to = %second.name(), "retrying a read on another node");
        self.attempt(&second, lane, calls, deadline).await
    }

    async fn hedged(
        &self,
        first: &Arc<Node>,
        need: &Need,
        lane: Lane,
        calls: &[&Canonical],
        deadline: Instant,
        after: Duration,
    ) -> (Result<Vec<Answer>, Rejection>, bool) {
        let a = self.attempt(first, lane, calls, deadline);
        tokio::pin!(a);
        tokio::select! {
            result = &mut a => return (result, false),
            _ = tokio::time::sleep(after) => {}
        }
        let others = self.eligible(need, Some(first));
        if others.is_empty() {
            return (a.await, false);
        }
        let second = choose::two_choices(&others);
        second
            .counts
            .hedges
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let b = self.attempt(&second, lane, calls, deadline);
        tokio::pin!(b);
        let result = tokio::select! {
            result = &mut a => if result.is_ok() { result } else { b.await },
            result = &mut b => if result.is_ok() { result } else { a.await },
        };
        (result, true)
    }

    /// One node call on `node`: its breaker, its own concurrency, within the deadline.
    async fn attempt(
        &self,
        node: &Node,
        lane: Lane,
        calls: &[&Canonical],
        deadline: Instant,
    ) -> Result<Vec<Answer>, Rejection> {
        let probe = node.breaker.admit()?;
        let timed_out = || Rejection::UpstreamTimeout(self.settings.load().timeout);
        let _permit = match &node.limit {
            Some(limit) => Some(
                tokio::time::timeout_at(deadline, limit.clone().acquire_owned())
                    .await
                    .map_err(|_| timed_out())?
                    .map_err(|_| timed_out())?,
            ),
            None => None,
        };
        let inflight = node.start();
        let started = Instant::now();
        let within = deadline.saturating_duration_since(started);
        let result = match calls {
            [one] => node
                .upstream
                .call_within(one, within)
                .await
                .map(|a| vec![a]),
            many => node.upstream.call_batch(many, within).await,
        };
        // A timeout that came from the caller's deadline, not the node's full time, says
        // little about the node: it is neither counted nor penalised.
        let full = self.settings.load().timeout;
        let cut_short =
            within < full * 9 / 10 && matches!(&result, Err(Rejection::UpstreamTimeout(_)));
        if cut_short {
            inflight.finish(false);
            drop(probe);
            return result;
        }
        node.breaker.record(lane, &result);
        inflight.finish(matches!(&result, Err(r) if route::node_failed(r)));
        if lane == Lane::Heavy && result.is_ok() {
            self.heavy.record(started.elapsed());
        }
        drop(probe);
        result
    }
}
