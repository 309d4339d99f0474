//! The gateway's head, made from the nodes' heads: after every node head change (and
//! once a `head.poll_interval`, for what changes without a new height: a failed poll,
//! catching up, a breaker), the pool's chain is settled, nodes on another chain are
//! ejected, and the head becomes the lowest head among the nodes eligible for "latest".
//! It only rises, unless no eligible node holds it any more.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError, Weak};

use futures_util::future::select_all;
use tokio::sync::watch;

use super::{Need, Node, Pool};
use crate::head::Head;

const LATEST: Need = Need {
    latest: true,
    heights: None,
};

/// Runs until the pool is dropped.
pub(super) async fn follow(pool: Weak<Pool>, derived: Head) {
    loop {
        let (mut heads, every) = {
            let Some(pool) = pool.upgrade() else { return };
            pool.settle(&derived);
            let heads: Vec<watch::Receiver<Option<u64>>> =
                pool.nodes().iter().map(|n| n.head.watch()).collect();
            (heads, pool.head.poll_interval)
        };
        let changed = async {
            if heads.is_empty() {
                std::future::pending::<()>().await;
            }
            let waits = heads.iter_mut().map(|h| Box::pin(h.changed()));
            let _ = select_all(waits).await;
        };
        let reloaded = async {
            match pool.upgrade() {
                Some(pool) => pool.reloaded.notified().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = changed => {}
            _ = reloaded => {}
            _ = tokio::time::sleep(every) => {}
        }
    }
}

impl Pool {
    /// One look at every node: the chain, ejections, and the derived head.
    pub(super) fn settle(&self, derived: &Head) {
        let nodes = self.nodes();
        let chain = self.settle_chain(&nodes);
        let view = self.view();
        let eligible: Vec<&Arc<Node>> = (nodes.iter())
            .filter(|n| n.check(&LATEST, &view).is_ok())
            .collect();
        derived.forward_to((nodes.len() == 1).then(|| nodes[0].head.clone()));
        if let Some(height) = eligible.iter().filter_map(|n| n.head.height()).min() {
            // The head only rises, except when no eligible node holds it any more (the
            // node ahead was lost): "latest" pinned to it could then go nowhere.
            let held = derived
                .height()
                .is_none_or(|h| (eligible.iter()).any(|n| n.head.height().is_some_and(|l| l >= h)));
            if !held {
                tracing::info!(from = ?derived.height(), to = height, "no eligible node holds the head: it steps back");
                derived.set(height);
            }
            derived.set_consensus(height, false, chain);
            self.report_failure(derived, None);
            return;
        }
        // Nothing serves "latest". Nodes that have the chain but are catching up still
        // say where it is; a gateway in front of them is not ready, and says why.
        let syncing: Vec<u64> = (nodes.iter())
            .filter(|n| !n.ejected.load(Ordering::Relaxed) && n.head.rpc_failure().is_none())
            .filter(|n| n.head.catching_up())
            .filter_map(|n| n.head.height())
            .collect();
        if let Some(height) = syncing.iter().min() {
            derived.set_consensus(*height, true, chain);
            self.report_failure(derived, None);
            return;
        }
        // Down for HTTP, a node's websocket may still bring blocks: the head keeps
        // following it, and readiness still says the node is not ready.
        let heard = (nodes.iter())
            .filter(|n| !n.ejected.load(Ordering::Relaxed))
            .filter_map(|n| n.head.height())
            .min();
        if let Some(height) = heard {
            derived.set_consensus(height, false, chain);
        }
        let why = match nodes.as_slice() {
            // One node: its own words, as readiness has always given them. No head yet
            // and an open circuit, readiness says itself.
            [one] => match one.check(&LATEST, &view) {
                Err(super::Why::Down(why)) => Some(why),
                Err(super::Why::NoHead | super::Why::CircuitOpen) | Ok(()) => None,
                Err(other) => Some(other.to_string()),
            },
            many => Some(format!(
                "no node can serve the head ({})",
                many.iter()
                    .filter_map(|n| n
                        .check(&LATEST, &view)
                        .err()
                        .map(|w| format!("{}: {w}", n.name())))
                    .collect::<Vec<_>>()
                    .join("; ")
            )),
        };
        self.report_failure(derived, why);
    }

    fn report_failure(&self, derived: &Head, why: Option<String>) {
        let before = derived.rpc_failure();
        if before == why {
            return;
        }
        if self.nodes().len() > 1 {
            match (&before, &why) {
                (_, Some(why)) => {
                    tracing::warn!(reason = %why, "no node can serve the head: not ready")
                }
                (Some(_), None) => tracing::info!("a node serves the head again"),
                _ => {}
            }
        }
        derived.set_failure(why);
    }

    /// The chain most nodes answer for (a tie keeps the one the pool had); every node
    /// on another is ejected, and said so loudly, once.
    fn settle_chain(&self, nodes: &[Arc<Node>]) -> Option<String> {
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        for chain in nodes.iter().filter_map(|n| n.head.chain_id()) {
            *counts.entry(chain).or_default() += 1;
        }
        let mut chain = self.chain.lock().unwrap_or_else(PoisonError::into_inner);
        let most = counts.values().copied().max().unwrap_or(0);
        let held = chain.as_ref().is_some_and(|c| counts.get(c) == Some(&most));
        if !held {
            if let Some((winner, _)) = counts.iter().find(|(_, n)| **n == most) {
                if chain.is_some() {
                    tracing::warn!(old = ?chain.as_deref(), new = %winner, "most nodes now serve another chain");
                }
                *chain = Some(winner.clone());
            }
        }
        for node in nodes {
            let other = node
                .head
                .chain_id()
                .is_some_and(|c| chain.as_ref().is_some_and(|pool| *pool != c));
            let was = node.ejected.swap(other, Ordering::Relaxed);
            if other && !was {
                node.counts.ejections.fetch_add(1, Ordering::Relaxed);
                tracing::error!(
                    node = %node.name(),
                    serves = ?node.head.chain_id(),
                    chain = ?chain.as_deref(),
                    "node ejected: it serves another chain than the other nodes"
                );
            } else if was && !other {
                tracing::info!(node = %node.name(), "node back on the pool's chain");
            }
        }
        chain.clone()
    }
}
