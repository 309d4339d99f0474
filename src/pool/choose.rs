//! Which node takes a call: power of two choices among the eligible nodes, and the
//! best fallback when none is.

use std::sync::Arc;

use super::{Need, Node, Pool, Why};
use crate::error::Rejection;

impl Pool {
    /// The nodes that may take calls of `need` now, `avoid` aside.
    pub(super) fn eligible(&self, need: &Need, avoid: Option<&Arc<Node>>) -> Vec<Arc<Node>> {
        let view = self.view();
        (self.nodes.load().iter())
            .filter(|n| avoid.is_none_or(|a| !Arc::ptr_eq(a, n)))
            .filter(|n| n.check(need, &view).is_ok())
            .cloned()
            .collect()
    }

    /// The node for calls of `need`: the less loaded of two eligible ones picked at
    /// random by weight; with none eligible, the one most likely to answer, which
    /// answers its own error where the call cannot be served.
    pub(super) fn choose(
        &self,
        need: &Need,
        avoid: Option<&Arc<Node>>,
    ) -> Result<Arc<Node>, Rejection> {
        let view = self.view();
        let mut eligible = Vec::new();
        let mut others = Vec::new();
        for node in self.nodes.load().iter() {
            if avoid.is_some_and(|a| Arc::ptr_eq(a, node)) {
                continue;
            }
            match node.check(need, &view) {
                Ok(()) => eligible.push(node.clone()),
                Err(why) => others.push((node.clone(), why)),
            }
        }
        if !eligible.is_empty() {
            return Ok(two_choices(&eligible));
        }
        fallback(need, others)
    }
}

/// Power of two choices: two nodes drawn at random, the less loaded one wins (load
/// divides by weight, so a node of weight 3 wins until it holds three times the calls).
pub(super) fn two_choices(nodes: &[Arc<Node>]) -> Arc<Node> {
    if nodes.len() == 1 {
        return nodes[0].clone();
    }
    let a = fastrand::usize(0..nodes.len());
    let b = (a + 1 + fastrand::usize(0..nodes.len() - 1)) % nodes.len();
    let pick = if nodes[b].load() < nodes[a].load() {
        b
    } else {
        a
    };
    nodes[pick].clone()
}

/// No node is eligible. A node that has the chain but not this call (behind, pruned,
/// lagging, catching up) is asked before one that is down or silent, so the caller
/// gets a node's own answer; a node on another chain or behind an open breaker never is.
fn fallback(need: &Need, others: Vec<(Arc<Node>, Why)>) -> Result<Arc<Node>, Rejection> {
    let reasons = || {
        others
            .iter()
            .map(|(n, why)| format!("{}: {why}", n.name()))
            .collect::<Vec<_>>()
            .join("; ")
    };
    let rank = |why: &Why| match why {
        Why::Behind(_) | Why::Pruned(_) | Why::Lagging(_) | Why::CatchingUp => Some(0),
        Why::Down(_) | Why::NoHead => Some(1),
        Why::OtherChain(_) | Why::CircuitOpen => None,
    };
    let best = others.iter().filter_map(|(_, w)| rank(w)).min();
    let Some(best) = best else {
        if !others.is_empty() && others.iter().all(|(_, w)| *w == Why::CircuitOpen) {
            let retry_after = (others.iter())
                .map(|(n, _)| n.breaker.retry_after())
                .min()
                .unwrap_or_default();
            return Err(Rejection::CircuitOpen { retry_after });
        }
        return Err(Rejection::UpstreamUnavailable(format!(
            "no node can take the call ({})",
            reasons()
        )));
    };
    let group: Vec<Arc<Node>> = (others.iter())
        .filter(|(_, w)| rank(w) == Some(best))
        .map(|(n, _)| n.clone())
        .collect();
    // A height above every head: the node furthest on may have made it by now.
    if need.heights.is_some() && others.iter().any(|(_, w)| matches!(w, Why::Behind(_))) {
        if let Some(n) = group.iter().max_by_key(|n| n.head.height()) {
            return Ok(n.clone());
        }
    }
    Ok(two_choices(&group))
}
