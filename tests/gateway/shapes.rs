//! Issue #13: the shipped config and the public example, run as written against the
//! shapes they are for. Only the node's address changes (the harness binds the ports).

use std::sync::Arc;

use cometgate::config::{Config, LocalClients};
use cometgate_sim::SimNodeConfig;
use futures_util::stream::{self, StreamExt};
use http::{Method, StatusCode};
use serde_json::json;

use crate::support::*;

const SHIPPED: &str = include_str!("../../config/cometgate.toml");
const PUBLIC: &str = include_str!("../../config/examples/public-rpc.toml");

/// A gateway running `text` as the binary would, in front of `node`.
async fn spawn_with_file(node: SimNodeConfig, text: &str) -> Arc<Harness> {
    let file = Config::from_toml_str(text).expect("the file is valid");
    let h = spawn_gateway_with(node, move |c| {
        let url = c.upstream.url.clone();
        *c = file;
        c.upstream.url = url;
    })
    .await;
    Arc::new(h)
}

/// What a REST server sends while a front end pages through history: blocks, their
/// results and transaction searches, each at another height.
fn lcd_call(i: u64, heights: u64) -> String {
    let height = 1 + i % heights;
    let (method, params) = match i % 3 {
        0 => ("block", json!({ "height": height.to_string() })),
        1 => ("block_results", json!({ "height": height.to_string() })),
        _ => (
            "tx_search",
            json!({ "query": format!("tx.height={height}"), "per_page": "30" }),
        ),
    };
    json!({"jsonrpc": "2.0", "id": i, "method": method, "params": params}).to_string()
}

/// Sends `bodies` `at_once` at a time, each with `headers`; returns the refusals.
async fn refusals(
    h: &Arc<Harness>,
    bodies: Vec<String>,
    at_once: usize,
    headers: &'static [(&'static str, &'static str)],
) -> Vec<(StatusCode, String)> {
    stream::iter(bodies)
        .map(|body| {
            let h = h.clone();
            async move { h.request(Method::POST, "/", &body, headers).await }
        })
        .buffer_unordered(at_once)
        .filter_map(|r| async move {
            let text = String::from_utf8_lossy(&r.body).into_owned();
            let refused = r.status != StatusCode::OK || r.json().get("error").is_some();
            refused.then_some((r.status, text))
        })
        .collect()
        .await
}

#[tokio::test]
async fn the_shipped_config_serves_a_local_rest_server_sending_64_at_once() {
    let node = SimNodeConfig {
        start_height: 200,
        ..SimNodeConfig::default()
    };
    let h = spawn_with_file(node, SHIPPED).await;
    let calls = (0..600).map(|i| lcd_call(i, 200)).collect();
    let refused = refusals(&h, calls, 64, &[]).await;
    assert!(
        refused.is_empty(),
        "{} of 600 refused, first: {:?}",
        refused.len(),
        refused.first()
    );
    // The calls were the node's to answer, not the cache's.
    let at_node = h.node.requests_for("block_results") + h.node.requests_for("tx_search");
    assert!(
        at_node >= 300,
        "only {at_node} heavy calls reached the node"
    );

    // The same client held to the per-client limits, as a public one is, is refused.
    let mut limited = (*h.gateway.config()).clone();
    limited.rate_limit.local_clients = LocalClients::Limited;
    h.gateway.reload(limited);
    let calls = (600..664).map(|i| lcd_call(i, 200)).collect();
    let refused = refusals(&h, calls, 64, &[]).await;
    assert!(
        refused
            .iter()
            .any(|(s, _)| *s == StatusCode::TOO_MANY_REQUESTS),
        "the per-client limits should bind a limited client: {refused:?}"
    );
}

#[tokio::test]
async fn a_local_proxy_that_is_not_trusted_gets_no_exemption_and_is_reported() {
    let h = spawn_with_file(SimNodeConfig::default(), SHIPPED).await;
    // An nginx on this host, not in trusted_proxies: its public clients all arrive from
    // 127.0.0.1 and say who they are in X-Forwarded-For.
    const PROXIED: &[(&str, &str)] = &[("x-forwarded-for", "198.51.100.7")];
    let searches = |from: u64| {
        (from..from + 64)
            .map(|i| lcd_call(3 * i + 2, 10))
            .collect::<Vec<_>>()
    };
    let refused = refusals(&h, searches(0), 64, PROXIED).await;
    assert!(
        refused
            .iter()
            .any(|(s, _)| *s == StatusCode::TOO_MANY_REQUESTS),
        "64 searches at once through an untrusted local proxy must meet the per-client limits"
    );
    assert_eq!(
        h.metric("cometgate_untrusted_forwarding_requests_total", &[])
            .await,
        64.0
    );
    // The same calls from the same address, straight from a local client, are served.
    assert_eq!(refusals(&h, searches(100), 64, &[]).await, []);
}

#[tokio::test]
async fn the_public_example_limits_a_flooding_client_and_not_the_others() {
    let h = spawn_with_file(SimNodeConfig::default(), PUBLIC).await;
    let block = |i: u64| lcd_call(3 * i, 10);
    // Every client comes through the trusted proxy on 127.0.0.1, which names it.
    let mut flood_refused = 0;
    for i in 0..100 {
        let r = h
            .request(
                Method::POST,
                "/",
                &block(i),
                &[("x-real-ip", "198.51.100.66")],
            )
            .await;
        if r.status == StatusCode::TOO_MANY_REQUESTS {
            assert!(r.headers.contains_key("retry-after"), "told when to return");
            flood_refused += 1;
        }
    }
    assert!(
        flood_refused > 0,
        "100 blocks (cost 3) against a burst of 100: none refused"
    );
    for client in ["198.51.100.1", "198.51.100.2", "203.0.113.9"] {
        for i in 0..10 {
            let r = h
                .request(Method::POST, "/", &block(i), &[("x-real-ip", client)])
                .await;
            assert_eq!(r.status, StatusCode::OK, "{client}: {:?}", r.body);
            assert!(r.json().get("result").is_some());
        }
    }
}
