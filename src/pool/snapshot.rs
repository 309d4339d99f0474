//! Each node as the operator sees it (`/admin/nodes`, the per-node metrics): its head,
//! its load, and why it is or is not asked.

use std::sync::atomic::Ordering;

use serde::Serialize;

use super::{Need, Pool};
use crate::breaker::BreakerState;

#[derive(Debug, Serialize)]
pub(crate) struct NodeSnapshot {
    pub url: String,
    pub weight: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_concurrency: Option<usize>,
    pub chain_id: Option<String>,
    pub latest_height: Option<u64>,
    pub earliest_height: Option<u64>,
    pub catching_up: bool,
    /// Blocks behind the best head among the pool's nodes.
    pub lag: Option<u64>,
    /// Its last `status` poll answered and it is on the pool's chain.
    pub up: bool,
    pub ejected: bool,
    pub breaker: &'static str,
    pub in_flight: usize,
    /// The peak-EWMA latency choosing reads, in milliseconds.
    pub latency_ms: f64,
    /// Whether it is asked "latest" questions now, and if not, why.
    pub eligible: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub why_not: Option<String>,
    pub calls: u64,
    pub failures: u64,
    pub retries_taken: u64,
    pub hedges_taken: u64,
    pub ejections: u64,
}

impl Pool {
    pub(crate) fn snapshot(&self) -> Vec<NodeSnapshot> {
        let view = self.view();
        let latest = Need {
            latest: true,
            heights: None,
        };
        self.nodes()
            .iter()
            .map(|n| {
                let head = &n.head;
                let height = head.height();
                let why = n.check(&latest, &view).err();
                let ejected = n.ejected.load(Ordering::Relaxed);
                NodeSnapshot {
                    url: n.name(),
                    weight: n.config.weight,
                    max_concurrency: n.config.max_concurrency,
                    chain_id: head.chain_id(),
                    latest_height: height,
                    earliest_height: head.earliest(),
                    catching_up: head.catching_up(),
                    lag: view.best.zip(height).map(|(b, h)| b.saturating_sub(h)),
                    up: head.rpc_failure().is_none() && height.is_some() && !ejected,
                    ejected,
                    breaker: match n.breaker.state() {
                        BreakerState::Closed => "closed",
                        BreakerState::Open => "open",
                        BreakerState::HalfOpen => "half_open",
                    },
                    in_flight: n.inflight(),
                    latency_ms: n.latency_estimate().as_secs_f64() * 1000.0,
                    eligible: why.is_none(),
                    why_not: why.map(|w| w.to_string()),
                    calls: n.counts.calls.load(Ordering::Relaxed),
                    failures: n.counts.failures.load(Ordering::Relaxed),
                    retries_taken: n.counts.retries.load(Ordering::Relaxed),
                    hedges_taken: n.counts.hedges.load(Ordering::Relaxed),
                    ejections: n.counts.ejections.load(Ordering::Relaxed),
                }
            })
            .collect()
    }
}

/// Scheme, host and port only: a URL's user:password must not reach a page or a log.
pub(crate) fn public_url(url: &http::Uri) -> String {
    format!(
        "{}://{}{}/",
        url.scheme_str().unwrap_or("http"),
        url.host().unwrap_or(""),
        url.port_u16().map(|p| format!(":{p}")).unwrap_or_default()
    )
}
