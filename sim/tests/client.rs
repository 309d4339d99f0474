//! The official Rust client (tendermint-rpc 0.41, v0.38 dialect) parses every answer it
//! gets from the simulated node: the real check of faithfulness.

mod common;

use std::time::Duration;

use cometgate_sim::{SimNode, SimNodeConfig};
use futures_util::StreamExt;
use tendermint_rpc::client::CompatMode;
use tendermint_rpc::event::EventData;
use tendermint_rpc::query::{EventType, Query};
use tendermint_rpc::{Client, HttpClient, Order, Paging, SubscriptionClient, WebSocketClient};

async fn started() -> (SimNode, HttpClient) {
    let node = SimNode::start(SimNodeConfig {
        txs_per_block: 3,
        validators: 4,
        ..SimNodeConfig::default()
    })
    .await
    .unwrap();
    let client = HttpClient::builder(node.url().parse().unwrap())
        .compat_mode(CompatMode::V0_38)
        .build()
        .unwrap();
    (node, client)
}

#[tokio::test]
async fn http_client_parses_every_answer() {
    let (node, c) = started().await;
    let status = c.status().await.unwrap();
    assert_eq!(status.sync_info.latest_block_height.value(), node.height());
    assert_eq!(status.node_info.network.as_str(), "dockerchain");

    let b = c.block(5u32).await.unwrap();
    assert_eq!(b.block.header.height.value(), 5);
    assert_eq!(b.block.data.len(), 3);
    let prev = c.block(4u32).await.unwrap();
    assert_eq!(
        b.block.header.last_block_id.unwrap().hash,
        prev.block_id.hash
    );
    let latest = c.latest_block().await.unwrap();
    assert_eq!(latest.block.header.height.value(), node.height());

    let by_hash = c.block_by_hash(b.block_id.hash).await.unwrap();
    assert_eq!(by_hash.block.unwrap().header.height.value(), 5);

    let r = c.block_results(5u32).await.unwrap();
    assert_eq!(r.txs_results.unwrap().len(), 3);

    let commit = c.commit(5u32).await.unwrap();
    assert_eq!(commit.signed_header.header.height.value(), 5);
    assert!(commit.canonical);

    let v = c.validators(5u32, Paging::All).await.unwrap();
    assert_eq!(v.validators.len(), 4);
    assert_eq!(v.total, 4);

    let info = c.abci_info().await.unwrap();
    assert_eq!(info.last_block_height.value(), node.height());
    let q = c.abci_query(None, "gen-3-1", None, false).await.unwrap();
    assert_eq!(q.log, "exists");
    assert!(!q.value.is_empty());

    c.genesis::<Option<serde_json::Value>>().await.unwrap();
    c.net_info().await.unwrap();
    c.consensus_params(5u32).await.unwrap();
    c.health().await.unwrap();
    c.blockchain(1u32, 5u32).await.unwrap();
    c.header(3u32).await.unwrap();
    c.consensus_state().await.unwrap();
}

#[tokio::test]
async fn broadcast_then_find_with_tx_and_tx_search() {
    let (node, c) = started().await;
    let sent = c
        .broadcast_tx_sync(b"mykey=myvalue".to_vec())
        .await
        .unwrap();
    assert!(sent.code.is_ok());
    node.advance_block();
    let found = c.tx(sent.hash, false).await.unwrap();
    assert_eq!(found.height.value(), node.height());
    assert_eq!(found.tx, b"mykey=myvalue".to_vec());

    let page = c
        .tx_search(Query::gt("tx.height", 1_u64), true, 1, 10, Order::Ascending)
        .await
        .unwrap();
    assert_eq!(page.txs.len(), 10);
    assert_eq!(page.total_count as u64, (node.height() - 1) * 3 + 1);

    let mine = c
        .tx_search(
            Query::eq("app.key", "mykey"),
            false,
            1,
            30,
            Order::Descending,
        )
        .await
        .unwrap();
    assert_eq!(mine.total_count, 1);
    assert_eq!(mine.txs[0].hash, sent.hash);

    let q = c.abci_query(None, "mykey", None, false).await.unwrap();
    assert_eq!(q.value, b"myvalue".to_vec());

    let blocks = c
        .block_search(Query::gte("block.height", 3_u64), 1, 5, Order::Descending)
        .await
        .unwrap();
    assert_eq!(blocks.total_count as u64, node.height() - 2);
    assert_eq!(blocks.blocks[0].block.header.height.value(), node.height());
}

#[tokio::test]
async fn websocket_client_receives_new_blocks() {
    let node = SimNode::start(SimNodeConfig::default()).await.unwrap();
    let (client, driver) = WebSocketClient::builder(node.ws_url().parse().unwrap())
        .compat_mode(CompatMode::V0_38)
        .build()
        .await
        .unwrap();
    let driver = tokio::spawn(driver.run());
    let mut subs = client.subscribe(EventType::NewBlock.into()).await.unwrap();
    let mut txs = client.subscribe(EventType::Tx.into()).await.unwrap();
    let start = node.height();
    for _ in 0..3 {
        node.advance_block();
    }
    for expected in start + 1..=start + 3 {
        let ev = tokio::time::timeout(Duration::from_secs(10), subs.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        match ev.data {
            EventData::NewBlock { block, .. } => {
                assert_eq!(block.unwrap().header.height.value(), expected);
            }
            other => panic!("unexpected event {other:?}"),
        }
    }
    let ev = tokio::time::timeout(Duration::from_secs(10), txs.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(matches!(ev.data, EventData::Tx { .. }), "{:?}", ev.data);
    client.close().unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(10), driver).await;
}
