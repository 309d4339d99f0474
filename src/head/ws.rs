//! The tracker's task: one NewBlock subscription on the node's `/websocket` while it
//! holds, reconnecting with backoff, and a `status` poll every `head.poll_interval`
//! throughout, each one recorded for readiness.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use http::Uri;
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::sync::watch;
use tokio::time::{sleep, sleep_until, Instant};
use tokio_tungstenite::tungstenite::Message;

use super::poll::Poller;
use super::{stopped, Shared};
use crate::config::HeadConfig;

const SUBSCRIBE: &str =
    r#"{"jsonrpc":"2.0","id":0,"method":"subscribe","params":{"query":"tm.event='NewBlock'"}}"#;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

pub(crate) async fn run(
    shared: Arc<Shared>,
    upstream: Uri,
    config: HeadConfig,
    mut feed: Option<watch::Receiver<Option<u64>>>,
    tls: Arc<rustls::ClientConfig>,
    mut stop: watch::Receiver<bool>,
) {
    // A poll still unanswered when the next is due has failed: a node that no longer
    // serves HTTP shows within two intervals, whatever upstream.timeout says.
    let poller = Poller::new(&upstream, config.poll_interval, &tls);
    let url = websocket_url(&upstream);
    let first_backoff = config
        .poll_interval
        .clamp(Duration::from_millis(500), BACKOFF_MAX);
    let mut backoff = first_backoff;
    let mut ws_due = Instant::now();
    if let Some(mut feed) = feed.take() {
        tokio::select! {
            () = follow_feed(&mut feed, &shared, &poller, config.poll_interval) => {}
            () = stopped(&mut stop) => return,
        }
        tracing::info!("the fan-out hub is gone: the head follows the node's websocket itself");
    }
    loop {
        if config.websocket && Instant::now() >= ws_due {
            let (delivered, why) = tokio::select! {
                outcome = follow(&url, &tls, &shared, &poller, &config) => outcome,
                () = stopped(&mut stop) => return,
            };
            if delivered {
                backoff = first_backoff;
            }
            tracing::debug!(url = %url, reason = %why, retry_in = ?backoff, "head websocket down; polling status");
            ws_due = Instant::now() + backoff;
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
        let polled = tokio::select! {
            polled = poller.poll(&shared) => polled,
            () = stopped(&mut stop) => return,
        };
        shared.polled(&polled);
        match polled {
            Ok(()) => shared.set_source("polling"),
            Err(why) => {
                tracing::debug!(reason = %why, "head status poll failed");
                shared.set_source("none");
            }
        }
        tokio::select! {
            () = sleep(config.poll_interval) => {}
            () = stopped(&mut stop) => return,
        }
    }
}

/// Follows NewBlock events until the connection fails or falls silent; returns whether
/// it delivered any, and why it ended.
async fn follow(
    url: &str,
    tls: &Arc<rustls::ClientConfig>,
    shared: &Shared,
    poller: &Poller,
    config: &HeadConfig,
) -> (bool, String) {
    let dial = tokio_tungstenite::connect_async_tls_with_config(
        url,
        None,
        false,
        Some(tokio_tungstenite::Connector::Rustls(tls.clone())),
    );
    let mut socket = match tokio::time::timeout(CONNECT_TIMEOUT, dial).await {
        Ok(Ok((socket, _))) => socket,
        Ok(Err(e)) => return (false, e.to_string()),
        Err(_) => return (false, "connect timed out".into()),
    };
    if let Err(e) = socket.send(Message::text(SUBSCRIBE)).await {
        return (false, e.to_string());
    }
    shared.set_source("websocket");
    let mut status = tokio::time::interval(config.poll_interval);
    status.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // A silent subscription is a dead one (half-open TCP, dropped subscription): by then
    // the head is blind anyway, so reconnecting costs nothing.
    let silence = config.stall_after.max(config.poll_interval);
    let mut last_frame = Instant::now();
    let mut delivered = false;
    let why = loop {
        tokio::select! {
            frame = socket.next() => match frame {
                None => break "closed".to_owned(),
                Some(Err(e)) => break e.to_string(),
                Some(Ok(Message::Close(_))) => break "closed by the node".to_owned(),
                Some(Ok(Message::Text(text))) => {
                    last_frame = Instant::now();
                    match read_frame(text.as_str()) {
                        Frame::NewBlock(height) => {
                            shared.advance(height);
                            delivered = true;
                        }
                        Frame::Error(e) => break format!("subscription refused: {e}"),
                        Frame::Other => {}
                    }
                }
                Some(Ok(_)) => last_frame = Instant::now(),
            },
            () = sleep_until(last_frame + silence) => break format!("no event for {silence:?}"),
            _ = status.tick() => shared.polled(&poller.poll(shared).await),
        }
    };
    shared.set_source("none");
    (delivered, why)
}

/// Follows the fan-out's NewBlock subscription for as long as the hub lives. While
/// the hub has lost the node the head is polled, and the feed resumes by itself when
/// the hub subscribes again: there is nothing to dial, so nothing to back off from.
async fn follow_feed(
    feed: &mut watch::Receiver<Option<u64>>,
    shared: &Shared,
    poller: &Poller,
    every: Duration,
) {
    let mut status = tokio::time::interval(every);
    status.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            changed = feed.changed() => {
                if changed.is_err() {
                    return;
                }
                match *feed.borrow_and_update() {
                    Some(height) => {
                        shared.set_source("websocket");
                        shared.advance(height);
                    }
                    None => shared.set_source("polling"),
                }
            }
            _ = status.tick() => {
                let polled = poller.poll(shared).await;
                shared.polled(&polled);
                let fed = feed.borrow().is_some();
                if !fed {
                    shared.set_source(if polled.is_ok() { "polling" } else { "none" });
                }
            }
        }
    }
}

/// The node's websocket endpoint for its RPC url (`http://h:p/` → `ws://h:p/websocket`).
pub(crate) fn websocket_url(upstream: &Uri) -> String {
    let scheme = if upstream.scheme_str() == Some("https") {
        "wss"
    } else {
        "ws"
    };
    let authority = upstream.authority().map_or("localhost", |a| a.as_str());
    format!("{scheme}://{authority}/websocket")
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Frame {
    NewBlock(u64),
    Error(String),
    /// The subscription's acknowledgement, or an event without a block.
    Other,
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow, default)]
    result: Option<EventResult<'a>>,
    #[serde(borrow, default)]
    error: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct EventResult<'a> {
    #[serde(borrow, default)]
    data: Option<EventData<'a>>,
}

#[derive(Deserialize)]
struct EventData<'a> {
    #[serde(borrow, default)]
    value: Option<EventValue<'a>>,
}

#[derive(Deserialize)]
struct EventValue<'a> {
    #[serde(borrow, default)]
    block: Option<Block<'a>>,
}

#[derive(Deserialize)]
struct Block<'a> {
    #[serde(borrow)]
    header: Header<'a>,
}

#[derive(Deserialize)]
struct Header<'a> {
    height: &'a str,
}

/// Reads only the event's block height; the rest of the block (its txs) is skipped.
pub(crate) fn read_frame(text: &str) -> Frame {
    let Ok(envelope) = serde_json::from_str::<Envelope>(text) else {
        return Frame::Other;
    };
    if let Some(error) = envelope.error {
        return Frame::Error(error.get().to_owned());
    }
    let height = envelope
        .result
        .and_then(|r| r.data?.value?.block)
        .and_then(|b| b.header.height.parse().ok());
    height.map_or(Frame::Other, Frame::NewBlock)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// A NewBlock event as a v0.38 node sends it, trimmed from tendermint-rs's RPC
    /// fixtures (`kvstore_fixtures/v0_38/incoming/subscribe_newblock_0.json`, Apache-2.0).
    const NEW_BLOCK: &str = r#"{
      "id": "8e4bb2a3-1304-46c6-9647-4493ef0fa5f2",
      "jsonrpc": "2.0",
      "result": {
        "data": {
          "type": "tendermint/event/NewBlock",
          "value": {
            "block": {
              "data": { "txs": [] },
              "evidence": { "evidence": [] },
              "header": {
                "app_hash": "0600000000000000",
                "chain_id": "dockerchain",
                "height": "235",
                "proposer_address": "2DD9F44FD9067555C322243C3C913BA7B51D2BE0",
                "time": "2023-05-17T14:14:50.081741308Z",
                "version": { "app": "1", "block": "11" }
              },
              "last_commit": { "height": "234", "round": 0, "signatures": [] }
            },
            "block_id": { "hash": "FA01C08688623731FA4250FB7873FE2049349DAE5352CB823E5BE0F472017C22" },
            "result_finalize_block": { "app_hash": "BgAAAAAAAAA=", "validator_updates": [] }
          }
        },
        "events": { "tm.event": [ "NewBlock" ] },
        "query": "tm.event = 'NewBlock'"
      }
    }"#;

    #[test]
    fn reads_the_height_of_a_new_block_event() {
        assert_eq!(read_frame(NEW_BLOCK), Frame::NewBlock(235));
        assert_eq!(
            read_frame(r#"{"jsonrpc":"2.0","id":0,"result":{}}"#),
            Frame::Other
        );
        assert_eq!(read_frame("not json"), Frame::Other);
        let refused = r#"{"jsonrpc":"2.0","id":0,"error":{"code":-32603,"message":"max_subscriptions_per_client reached"}}"#;
        assert!(matches!(read_frame(refused), Frame::Error(e) if e.contains("max_subscriptions")));
    }

    #[test]
    fn the_websocket_lives_beside_the_rpc_url() {
        let url: Uri = "http://127.0.0.1:26657/".parse().unwrap();
        assert_eq!(websocket_url(&url), "ws://127.0.0.1:26657/websocket");
    }

    /// A node that accepts the subscription and sends one NewBlock event; anything that
    /// is not a websocket handshake (the status poll) is hung up on.
    async fn fake_node() -> Uri {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let Ok(mut socket) = tokio_tungstenite::accept_async(tcp).await else {
                        return;
                    };
                    let Some(Ok(Message::Text(subscribe))) = socket.next().await else {
                        return;
                    };
                    assert!(subscribe.as_str().contains("tm.event='NewBlock'"));
                    socket
                        .send(Message::text(r#"{"jsonrpc":"2.0","id":0,"result":{}}"#))
                        .await
                        .unwrap();
                    socket.send(Message::text(NEW_BLOCK)).await.unwrap();
                    // Hold the connection open until the tracker goes away.
                    while let Some(Ok(_)) = socket.next().await {}
                });
            }
        });
        format!("http://{addr}/").parse().unwrap()
    }

    #[tokio::test]
    async fn follows_new_blocks_over_the_websocket() {
        let url = fake_node().await;
        let head = super::super::Head::spawn(&url, &HeadConfig::default());
        let mut heights = head.watch();
        let seen = tokio::time::timeout(
            Duration::from_secs(10),
            heights.wait_for(|h| *h == Some(235)),
        )
        .await
        .is_ok_and(|r| r.is_ok());
        assert!(seen, "no NewBlock within 10s");
        assert_eq!(head.source(), "websocket");
        assert!(!head.blind());
        head.shutdown();
    }
}
