//! The gateway is a drop-in for the node's RPC port: every route answers through it as
//! it does direct, in both forms, batches and errors included.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use serde_json::{json, Value};

use crate::support::*;

/// A route with the same arguments in JSON-RPC and URI spelling.
struct Case {
    method: &'static str,
    params: Value,
    query: String,
}

fn case(method: &'static str, params: Value, query: &str) -> Case {
    Case {
        method,
        params,
        query: query.to_owned(),
    }
}

async fn cases(h: &Harness) -> Vec<Case> {
    let block = h.get_node("/block?height=5").await.json();
    let hash_hex = block["result"]["block_id"]["hash"]
        .as_str()
        .expect("block hash")
        .to_owned();
    let hash_b64 = BASE64.encode(hex::decode(&hash_hex).unwrap());
    let found = h
        .post_node(
            r#"{"jsonrpc":"2.0","id":1,"method":"tx_search","params":{"query":"tx.height=5"}}"#,
        )
        .await
        .json();
    let tx_hex = found["result"]["txs"][0]["hash"]
        .as_str()
        .expect("a tx at height 5")
        .to_owned();
    let tx_b64 = BASE64.encode(hex::decode(&tx_hex).unwrap());
    vec![
        case("health", json!({}), ""),
        case("status", json!({}), ""),
        case("net_info", json!({}), ""),
        case(
            "blockchain",
            json!({"minHeight": "1", "maxHeight": "5"}),
            "minHeight=1&maxHeight=5",
        ),
        case("genesis", json!({}), ""),
        case("genesis_chunked", json!({"chunk": "0"}), "chunk=0"),
        case("block", json!({"height": "5"}), "height=5"),
        case("block", json!({}), ""),
        case("block", json!({"height": "9999"}), "height=9999"),
        case(
            "block_by_hash",
            json!({"hash": hash_b64}),
            &format!("hash=0x{hash_hex}"),
        ),
        case("block_results", json!({"height": "5"}), "height=5"),
        case("block_results", json!({}), ""),
        case("commit", json!({"height": "5"}), "height=5"),
        case("header", json!({"height": "5"}), "height=5"),
        case(
            "header_by_hash",
            json!({"hash": hash_b64}),
            &format!("hash=0x{hash_hex}"),
        ),
        case(
            "check_tx",
            json!({"tx": BASE64.encode("check=me")}),
            "tx=%22check=me%22",
        ),
        case("tx", json!({"hash": tx_b64}), &format!("hash=0x{tx_hex}")),
        case(
            "tx",
            json!({"hash": BASE64.encode([7u8; 32])}),
            &format!("hash=0x{}", hex::encode([7u8; 32])),
        ),
        case(
            "tx_search",
            json!({"query": "tx.height=5"}),
            "query=%22tx.height%3D5%22",
        ),
        case(
            "block_search",
            json!({"query": "block.height<=5", "per_page": "3"}),
            "query=%22block.height%3C%3D5%22&per_page=3",
        ),
        case("validators", json!({"height": "5"}), "height=5"),
        case("consensus_state", json!({}), ""),
        case("consensus_params", json!({"height": "5"}), "height=5"),
        case("unconfirmed_txs", json!({"limit": "10"}), "limit=10"),
        case("num_unconfirmed_txs", json!({}), ""),
        case(
            "abci_query",
            json!({"path": "/store", "data": "6B6579"}),
            "path=%22/store%22&data=0x6B6579",
        ),
        case("abci_info", json!({}), ""),
    ]
}

fn request(id: Value, method: &str, params: &Value) -> String {
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}).to_string()
}

#[tokio::test]
async fn every_route_answers_through_the_gateway_as_it_does_direct_in_both_forms() {
    let h = spawn_gateway().await;
    for c in cases(&h).await {
        let body = request(json!(7), c.method, &c.params);
        let (via, direct) = (h.post(&body).await, h.post_node(&body).await);
        assert_eq!(via.status, direct.status, "{} POST status", c.method);
        assert_eq!(via.json(), direct.json(), "{} POST {}", c.method, c.params);

        let path = if c.query.is_empty() {
            format!("/{}", c.method)
        } else {
            format!("/{}?{}", c.method, c.query)
        };
        let (via, direct) = (h.get(&path).await, h.get_node(&path).await);
        assert_eq!(via.status, direct.status, "{path} status");
        assert_eq!(via.json(), direct.json(), "{path}");
        assert_eq!(via.json()["id"], json!(-1), "URI answers carry id -1");
    }
}

#[tokio::test]
async fn the_v1_prefix_serves_the_same_routes() {
    let h = spawn_gateway().await;
    let plain = h.get("/block?height=3").await.json();
    assert_eq!(h.get("/v1/block?height=3").await.json(), plain);
    let body = request(json!(1), "block", &json!({"height": "3"}));
    let via_v1 = h.request(http::Method::POST, "/v1", &body, &[]).await;
    assert_eq!(rpc_view(&via_v1.json()), rpc_view(&plain));
}

#[tokio::test]
async fn batches_keep_order_ids_and_per_entry_errors_like_the_node() {
    let h = spawn_gateway().await;
    let batch = r#"[
        {"jsonrpc":"2.0","id":"a","method":"status"},
        {"jsonrpc":"2.0","id":2,"method":"block","params":["4"]},
        {"jsonrpc":"2.0","id":3,"method":"block","params":{"height":"9999"}},
        {"jsonrpc":"2.0","id":4,"method":"no_such_method"},
        {"jsonrpc":"2.0","method":"status"}
    ]"#;
    let (via, direct) = (h.post(batch).await, h.post_node(batch).await);
    assert_eq!(via.status, direct.status);
    let (via, direct) = (via.json(), direct.json());
    assert_eq!(
        via.as_array().map(Vec::len),
        Some(4),
        "the notification gets no answer: {via}"
    );
    assert_eq!(via, direct);

    let one = r#"[{"jsonrpc":"2.0","id":9,"method":"block","params":{"height":"2"}}]"#;
    let (via, direct) = (h.post(one).await.json(), h.post_node(one).await.json());
    assert!(
        via.is_object(),
        "a one-element batch is answered with a bare object, as CometBFT does"
    );
    assert_eq!(via, direct);
}

#[tokio::test]
async fn malformed_requests_get_cometbft_shaped_errors_without_reaching_the_node() {
    let h = spawn_gateway().await;
    h.node.reset_counters();
    let reply = h.post("{not json").await;
    assert_eq!(reply.status, 500);
    let v = reply.json();
    assert_eq!(v["error"]["code"], -32700);
    assert!(v["error"]["data"].is_string());
    assert!(v.get("id").is_none(), "a parse error has no id: {v}");

    let v = h
        .post(r#"{"jsonrpc":"2.0","id":1,"method":"Status"}"#)
        .await
        .json();
    assert_eq!(v["error"]["code"], -32601);
    let v = h
        .post(r#"{"jsonrpc":"2.0","id":1,"method":"block","params":{"height":true}}"#)
        .await
        .json();
    assert_eq!(v["error"]["code"], -32602);
    let reply = h.get("/block?height=abc").await;
    assert_eq!(reply.status, 500);
    assert_eq!(reply.json()["error"]["code"], -32602);
    assert_eq!(h.get("/no_such_route").await.status, 404);
    assert_eq!(
        h.node.stats().total_requests,
        0,
        "none of these reached the node"
    );
}

#[tokio::test]
async fn callers_get_their_own_ids_back_whatever_their_type() {
    let h = spawn_gateway().await;
    for id in [
        r#""abc""#,
        "0",
        "-5",
        "1.5",
        "123456789012345678901234567890",
        r#""é\"x""#,
    ] {
        let body =
            format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"block","params":{{"height":"3"}}}}"#);
        let reply = h.post(&body).await;
        let text = String::from_utf8(reply.body.to_vec()).unwrap();
        assert!(
            text.starts_with(&format!(r#"{{"jsonrpc":"2.0","id":{id},"#)),
            "{text}"
        );
    }
}

#[tokio::test]
async fn broadcasts_reach_the_node_and_answer_as_it_does() {
    let h = std::sync::Arc::new(spawn_gateway().await);
    for (i, method) in ["broadcast_tx_sync", "broadcast_tx_async"]
        .iter()
        .enumerate()
    {
        let tx = BASE64.encode(format!("gw{i}=v"));
        let v = h
            .post(&request(json!(i), method, &json!({ "tx": tx })))
            .await
            .json();
        assert!(v.get("result").is_some(), "{method}: {v}");
        assert_eq!(v["id"], json!(i));
        assert_eq!(
            h.node.requests_for(method),
            1,
            "{method} reached the node once"
        );
    }
    // broadcast_tx_commit answers once the tx is in a block, so produce one meanwhile.
    let h2 = h.clone();
    let commit = tokio::spawn(async move {
        let tx = BASE64.encode("gw-commit=v");
        h2.post(&request(
            json!("c"),
            "broadcast_tx_commit",
            &json!({ "tx": tx }),
        ))
        .await
        .json()
    });
    eventually("the commit reaches the node", || async {
        h.node.stats().inflight >= 1
    })
    .await;
    h.node.advance_block();
    let v = commit.await.unwrap();
    assert!(v["result"]["hash"].is_string(), "{v}");
    assert_eq!(h.node.requests_for("broadcast_tx_commit"), 1);
}

#[tokio::test]
async fn an_unreachable_node_is_a_clear_internal_error() {
    let h = spawn_gateway().await;
    h.node.set_fault(cometgate_sim::Fault::Down);
    let v = h
        .post(&request(json!(1), "health", &json!({})))
        .await
        .json();
    assert_eq!(v["error"]["code"], -32603);
    assert!(
        v["error"]["data"]
            .as_str()
            .unwrap()
            .starts_with("upstream unavailable"),
        "{v}"
    );
    let reply = h.get("/health").await;
    assert_eq!(reply.status, 500);
}

#[tokio::test]
async fn uri_routes_read_form_bodies_and_drop_semicolon_pairs_as_the_node_does() {
    let h = spawn_gateway().await;
    let form = [("content-type", "application/x-www-form-urlencoded")];
    for (path, body) in [
        ("/block", "height=5"),
        ("/block?height=4", "height=5"),
        ("/block?height=5;x=1", ""),
        ("/validators", "height=3&per_page=1"),
    ] {
        let through = h.request(http::Method::POST, path, body, &form).await;
        let direct = h
            .request_at(&h.node.url(), http::Method::POST, path, body, &form)
            .await;
        assert_eq!(through.status, direct.status, "{path} {body}");
        assert_eq!(
            rpc_view(&through.json()),
            rpc_view(&direct.json()),
            "{path} {body}"
        );
    }
    let body_height = h
        .request(http::Method::POST, "/block", "height=5", &form)
        .await;
    assert_eq!(
        body_height.json()["result"]["block"]["header"]["height"],
        "5"
    );
    let query_first = h
        .request(http::Method::POST, "/block?height=4", "height=5", &form)
        .await;
    assert_eq!(
        query_first.json()["result"]["block"]["header"]["height"],
        "4"
    );
}

#[tokio::test]
async fn websocket_only_routes_over_uri_answer_as_the_node_does() {
    let h = spawn_gateway().await;
    for path in [
        "/subscribe?query=%22tm.event%3D%27NewBlock%27%22",
        "/unsubscribe_all",
    ] {
        let through = h.get(path).await;
        let direct = h.get_node(path).await;
        assert_eq!(through.status, direct.status, "{path}");
        assert_eq!(through.status, 404, "{path}");
        assert_eq!(
            rpc_view(&through.json()),
            rpc_view(&direct.json()),
            "{path}"
        );
    }
}
