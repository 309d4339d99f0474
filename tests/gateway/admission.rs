//! Issue #4's acceptance, part one: lanes, per-client rates and per-client concurrency,
//! proven against the node's own counters. Sizes and batches are in
//! `admission/limits.rs`, parameter caps and denied methods in
//! `admission/caps.rs`, WebSocket caps in `admission/ws.rs`.

use std::time::{Duration, Instant};

use bytes::Bytes;
use cometgate_sim::{Fault, SimNodeConfig};
use http::{Method, StatusCode};
use http_body_util::Full;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};

use crate::support::*;

mod caps;
mod fairness;
mod limits;
pub(crate) mod ws;

pub type Http = Client<HttpConnector, Full<Bytes>>;

/// A client whose connections come from `ip`: any 127.0.0.x reaches the gateway.
pub fn client_at(ip: &str) -> Http {
    let mut connector = HttpConnector::new();
    connector.set_local_address(Some(ip.parse().expect("an IP")));
    Client::builder(TokioExecutor::new()).build(connector)
}

pub async fn post_as(http: &Http, h: &Harness, body: &str, headers: &[(&str, &str)]) -> Reply {
    let url = format!("{}/", h.url());
    send(
        http,
        Method::POST,
        &url,
        Bytes::from(body.to_owned()),
        headers,
    )
    .await
}

pub fn rpc(id: u64, method: &str, params: Value) -> String {
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}).to_string()
}

/// A refusal a client can act on: its status, a whole-second Retry-After, and a JSON-RPC
/// error whose `data` says why.
pub fn assert_refused_with_retry(r: &Reply, status: StatusCode, data_has: &str) {
    assert_eq!(r.status, status, "{}", String::from_utf8_lossy(&r.body));
    let after: u64 = r.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .expect("Retry-After in whole seconds");
    assert!(after >= 1, "Retry-After {after}");
    let v = r.json();
    assert_eq!(v["jsonrpc"], "2.0");
    assert_eq!(v["error"]["code"], -32000, "{v}");
    let data = v["error"]["data"].as_str().unwrap();
    assert!(
        data.contains(data_has),
        "{data:?} should mention {data_has:?}"
    );
}

/// Sends `body` until the first refusal; returns how many passed, and the refusal.
async fn until_refused(
    http: &Http,
    h: &Harness,
    body: &str,
    headers: &[(&str, &str)],
) -> (u32, Reply) {
    for passed in 0..1000 {
        let r = post_as(http, h, body, headers).await;
        if r.status != StatusCode::OK {
            return (passed, r);
        }
        assert!(r.json()["result"].is_object(), "{}", r.json());
    }
    panic!("never refused");
}

/// A chain tall enough for 200 distinct `block_results` heights.
fn tall_chain() -> SimNodeConfig {
    SimNodeConfig {
        start_height: 250,
        ..SimNodeConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_200_distinct_heavy_calls_the_node_never_sees_more_than_the_heavy_lane_and_light_calls_stay_fast(
) {
    let h = spawn_gateway_with(tall_chain(), |c| {
        c.lanes.heavy.max_concurrency = 4;
        // A static lane: these count the node's peak against it.
        c.lanes.heavy.adaptive = false;
        c.lanes.heavy.max_queue = 256;
        c.lanes.heavy.queue_timeout = Duration::from_secs(60);
        c.rate_limit.max_concurrent_per_client = 1000;
    })
    .await;
    h.node
        .set_fault_for("block_results", Fault::Slow(Duration::from_millis(100)));
    let url = format!("{}/", h.url());
    let heavy: Vec<_> = (1..=200u64)
        .map(|height| {
            // From 50 clients: each may hold only lanes.heavy.max_per_client of the lane.
            let http = client_at(&format!("127.0.0.{}", 1 + height % 50));
            let url = url.clone();
            let body = rpc(
                height,
                "block_results",
                json!({"height": height.to_string()}),
            );
            tokio::spawn(async move {
                let started = Instant::now();
                let r = send(&http, Method::POST, &url, Bytes::from(body), &[]).await;
                (r, started.elapsed())
            })
        })
        .collect();
    let gw = h.gateway.clone();
    eventually("the heavy lane is full and over 100 calls wait", || {
        let s = gw.admission().snapshot();
        async move { s.heavy.in_flight == 4 && s.heavy.queued + s.heavy.waiting_for_share > 100 }
    })
    .await;

    // Light calls meanwhile: health is never cached, so each one goes to the node.
    let health_before = h.node.requests_for("health");
    let mut light = Vec::new();
    for id in 0..100 {
        let started = Instant::now();
        let r = h.post(&rpc(id, "health", json!({}))).await;
        light.push(started.elapsed());
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.json()["result"], json!({}));
    }
    assert!(
        {
            let s = h.gateway.admission().snapshot().heavy;
            s.queued + s.waiting_for_share > 0
        },
        "the light calls were measured while heavy ones still queued"
    );
    assert_eq!(h.node.requests_for("health") - health_before, 100);
    light.sort();
    let light_p99 = light[98];
    assert!(
        light_p99 < Duration::from_secs(2),
        "light p99 {light_p99:?}"
    );

    let mut slowest_heavy = Duration::ZERO;
    for (height, task) in (1..=200u64).zip(heavy) {
        let (r, took) = task.await.unwrap();
        assert_eq!(
            r.status,
            StatusCode::OK,
            "{}",
            String::from_utf8_lossy(&r.body)
        );
        let v = r.json();
        assert_eq!(v["id"], height);
        assert_eq!(v["result"]["height"], height.to_string(), "{v}");
        slowest_heavy = slowest_heavy.max(took);
    }
    let stats = h.node.stats();
    assert_eq!(stats.per_method["block_results"], 200);
    let peak = stats.peak_inflight_per_method["block_results"];
    assert_eq!(peak, 4, "the node's peak of concurrent heavy calls");
    eprintln!(
        "heavy lane: node peak in flight {peak}/4; light p99 {light_p99:?}, \
         slowest heavy {slowest_heavy:?}"
    );
}

#[tokio::test]
async fn past_the_heavy_queue_a_call_gets_503_with_retry_after_and_a_json_rpc_error() {
    let h = spawn_gateway_with(tall_chain(), |c| {
        c.lanes.heavy.max_concurrency = 1;
        c.lanes.heavy.max_queue = 1;
        c.lanes.heavy.queue_timeout = Duration::from_secs(15);
    })
    .await;
    h.node
        .set_fault_for("block_results", Fault::Slow(Duration::from_millis(500)));
    let call = |height: u64| {
        let http = client_at("127.0.0.1");
        let url = format!("{}/", h.url());
        let body = rpc(
            height,
            "block_results",
            json!({"height": height.to_string()}),
        );
        tokio::spawn(async move { send(&http, Method::POST, &url, Bytes::from(body), &[]).await })
    };
    let gw = h.gateway.clone();
    let running = call(1);
    eventually("one heavy call holds the lane", || {
        let s = gw.admission().snapshot();
        async move { s.heavy.in_flight == 1 }
    })
    .await;
    let queued = call(2);
    eventually("a second one waits in the queue", || {
        let s = gw.admission().snapshot();
        async move { s.heavy.queued == 1 }
    })
    .await;

    // From another client: the first's own third call would wait for its share instead.
    let refused = post_as(
        &client_at("127.0.0.2"),
        &h,
        &rpc(3, "block_results", json!({"height": "3"})),
        &[],
    )
    .await;
    assert_refused_with_retry(
        &refused,
        StatusCode::SERVICE_UNAVAILABLE,
        "heavy lane is full",
    );
    assert_eq!(refused.json()["id"], 3);

    for (task, height) in [(running, 1), (queued, 2)] {
        let r = task.await.unwrap();
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.json()["result"]["height"], height.to_string());
    }
    let stats = h.node.stats();
    assert_eq!(
        stats.per_method["block_results"], 2,
        "{:?}",
        stats.per_request
    );
    assert!(!stats.per_request.contains_key("block_results(height=3)"));
}

#[tokio::test]
async fn a_client_over_its_rate_gets_429_while_another_address_is_unaffected() {
    let h = spawn_gateway_with(SimNodeConfig::default(), |c| {
        c.rate_limit.requests_per_second = 1;
        c.rate_limit.burst = 5;
    })
    .await;
    let (one, two) = (client_at("127.0.0.1"), client_at("127.0.0.2"));
    let health = rpc(7, "health", json!({}));
    let (passed, refused) = until_refused(&one, &h, &health, &[]).await;
    assert!(passed >= 5, "{passed} passed before the burst ran out");
    assert_refused_with_retry(
        &refused,
        StatusCode::TOO_MANY_REQUESTS,
        "rate limit exceeded",
    );
    assert_eq!(refused.json()["error"]["message"], "Server error");
    let node_saw = h.node.requests_for("health");
    assert_eq!(
        node_saw,
        u64::from(passed),
        "refused calls never reach the node"
    );

    let other = post_as(&two, &h, &health, &[]).await;
    assert_eq!(other.status, StatusCode::OK, "127.0.0.2 has its own bucket");
    // Claiming another address from an untrusted peer changes nothing.
    let spoofed = post_as(&one, &h, &health, &[("x-forwarded-for", "10.9.9.9")]).await;
    assert_eq!(spoofed.status, StatusCode::TOO_MANY_REQUESTS);
    let spoofed = post_as(&one, &h, &health, &[("x-real-ip", "10.9.9.9")]).await;
    assert_eq!(spoofed.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(h.node.requests_for("health"), node_saw + 1);
}

#[tokio::test]
async fn behind_a_trusted_proxy_each_forwarded_address_has_its_own_bucket() {
    let h = spawn_gateway_with(SimNodeConfig::default(), |c| {
        c.rate_limit.requests_per_second = 1;
        c.rate_limit.burst = 5;
        c.rate_limit.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    })
    .await;
    let proxy = client_at("127.0.0.1");
    let health = rpc(1, "health", json!({}));
    let a = [("x-forwarded-for", "10.0.0.1")];
    let (passed, refused) = until_refused(&proxy, &h, &health, &a).await;
    assert!(passed >= 5);
    assert_refused_with_retry(
        &refused,
        StatusCode::TOO_MANY_REQUESTS,
        "rate limit exceeded",
    );

    let b = post_as(&proxy, &h, &health, &[("x-forwarded-for", "10.0.0.2")]).await;
    assert_eq!(
        b.status,
        StatusCode::OK,
        "another client behind the same proxy"
    );
    // The client cannot prepend a hop to escape: the rightmost untrusted one counts.
    let forged = [("x-forwarded-for", "10.0.0.3, 10.0.0.1")];
    let r = post_as(&proxy, &h, &health, &forged).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn a_cost_10_method_exhausts_a_burst_ten_times_faster_than_a_cost_1_method() {
    let h = spawn_gateway_with(SimNodeConfig::default(), |c| {
        c.rate_limit.requests_per_second = 1;
        c.rate_limit.burst = 100;
        c.rate_limit.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    })
    .await;
    let http = client_at("127.0.0.1");
    let search = rpc(1, "tx_search", json!({"query": "tx.height=5"}));
    let started = Instant::now();
    let (heavy, r) = until_refused(&http, &h, &search, &[("x-forwarded-for", "10.0.0.1")]).await;
    assert_refused_with_retry(&r, StatusCode::TOO_MANY_REQUESTS, "rate limit exceeded");
    let health = rpc(2, "health", json!({}));
    let (light, r) = until_refused(&http, &h, &health, &[("x-forwarded-for", "10.0.0.2")]).await;
    assert_refused_with_retry(&r, StatusCode::TOO_MANY_REQUESTS, "rate limit exceeded");
    // The bucket refills one unit a second: allow for what came back while we ran.
    let refilled = started.elapsed().as_secs() as u32 + 1;
    assert_eq!(heavy, 10, "tx_search costs 10 of a burst of 100");
    assert!(
        (100..=100 + refilled).contains(&light),
        "health costs 1: {light} passed"
    );
    eprintln!("burst of 100: {heavy} tx_search calls, {light} health calls");
}

#[tokio::test]
async fn a_client_past_max_concurrent_per_client_gets_429_while_its_calls_are_in_flight() {
    let h = spawn_gateway_with(tall_chain(), |c| {
        c.rate_limit.max_concurrent_per_client = 2;
    })
    .await;
    h.node
        .set_fault_for("block_results", Fault::Slow(Duration::from_millis(1500)));
    let in_flight: Vec<_> = (1..=2u64)
        .map(|height| {
            let http = client_at("127.0.0.1");
            let url = format!("{}/", h.url());
            let body = rpc(
                height,
                "block_results",
                json!({"height": height.to_string()}),
            );
            tokio::spawn(
                async move { send(&http, Method::POST, &url, Bytes::from(body), &[]).await },
            )
        })
        .collect();
    let gw = h.gateway.clone();
    eventually("both calls are at the node", || {
        let s = gw.admission().snapshot();
        async move { s.heavy.in_flight == 2 }
    })
    .await;
    let health = rpc(3, "health", json!({}));
    let busy = h.post(&health).await;
    assert_refused_with_retry(
        &busy,
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limit.max_concurrent_per_client = 2",
    );
    let busy = h.get("/health").await;
    assert_eq!(busy.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(h.node.requests_for("health"), 0);
    let other = post_as(&client_at("127.0.0.2"), &h, &health, &[]).await;
    assert_eq!(
        other.status,
        StatusCode::OK,
        "another client is not held up"
    );
    for task in in_flight {
        assert_eq!(task.await.unwrap().status, StatusCode::OK);
    }
    assert_eq!(
        h.post(&health).await.status,
        StatusCode::OK,
        "slots come back"
    );
}
