//! Issue #16 over websockets: with three nodes, the fan-out's subscriptions move to
//! another node when theirs is lost, and relayed clients are told to reconnect.

use cometgate::config::WsMode;
use cometgate_sim::Fault;
use serde_json::Value;

use crate::admission::ws::{close_frame, next, send, subscribe, ws_from, Ws};
use crate::nodes::{frozen_at, Three};
use crate::support::*;

const NEW_BLOCK: &str = "tm.event='NewBlock'";

fn height_of(event: &Value) -> u64 {
    event["result"]["data"]["value"]["block"]["header"]["height"]
        .as_str()
        .and_then(|h| h.parse().ok())
        .unwrap_or_else(|| panic!("not a NewBlock event: {event}"))
}

impl Three {
    fn advance_all(&self) {
        self.nodes().iter().for_each(|n| n.advance_block());
    }

    /// The node the gateway's (or a relayed client's) websocket subscription is on: the
    /// heads follow by polling, so it is the only one with a subscription.
    async fn subscribed_node(&self) -> usize {
        let mut found = None;
        eventually("one node holds the subscription", || {
            let holders: Vec<usize> = (0..3)
                .filter(|i| self.nodes()[*i].stats().ws_subscriptions > 0)
                .collect();
            found = holders.first().copied().filter(|_| holders.len() == 1);
            std::future::ready(found.is_some())
        })
        .await;
        found.unwrap()
    }
}

/// Three nodes with the websocket in `mode`, and a client subscribed to NewBlock as
/// `id`; the node its subscription landed on.
async fn subscribed(mode: WsMode, id: u64) -> (Three, Ws, usize) {
    let t = Three::start(frozen_at(50), frozen_at(50), frozen_at(50), |c| {
        c.head.websocket = false;
        c.websocket.mode = mode;
    })
    .await;
    t.settled().await;
    let mut ws = ws_from(&t.h, "127.0.0.1").await.unwrap();
    send(&mut ws, subscribe(id, NEW_BLOCK)).await;
    assert_eq!(
        next(&mut ws).await.unwrap()["result"],
        serde_json::json!({})
    );
    let holder = t.subscribed_node().await;
    (t, ws, holder)
}

#[tokio::test]
async fn fanned_out_subscriptions_move_to_another_node_when_theirs_is_lost() {
    let (t, mut ws, holder) = subscribed(WsMode::Fanout, 7).await;
    t.advance_all();
    assert_eq!(height_of(&next(&mut ws).await.unwrap()), 51);

    t.nodes()[holder].set_fault(Fault::Down);
    eventually("the subscription is made again on another node", || {
        let elsewhere = (0..3).any(|i| i != holder && t.nodes()[i].stats().ws_subscriptions > 0);
        std::future::ready(elsewhere)
    })
    .await;
    t.advance_all();
    let event = next(&mut ws).await.unwrap();
    assert_eq!(event["id"], 7, "the client's own id, still");
    assert_eq!(height_of(&event), 52, "the next block, from another node");
}

#[tokio::test]
async fn relayed_clients_are_told_to_reconnect_when_their_node_is_lost() {
    let (t, mut ws, holder) = subscribed(WsMode::Relay, 1).await;
    t.nodes()[holder].set_fault(Fault::Down);
    let frame = close_frame(&mut ws).await.expect("a close code");
    assert_eq!(u16::from(frame.code), 1012, "{frame:?}");
    // Connecting again reaches a node that answers.
    eventually("the lost node is seen down", || async {
        t.state_of(t.nodes()[holder]).await["up"] == false
    })
    .await;
    let mut again = ws_from(&t.h, "127.0.0.1").await.unwrap();
    send(&mut again, subscribe(2, NEW_BLOCK)).await;
    assert_eq!(
        next(&mut again).await.unwrap()["result"],
        serde_json::json!({})
    );
}
