//! The guard's prediction: a node that three concurrent heavy calls kill, and clients
//! that send six at once, again and again. A threshold read between calls cannot stop
//! the first crossing; the guard instead learns what one call adds to the node's memory
//! and never lets more start than fit.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use cometgate::config::ByteSize;
use cometgate_sim::SimNodeConfig;
use serde_json::json;

use crate::support::*;

/// Heavy answers of about 140 KB held 200 times over while served: ~28 MB a call.
fn node(limit: Option<u64>) -> SimNodeConfig {
    SimNodeConfig {
        metrics_listen: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
        start_height: 60,
        txs_per_block: 50,
        events_per_tx: 10,
        amplification: 200.0,
        memory_limit_bytes: limit,
        service_ms_per_method: [("tx_search".to_string(), 150)].into(),
        ..SimNodeConfig::default()
    }
}

fn search(height: u64) -> String {
    json!({"jsonrpc": "2.0", "id": height, "method": "tx_search",
           "params": {"query": format!("tx.height={height}")}})
    .to_string()
}

/// What one heavy call holds at the node, measured on a node of the same make.
async fn one_call_bytes() -> u64 {
    let probe = frozen_node(node(None)).await;
    let http = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http();
    let r = send(
        &http,
        http::Method::POST,
        &probe.url(),
        bytes::Bytes::from(search(5)),
        &[],
    )
    .await;
    assert_eq!(r.status, 200);
    let peak = probe.stats().peak_bytes;
    probe.shutdown().await;
    peak
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_guard_never_starts_together_the_heavy_calls_that_would_kill_the_node() {
    let per_call = one_call_bytes().await;
    // Two fit, three kill it.
    let limit = per_call * 5 / 2;
    let h = Arc::new(
        spawn_gateway_with(node(Some(limit)), |c| {
            c.lanes.heavy.queue_timeout = DEADLINE;
            // Static and wide open: only the guard stands between the calls and the node.
            c.lanes.heavy.adaptive = false;
            c.lanes.heavy.max_concurrency = 16;
        })
        .await,
    );
    let resident = h.node.stats().resident_bytes;
    let mut config = (*h.gateway.config()).clone();
    config.node_guard.metrics_url = Some(h.node.metrics_url().parse().expect("a URL"));
    config.node_guard.memory_limit = Some(ByteSize::bytes(resident + limit));
    config.node_guard.interval = Duration::from_millis(100);
    // Two calls are 0.9 of the whole process; the operator's line is above it.
    config.node_guard.shed_above = 0.95;
    config.node_guard.resume_below = 0.9;
    assert!(h.gateway.reload(config).is_empty());
    eventually("the guard watches", || async {
        h.metric("cometgate_node_guard_state", &["state=\"watching\""])
            .await
            == 1.0
    })
    .await;

    for round in 0..4u64 {
        let calls: Vec<_> = (0..6)
            .map(|i| {
                let h = h.clone();
                tokio::spawn(async move { h.post(&search(1 + round * 6 + i)).await })
            })
            .collect();
        for c in calls {
            let r = c.await.unwrap();
            let stats = h.node.stats();
            assert_eq!(
                r.status,
                200,
                "{:?}: node peak {} of {limit}, {} at once; learned {}",
                r.body,
                stats.peak_bytes,
                stats.peak_inflight_per_method["tx_search"],
                h.metric("cometgate_node_guard_heavy_call_bytes", &[]).await
            );
        }
    }

    let stats = h.node.stats();
    assert_eq!(
        stats.oom_count, 0,
        "the node lived: peak {} of {limit}",
        stats.peak_bytes
    );
    let peak = stats.peak_inflight_per_method["tx_search"];
    assert!((1..=2).contains(&peak), "at most two at once: {peak}");
    let learned = h.metric("cometgate_node_guard_heavy_call_bytes", &[]).await;
    let per_call = per_call as f64;
    assert!(
        (per_call * 0.8..=per_call * 1.5).contains(&learned),
        "learned {learned} for {per_call}"
    );
    assert_eq!(
        h.metric("cometgate_lane_guard_hold", &["lane=\"heavy\""])
            .await,
        2.0
    );
}
