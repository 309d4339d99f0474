//! Issue #4's acceptance, part three: every parameter cap and every denied method holds,
//! in every spelling, and what is refused never reaches the node. Where the node itself
//! would clamp, the node sees the clamped value.

use std::collections::BTreeMap;

use cometgate::config::{ByteSize, Config, MethodOverride};
use cometgate_sim::SimNodeConfig;
use http::StatusCode;
use serde_json::{json, Value};

use super::rpc;
use crate::support::*;

fn capped(c: &mut Config) {
    let span = MethodOverride {
        max_height_span: Some(1000),
        ..Default::default()
    };
    let overrides = BTreeMap::from([
        ("tx_search".to_owned(), span.clone()),
        ("block_search".to_owned(), span),
        (
            "blockchain".to_owned(),
            MethodOverride {
                max_range: Some(5),
                ..Default::default()
            },
        ),
        (
            "abci_query".to_owned(),
            MethodOverride {
                path_allow: Some(vec!["/app/*".into(), "/p2p/*".into()]),
                path_deny: Some(vec!["/p2p/filter/*".into()]),
                max_data_bytes: Some(ByteSize::bytes(16)),
                ..Default::default()
            },
        ),
    ]);
    c.methods = overrides;
}

const BOUNDED: &str = "tx.height >= 1 AND tx.height <= 5";
const BLOCKS_BOUNDED: &str = "block.height >= 1 AND block.height <= 5";

#[tokio::test]
async fn every_refusing_cap_holds_and_nothing_refused_reaches_the_node() {
    let h = spawn_gateway_with(SimNodeConfig::default(), capped).await;
    let long_query = format!("{BOUNDED} AND transfer.note = '{}'", "x".repeat(600));
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "tx_search",
            json!({"query": BOUNDED, "page": "101"}),
            "methods.tx_search.max_page",
        ),
        (
            "block_search",
            json!({"query": BLOCKS_BOUNDED, "page": "101"}),
            "methods.block_search.max_page",
        ),
        (
            "validators",
            json!({"page": "101"}),
            "methods.validators.max_page",
        ),
        (
            "tx_search",
            json!({"query": long_query}),
            "methods.tx_search.max_query_bytes",
        ),
        (
            "tx_search",
            json!({"query": BOUNDED, "prove": true}),
            "methods.tx_search.allow_prove",
        ),
        (
            "tx_search",
            json!({"query": "tx.height >= 1 AND tx.height <= 5000"}),
            "methods.tx_search.max_height_span",
        ),
        (
            "tx_search",
            json!({"query": "tx.height > 5"}),
            "methods.tx_search.max_height_span",
        ),
        (
            "tx_search",
            json!({"query": "transfer.sender = 'a'"}),
            "methods.tx_search.max_height_span",
        ),
        (
            "block_search",
            json!({"query": "block.height >= 1 AND block.height <= 5000"}),
            "methods.block_search.max_height_span",
        ),
        (
            "abci_query",
            json!({"path": "/store/acc/key"}),
            "methods.abci_query.path_allow",
        ),
        (
            "abci_query",
            json!({"path": "/p2p/filter/addr/1.2.3.4:26656"}),
            "methods.abci_query.path_deny",
        ),
        (
            "abci_query",
            json!({"path": "/app/version", "data": "00".repeat(17)}),
            "methods.abci_query.max_data_bytes",
        ),
    ];
    for (i, (method, params, key)) in cases.iter().enumerate() {
        let r = h.post(&rpc(i as u64, method, params.clone())).await;
        assert_eq!(r.status, StatusCode::OK, "{method} {params}");
        let v = r.json();
        assert_eq!(v["id"], i);
        assert_eq!(v["error"]["code"], -32602, "{method} {params}: {v}");
        assert_eq!(v["error"]["message"], "Invalid params");
        let data = v["error"]["data"].as_str().unwrap();
        assert!(
            data.contains(key),
            "{method} {params}: {data:?} names {key}"
        );
    }
    // The URI form is held to the same caps.
    for (path, key) in [
        ("/tx_search?query=%22tx.height%3E5%22", "max_height_span"),
        ("/tx_search?query=%22tx.height=5%22&page=101", "max_page"),
        (
            "/tx_search?query=%22tx.height=5%22&prove=true",
            "allow_prove",
        ),
        ("/validators?page=101", "max_page"),
        ("/abci_query?path=%22/p2p/filter/id/abc%22", "path_deny"),
        ("/v1/abci_query?path=%22/custom/x%22", "path_allow"),
    ] {
        let r = h.get(path).await;
        assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR, "{path}");
        let v = r.json();
        assert_eq!(v["error"]["code"], -32602, "{path}: {v}");
        assert!(
            v["error"]["data"].as_str().unwrap().contains(key),
            "{path}: {v}"
        );
    }
    for method in ["tx_search", "block_search", "validators", "abci_query"] {
        assert_eq!(h.node.requests_for(method), 0, "{method} reached the node");
    }
    // What the caps allow does reach it.
    let ok = h
        .post(&rpc(
            99,
            "abci_query",
            json!({"path": "/app/version", "data": "00"}),
        ))
        .await;
    assert!(ok.json()["result"].is_object(), "{}", ok.json());
    let ok = h
        .post(&rpc(98, "tx_search", json!({"query": BOUNDED})))
        .await;
    assert!(ok.json()["result"]["txs"].is_array(), "{}", ok.json());
    assert_eq!(h.node.requests_for("abci_query"), 1);
    assert_eq!(h.node.requests_for("tx_search"), 1);
}

#[tokio::test]
async fn clamping_caps_reach_the_node_as_the_clamped_value() {
    let h = spawn_gateway_with(SimNodeConfig::default(), capped).await;
    let cases: Vec<(&str, Value, &str, &str)> = vec![
        (
            "tx_search",
            json!({"query": "tx.height >= 1 AND tx.height <= 5", "per_page": "500"}),
            "per_page=100",
            "per_page=500",
        ),
        (
            "block_search",
            json!({"query": BLOCKS_BOUNDED, "per_page": "500"}),
            "per_page=100",
            "per_page=500",
        ),
        (
            "validators",
            json!({"per_page": "500"}),
            "per_page=100",
            "per_page=500",
        ),
        (
            "unconfirmed_txs",
            json!({"limit": "500"}),
            "limit=100",
            "limit=500",
        ),
        (
            "blockchain",
            json!({"minHeight": "1", "maxHeight": "10"}),
            "minHeight=6",
            "minHeight=1",
        ),
    ];
    for (i, (method, params, clamped, asked)) in cases.iter().enumerate() {
        let r = h.post(&rpc(i as u64, method, params.clone())).await;
        let v = r.json();
        assert!(v["result"].is_object(), "{method} {params}: {v}");
        let stats = h.node.stats();
        let seen: Vec<_> = stats
            .per_request
            .keys()
            .filter(|k| k.starts_with(&format!("{method}(")))
            .collect();
        assert_eq!(seen.len(), 1, "{seen:?}");
        assert!(
            seen[0].contains(clamped),
            "{method}: node saw {seen:?}, not {clamped}"
        );
        assert!(!seen[0].contains(asked), "{method}: node saw {seen:?}");
    }
    let v = h
        .post(&rpc(
            9,
            "blockchain",
            json!({"minHeight": "1", "maxHeight": "10"}),
        ))
        .await
        .json();
    assert_eq!(v["result"]["block_metas"].as_array().unwrap().len(), 5);
}

const DENIED: [(&str, &str); 5] = [
    ("dial_seeds", r#"{"seeds":["a@1.2.3.4:26656"]}"#),
    (
        "dial_peers",
        r#"{"peers":["a@1.2.3.4:26656"],"persistent":true}"#,
    ),
    ("unsafe_flush_mempool", "{}"),
    ("broadcast_evidence", r#"{"evidence":"AA=="}"#),
    ("dump_consensus_state", "{}"),
];

fn assert_denied(r: &Reply, status: StatusCode, method: &str) {
    assert_eq!(r.status, status, "{method}");
    let v = r.json();
    assert_eq!(v["error"]["code"], -32601, "{method}: {v}");
    let data = v["error"]["data"].as_str().unwrap();
    assert!(data.contains("disabled by this gateway's policy"), "{data}");
}

#[tokio::test]
async fn denied_methods_are_refused_in_every_spelling_and_never_reach_the_node() {
    let h = spawn_gateway().await;
    for (method, params) in DENIED {
        let body = format!(r#"{{"jsonrpc":"2.0","id":1,"method":"{method}","params":{params}}}"#);
        assert_denied(&h.post(&body).await, StatusCode::OK, method);
        let v1 = h.request(http::Method::POST, "/v1/", &body, &[]).await;
        assert_denied(&v1, StatusCode::OK, method);
        let batch = format!(r#"[{{"jsonrpc":"2.0","id":0,"method":"health"}},{body}]"#);
        let r = h.post(&batch).await;
        let v = r.json();
        assert_eq!(v[0]["result"], json!({}), "the allowed entry still runs");
        assert_eq!(v[1]["error"]["code"], -32601, "{method}: {v}");
        for path in [format!("/{method}"), format!("/v1/{method}")] {
            assert_denied(
                &h.get(&path).await,
                StatusCode::INTERNAL_SERVER_ERROR,
                method,
            );
        }
        assert_eq!(h.node.requests_for(method), 0, "{method} reached the node");
    }
    assert_eq!(h.node.requests_for("health"), 5);
}
