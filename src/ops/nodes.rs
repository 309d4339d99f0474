//! The pool as the operator sees it: `/admin/nodes`, and the per-node metric families.

use std::fmt;

use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;

use crate::gateway::Gateway;
use crate::pool::NodeSnapshot;

/// Each node's state, and why it is or is not asked "latest" questions; `head` is the
/// height the cache pins "latest" to (the lowest head among the eligible nodes).
pub(super) fn json(gw: &Gateway) -> serde_json::Value {
    let view = gw.pool().view();
    serde_json::json!({
        "head": gw.head().height(),
        "best_head": view.best,
        "max_lag_blocks": view.max_lag,
        "nodes": gw.pool().snapshot(),
    })
}

type Read = fn(&NodeSnapshot) -> i64;

const GAUGES: &[(&str, &str, Read)] = &[
    (
        "upstream_node_head_height",
        "The node's latest block height (0: none seen)",
        |n| n.latest_height.unwrap_or(0) as i64,
    ),
    (
        "upstream_node_earliest_height",
        "The node's lowest block, its pruning base (0: not known yet)",
        |n| n.earliest_height.unwrap_or(0) as i64,
    ),
    (
        "upstream_node_lag_blocks",
        "Blocks the node is behind the best head among the nodes",
        |n| n.lag.unwrap_or(0) as i64,
    ),
    (
        "upstream_node_up",
        "1 when the node answers status, has a head and is on the pool's chain",
        |n| i64::from(n.up),
    ),
    (
        "upstream_node_eligible",
        "1 when the node is asked \"latest\" questions now (see /admin/nodes for why not)",
        |n| i64::from(n.eligible),
    ),
    (
        "upstream_node_in_flight",
        "Node calls in flight on the node",
        |n| n.in_flight as i64,
    ),
];

const LATENCY: (&str, &str) = (
    "upstream_node_latency_seconds",
    "The node's peak-EWMA latency, what choosing among nodes reads",
);

type Count = fn(&NodeSnapshot) -> u64;

const COUNTERS: &[(&str, &str, Count)] = &[
    ("upstream_node_calls", "Node calls sent to the node", |n| {
        n.calls
    }),
    (
        "upstream_node_failures",
        "Node calls the node failed (connect, reset, timeout, HTTP 5xx): what moves a read to another node",
        |n| n.failures,
    ),
    (
        "upstream_node_retries",
        "Reads retried on the node after another node failed them",
        |n| n.retries_taken,
    ),
    (
        "upstream_node_hedges",
        "Heavy reads also sent to the node after upstream.hedge_after",
        |n| n.hedges_taken,
    ),
    (
        "upstream_node_ejections",
        "Times the node was ejected for serving another chain",
        |n| n.ejections,
    ),
];

pub(super) fn metrics(gw: &Gateway, out: &mut DescriptorEncoder) -> fmt::Result {
    let nodes = gw.pool().snapshot();
    for (name, help, read) in GAUGES {
        let mut metric = out.encode_descriptor(name, help, None, MetricType::Gauge)?;
        for node in &nodes {
            let labels = [("node", node.url.as_str())];
            ConstGauge::new(read(node)).encode(metric.encode_family(&labels)?)?;
        }
    }
    let mut metric = out.encode_descriptor(LATENCY.0, LATENCY.1, None, MetricType::Gauge)?;
    for node in &nodes {
        let labels = [("node", node.url.as_str())];
        ConstGauge::new(node.latency_ms / 1000.0).encode(metric.encode_family(&labels)?)?;
    }
    for (name, help, count) in COUNTERS {
        let mut metric = out.encode_descriptor(name, help, None, MetricType::Counter)?;
        for node in &nodes {
            let labels = [("node", node.url.as_str())];
            ConstCounter::new(count(node)).encode(metric.encode_family(&labels)?)?;
        }
    }
    Ok(())
}
