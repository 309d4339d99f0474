//! The chain: advancing, per-height consistency, search, paging, websocket events.

mod common;

use std::time::Duration;

use cometgate_sim::{SimNode, SimNodeConfig};
use common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn chain_advances_on_its_own_and_by_hand() {
    let n = SimNode::start(SimNodeConfig {
        block_interval: Duration::from_millis(20),
        ..SimNodeConfig::default()
    })
    .await
    .unwrap();
    let a = n.addr();
    let start = n.height();
    assert!(start >= 10);
    wait_for("a timed block", || async {
        let v = get(a, "/status").await.json();
        v["result"]["sync_info"]["latest_block_height"]
            .as_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            > start
    })
    .await;

    let frozen = SimNode::start(SimNodeConfig::default()).await.unwrap();
    assert_eq!(frozen.height(), 10);
    let above = call(frozen.addr(), "block", json!({"height": "11"})).await;
    assert_eq!(
        above["error"]["data"],
        "height 11 must be less than or equal to the current blockchain height 10"
    );
    frozen.advance_block();
    assert_eq!(frozen.height(), 11);
    let latest = call(frozen.addr(), "block", json!({})).await;
    assert_eq!(latest["result"]["block"]["header"]["height"], "11");
}

#[tokio::test]
async fn heights_are_self_consistent_and_deterministic() {
    let cfg = SimNodeConfig {
        seed: 42,
        ..SimNodeConfig::default()
    };
    let n1 = SimNode::start(cfg.clone()).await.unwrap();
    let n2 = SimNode::start(cfg).await.unwrap();
    let other = SimNode::start(SimNodeConfig {
        seed: 43,
        ..SimNodeConfig::default()
    })
    .await
    .unwrap();
    let b7 = call(n1.addr(), "block", json!({"height": "7"})).await["result"].clone();
    let b6 = call(n1.addr(), "block", json!({"height": "6"})).await["result"].clone();
    assert_eq!(
        b7,
        call(n2.addr(), "block", json!({"height": "7"})).await["result"]
    );
    assert_ne!(
        b7["block_id"],
        call(other.addr(), "block", json!({"height": "7"})).await["result"]["block_id"]
    );
    assert_eq!(b7["block"]["header"]["last_block_id"], b6["block_id"]);
    assert_ne!(b7["block"]["header"]["time"], b6["block"]["header"]["time"]);

    let hash = b7["block_id"]["hash"].as_str().unwrap();
    let by_hash = get(n1.addr(), &format!("/block_by_hash?hash=0x{hash}"))
        .await
        .json();
    assert_eq!(by_hash["result"], b7);

    let tx_b64 = b7["block"]["data"]["txs"][1].as_str().unwrap();
    let tx = base64_decode(tx_b64);
    let tx_hash = hex::encode_upper(sha(&tx));
    let by_uri = get(n1.addr(), &format!("/tx?hash=0x{tx_hash}"))
        .await
        .json();
    assert_eq!(by_uri["result"]["height"], "7");
    assert_eq!(by_uri["result"]["index"], 1);
    assert_eq!(by_uri["result"]["hash"], tx_hash);
    let hash_b64 = base64_encode(&sha(&tx));
    let by_rpc = call(n1.addr(), "tx", json!({"hash": hash_b64})).await;
    assert_eq!(by_rpc["result"], by_uri["result"]);
}

fn sha(b: &[u8]) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha256::digest(b).to_vec()
}

fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(s).unwrap()
}

fn base64_encode(b: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(b)
}

async fn search(a: std::net::SocketAddr, method: &str, params: Value) -> Value {
    call(a, method, params).await
}

async fn count(a: std::net::SocketAddr, query: &str) -> u64 {
    let v = search(a, "tx_search", json!({ "query": query })).await;
    v["result"]["total_count"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

async fn five_tx_node() -> SimNode {
    SimNode::start(SimNodeConfig {
        txs_per_block: 5,
        ..SimNodeConfig::default()
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn tx_search_query_forms() {
    let n = five_tx_node().await;
    let a = n.addr();
    assert_eq!(count(a, "tx.height=3").await, 5);
    assert_eq!(count(a, "tx.height>8").await, 10);
    assert_eq!(count(a, "tx.height>=8").await, 15);
    assert_eq!(count(a, "tx.height<3").await, 10);
    assert_eq!(count(a, "tx.height<=3 AND tx.height>1").await, 10);
    // Past u64: no height, not every height.
    assert_eq!(count(a, "tx.height>99999999999999999999").await, 0);
    assert_eq!(count(a, "tx.height<=99999999999999999999").await, 50);
    assert_eq!(count(a, "app.key='gen-4-2'").await, 1);
    assert_eq!(
        count(a, "app.creator='Cosmoshi Netowoko' AND tx.height=2").await,
        5
    );
    let one = search(a, "tx_search", json!({"query": "tx.height=4"})).await;
    let hash = one["result"]["txs"][2]["hash"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(count(a, &format!("tx.hash='{hash}'")).await, 1);
    let blocks = search(
        a,
        "block_search",
        json!({"query": "block.height>3 AND block.height<=6"}),
    )
    .await;
    assert_eq!(blocks["result"]["total_count"], "3");
}

#[tokio::test]
async fn tx_search_paging_and_prove() {
    let n = five_tx_node().await;
    let a = n.addr();
    let all = search(a, "tx_search", json!({"query": "tx.height>0"})).await;
    assert_eq!(
        all["result"]["txs"].as_array().unwrap().len(),
        30,
        "per_page defaults to 30"
    );
    let clamped = search(
        a,
        "tx_search",
        json!({"query": "tx.height>0", "per_page": "1000"}),
    )
    .await;
    assert_eq!(clamped["result"]["txs"].as_array().unwrap().len(), 50);
    let p3 = search(
        a,
        "tx_search",
        json!({"query": "tx.height>0", "per_page": "20", "page": "3", "order_by": "desc"}),
    )
    .await;
    assert_eq!(p3["result"]["txs"].as_array().unwrap().len(), 10);
    assert_eq!(p3["result"]["txs"][9]["height"], "1");
    assert!(p3["result"]["txs"][0].get("proof").is_none());
    let proved = search(
        a,
        "tx_search",
        json!({"query": "tx.height=2", "prove": true}),
    )
    .await;
    assert!(proved["result"]["txs"][0]["proof"].is_object());
    let bad = search(
        a,
        "tx_search",
        json!({"query": "tx.height>0", "per_page": "20", "page": "4"}),
    )
    .await;
    assert_eq!(
        bad["error"]["data"],
        "page should be within [1, 3] range, given 4"
    );
    let vals = search(a, "validators", json!({"per_page": "1", "page": "2"})).await;
    assert_eq!(
        vals["error"]["data"],
        "page should be within [1, 1] range, given 2"
    );
}

/// A page spanning blocks builds each block once; every transaction on it, proof and
/// all, is still what `tx` answers for its hash.
#[tokio::test]
async fn every_tx_of_a_page_across_blocks_is_what_tx_answers() {
    let n = five_tx_node().await;
    let a = n.addr();
    let page = search(
        a,
        "tx_search",
        json!({"query": "tx.height>=2 AND tx.height<=4", "per_page": "12", "page": "1",
               "order_by": "desc", "prove": true}),
    )
    .await;
    let txs = page["result"]["txs"].as_array().unwrap();
    assert_eq!(txs.len(), 12);
    let heights: Vec<&str> = txs.iter().map(|t| t["height"].as_str().unwrap()).collect();
    assert_eq!(heights[..6], ["4", "4", "4", "4", "4", "3"]);
    for t in txs {
        let hash = t["hash"].as_str().unwrap();
        // JSON-RPC carries the hash's bytes in base64.
        use base64::Engine as _;
        let bytes = base64::engine::general_purpose::STANDARD.encode(hex::decode(hash).unwrap());
        let alone = search(a, "tx", json!({"hash": bytes, "prove": true})).await;
        assert_eq!(&alone["result"], t, "{hash}");
    }
}

#[tokio::test]
async fn heavy_knobs_make_heavy_answers() {
    let n = SimNode::start(SimNodeConfig {
        txs_per_block: 200,
        events_per_tx: 20,
        tx_bytes: 1000,
        genesis_bytes: 20 * 1024 * 1024,
        ..SimNodeConfig::default()
    })
    .await
    .unwrap();
    let a = n.addr();
    let r = get(a, "/block_results?height=5").await;
    assert!(
        r.body.len() > 1_000_000,
        "block_results is {} bytes",
        r.body.len()
    );
    let g = call(a, "genesis", json!({})).await;
    assert_eq!(
        g["error"]["data"],
        "genesis response is large, please use the genesis_chunked API instead"
    );
    let c = call(a, "genesis_chunked", json!({"chunk": "1"})).await;
    assert_eq!(c["result"]["total"], "2");
    assert_eq!(c["result"]["chunk"], "1");
    let c = call(a, "genesis_chunked", json!({"chunk": "2"})).await;
    assert_eq!(c["error"]["data"], "there are 1 chunks, 2 is invalid");
}

#[tokio::test]
async fn websocket_delivers_new_block_and_tx_events() {
    let n = SimNode::start(SimNodeConfig::default()).await.unwrap();
    let (mut ws, _) = tokio_tungstenite::connect_async(n.ws_url()).await.unwrap();
    let sub = json!({"jsonrpc": "2.0", "id": "sub-1", "method": "subscribe", "params": {"query": "tm.event = 'NewBlock'"}});
    ws.send(Message::text(sub.to_string())).await.unwrap();
    let first = next_json(&mut ws).await;
    assert_eq!(
        first,
        json!({"jsonrpc": "2.0", "id": "sub-1", "result": {}})
    );
    ws.send(Message::text(sub.to_string())).await.unwrap();
    assert_eq!(
        next_json(&mut ws).await["error"]["data"],
        "already subscribed"
    );
    let bad = json!({"jsonrpc": "2.0", "id": 2, "method": "subscribe", "params": {"query": "tm.event NewBlock"}});
    ws.send(Message::text(bad.to_string())).await.unwrap();
    assert!(next_json(&mut ws).await["error"]["data"]
        .as_str()
        .unwrap()
        .starts_with("failed to parse query: "));
    let status = json!({"jsonrpc": "2.0", "id": 3, "method": "status"});
    ws.send(Message::text(status.to_string())).await.unwrap();
    assert_eq!(
        next_json(&mut ws).await["result"]["sync_info"]["latest_block_height"],
        "10"
    );

    n.advance_block();
    let ev = next_json(&mut ws).await;
    assert_eq!(ev["id"], "sub-1");
    assert_eq!(ev["result"]["query"], "tm.event = 'NewBlock'");
    assert_eq!(ev["result"]["data"]["type"], "tendermint/event/NewBlock");
    assert_eq!(
        ev["result"]["data"]["value"]["block"]["header"]["height"],
        "11"
    );
    assert_eq!(ev["result"]["events"]["tm.event"], json!(["NewBlock"]));

    let unsub = json!({"jsonrpc": "2.0", "id": 4, "method": "unsubscribe_all", "params": {}});
    ws.send(Message::text(unsub.to_string())).await.unwrap();
    assert_eq!(next_json(&mut ws).await["result"], json!({}));
    let tx_sub = json!({"jsonrpc": "2.0", "id": 5, "method": "subscribe", "params": {"query": "tm.event='Tx' AND app.key='gen-12-1'"}});
    ws.send(Message::text(tx_sub.to_string())).await.unwrap();
    assert_eq!(next_json(&mut ws).await["result"], json!({}));
    n.advance_block();
    let ev = next_json(&mut ws).await;
    assert_eq!(ev["result"]["data"]["type"], "tendermint/event/Tx");
    assert_eq!(ev["result"]["events"]["tx.height"], json!(["12"]));
    assert_eq!(ev["result"]["data"]["value"]["TxResult"]["index"], 1);
}

async fn next_json<S>(ws: &mut S) -> Value
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if let Message::Text(t) = msg {
            return serde_json::from_str(t.as_str()).unwrap();
        }
    }
}

#[tokio::test]
async fn a_pruned_node_says_its_base_and_refuses_below_it() {
    let n = SimNode::start(SimNodeConfig {
        start_height: 400,
        earliest_height: 300,
        ..SimNodeConfig::default()
    })
    .await
    .unwrap();
    let status = get(n.addr(), "/status").await.json();
    assert_eq!(
        status["result"]["sync_info"]["earliest_block_height"],
        "300"
    );
    for method in ["block", "block_results", "commit", "header", "validators"] {
        let below = call(n.addr(), method, json!({"height": "299"})).await;
        assert_eq!(
            below["error"]["data"], "height 299 is not available, lowest height is 300",
            "{method}: {below}"
        );
        let at = call(n.addr(), method, json!({"height": "300"})).await;
        assert!(at.get("result").is_some(), "{method}: {at}");
    }
}
