//! `/metrics` is one OpenMetrics document: the families read from the components at
//! scrape time keep their names, types, help and labels, and the text ends once.

use http::Method;

use crate::support::*;

/// Every family read at scrape time: name, type, help.
const LIVE: &[(&str, &str, &str)] = &[
    (
        "head_height",
        "gauge",
        "Latest block height seen from the node",
    ),
    (
        "head_age_seconds",
        "gauge",
        "Time since the head last advanced (-1: never seen)",
    ),
    (
        "node_up",
        "gauge",
        "1 when the node answers status over HTTP, its head advances and the circuit is closed",
    ),
    (
        "circuit_open",
        "gauge",
        "1 while the circuit breaker keeps calls off the node",
    ),
    (
        "process_resident_memory_bytes",
        "gauge",
        "Resident set size of this process",
    ),
    ("lane_in_flight", "gauge", "Node calls in flight, by lane"),
    (
        "lane_queued",
        "gauge",
        "Calls waiting for a lane slot, by lane",
    ),
    ("lane_capacity", "gauge", "Lane slots, by lane"),
    (
        "lane_limit",
        "gauge",
        "Node calls a lane lets run at once now: the adaptive limit, or max_concurrency",
    ),
    (
        "lane_guard_hold",
        "gauge",
        "Node calls the node guard lets a lane run at once, for the node's memory (the lane's ceiling when it holds nothing back)",
    ),
    (
        "lane_paused",
        "gauge",
        "1 while the node guard keeps a lane from starting calls",
    ),
    (
        "lane_express_starts",
        "counter",
        "Calls started one past a lane's adaptive limit for a client owed node time, which borrow the next freed slot",
    ),
    (
        "lane_latency_seconds",
        "gauge",
        "Node time of a lane's calls, smoothed (what its adaptive limit and fair queue see)",
    ),
    (
        "rate_limited_clients",
        "gauge",
        "Clients with rate-limit state",
    ),
    (
        "websocket_connections",
        "gauge",
        "Client websocket connections open",
    ),
    (
        "untrusted_forwarding_requests",
        "counter",
        "Requests from a loopback or private address not in rate_limit.trusted_proxies that \
         carried a forwarding header: a proxy that is not trusted, whose clients all count as \
         its one address",
    ),
    ("cache_entries", "gauge", "Entries in the cache"),
    (
        "cache_bytes",
        "gauge",
        "Weighted bytes in the cache (at most cache.max_bytes)",
    ),
    ("cache_max_bytes", "gauge", "cache.max_bytes"),
    (
        "cache_in_flight",
        "gauge",
        "Distinct fetches in flight (coalescing leaders)",
    ),
    ("cache_hits", "counter", "Answers served from the cache"),
    ("cache_misses", "counter", "Lookups that went to the node"),
    (
        "cache_coalesced",
        "counter",
        "Followers that shared another caller's fetch",
    ),
    (
        "cache_stale",
        "counter",
        "Stale answers served while the node failed",
    ),
    (
        "cache_bypass",
        "counter",
        "Calls whose answers are never cached",
    ),
    ("cache_evictions", "counter", "Entries evicted for space"),
    ("cache_stores", "counter", "Answers stored"),
];

#[tokio::test]
async fn live_families_keep_their_names_types_and_labels_in_one_document() {
    let h = spawn_gateway().await;
    h.post(r#"{"jsonrpc":"2.0","id":1,"method":"block","params":{"height":"3"}}"#)
        .await;
    let reply = h.ops(Method::GET, "/metrics", "").await;
    assert_eq!(
        reply.headers["content-type"],
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    let text = String::from_utf8(reply.body.to_vec()).unwrap();
    for (name, kind, help) in LIVE {
        let full = format!("cometgate_{name}");
        let help_line = format!("# HELP {full} {help}\n");
        assert_eq!(text.matches(&help_line).count(), 1, "{help_line}");
        assert!(
            text.contains(&format!("# TYPE {full} {kind}\n")),
            "{full} {kind}"
        );
        let sample = if *kind == "counter" {
            format!("{full}_total")
        } else {
            full.clone()
        };
        if name.starts_with("lane_") {
            for lane in ["light", "heavy"] {
                let labels = format!(r#"lane="{lane}""#);
                assert!(
                    metric_value(&text, &sample, &[&labels]).is_some(),
                    "{sample}{{{labels}}}"
                );
            }
        } else {
            assert!(metric_value(&text, &sample, &[]).is_some(), "{sample}");
        }
    }
    assert_eq!(
        metric_value(&text, "cometgate_lane_capacity", &[r#"lane="heavy""#]),
        Some(h.gateway.config().lanes.heavy.max_concurrency as f64)
    );
    assert_eq!(
        metric_value(&text, "cometgate_head_height", &[]),
        Some(h.node.height() as f64)
    );
    assert!(text.ends_with("# EOF\n"), "{text}");
    assert_eq!(text.matches("# EOF").count(), 1);
    assert!(
        text.find("cometgate_head_height") < text.find("cometgate_requests"),
        "live families first, as before"
    );
}
