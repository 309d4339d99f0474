//! Issue #15: websocket subscriptions fanned out. Clients share one node subscription
//! per distinct query, receive what the node would have sent them byte for byte, keep
//! their subscriptions across a lost node, and a slow one costs the others nothing.

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio::net::TcpSocket;
use tokio_tungstenite::tungstenite::Message;

use cometgate::config::{ByteSize, Config};
use cometgate_sim::{Fault, SimNodeConfig};

use crate::admission::ws::{call, next, send, subscribe, ws_from, Ws};
use crate::support::*;

const NEW_BLOCK: &str = "tm.event='NewBlock'";

/// Fan-out with the head followed by polling, so every `subscribe` the node counts is
/// the hub's.
async fn fanout(node: SimNodeConfig, tweak: impl FnOnce(&mut Config)) -> Harness {
    spawn_gateway_with(node, |c| {
        c.head.websocket = false;
        c.websocket.unsubscribe_grace = Duration::from_millis(300);
        tweak(c);
    })
    .await
}

/// The next text frame, as sent.
async fn next_text(ws: &mut Ws) -> String {
    loop {
        let msg = tokio::time::timeout(DEADLINE, ws.next())
            .await
            .expect("a message in time")
            .expect("connection open")
            .expect("a frame");
        if let Message::Text(t) = msg {
            return t.as_str().to_owned();
        }
    }
}

fn height_of(event: &Value) -> u64 {
    event["result"]["data"]["value"]["block"]["header"]["height"]
        .as_str()
        .and_then(|h| h.parse().ok())
        .unwrap_or_else(|| panic!("not a NewBlock event: {event}"))
}

async fn subscribed(ws: &mut Ws, id: u64, query: &str) {
    send(ws, subscribe(id, query)).await;
    let ack = next(ws).await.expect("an answer");
    assert_eq!(
        (&ack["id"], &ack["result"]),
        (&json!(id), &json!({})),
        "{ack}"
    );
}

async fn metric(h: &Harness, name: &str) -> f64 {
    h.metric(name, &[]).await
}

#[tokio::test]
async fn two_spellings_share_one_node_subscription_and_each_client_gets_the_nodes_bytes() {
    let h = fanout(SimNodeConfig::default(), |_| {}).await;
    let mut a = ws_from(&h, "127.0.0.1").await.unwrap();
    let mut b = ws_from(&h, "127.0.0.2").await.unwrap();
    subscribed(&mut a, 1, NEW_BLOCK).await;
    let spaced = "tm.event  =  'NewBlock'";
    subscribed(&mut b, 7, spaced).await;
    assert_eq!(h.node.requests_for("subscribe"), 1, "one node subscription");

    // The same subscription made straight at the node is the reference.
    let tcp = tokio::net::TcpStream::connect(h.node.addr()).await.unwrap();
    let (mut direct, _) = tokio_tungstenite::client_async(h.node.ws_url(), tcp)
        .await
        .unwrap();
    subscribed(&mut direct, 7, spaced).await;
    h.node.advance_block();
    let from_node = next_text(&mut direct).await;
    assert_eq!(next_text(&mut b).await, from_node, "byte for byte");
    let to_a: Value = serde_json::from_str(&next_text(&mut a).await).unwrap();
    assert_eq!(to_a["id"], 1);
    assert_eq!(to_a["result"]["query"], NEW_BLOCK, "a's own spelling");
    assert_eq!(height_of(&to_a), h.node.height());
    assert_eq!(metric(&h, "cometgate_ws_node_subscriptions").await, 1.0);
    assert_eq!(metric(&h, "cometgate_ws_client_subscriptions").await, 2.0);
}

#[tokio::test]
async fn a_client_back_within_the_grace_finds_the_node_subscription_still_there() {
    // A grace no loaded machine can overrun: reuse is then certain.
    let h = fanout(SimNodeConfig::default(), |c| {
        c.websocket.unsubscribe_grace = Duration::from_secs(600);
    })
    .await;
    let mut a = ws_from(&h, "127.0.0.1").await.unwrap();
    subscribed(&mut a, 1, NEW_BLOCK).await;
    send(&mut a, call(2, "unsubscribe", json!({"query": NEW_BLOCK}))).await;
    assert_eq!(next(&mut a).await.unwrap()["result"], json!({}));
    subscribed(&mut a, 3, "tm.event = 'NewBlock'").await;
    assert_eq!(h.node.requests_for("subscribe"), 1);
    assert_eq!(h.node.requests_for("unsubscribe"), 0);
    h.node.advance_block();
    let event = next(&mut a).await.unwrap();
    assert_eq!(
        (event["id"].clone(), height_of(&event)),
        (json!(3), h.node.height())
    );

    // Leaving what is not held gets the node's answer.
    send(
        &mut a,
        call(6, "unsubscribe", json!({"query": "tm.event='Tx'"})),
    )
    .await;
    let v = next(&mut a).await.unwrap();
    assert_eq!(v["error"]["data"], "subscription not found", "{v}");
}

#[tokio::test]
async fn the_node_subscription_ends_a_grace_after_its_last_client_leaves() {
    let h = fanout(SimNodeConfig::default(), |_| {}).await;
    let mut a = ws_from(&h, "127.0.0.1").await.unwrap();
    subscribed(&mut a, 1, NEW_BLOCK).await;
    send(&mut a, call(4, "unsubscribe_all", json!({}))).await;
    assert_eq!(next(&mut a).await.unwrap()["result"], json!({}));
    let node = &h.node;
    eventually(
        "the node subscription ends after the grace",
        || async move { node.requests_for("unsubscribe") == 1 },
    )
    .await;
    assert_eq!(metric(&h, "cometgate_ws_node_subscriptions").await, 0.0);
    subscribed(&mut a, 5, NEW_BLOCK).await;
    assert_eq!(h.node.requests_for("subscribe"), 2, "a new one at the node");
    h.node.advance_block();
    assert_eq!(height_of(&next(&mut a).await.unwrap()), h.node.height());
    send(&mut a, call(6, "unsubscribe_all", json!({}))).await;
    assert_eq!(next(&mut a).await.unwrap()["result"], json!({}));
    send(&mut a, call(7, "unsubscribe_all", json!({}))).await;
    let v = next(&mut a).await.unwrap();
    assert_eq!(v["error"]["data"], "subscription not found", "{v}");
}

#[tokio::test]
async fn a_closed_connection_leaves_its_topics() {
    let h = fanout(SimNodeConfig::default(), |_| {}).await;
    let mut a = ws_from(&h, "127.0.0.1").await.unwrap();
    subscribed(&mut a, 1, NEW_BLOCK).await;
    subscribed(&mut a, 2, "tm.event='Tx'").await;
    a.close(None).await.unwrap();
    let node = &h.node;
    eventually("both node subscriptions end", || async move {
        node.requests_for("unsubscribe") == 2
    })
    .await;
    assert_eq!(metric(&h, "cometgate_ws_client_subscriptions").await, 0.0);
    assert_eq!(metric(&h, "cometgate_ws_clients").await, 0.0);
}

#[tokio::test]
async fn malformed_overlong_and_repeated_queries_get_the_nodes_errors_without_reaching_it() {
    let h = fanout(SimNodeConfig::default(), |_| {}).await;
    let mut a = ws_from(&h, "127.0.0.1").await.unwrap();
    let long = format!("tm.event='{}'", "x".repeat(600));
    let cases = [
        ("", "failed to parse query: "),
        ("tm.event=", "failed to parse query: "),
        ("tm.event='NewBlock' AND", "failed to parse query: "),
        ("tm.event='NewBlock", "failed to parse query: "),
        ("block.time > TIME yesterday", "failed to parse query: "),
        (long.as_str(), "maximum query length exceeded"),
    ];
    for (i, (query, starts)) in cases.iter().enumerate() {
        send(&mut a, subscribe(i as u64, query)).await;
        let v = next(&mut a).await.unwrap();
        assert_eq!(v["error"]["code"], -32603, "{query:?}: {v}");
        assert_eq!(v["error"]["message"], "Internal error");
        let data = v["error"]["data"].as_str().unwrap();
        assert!(data.starts_with(starts), "{query:?}: {data}");
    }
    // A query that is not a string fails to convert, as on the node.
    send(&mut a, call(9, "subscribe", json!({"query": 5}))).await;
    let v = next(&mut a).await.unwrap();
    assert_eq!(v["error"]["code"], -32602, "{v}");
    let data = v["error"]["data"].as_str().unwrap();
    assert!(data.contains("cannot unmarshal number"), "{data}");
    assert_eq!(h.node.requests_for("subscribe"), 0);
    subscribed(&mut a, 10, NEW_BLOCK).await;
    send(&mut a, subscribe(11, "tm.event = 'NewBlock'")).await;
    let v = next(&mut a).await.unwrap();
    assert_eq!(v["error"]["data"], "already subscribed", "{v}");
}

#[tokio::test]
async fn distinct_queries_spread_over_node_connections_within_the_nodes_cap() {
    let h = fanout(SimNodeConfig::default(), |c| {
        c.websocket.node_subscriptions_per_connection = 2;
        c.websocket.max_node_connections = 2;
    })
    .await;
    let mut a = ws_from(&h, "127.0.0.1").await.unwrap();
    for (id, height) in (1..=4).zip(10..) {
        subscribed(
            &mut a,
            id,
            &format!("tm.event='Tx' AND tx.height > {height}"),
        )
        .await;
    }
    assert_eq!(metric(&h, "cometgate_ws_node_connections").await, 2.0);
    let mut b = ws_from(&h, "127.0.0.2").await.unwrap();
    send(&mut b, subscribe(5, "tm.event='Tx' AND tx.height > 99")).await;
    let v = next(&mut b).await.unwrap();
    let data = v["error"]["data"].as_str().unwrap();
    assert!(data.contains("websocket.max_node_connections"), "{v}");
    // A query already held is no new node subscription, cap or not.
    subscribed(&mut b, 6, "tm.event='Tx' AND tx.height > 10").await;
    assert_eq!(h.node.requests_for("subscribe"), 4);
}

#[tokio::test]
async fn a_lost_node_is_dialled_again_and_the_gap_is_reported() {
    let h = fanout(SimNodeConfig::default(), |_| {}).await;
    let mut a = ws_from(&h, "127.0.0.1").await.unwrap();
    subscribed(&mut a, 1, NEW_BLOCK).await;
    h.node.advance_block();
    let before = height_of(&next(&mut a).await.unwrap());

    h.node.set_fault(Fault::Down);
    let hh = &h;
    eventually("the hub sees the node gone", || async move {
        metric(hh, "cometgate_ws_node_connections").await == 0.0
    })
    .await;
    for _ in 0..3 {
        h.node.advance_block();
    }
    h.node.set_fault(Fault::None);
    eventually("the hub subscribes again", || async move {
        metric(hh, "cometgate_ws_node_subscriptions").await == 1.0
    })
    .await;
    h.node.advance_block();
    let event = next(&mut a).await.unwrap();
    assert_eq!(event["id"], 1, "the client's own id, still");
    assert_eq!(
        height_of(&event),
        before + 4,
        "the gap shows in the heights"
    );
    assert_eq!(metric(&h, "cometgate_ws_missed_blocks_total").await, 3.0);
}

/// A socket that reads little: the gateway's writes to it stall once the kernel's
/// buffers are full.
async fn slow_reader(h: &Harness) -> Ws {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let tcp = socket.connect(h.addr).await.unwrap();
    let url = format!("ws://{}/websocket", h.addr);
    tokio_tungstenite::client_async(url, tcp).await.unwrap().0
}

#[tokio::test]
async fn a_slow_consumer_is_cancelled_while_a_fast_one_keeps_its_pace() {
    // Big blocks fill the kernel's buffers in tens of blocks rather than thousands.
    let node = SimNodeConfig {
        txs_per_block: 40,
        tx_bytes: 2000,
        ..SimNodeConfig::default()
    };
    let h = fanout(node, |c| {
        c.websocket.client_buffer_messages = 4;
        c.websocket.client_buffer_bytes = ByteSize::kib(512);
        c.websocket.max_connections_per_client = 10;
    })
    .await;
    let mut slow = slow_reader(&h).await;
    subscribed(&mut slow, 1, NEW_BLOCK).await;
    let mut fast = ws_from(&h, "127.0.0.2").await.unwrap();
    subscribed(&mut fast, 2, NEW_BLOCK).await;

    let mut fast_heights = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while metric(&h, "cometgate_ws_slow_consumer_cancellations_total").await < 1.0 {
        assert!(tokio::time::Instant::now() < deadline, "never cancelled");
        // One block at a time, each received by the fast client before the next.
        h.node.advance_block();
        fast_heights.push(height_of(&next(&mut fast).await.unwrap()));
    }
    let first = fast_heights[0];
    let expected: Vec<u64> = (first..first + fast_heights.len() as u64).collect();
    assert_eq!(fast_heights, expected, "every block, in order");

    // The slow one gets what was queued, in order, then the node's cancellation.
    let mut last = first - 1;
    let cancel = loop {
        let v = next(&mut slow).await.expect("the cancellation");
        if v.get("error").is_some() {
            break v;
        }
        assert_eq!(height_of(&v), last + 1, "in order, no gap");
        last += 1;
    };
    assert_eq!(cancel["id"], 1);
    assert_eq!(cancel["error"]["code"], -32000);
    assert_eq!(
        cancel["error"]["data"],
        "subscription was canceled (reason: client is not pulling messages fast enough)"
    );
    // The fast client still has its subscription, and the node its one.
    h.node.advance_block();
    assert_eq!(height_of(&next(&mut fast).await.unwrap()), h.node.height());
    assert_eq!(h.node.requests_for("subscribe"), 1);
}

#[tokio::test]
async fn fifty_clients_are_one_node_subscription_on_one_node_connection() {
    let h = fanout(SimNodeConfig::default(), |c| {
        c.websocket.max_connections_per_client = 50;
    })
    .await;
    let mut clients = Vec::new();
    for id in 0..50 {
        let mut ws = ws_from(&h, "127.0.0.1").await.unwrap();
        subscribed(&mut ws, id, NEW_BLOCK).await;
        clients.push(ws);
    }
    h.node.advance_block();
    for (id, ws) in clients.iter_mut().enumerate() {
        let event = next(ws).await.unwrap();
        assert_eq!(
            (event["id"].clone(), height_of(&event)),
            (json!(id), h.node.height())
        );
    }
    assert_eq!(h.node.requests_for("subscribe"), 1);
    assert_eq!(metric(&h, "cometgate_ws_node_connections").await, 1.0);
    assert_eq!(metric(&h, "cometgate_ws_clients").await, 50.0);
}

/// A head that can only learn new blocks from the hub: its status polls are rarer than
/// any test waits.
fn head_fed_by_the_hub(c: &mut Config) {
    c.head.websocket = true;
    c.head.poll_interval = Duration::from_secs(60);
    c.head.stall_after = Duration::from_secs(600);
}

#[tokio::test]
async fn the_head_follows_the_fanouts_own_new_block_subscription() {
    let h = spawn_gateway_with(SimNodeConfig::default(), head_fed_by_the_hub).await;
    let node = &h.node;
    eventually(
        "the hub holds the head's NewBlock subscription",
        || async move { node.requests_for("subscribe") == 1 },
    )
    .await;
    h.advance_block().await;
    let mut a = ws_from(&h, "127.0.0.1").await.unwrap();
    subscribed(&mut a, 1, "tm.event = 'NewBlock'").await;
    h.node.advance_block();
    assert_eq!(height_of(&next(&mut a).await.unwrap()), h.node.height());
    assert_eq!(
        h.node.requests_for("subscribe"),
        1,
        "one, shared with the head"
    );
    assert_eq!(
        h.node.stats().ws_connections,
        1,
        "no websocket of the head's own"
    );
}

#[tokio::test]
async fn the_head_keeps_its_feed_across_a_node_outage() {
    let h = spawn_gateway_with(SimNodeConfig::default(), head_fed_by_the_hub).await;
    h.advance_block().await;
    h.node.set_fault(Fault::Down);
    let hh = &h;
    eventually("the hub has failed to dial twice", || async move {
        metric(hh, "cometgate_ws_node_dial_failures_total").await >= 2.0
    })
    .await;
    h.node.set_fault(Fault::None);
    eventually("the hub subscribes again", || async move {
        metric(hh, "cometgate_ws_node_subscriptions").await == 1.0
    })
    .await;
    // Only the feed can tell the head in time.
    h.advance_block().await;
}

#[tokio::test]
async fn a_block_larger_than_a_clients_byte_bound_still_reaches_it() {
    let node = SimNodeConfig {
        txs_per_block: 20,
        tx_bytes: 1000,
        ..SimNodeConfig::default()
    };
    let h = fanout(node, |c| {
        c.websocket.max_message_bytes = ByteSize::kib(1);
        c.websocket.client_buffer_bytes = ByteSize::kib(2);
    })
    .await;
    let mut a = ws_from(&h, "127.0.0.1").await.unwrap();
    subscribed(&mut a, 1, NEW_BLOCK).await;
    for _ in 0..3 {
        h.node.advance_block();
        let event = next(&mut a).await.unwrap();
        assert_eq!(height_of(&event), h.node.height(), "{}", event["error"]);
    }
    assert_eq!(
        metric(&h, "cometgate_ws_slow_consumer_cancellations_total").await,
        0.0
    );
}
