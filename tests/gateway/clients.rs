//! Real clients pointed at the gateway: tendermint-rpc's HTTP and websocket clients, and
//! a raw websocket subscription.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tendermint_rpc::client::CompatMode;
use tendermint_rpc::query::{EventType, Query};
use tendermint_rpc::{Client, HttpClient, Order, SubscriptionClient, WebSocketClient};
use tokio_tungstenite::tungstenite::Message;

use crate::support::*;

#[tokio::test]
async fn tendermint_rpcs_http_client_works_through_the_gateway() {
    let h = spawn_gateway().await;
    let client = HttpClient::builder(h.url().parse().unwrap())
        .compat_mode(CompatMode::V0_38)
        .build()
        .unwrap();
    let status = client.status().await.expect("status");
    assert_eq!(
        status.sync_info.latest_block_height.value(),
        h.node.height()
    );
    let block = client.block(5u32).await.expect("block");
    assert_eq!(block.block.header.height.value(), 5);
    let results = client.block_results(5u32).await.expect("block_results");
    assert_eq!(results.height.value(), 5);
    let found = client
        .tx_search(Query::eq("tx.height", 5u64), false, 1, 30, Order::Ascending)
        .await
        .expect("tx_search");
    assert!(found.total_count > 0);
    client
        .abci_query(Some("/store".into()), b"key".to_vec(), None, false)
        .await
        .expect("abci_query");
    let sent = client
        .broadcast_tx_sync(b"through=gateway".to_vec())
        .await
        .expect("broadcast_tx_sync");
    assert!(sent.code.is_ok());
}

#[tokio::test]
async fn a_warm_cache_gives_tendermint_rpc_the_same_results_as_the_node() {
    let h = spawn_gateway().await;
    let via = HttpClient::builder(h.url().parse().unwrap())
        .compat_mode(CompatMode::V0_38)
        .build()
        .unwrap();
    let direct = HttpClient::builder(h.node.url().parse().unwrap())
        .compat_mode(CompatMode::V0_38)
        .build()
        .unwrap();
    let cold = via.block_results(4u32).await.unwrap();
    let warm = via.block_results(4u32).await.unwrap();
    assert_eq!(
        h.node.requests_for("block_results"),
        1,
        "the second call was a hit"
    );
    let node = serde_json::to_value(direct.block_results(4u32).await.unwrap()).unwrap();
    assert_eq!(serde_json::to_value(warm).unwrap(), node);
    assert_eq!(serde_json::to_value(cold).unwrap(), node);
    let (via_block, node_block) = (
        via.block(4u32).await.unwrap(),
        direct.block(4u32).await.unwrap(),
    );
    assert_eq!(
        serde_json::to_value(via_block).unwrap(),
        serde_json::to_value(node_block).unwrap()
    );
}

#[tokio::test]
async fn tendermint_rpcs_websocket_client_gets_new_blocks_through_the_gateway() {
    let h = spawn_gateway().await;
    let url = format!("ws://{}/websocket", h.addr);
    let (client, driver) = WebSocketClient::builder(url.parse().unwrap())
        .compat_mode(CompatMode::V0_38)
        .build()
        .await
        .expect("websocket client connects");
    let driver = tokio::spawn(driver.run());
    let mut events = client
        .subscribe(EventType::NewBlock.into())
        .await
        .expect("subscribed");
    let produced = h.advance_block().await;
    let event = tokio::time::timeout(DEADLINE, events.next())
        .await
        .expect("an event within the deadline");
    let event = event.expect("stream open").expect("a NewBlock event");
    let height = match event.data {
        tendermint_rpc::event::EventData::NewBlock { block: Some(b), .. } => {
            b.header.height.value()
        }
        other => panic!("not a NewBlock: {other:?}"),
    };
    assert_eq!(height, produced);
    client.close().unwrap();
    let _ = tokio::time::timeout(DEADLINE, driver).await;
}

#[tokio::test]
async fn a_raw_websocket_subscription_is_relayed_and_closes_cleanly() {
    let h = spawn_gateway().await;
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/websocket", h.addr))
        .await
        .expect("upgrade");
    let sub = r#"{"jsonrpc":"2.0","id":"s1","method":"subscribe","params":{"query":"tm.event='NewBlock'"}}"#;
    ws.send(Message::text(sub)).await.unwrap();
    let ack = next_json(&mut ws).await;
    assert_eq!(ack["id"], "s1");
    assert_eq!(ack["result"], serde_json::json!({}));
    let produced = h.advance_block().await;
    let event = next_json(&mut ws).await;
    assert_eq!(event["result"]["data"]["type"], "tendermint/event/NewBlock");
    assert_eq!(
        event["result"]["data"]["value"]["block"]["header"]["height"],
        produced.to_string()
    );

    // Calls other than subscriptions go through the gateway's pipeline, denials included.
    ws.send(Message::text(
        r#"{"jsonrpc":"2.0","id":2,"method":"dump_consensus_state"}"#,
    ))
    .await
    .unwrap();
    let denied = next_json(&mut ws).await;
    assert_eq!(denied["error"]["code"], -32601);
    assert_eq!(h.node.requests_for("dump_consensus_state"), 0);

    ws.close(None).await.unwrap();
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(msg) = ws.next().await {
            if matches!(msg, Ok(Message::Close(_)) | Err(_)) {
                return;
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the gateway closes its side");
}

async fn next_json<S>(ws: &mut S) -> serde_json::Value
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    loop {
        let msg = tokio::time::timeout(DEADLINE, ws.next())
            .await
            .expect("a message in time")
            .expect("open")
            .unwrap();
        if let Message::Text(t) = msg {
            return serde_json::from_str(t.as_str()).unwrap();
        }
    }
}
