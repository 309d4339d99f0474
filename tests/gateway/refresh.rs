//! Refresh-ahead, counted at the node: a "latest" question asked twice in a block is
//! fetched once as the next block lands, and that is its one node call in the block;
//! what its callers get meanwhile is `cache.while_refreshing`'s choice.
//!
//! `abci_info` and `validators` stand for "latest" questions: `status` is also the head
//! tracker's poll, which would blur the node's counts.

use std::sync::Arc;
use std::time::Duration;

use cometgate::config::{Config, WhileRefreshing};
use cometgate_sim::{Fault, SimNodeConfig};
use serde_json::json;

use crate::support::*;

fn ask(method: &str) -> String {
    json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": {}}).to_string()
}

fn info_height(reply: &Reply) -> String {
    reply.json()["result"]["response"]["last_block_height"]
        .as_str()
        .expect("abci_info names its height")
        .to_owned()
}

async fn gateway(tweak: impl FnOnce(&mut Config)) -> Harness {
    spawn_gateway_with(SimNodeConfig::default(), tweak).await
}

async fn asked(h: &Harness, method: &str, times: usize) {
    for _ in 0..times {
        assert_eq!(h.post(&ask(method)).await.status, 200);
    }
}

/// Waits until `count` refreshes have fetched and stored their answers.
async fn refreshed(h: &Harness, count: u64) {
    eventually(&format!("{count} refreshes are stored"), || async move {
        h.metric("cometgate_cache_refreshes_total", &["result=\"fetched\""])
            .await
            >= count as f64
    })
    .await;
}

/// Waits until the node has seen `count` calls of `method`.
async fn node_saw(h: &Harness, method: &'static str, count: u64) {
    let node = &h.node;
    eventually(
        &format!("the node sees {count} {method} calls"),
        || async move { node.requests_for(method) >= count },
    )
    .await;
    assert_eq!(h.node.requests_for(method), count, "{method}: no more");
}

#[tokio::test]
async fn a_question_asked_twice_is_fetched_once_as_the_next_block_lands() {
    let h = gateway(|_| {}).await;
    asked(&h, "abci_info", 2).await;
    asked(&h, "validators", 1).await;
    let height = h.advance_block().await;
    refreshed(&h, 1).await;
    node_saw(&h, "abci_info", 2).await;
    let reply = h.post(&ask("abci_info")).await;
    assert_eq!(
        (reply.cache(), info_height(&reply)),
        ("hit", height.to_string()),
        "the new block's answer, already stored"
    );
    let once = h.post(&ask("validators")).await;
    assert_eq!(once.cache(), "miss", "asked once: not refreshed");
    // The refresh itself is not demand: asked once more in this block, it is not
    // refreshed at the next; asked twice, it is, once.
    let height = h.advance_block().await;
    assert_eq!(h.post(&ask("abci_info")).await.cache(), "miss");
    asked(&h, "abci_info", 1).await;
    h.advance_block().await;
    refreshed(&h, 2).await;
    node_saw(&h, "abci_info", 4).await;
    assert_ne!(
        info_height(&h.post(&ask("abci_info")).await),
        height.to_string()
    );
    assert_eq!(h.node.requests_for("abci_info"), 4);
    assert_eq!(
        h.metric("cometgate_cache_refreshes_total", &["result=\"fetched\""])
            .await,
        2.0
    );
}

#[tokio::test]
async fn zero_turns_it_off() {
    let h = gateway(|c| c.cache.refresh_ahead = 0).await;
    asked(&h, "abci_info", 3).await;
    h.advance_block().await;
    assert_eq!(h.post(&ask("abci_info")).await.cache(), "miss");
    assert_eq!(h.node.requests_for("abci_info"), 2);
}

#[tokio::test]
async fn the_most_asked_are_refreshed_up_to_the_bound() {
    let h = gateway(|c| c.cache.refresh_ahead = 1).await;
    asked(&h, "abci_info", 3).await;
    asked(&h, "validators", 2).await;
    h.advance_block().await;
    node_saw(&h, "abci_info", 2).await;
    assert_eq!(h.post(&ask("validators")).await.cache(), "miss");
    assert_eq!(h.node.requests_for("validators"), 2);
}

#[tokio::test]
async fn under_wait_callers_join_the_refresh() {
    let h = Arc::new(gateway(|_| {}).await);
    asked(&h, "abci_info", 2).await;
    h.node
        .set_fault_for("abci_info", Fault::Slow(Duration::from_millis(500)));
    let height = h.advance_block().await;
    node_saw(&h, "abci_info", 2).await;
    let callers = (0..20).map(|_| {
        let h = Arc::clone(&h);
        async move { h.post(&ask("abci_info")).await }
    });
    for reply in futures_util::future::join_all(callers).await {
        assert!(
            matches!(reply.cache(), "coalesced" | "hit"),
            "{}",
            reply.cache()
        );
        assert_eq!(info_height(&reply), height.to_string());
    }
    assert_eq!(h.node.requests_for("abci_info"), 2, "one call in the block");
}

#[tokio::test]
async fn under_previous_callers_get_the_block_before_within_the_max_age_only() {
    let max_age = Duration::from_secs(2);
    let h = gateway(|c| {
        c.cache.while_refreshing = WhileRefreshing::Previous;
        c.cache.previous_max_age = max_age;
    })
    .await;
    asked(&h, "abci_info", 2).await;
    let before = h.post(&ask("abci_info")).await;
    // The refresh stays in flight well past the max age.
    h.node.set_fault_for("abci_info", Fault::Slow(max_age * 3));
    let height = h.advance_block().await;
    node_saw(&h, "abci_info", 2).await;
    let previous = h.post(&ask("abci_info")).await;
    assert_eq!(previous.cache(), "stale");
    assert_eq!(rpc_view(&previous.json()), rpc_view(&before.json()));
    assert_eq!(h.metric("cometgate_cache_previous_total", &[]).await, 1.0);
    let h = &h;
    eventually("the block is older than previous_max_age", || async move {
        h.metric("cometgate_head_age_seconds", &[]).await > max_age.as_secs_f64()
    })
    .await;
    let current = h.post(&ask("abci_info")).await;
    assert_eq!(
        current.cache(),
        "coalesced",
        "past the max age: the new answer"
    );
    assert_eq!(info_height(&current), height.to_string());
    assert_eq!(h.node.requests_for("abci_info"), 2);
}
