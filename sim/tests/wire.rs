//! Wire behaviour: JSON-RPC and URI forms, error shapes and statuses, batches, headers.

mod common;

use cometgate_sim::{SimNode, SimNodeConfig};
use common::*;
use serde_json::{json, Value};

async fn node() -> SimNode {
    SimNode::start(SimNodeConfig::default()).await.unwrap()
}

#[tokio::test]
async fn uri_and_jsonrpc_give_the_same_result() {
    let n = node().await;
    let a = n.addr();
    let pairs: Vec<(&str, Value)> = vec![
        (
            "/block?height=5",
            json!({"method": "block", "params": {"height": "5"}}),
        ),
        (
            "/block_results?height=7",
            json!({"method": "block_results", "params": ["7"]}),
        ),
        (
            "/commit?height=3",
            json!({"method": "commit", "params": {"height": "3"}}),
        ),
        ("/status", json!({"method": "status"})),
        (
            "/validators?height=4&per_page=5",
            json!({"method": "validators", "params": {"height": "4", "per_page": "5"}}),
        ),
        (
            "/tx_search?query=%22tx.height%3E1%22&per_page=30",
            json!({"method": "tx_search", "params": {"query": "tx.height>1", "per_page": "30"}}),
        ),
        (
            "/abci_query?data=0x67656e2d352d30",
            json!({"method": "abci_query", "params": {"data": "67656e2d352d30"}}),
        ),
        (
            "/blockchain?minHeight=2&maxHeight=4",
            json!({"method": "blockchain", "params": {"minHeight": "2", "maxHeight": "4"}}),
        ),
        (
            "/v1/header?height=2",
            json!({"method": "header", "params": {"height": "2"}}),
        ),
    ];
    for (path, mut req) in pairs {
        let uri = get(a, path).await;
        assert_eq!(uri.status, 200, "{path}");
        let uri = uri.json();
        assert_eq!(uri["id"], json!(-1));
        req["jsonrpc"] = json!("2.0");
        req["id"] = json!("x");
        let rpc = post(a, &req.to_string()).await.json();
        assert_eq!(rpc["id"], json!("x"));
        assert_eq!(uri["result"], rpc["result"], "{path}");
    }
    let found = call(a, "abci_query", json!({"data": hex::encode("gen-5-0")})).await;
    assert_eq!(found["result"]["response"]["log"], "exists");
}

#[tokio::test]
async fn uri_quoting_rules() {
    let n = node().await;
    let a = n.addr();
    assert_eq!(
        get(a, "/block?height=%225%22").await.json()["result"]["block"]["header"]["height"],
        "5"
    );
    let hex_int = get(a, "/block?height=0x05").await;
    assert_eq!(hex_int.status, 500);
    assert_eq!(
        hex_int.json()["error"]["data"],
        "error converting http params to arguments: got a hex string arg, but expected 'int64'"
    );
    let bad = get(a, "/block?height=abc").await;
    assert_eq!(bad.status, 500);
    assert_eq!(bad.json()["error"]["code"], -32602);
    // Unquoted strings are not JSON: CometBFT refuses them.
    assert_eq!(get(a, "/tx_search?query=tx.height%3E1").await.status, 500);
    // Raw quotes and `>` in the target, as curl sends them: Go's server takes them.
    let raw = get(a, "/tx_search?query=\"tx.height>8\"&per_page=30").await;
    assert_eq!(raw.status, 200);
    assert_eq!(raw.json()["result"]["total_count"], "4");
    let quoted_tx = get(a, "/check_tx?tx=%22k=v%22").await;
    assert_eq!(quoted_tx.status, 200);
}

#[tokio::test]
async fn error_shapes_and_statuses() {
    let n = node().await;
    let a = n.addr();
    let r = post(a, "{not json").await;
    assert_eq!(r.status, 500);
    let v = r.json();
    assert_eq!(v["error"]["code"], -32700);
    assert_eq!(v["error"]["message"], "Parse error. Invalid JSON");
    assert!(v.get("id").is_none());
    assert!(v["error"]["data"].is_string());

    let r = post(a, r#"{"jsonrpc":"2.0","id":1,"method":"nope"}"#).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json()["error"],
        json!({"code": -32601, "message": "Method not found"})
    );

    let v = call(a, "block", json!({"height": 5})).await;
    assert_eq!(v["error"]["code"], -32602);
    assert_eq!(v["error"]["message"], "Invalid params");
    assert_eq!(v["error"]["data"], "error converting json params to arguments: invalid 64-bit integer encoding \"5\", expected string");

    let v = call(a, "block", json!({"height": "70"})).await;
    assert_eq!(v["error"]["code"], -32603);
    assert_eq!(v["error"]["message"], "Internal error");
    assert_eq!(
        v["error"]["data"],
        "height 70 must be less than or equal to the current blockchain height 10"
    );
    let v = call(a, "block", json!({"height": "0"})).await;
    assert_eq!(
        v["error"]["data"],
        "height must be greater than 0, but got 0"
    );
    let v = call(a, "block", json!({"height": "-3"})).await;
    assert_eq!(
        v["error"]["data"],
        "height must be greater than 0, but got -3"
    );
}

#[tokio::test]
async fn internal_and_param_errors_over_uri_and_positional() {
    let n = node().await;
    let a = n.addr();
    let r = get(a, "/block?height=70").await;
    assert_eq!(r.status, 500);
    assert_eq!(r.json()["id"], -1);

    let v = call(a, "block", json!(["1", "2"])).await;
    assert!(v["error"]["data"]
        .as_str()
        .unwrap()
        .contains("expected 1 parameters ([height]), got 2"));

    // Websocket-only routes over HTTP.
    let v = call(a, "subscribe", json!({"query": "tm.event='NewBlock'"})).await;
    assert_eq!(v["error"]["code"], -32601);
    let r = get(a, "/subscribe?query=%22tm.event%3D'NewBlock'%22").await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["error"]["code"], -32601);
}

#[tokio::test]
async fn lists_routes_404s_and_limits() {
    let n = node().await;
    let a = n.addr();
    // Paths that are not routes: Go's mux answers its plain 404.
    let r = post(a.to_owned(), "").await;
    assert_eq!(r.status, 200);
    assert!(String::from_utf8_lossy(&r.body).contains("Available endpoints"));
    let r = request(
        a,
        "POST",
        "/nope",
        br#"{"jsonrpc":"2.0","id":1,"method":"status"}"#,
    )
    .await;
    assert_eq!(r.status, 404);

    let big = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"check_tx","params":{{"tx":"{}"}}}}"#,
        "A".repeat(1_000_000)
    );
    let r = post(a, &big).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["code"], -32600);

    let v = call(
        a,
        "tx_search",
        json!({"query": "tx.height>1", "page": "99"}),
    )
    .await;
    assert_eq!(
        v["error"]["data"],
        "page should be within [1, 1] range, given 99"
    );
    let v = call(
        a,
        "tx_search",
        json!({"query": "tx.height>1", "order_by": "up"}),
    )
    .await;
    assert_eq!(
        v["error"]["data"],
        "expected order_by to be either `asc` or `desc` or empty"
    );
}

#[tokio::test]
async fn batches_and_notifications() {
    let n = node().await;
    let a = n.addr();
    let one = post(a, r#"[{"jsonrpc":"2.0","id":7,"method":"health"}]"#)
        .await
        .json();
    assert!(one.is_object(), "one-element batch is answered bare");
    assert_eq!(one["id"], 7);

    let two = post(
        a,
        r#"[{"jsonrpc":"2.0","id":1,"method":"health"},{"jsonrpc":"2.0","id":2,"method":"nope"}]"#,
    )
    .await
    .json();
    assert_eq!(two.as_array().unwrap().len(), 2);
    assert_eq!(two[1]["error"]["code"], -32601);

    let with_note = post(
        a,
        r#"[{"jsonrpc":"2.0","id":1,"method":"health"},{"jsonrpc":"2.0","method":"status"}]"#,
    )
    .await
    .json();
    assert!(with_note.is_object());

    let r = post(a, r#"{"jsonrpc":"2.0","method":"status"}"#).await;
    assert_eq!(r.status, 200);
    assert!(r.body.is_empty());

    let eleven: Vec<Value> = (0..11)
        .map(|i| json!({"jsonrpc": "2.0", "id": i, "method": "health"}))
        .collect();
    let r = post(a, &Value::Array(eleven).to_string()).await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json()["error"]["data"],
        "maximum JSON-RPC batch size exceeded, got: 11, max: 10"
    );
}

#[tokio::test]
async fn headers_follow_cometbft() {
    let n = node().await;
    let a = n.addr();
    let r = get(a, "/block?height=3").await;
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.header("cache-control"), Some("public, max-age=86400"));
    assert!(get(a, "/block").await.header("cache-control").is_none());
    assert!(get(a, "/status").await.header("cache-control").is_none());
    assert!(get(a, "/abci_info").await.header("cache-control").is_some());
    assert!(get(a, "/blockchain")
        .await
        .header("cache-control")
        .is_some());
    let head = n.height().to_string();
    let r = post(
        a,
        &json!({"jsonrpc": "2.0", "id": 1, "method": "commit", "params": {"height": head}})
            .to_string(),
    )
    .await;
    assert!(r.header("cache-control").is_some());
    assert!(post(a, r#"{"jsonrpc":"2.0","id":1,"method":"commit"}"#)
        .await
        .header("cache-control")
        .is_none());
    assert!(get(a, "/block?height=99")
        .await
        .header("cache-control")
        .is_none());
}
