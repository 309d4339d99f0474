//! What the cache keeps and for how long: expiry on the head, stale-if-error, the byte
//! bound, verdicts, and the admin operations.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use super::tests::{at, config, counted, plan, result};
use super::*;
use crate::config::{ByteSize, CacheConfig};

#[tokio::test]
async fn latest_entries_end_with_their_block_and_pinned_ones_do_not() {
    let head = at(10);
    let cache = Cache::new(&config(), head.clone());
    let calls = Arc::new(AtomicUsize::new(0));
    let status = |h: u64| {
        result(format!(
            r#"{{"sync_info":{{"latest_block_height":"{h}"}}}}"#
        ))
    };
    let get = |method: &'static str, params: Value, answer: Answer| {
        let p = plan(&cache, method, params);
        let fetch = counted(&calls, answer);
        let cache = cache.clone();
        async move { cache.get_or_fetch(p, fetch).await }
    };
    assert_eq!(
        get("status", json!({}), status(10)).await.1,
        CacheStatus::Miss
    );
    assert_eq!(
        get("status", json!({}), status(10)).await,
        (Ok(status(10)), CacheStatus::Hit)
    );
    // "latest" block pinned to 10 shares the entry of block 10.
    assert_eq!(
        get("block", json!({}), result(r#"{"b":10}"#)).await.1,
        CacheStatus::Miss
    );
    assert_eq!(
        get("block", json!({"height": "10"}), result("{}")).await,
        (Ok(result(r#"{"b":10}"#)), CacheStatus::Hit)
    );
    head.set(11);
    assert_eq!(
        get("status", json!({}), status(11)).await,
        (Ok(status(11)), CacheStatus::Miss)
    );
    assert_eq!(
        get("block", json!({"height": "10"}), result("{}")).await.1,
        CacheStatus::Hit
    );
    assert_eq!(
        get("block", json!({}), result(r#"{"b":11}"#)).await,
        (Ok(result(r#"{"b":11}"#)), CacheStatus::Miss)
    );
    assert_eq!(calls.load(Ordering::SeqCst), 4);
}

/// The node commits block 11 before its NewBlock event reaches the tracker: a `status`
/// fetched at head 10 says 11. Kept as block 10's it would be stale at once, and every
/// caller who read 11 from it would ask about a block the gateway does not know yet.
#[tokio::test]
async fn an_answer_from_the_next_block_moves_the_head_and_is_kept_as_its() {
    let head = at(10);
    let cache = Cache::new(&config(), head.clone());
    let calls = Arc::new(AtomicUsize::new(0));
    let status = result(r#"{"sync_info":{"latest_block_height":"11"}}"#);
    let ask = |answer: Answer| {
        let p = plan(&cache, "status", json!({}));
        cache.get_or_fetch(p, counted(&calls, answer))
    };
    assert_eq!(ask(status.clone()).await.1, CacheStatus::Miss);
    assert_eq!(
        head.height(),
        Some(11),
        "the answer's block raised the head"
    );
    assert_eq!(ask(status.clone()).await, (Ok(status), CacheStatus::Hit));
    // A search pinned by that answer is the new block's question, not a block early.
    let search = |answer: Answer| {
        let p = plan(&cache, "tx_search", json!({"query": "tx.height=11"}));
        cache.get_or_fetch(p, counted(&calls, answer))
    };
    let found = result(r#"{"txs":[],"total_count":"3"}"#);
    assert_eq!(search(found.clone()).await.1, CacheStatus::Miss);
    assert_eq!(search(found).await.1, CacheStatus::Hit);
    assert_eq!(calls.load(Ordering::SeqCst), 2);

    // An answer from a block behind the head (a lagging application) moves nothing.
    let old = result(r#"{"response":{"code":0,"height":"9"}}"#);
    let p = plan(
        &cache,
        "abci_query",
        json!({"path": "/store", "data": "00"}),
    );
    assert_eq!(
        cache.get_or_fetch(p, counted(&calls, old)).await.1,
        CacheStatus::Miss
    );
    assert_eq!(head.height(), Some(11));
}

#[tokio::test(start_paused = true)]
async fn stale_if_error_stands_in_only_within_its_window() {
    let head = at(10);
    let cache = Cache::new(&config(), head.clone());
    let old = result(r#"{"sync_info":{"latest_block_height":"10"}}"#);
    let p = plan(&cache, "status", json!({}));
    let ok = old.clone();
    assert_eq!(
        cache.get_or_fetch(p, move || async move { Ok(ok) }).await.1,
        CacheStatus::Miss
    );
    head.set(11);
    let fail = |e: Rejection| move || async move { Err::<Answer, _>(e) };
    let timeout = Rejection::UpstreamTimeout(Duration::from_secs(10));
    let p = plan(&cache, "status", json!({}));
    assert_eq!(
        cache.get_or_fetch(p.clone(), fail(timeout.clone())).await,
        (Ok(old.clone()), CacheStatus::Stale)
    );
    let full = Rejection::Overloaded {
        lane: crate::config::Lane::Light,
        retry_after: Duration::from_secs(1),
    };
    assert_eq!(
        cache.get_or_fetch(p.clone(), fail(full)).await.1,
        CacheStatus::Stale
    );
    // A caller's own fault is never covered up.
    let own = Rejection::InvalidParams("bad".into());
    assert_eq!(
        cache.get_or_fetch(p.clone(), fail(own.clone())).await,
        (Err(own), CacheStatus::Miss)
    );
    tokio::time::advance(Duration::from_secs(31)).await;
    assert_eq!(
        cache.get_or_fetch(p, fail(timeout.clone())).await,
        (Err(timeout), CacheStatus::Miss)
    );
    assert_eq!(cache.stats().stale, 2);
}

#[tokio::test(start_paused = true)]
async fn a_blind_head_bounds_latest_entries_by_time() {
    let head = at(10);
    let cache = Cache::new(&config(), head.clone());
    let p = plan(&cache, "net_info", json!({}));
    let a = result(r#"{"n_peers":"1"}"#);
    let fetch = {
        let a = a.clone();
        move || async move { Ok(a) }
    };
    let _ = cache.get_or_fetch(p.clone(), fetch).await;
    // Past stall_after (30s) without a new block: latest_max_ttl (10s) is long gone.
    tokio::time::advance(Duration::from_secs(31)).await;
    assert!(head.blind());
    let Begin::Lead(_) = cache.begin(p).await else {
        panic!("a blind head must not vouch for it")
    };
}

#[tokio::test]
async fn the_weight_stays_within_max_bytes() {
    let config = CacheConfig {
        max_bytes: ByteSize::kib(64),
        max_entry_bytes: ByteSize::kib(2),
        ..config()
    };
    let cache = Cache::new(&config, at(100_000));
    let body = "x".repeat(1000);
    for height in 1..=640 {
        let p = plan(&cache, "block", json!({"height": height.to_string()}));
        let answer = result(format!(r#"{{"h":{height},"pad":"{body}"}}"#));
        let _ = cache
            .get_or_fetch(p, move || async move { Ok(answer) })
            .await;
    }
    cache.run_pending_tasks().await;
    let stats = cache.stats();
    assert!(
        stats.weighted_bytes <= config.max_bytes.as_u64(),
        "{stats:?}"
    );
    assert!(stats.entries > 0 && stats.entries < 64, "{stats:?}");
    assert_eq!(stats.stores, 640);

    let big = result(format!(r#"{{"pad":"{}"}}"#, "y".repeat(4096)));
    let p = plan(&cache, "block", json!({"height": "99999"}));
    for expected in [CacheStatus::Miss, CacheStatus::Miss] {
        let answer = big.clone();
        let (got, status) = cache
            .get_or_fetch(p.clone(), move || async move { Ok(answer) })
            .await;
        assert_eq!(
            (got.unwrap().len(), status),
            (big.len(), expected),
            "served, never stored"
        );
    }
    assert_eq!(cache.stats().rejected.too_large, 2);
}

#[tokio::test]
async fn verdicts_decide_what_is_kept() {
    let config = CacheConfig {
        code_error_ttl: Duration::from_secs(5),
        ..config()
    };
    let cache = Cache::new(&config, at(100));
    let cases = [
        (
            "block_by_hash",
            json!({"hash": "AA=="}),
            r#"{"block_id":{"hash":""},"block":null}"#,
            false,
        ),
        (
            "commit",
            json!({"height": "90"}),
            r#"{"signed_header":{},"canonical":false}"#,
            false,
        ),
        (
            "commit",
            json!({"height": "91"}),
            r#"{"signed_header":{},"canonical":true}"#,
            true,
        ),
        (
            "tx",
            json!({"hash": "AA=="}),
            r#"{"tx_result":{"code":5}}"#,
            false,
        ),
        (
            "abci_query",
            json!({"path": "/p", "height": "80"}),
            r#"{"response":{"code":3}}"#,
            true,
        ),
        (
            "abci_query",
            json!({"path": "/q", "height": "80"}),
            r#"{"response":{"code":0,"height":"80","value":"AA=="}}"#,
            true,
        ),
        // The app answered from its latest state, not the height asked for.
        (
            "abci_query",
            json!({"path": "/r", "height": "80"}),
            r#"{"response":{"code":0,"height":"100","value":"AA=="}}"#,
            false,
        ),
        ("block_results", json!({"height": "80"}), "null", false),
    ];
    for (method, params, text, kept) in cases {
        let p = plan(&cache, method, params);
        let answer = result(text);
        let _ = cache
            .get_or_fetch(p.clone(), move || async move { Ok(answer) })
            .await;
        let (_, status) = cache
            .get_or_fetch(p, || async { Ok(result("{\"other\":1}")) })
            .await;
        assert_eq!(status == CacheStatus::Hit, kept, "{method} {text}");
    }
}

#[tokio::test]
async fn purge_explain_and_reconfigure() {
    let cache = Cache::new(&config(), at(100));
    for (method, height) in [("block", "1"), ("block", "2"), ("header", "1")] {
        let p = plan(&cache, method, json!({"height": height}));
        let _ = cache
            .get_or_fetch(p, || async { Ok(result(r#"{"x":1}"#)) })
            .await;
    }
    let p = plan(&cache, "header", json!({"height": "1"}));
    let explain = cache.explain(&p).await;
    assert_eq!(explain.key.as_deref(), Some(r#"header {"height":"1"}"#));
    assert!(explain.cached && explain.fresh);
    assert_eq!(
        (explain.policy.as_str(), explain.bytes),
        ("immutable", Some(7))
    );
    assert_eq!(cache.purge(Some("block")), 2);
    assert!(
        !cache
            .explain(&plan(&cache, "block", json!({"height": "1"})))
            .await
            .cached
    );
    assert!(cache.explain(&p).await.cached);
    assert_eq!(cache.purge(None), 1);
    assert!(!cache.explain(&p).await.cached);

    assert!(cache.reconfigure(&config()).is_empty());
    let off = CacheConfig {
        enabled: false,
        max_bytes: ByteSize::mib(1),
        ..config()
    };
    assert_eq!(cache.reconfigure(&off), vec!["cache.max_bytes"]);
    assert!(matches!(
        plan(&cache, "block", json!({"height": "1"})),
        Plan::Bypass
    ));
    assert_eq!(CacheStatus::Coalesced.as_str(), "coalesced");
}
