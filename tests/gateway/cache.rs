//! The cache, counted at the node: a repeated question reaches it once per answer's
//! lifetime, whatever its spelling, however many ask at once.

use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use cometgate_sim::{Fault, SimNodeConfig};
use serde_json::json;

use crate::support::*;

fn call(id: impl Into<serde_json::Value>, method: &str, params: serde_json::Value) -> String {
    json!({"jsonrpc": "2.0", "id": id.into(), "method": method, "params": params}).to_string()
}

#[tokio::test]
async fn five_hundred_concurrent_identical_heavy_requests_reach_the_node_once() {
    let h = Arc::new(spawn_gateway().await);
    h.node
        .set_fault_for("block_results", Fault::Slow(Duration::from_millis(500)));
    let calls = (0..500).map(|i| {
        let h = h.clone();
        async move {
            h.post(&call(i, "block_results", json!({"height": "4"})))
                .await
        }
    });
    let replies = futures_util::future::join_all(calls).await;
    for (i, reply) in replies.iter().enumerate() {
        let v = reply.json();
        assert_eq!(v["id"], json!(i), "each caller gets its own id back");
        assert_eq!(v["result"]["height"], "4");
    }
    assert_eq!(h.node.requests_for("block_results"), 1);
    let coalesced = replies.iter().filter(|r| r.cache() == "coalesced").count();
    assert_eq!(replies.iter().filter(|r| r.cache() == "miss").count(), 1);
    assert_eq!(
        coalesced + replies.iter().filter(|r| r.cache() == "hit").count(),
        499
    );
}

#[tokio::test]
async fn twenty_distinct_questions_from_fifty_clients_each_reach_the_node_twenty_times() {
    let h = Arc::new(spawn_gateway().await);
    for _ in 0..12 {
        h.node.advance_block();
    }
    h.wait_for_head(h.node.height()).await;
    h.node
        .set_fault_for("block_results", Fault::Slow(Duration::from_millis(300)));
    let calls = (0..1000).map(|i| {
        let h = h.clone();
        let height = 1 + i % 20;
        async move {
            h.post(&call(
                i,
                "block_results",
                json!({"height": height.to_string()}),
            ))
            .await
        }
    });
    for reply in futures_util::future::join_all(calls).await {
        assert!(reply.json().get("result").is_some());
    }
    assert_eq!(h.node.requests_for("block_results"), 20);
}

#[tokio::test]
async fn after_a_new_block_each_latest_form_is_fetched_again_once_and_pinned_heights_never() {
    // The head tracker polls `status` itself; slow its polling so the node's count is ours.
    let h = spawn_gateway_with(Default::default(), |c| {
        c.head.poll_interval = Duration::from_secs(60)
    })
    .await;
    h.node.reset_counters();
    let latest = [
        call(1, "status", json!({})),
        call(1, "abci_info", json!({})),
        call(1, "block", json!({})),
        call(1, "block_results", json!({})),
        call(1, "tx_search", json!({"query": "tx.height>1"})),
        // A past range, but its answer carries the head as `last_height`.
        call(1, "blockchain", json!({"minHeight": "1", "maxHeight": "5"})),
    ];
    let pinned = [
        call(1, "header", json!({"height": "3"})),
        call(1, "commit", json!({"height": "3"})),
    ];
    for _ in 0..3 {
        for body in latest.iter().chain(&pinned) {
            assert!(h.post(body).await.json().get("result").is_some(), "{body}");
        }
    }
    let counts = |h: &Harness| {
        [
            "status",
            "abci_info",
            "block",
            "block_results",
            "tx_search",
            "blockchain",
            "header",
            "commit",
        ]
        .map(|m| h.node.requests_for(m))
    };
    assert_eq!(counts(&h), [1, 1, 1, 1, 1, 1, 1, 1]);
    h.advance_block().await;
    for _ in 0..3 {
        for body in latest.iter().chain(&pinned) {
            h.post(body).await;
        }
    }
    assert_eq!(counts(&h), [2, 2, 2, 2, 2, 2, 1, 1]);
    let head = h.post(&call(1, "block", json!({}))).await.json();
    assert_eq!(
        head["result"]["block"]["header"]["height"],
        h.node.height().to_string()
    );
    let range = h.post(&latest[5]).await.json();
    assert_eq!(
        range["result"]["last_height"],
        h.node.height().to_string(),
        "{range}"
    );
}

#[tokio::test]
async fn uri_and_post_named_and_positional_hex_and_base64_share_one_entry() {
    let h = spawn_gateway().await;
    let found = h
        .post_node(&call(1, "tx_search", json!({"query": "tx.height=5"})))
        .await
        .json();
    let hex_hash = found["result"]["txs"][0]["hash"]
        .as_str()
        .unwrap()
        .to_owned();
    let b64 = BASE64.encode(hex::decode(&hex_hash).unwrap());
    let spellings = [
        h.get(&format!("/tx?hash=0x{hex_hash}")).await,
        h.get(&format!(
            "/v1/tx?hash=0x{}&prove=false",
            hex_hash.to_lowercase()
        ))
        .await,
        h.post(&call(2, "tx", json!({"hash": b64}))).await,
        h.post(&call(3, "tx", json!([b64, false]))).await,
    ];
    let first = rpc_view(&spellings[0].json());
    for reply in &spellings[1..] {
        assert_eq!(rpc_view(&reply.json()), first);
        assert_eq!(reply.cache(), "hit");
    }
    assert_eq!(h.node.requests_for("tx"), 1);

    h.get("/block?height=6").await;
    h.post(&call(4, "block", json!({"height": 6}))).await;
    h.post(&call(5, "block", json!(["6"]))).await;
    assert_eq!(h.node.requests_for("block"), 1);
}

#[tokio::test]
async fn errors_broadcasts_mempool_views_and_heights_above_the_head_always_reach_the_node() {
    let h = spawn_gateway().await;
    let above = call(1, "block", json!({"height": "9999"}));
    let missing = call(1, "tx", json!({"hash": BASE64.encode([9u8; 32])}));
    for _ in 0..3 {
        assert!(h.post(&above).await.json().get("error").is_some());
        assert!(h.post(&missing).await.json().get("error").is_some());
        let tx = BASE64.encode("same=tx");
        h.post(&call(1, "broadcast_tx_sync", json!({ "tx": tx })))
            .await;
        h.post(&call(1, "check_tx", json!({ "tx": tx }))).await;
        h.post(&call(1, "unconfirmed_txs", json!({}))).await;
        h.post(&call(1, "num_unconfirmed_txs", json!({}))).await;
    }
    assert_eq!(h.node.requests_for("block"), 3);
    assert_eq!(h.node.requests_for("tx"), 3);
    assert_eq!(h.node.requests_for("broadcast_tx_sync"), 3);
    assert_eq!(h.node.requests_for("check_tx"), 3);
    assert_eq!(h.node.requests_for("unconfirmed_txs"), 3);
    assert_eq!(h.node.requests_for("num_unconfirmed_txs"), 3);
}

#[tokio::test]
async fn the_cache_weight_stays_within_max_bytes_under_ten_times_its_size() {
    let h = spawn_gateway_with(Default::default(), |c| {
        c.cache.max_bytes = cometgate::config::ByteSize::kib(32);
        c.cache.max_entry_bytes = cometgate::config::ByteSize::kib(16);
    })
    .await;
    for _ in 0..150 {
        h.node.advance_block();
    }
    h.wait_for_head(h.node.height()).await;
    let mut served = 0usize;
    for height in 1..=150 {
        served += h.get(&format!("/block?height={height}")).await.body.len();
        served += h
            .get(&format!("/block_results?height={height}"))
            .await
            .body
            .len();
    }
    assert!(served > 10 * 32 * 1024, "only {served} bytes served");
    h.gateway.cache().run_pending_tasks().await;
    let stats = h.gateway.cache().stats();
    assert!(stats.weighted_bytes <= 32 * 1024, "{stats:?}");
    assert!(stats.evictions > 0);
}

#[tokio::test]
async fn stale_answers_cover_a_node_outage_and_fresh_ones_return_after_it() {
    let h = spawn_gateway().await;
    let status = call(1, "status", json!({}));
    let before = h.post(&status).await;
    assert_eq!(before.cache(), "miss");
    let produced = h.advance_block().await;
    h.node.set_fault(Fault::Down);
    let during = h.post(&status).await;
    assert_eq!(during.cache(), "stale");
    assert_eq!(during.json()["result"], before.json()["result"]);
    h.node.set_fault(Fault::None);
    let after = eventually_json(&h, &status).await;
    assert_eq!(
        after["result"]["sync_info"]["latest_block_height"],
        produced.to_string()
    );
}

/// The first fresh (non-stale) answer once the node is back; the breaker may need a probe.
async fn eventually_json(h: &Harness, body: &str) -> serde_json::Value {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let reply = h.post(body).await;
        if reply.cache() == "miss" || reply.cache() == "hit" {
            return reply.json();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no fresh answer after the node came back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_batch_sends_only_its_misses_to_the_node_as_one_batch() {
    let h = spawn_gateway().await;
    h.post(&call(1, "block", json!({"height": "2"}))).await;
    h.node.reset_counters();
    let batch = format!(
        "[{},{},{}]",
        call("a", "block", json!({"height": "2"})),
        call("b", "block", json!({"height": "3"})),
        call("c", "header", json!({"height": "3"}))
    );
    let v = h.post(&batch).await.json();
    let ids: Vec<_> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].clone())
        .collect();
    assert_eq!(ids, [json!("a"), json!("b"), json!("c")]);
    let stats = h.node.stats();
    assert_eq!(
        stats.per_method.get("block"),
        Some(&1),
        "the cached entry did not go upstream"
    );
    assert_eq!(stats.per_method.get("header"), Some(&1));
    let again = h.post(&batch).await.json();
    assert_eq!(rpc_view(&again[1]), rpc_view(&v[1]));
    assert_eq!(
        h.node.stats().total_requests,
        2,
        "the second batch was all hits"
    );
}

#[tokio::test]
async fn a_node_now_serving_another_chain_is_never_answered_from_the_old_chains_cache() {
    let mut h = spawn_gateway().await;
    let questions = [
        call(1, "genesis", json!({})),
        call(1, "block", json!({"height": "3"})),
        call(1, "status", json!({})),
    ];
    let mut before = Vec::new();
    for q in &questions {
        let first = h.post(q).await;
        assert_eq!(h.post(q).await.cache(), "hit", "{q}");
        before.push(first.json()["result"].clone());
    }
    assert_eq!(before[0]["genesis"]["chain_id"], "dockerchain");

    // A testnet reset: another chain behind the same address, its heights starting over.
    h.replace_node(SimNodeConfig {
        chain_id: "resetchain".into(),
        seed: 7,
        start_height: 5,
        ..SimNodeConfig::default()
    })
    .await;
    let gw = h.gateway.clone();
    eventually("the gateway reads the new chain id", || {
        let gw = gw.clone();
        async move { gw.head().chain_id().as_deref() == Some("resetchain") }
    })
    .await;
    assert_eq!(h.gateway.head().height(), Some(5), "the head starts over");

    for (q, old) in questions.iter().zip(&before) {
        let now = h.post(q).await;
        assert_eq!(now.cache(), "miss", "{q}");
        let direct = h.post_node(q).await.json()["result"].clone();
        assert_ne!(&now.json()["result"], old, "{q}");
        assert_eq!(now.json()["result"], direct, "{q}");
    }
    let genesis = h.post(&questions[0]).await;
    assert_eq!(
        genesis.cache(),
        "hit",
        "the new chain's answers are cached in turn"
    );
    assert_eq!(
        genesis.json()["result"]["genesis"]["chain_id"],
        "resetchain"
    );
}

#[tokio::test]
async fn latest_validators_and_params_are_the_next_heights_as_the_node_answers_them() {
    let h = spawn_gateway().await;
    for method in ["validators", "consensus_params"] {
        let q = call(1, method, json!({}));
        for _ in 0..2 {
            let through = h.post(&q).await.json();
            let direct = h.post_node(&q).await.json();
            assert_eq!(through["result"], direct["result"], "{method}");
            assert_eq!(
                through["result"]["block_height"],
                (h.node.height() + 1).to_string(),
                "{method}: latest is the node's next height"
            );
        }
        h.advance_block().await;
        assert_eq!(
            h.post(&q).await.json()["result"]["block_height"],
            (h.node.height() + 1).to_string(),
            "{method}: fetched again after the block"
        );
    }
}
