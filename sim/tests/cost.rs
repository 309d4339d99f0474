//! The cost model (OOM under a heavy flood, not under light load, restart) and the counters.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;

use cometgate_sim::{SimNode, SimNodeConfig};
use common::*;
use serde_json::json;

/// `block_results` of ~100 KB held 8x for about a second each: a handful at once OOMs 4 MB.
fn heavy() -> SimNodeConfig {
    SimNodeConfig {
        txs_per_block: 100,
        events_per_tx: 5,
        memory_limit_bytes: Some(4_000_000),
        encode_bytes_per_sec_per_method: BTreeMap::from([("block_results".to_string(), 100_000)]),
        ..SimNodeConfig::default()
    }
}

async fn fire(a: SocketAddr, path: &'static str) {
    let _ = exchange(a, "GET", path, b"").await;
}

#[tokio::test]
async fn heavy_flood_ooms_and_restart_brings_it_back() {
    let n = SimNode::start(heavy()).await.unwrap();
    let a = n.addr();
    let flood: Vec<_> = (0..30)
        .map(|_| tokio::spawn(fire(a, "/block_results?height=5")))
        .collect();
    wait_for("OOM", || async { n.stats().oom }).await;
    wait_for("listener closed", || refused(a)).await;
    for t in flood {
        t.await.unwrap();
    }
    let s = n.stats();
    assert!(s.peak_bytes > 4_000_000, "peak {}", s.peak_bytes);
    assert_eq!(s.oom_count, 1);

    n.restart();
    assert_eq!(n.addr(), a);
    let r = get(a, "/status").await;
    assert_eq!(r.status, 200);
    assert!(!n.stats().oom);
    assert_eq!(n.stats().live_bytes, 0);
}

#[tokio::test]
async fn light_load_never_ooms() {
    let n = SimNode::start(heavy()).await.unwrap();
    let a = n.addr();
    let light: Vec<_> = (0..50).map(|_| tokio::spawn(fire(a, "/status"))).collect();
    for t in light {
        t.await.unwrap();
    }
    // One heavy answer at a time stays under the limit too.
    assert_eq!(get(a, "/block_results?height=3").await.status, 200);
    let s = n.stats();
    assert!(!s.oom);
    assert!(s.peak_bytes > 0 && s.peak_bytes < 4_000_000);
    assert_eq!(s.live_bytes, 0);
}

#[tokio::test]
async fn legacy_abci_lock_serialises_abci_query() {
    let cfg = SimNodeConfig {
        legacy_abci_lock: true,
        encode_bytes_per_sec_per_method: BTreeMap::from([("abci_query".to_string(), 5_000)]),
        ..SimNodeConfig::default()
    };
    let n = SimNode::start(cfg).await.unwrap();
    let a = n.addr();
    let single = {
        let before = n.stats().peak_bytes;
        get(a, "/abci_query?data=0x6b").await;
        n.stats().peak_bytes.max(before)
    };
    n.reset_counters();
    let calls: Vec<_> = (0..4)
        .map(|_| tokio::spawn(fire(a, "/abci_query?data=0x6b")))
        .collect();
    wait_for("all queued", || async { n.stats().inflight == 4 }).await;
    for t in calls {
        t.await.unwrap();
    }
    let s = n.stats();
    assert_eq!(s.peak_inflight_per_method["abci_query"], 4);
    assert_eq!(s.peak_bytes, single, "one abci_query answer held at a time");
}

#[tokio::test]
async fn counters_count_exactly() {
    let n = SimNode::start(SimNodeConfig::default()).await.unwrap();
    let a = n.addr();
    let tasks: Vec<_> = (0..40)
        .map(|i| {
            tokio::spawn(fire(
                a,
                if i % 2 == 0 {
                    "/block?height=5"
                } else {
                    "/status"
                },
            ))
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let batch: Vec<_> = (0..5)
        .map(|i| json!({"jsonrpc": "2.0", "id": i, "method": "block", "params": {"height": "5"}}))
        .collect();
    post(a, &serde_json::Value::Array(batch).to_string()).await;
    post(a, r#"{"jsonrpc":"2.0","method":"status"}"#).await;
    get(a, "/_simnode/stats").await;
    request(a, "POST", "/_simnode/reset-counters", b"").await;
    assert_eq!(n.stats().total_requests, 0);

    for _ in 0..3 {
        get(a, "/block?height=5").await;
        call(a, "block", json!({"height": "5"})).await;
    }
    get(a, "/status").await;
    let s = n.stats();
    assert_eq!(s.total_requests, 7);
    assert_eq!(n.requests_for("block"), 6);
    assert_eq!(s.per_request["block(height=5)"], 6);
    assert_eq!(s.per_request["status()"], 1);
    assert_eq!(s.inflight, 0);
    n.reset_counters();
    assert_eq!(n.stats().per_method.len(), 0);

    let batch: Vec<_> = (0..5)
        .map(|i| json!({"jsonrpc": "2.0", "id": i, "method": "health"}))
        .collect();
    post(a, &serde_json::Value::Array(batch).to_string()).await;
    assert_eq!(n.requests_for("health"), 5);
    let stats = get(a, "/_simnode/stats").await.json();
    assert_eq!(stats["total_requests"], 5, "control hits are not requests");
}
