//! The scenario's setup against the simulated node itself: the queries, the frame size,
//! and the clients' cheap reading of real frames.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use super::clients::{follow, subscribe, Spec, Stop};
use super::frames::{height, Expect};
use super::plan::{FANOUT, RELAY, RELAY_MODE};
use super::*;
use cometgate_sim::{SimNode, SimNodeConfig};

async fn frozen_node() -> SimNode {
    // Blocks by hand: the test decides when one comes.
    let cfg = SimNodeConfig {
        block_interval: Duration::ZERO,
        ..node()
    };
    SimNode::start(cfg).await.unwrap()
}

#[test]
fn twenty_distinct_queries() {
    let qs = queries(QUERIES);
    assert_eq!(qs.len(), 20);
    let mut unique = qs.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 20);
    assert!(qs
        .iter()
        .all(|q| q.len() < 512 && !q.contains(['<', '>', '&'])));
    assert_eq!(queries(1), vec!["tm.event='NewBlock'".to_string()]);
}

#[test]
fn gateway_sections_are_toml() {
    let relay = format!("{RELAY}{RELAY_MODE}");
    for sections in [FANOUT, RELAY, &relay] {
        let text = format!("[server]\nlisten = \"127.0.0.1:1\"\n{SERVER}\n{sections}");
        let v: toml::Value = toml::from_str(&text).unwrap();
        assert!(v["websocket"]["max_connections_per_client"].is_integer());
        assert_eq!(v["server"]["max_connections"].as_integer(), Some(12_000));
    }
}

#[tokio::test]
async fn every_query_gets_every_new_block_of_about_10_kb() {
    let node = frozen_node().await;
    let qs = queries(QUERIES);
    // CometBFT takes 5 subscriptions per connection: four connections for 20 queries.
    let mut sockets = Vec::new();
    for (c, chunk) in qs.chunks(5).enumerate() {
        let (mut ws, _) = tokio_tungstenite::connect_async(node.ws_url())
            .await
            .unwrap();
        for (i, q) in chunk.iter().enumerate() {
            let id = c * 5 + i;
            let call =
                json!({"jsonrpc": "2.0", "id": id, "method": "subscribe", "params": {"query": q}});
            ws.send(Message::text(call.to_string())).await.unwrap();
            let answer = ws.next().await.unwrap().unwrap().into_text().unwrap();
            assert!(answer.contains("\"result\": {}"), "{q}: {answer}");
        }
        sockets.push(ws);
    }
    assert_eq!(node.stats().ws_subscriptions, 20);
    node.advance_block();
    let h = node.height();
    for (c, ws) in sockets.iter_mut().enumerate() {
        for _ in 0..5 {
            let frame = tokio::time::timeout(Duration::from_secs(5), ws.next())
                .await
                .unwrap()
                .unwrap()
                .unwrap()
                .into_data();
            assert_eq!(height(&frame), Some(h));
            assert!(
                (9_000..12_000).contains(&frame.len()),
                "NewBlock frame of {} bytes, about 10 KB wanted",
                frame.len()
            );
            let text = String::from_utf8_lossy(&frame);
            let q = qs
                .iter()
                .position(|q| text.contains(&format!("\"query\": \"{q}\"")))
                .unwrap();
            assert_eq!(q / 5, c);
            assert_eq!(Expect::new(&json!(q), &qs[q]).matches(&frame), (true, true));
        }
    }
}

#[tokio::test]
async fn a_client_reads_heights_ids_and_queries_off_real_frames() {
    let node = frozen_node().await;
    let spec = Spec {
        url: node.ws_url(),
        id: json!("c-1"),
        query: queries(2)[1].clone(),
        keep_frames: true,
    };
    let ws = subscribe(&spec).await.unwrap();
    let (stop, stopped) = watch::channel(Stop::Run);
    let reader = {
        let spec = spec.clone();
        tokio::spawn(async move { follow(ws, &spec, stopped).await })
    };
    let first = node.height() + 1;
    for _ in 0..3 {
        node.advance_block();
    }
    stop.send(Stop::Until(first + 2)).unwrap();
    let seen = tokio::time::timeout(Duration::from_secs(5), reader)
        .await
        .unwrap()
        .unwrap();
    let heights: Vec<u64> = seen.blocks.iter().map(|b| b.0).collect();
    assert_eq!(heights, vec![first, first + 1, first + 2]);
    assert_eq!((seen.bad_id, seen.bad_query, seen.no_height), (0, 0, 0));
    assert!(seen.closed.is_none());
    // The node's frame for another subscriber, rewritten, is this one's byte for byte.
    let theirs = Expect::new(&json!(5), &queries(1)[0]);
    let (_, mine) = &seen.frames[0];
    let text = String::from_utf8_lossy(mine)
        .replace("\"c-1\"", "5")
        .replace(&spec.query, &queries(1)[0]);
    assert_eq!(
        spec.expect().rewrite(text.as_bytes(), &theirs).as_deref(),
        Some(&mine[..])
    );
}

/// The floor is a fair floor only if its clients get what the gateway's get: the node's
/// frame, byte for byte, with their own id in it.
#[tokio::test]
async fn the_floor_writes_the_nodes_frame_with_each_clients_id() {
    let node = frozen_node().await;
    let query = queries(1)[0].clone();
    let listen = crate::procs::free_addr();
    let floor = tokio::spawn(crate::ws_floor::serve(listen, node.addr(), query.clone()));
    let spec = |id| Spec {
        url: format!("ws://{listen}/websocket"),
        id,
        query: query.clone(),
        keep_frames: true,
    };
    let (number, string) = (spec(json!(7)), spec(json!("c-8")));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let first = loop {
        match subscribe(&number).await {
            Ok(ws) => break ws,
            Err(e) if std::time::Instant::now() > deadline => panic!("floor: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    };
    let second = subscribe(&string).await.unwrap();
    // The floor's own subscription is in place before a block is made.
    while node.stats().ws_subscriptions < 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "the floor never subscribed"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let reference = Spec {
        url: node.ws_url(),
        id: json!("reference"),
        query: query.clone(),
        keep_frames: true,
    };
    let on_node = subscribe(&reference).await.unwrap();
    let (stop, stopped) = watch::channel(Stop::Run);
    let readers: Vec<_> = [(first, number), (second, string), (on_node, reference)]
        .into_iter()
        .map(|(ws, spec)| {
            let stopped = stopped.clone();
            tokio::spawn(async move { follow(ws, &spec, stopped).await })
        })
        .collect();
    node.advance_block();
    stop.send(Stop::Until(node.height())).unwrap();
    let mut seen = Vec::new();
    for reader in readers {
        let s = tokio::time::timeout(Duration::from_secs(5), reader)
            .await
            .unwrap()
            .unwrap();
        assert_eq!((s.bad_id, s.bad_query, s.no_height), (0, 0, 0));
        assert_eq!(s.frames.len(), 1, "{:?}", s.closed);
        seen.push(s.frames[0].1.clone());
    }
    let node_frame = String::from_utf8_lossy(&seen[2]).into_owned();
    assert_eq!(
        node_frame.replace("\"reference\"", "7").as_bytes(),
        &seen[0][..]
    );
    assert_eq!(
        node_frame.replace("\"reference\"", "\"c-8\"").as_bytes(),
        &seen[1][..]
    );
    floor.abort();
}
