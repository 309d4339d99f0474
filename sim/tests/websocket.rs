//! What the node's websocket side holds, as `/_simnode/stats` reports it, and the
//! NewBlock queries a fan-out bench spreads its clients over.

mod common;

use std::time::Duration;

use cometgate_sim::{SimNode, SimNodeConfig};
use common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn open(n: &SimNode) -> Ws {
    tokio_tungstenite::connect_async(n.ws_url())
        .await
        .unwrap()
        .0
}

async fn next_json(ws: &mut Ws) -> Value {
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

async fn send(ws: &mut Ws, id: u64, method: &str, query: &str) -> Value {
    let call = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": {"query": query}});
    ws.send(Message::text(call.to_string())).await.unwrap();
    next_json(ws).await
}

#[tokio::test]
async fn stats_show_open_websockets_and_their_subscriptions() {
    let n = SimNode::start(SimNodeConfig::default()).await.unwrap();
    let (mut a, mut b) = (open(&n).await, open(&n).await);
    let nb = "tm.event='NewBlock'";
    let tx = "tm.event='Tx'";
    assert_eq!(send(&mut a, 1, "subscribe", nb).await["result"], json!({}));
    assert_eq!(send(&mut a, 2, "subscribe", tx).await["result"], json!({}));
    assert_eq!(send(&mut b, 1, "subscribe", nb).await["result"], json!({}));
    // Refused subscriptions hold nothing.
    assert!(send(&mut b, 2, "subscribe", nb).await["error"].is_object());
    let s = n.stats();
    assert_eq!((s.ws_connections, s.ws_subscriptions), (2, 3));
    assert_eq!(s.ws_subscriptions_per_query[nb], 2);
    assert_eq!(s.ws_subscriptions_per_query[tx], 1);

    assert_eq!(
        send(&mut a, 3, "unsubscribe", tx).await["result"],
        json!({})
    );
    assert!(!n.stats().ws_subscriptions_per_query.contains_key(tx));
    n.reset_counters();
    assert_eq!(n.stats().ws_subscriptions, 2, "gauges, not counters");

    // A connection that goes takes its subscriptions with it.
    drop(a);
    wait_for("the closed connection off the gauges", || async {
        let s = n.stats();
        s.ws_connections == 1 && s.ws_subscriptions == 1
    })
    .await;
    let s: cometgate_sim::Stats =
        serde_json::from_slice(&get(n.addr(), "/_simnode/stats").await.body).unwrap();
    assert_eq!(s.ws_subscriptions_per_query[nb], 1);
    let all = json!({"jsonrpc": "2.0", "id": 4, "method": "unsubscribe_all", "params": {}});
    b.send(Message::text(all.to_string())).await.unwrap();
    assert_eq!(next_json(&mut b).await["result"], json!({}));
    assert_eq!(n.stats().ws_subscriptions, 0);
}

#[tokio::test]
async fn distinct_new_block_queries_each_match_every_block() {
    let n = SimNode::start(SimNodeConfig::default()).await.unwrap();
    // Both conditions on tm.event: NewBlock alone, even on a node that also publishes
    // NewBlockHeader and NewBlockEvents.
    let queries = [
        "tm.event='NewBlock'",
        "tm.event='NewBlock' AND tm.event CONTAINS 'New'",
        "tm.event='NewBlock' AND tm.event CONTAINS 'lock'",
        "tm.event='NewBlock' AND tm.event CONTAINS 'wB'",
        "tm.event='NewBlock' AND tm.event EXISTS",
    ];
    let mut ws = open(&n).await;
    for (i, q) in queries.iter().enumerate() {
        assert_eq!(
            send(&mut ws, i as u64, "subscribe", q).await["result"],
            json!({})
        );
    }
    n.advance_block();
    let mut seen = Vec::new();
    for _ in &queries {
        let ev = next_json(&mut ws).await;
        assert_eq!(ev["result"]["data"]["type"], "tendermint/event/NewBlock");
        let q = ev["result"]["query"].as_str().unwrap().to_string();
        let i = queries.iter().position(|x| *x == q).unwrap();
        assert_eq!(
            ev["id"], i as u64,
            "each event carries its own subscribe id"
        );
        seen.push(q);
    }
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), queries.len());
    assert_eq!(n.stats().ws_subscriptions_per_query.len(), queries.len());
}

/// Over HTTP a search page is joined from each transaction's kept encoding; over the
/// websocket it is built as a tree and indented. Both say the same, and the joined one
/// is the compact JSON a tree would have encoded to, asked twice or once.
#[tokio::test]
async fn a_search_page_over_http_is_the_websockets_in_compact_form() {
    let n = SimNode::start(SimNodeConfig {
        txs_per_block: 4,
        ..SimNodeConfig::default()
    })
    .await
    .unwrap();
    let params = json!({"query": "tx.height>=2 AND tx.height<=5", "per_page": "7",
                        "page": "2", "order_by": "desc", "prove": true});
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tx_search", "params": params});
    let first = post(n.addr(), &body.to_string()).await.body;
    let again = post(n.addr(), &body.to_string()).await.body;
    assert_eq!(first, again, "kept encodings answer the same");
    let http: Value = serde_json::from_slice(&first).unwrap();
    assert_eq!(
        serde_json::to_vec(&http).unwrap(),
        first,
        "compact, keys sorted"
    );
    assert_eq!(http["result"]["txs"].as_array().unwrap().len(), 7);

    let mut ws = open(&n).await;
    ws.send(Message::text(body.to_string())).await.unwrap();
    let over_ws = next_json(&mut ws).await;
    assert_eq!(over_ws["result"], http["result"]);
}
