//! One node websocket of the hub: it subscribes its topics, routes what the node sends,
//! and when it is lost, dials again and subscribes them all again. Clients keep their
//! subscriptions across the gap; the events of the gap are not invented.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Weak};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::Connector;

use super::event::{self, NodeFrame};
use super::topic::Topic;
use super::{Hub, HubSettings};
use crate::websocket::NodeSocket;

pub(super) enum Command {
    Subscribe(Arc<Topic>),
    Unsubscribe(Arc<Topic>),
}

/// How often the node is pinged; one silent for three times this is taken as lost
/// (a node that vanished without closing would otherwise hold its topics forever).
const PING_EVERY: Duration = Duration::from_secs(10);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

pub(super) fn spawn(hub: Weak<Hub>, index: usize, commands: mpsc::UnboundedReceiver<Command>) {
    tokio::spawn(run(hub, index, commands));
}

/// This connection's topics, by the id the node's frames carry.
#[derive(Default)]
struct Topics {
    by_id: HashMap<String, Arc<Topic>>,
    /// Those the node has answered `{}` on the current connection.
    live: HashSet<String>,
}

impl Topics {
    /// A command while no node connection is up: only the map changes.
    fn apply(&mut self, cmd: Command) {
        match cmd {
            Command::Subscribe(t) => drop(self.by_id.insert(t.node_id.clone(), t)),
            Command::Unsubscribe(t) => drop(self.by_id.remove(&t.node_id)),
        }
    }
}

/// CometBFT's own wait for a websocket write; a node that takes no more is gone.
const WRITE_WAIT: Duration = Duration::from_secs(10);

async fn send(ws: &mut NodeSocket, msg: Message) -> Result<(), ()> {
    match tokio::time::timeout(WRITE_WAIT, ws.send(msg)).await {
        Ok(Ok(())) => Ok(()),
        _ => Err(()),
    }
}

enum Ended {
    /// The hub is gone: so is this connection.
    Exit,
    Lost,
}

async fn run(hub: Weak<Hub>, index: usize, mut commands: mpsc::UnboundedReceiver<Command>) {
    let mut topics = Topics::default();
    let mut backoff = Duration::from_millis(100);
    loop {
        let Some(settings) = hub.upgrade().map(|h| h.settings.clone()) else {
            return;
        };
        match dial(&settings).await {
            Ok(ws) => {
                backoff = Duration::from_millis(100);
                let ended = connected(ws, &hub, &mut topics, &mut commands).await;
                if matches!(ended, Ended::Exit) {
                    return;
                }
                tracing::warn!(
                    connection = index,
                    queries = topics.by_id.len(),
                    "node websocket of the fan-out lost: dialling again"
                );
            }
            Err(e) => {
                tracing::warn!(connection = index, error = %e, "node websocket unreachable");
                if let Some(hub) = hub.upgrade() {
                    hub.metrics.dial_failures.inc();
                }
                // Subscribes that came in during the dial are refused with the rest.
                while let Ok(cmd) = commands.try_recv() {
                    topics.apply(cmd);
                }
                if !fail_waiting(&hub, &mut topics) {
                    return;
                }
            }
        }
        // Commands keep arriving while the node is away: a topic subscribed meanwhile
        // waits for the next dial, one left is simply forgotten.
        let until = Instant::now() + backoff;
        while let Ok(cmd) = tokio::time::timeout_at(until, commands.recv()).await {
            match cmd {
                Some(cmd) => topics.apply(cmd),
                None => return,
            }
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

async fn dial(settings: &HubSettings) -> Result<NodeSocket, String> {
    let config = WebSocketConfig::default()
        .max_message_size(Some(settings.max_frame_bytes))
        .max_frame_size(Some(settings.max_frame_bytes));
    let (url, tls) = settings.target.pick();
    let dial = tokio_tungstenite::connect_async_tls_with_config(
        url.as_str(),
        Some(config),
        false,
        Some(Connector::Rustls(tls)),
    );
    match tokio::time::timeout(settings.connect_timeout, dial).await {
        Ok(Ok((ws, _))) => Ok(ws),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {:?}", settings.connect_timeout)),
    }
}

/// Clients still waiting for their first `{}` are refused rather than left waiting out
/// the outage; topics nobody holds any more are dropped. False once the hub is gone.
fn fail_waiting(hub: &Weak<Hub>, topics: &mut Topics) -> bool {
    let Some(hub) = hub.upgrade() else {
        return false;
    };
    for topic in topics.by_id.values() {
        for sub in topic.fail_waiting() {
            hub.metrics.client_subscriptions.dec();
            sub.outbox.force(crate::websocket::outbox::Outgoing::Ended {
                key: sub.key.clone(),
                sub: sub.id,
                frame: event::refused(&sub.own.id, "cannot open the node's websocket"),
            });
        }
    }
    topics.by_id.retain(|_, topic| {
        let keep = !topic.is_empty();
        if !keep {
            hub.drop_topic(topic, |_, _| bytes::Bytes::new());
        }
        keep
    });
    true
}

fn subscribe_frame(method: &str, id: &str, query: &str) -> Message {
    let call = serde_json::json!({
        "jsonrpc": "2.0",
        "id": id,
        "method": method,
        "params": { "query": query },
    });
    Message::text(call.to_string())
}

async fn connected(
    mut ws: NodeSocket,
    hub: &Weak<Hub>,
    topics: &mut Topics,
    commands: &mut mpsc::UnboundedReceiver<Command>,
) -> Ended {
    let Some(metrics) = hub.upgrade().map(|h| h.metrics.clone()) else {
        return Ended::Exit;
    };
    metrics.node_connections.inc();
    let ended = 'conn: {
        for topic in topics.by_id.values() {
            let frame = subscribe_frame("subscribe", &topic.node_id, &topic.key);
            if send(&mut ws, frame).await.is_err() {
                break 'conn Ended::Lost;
            }
        }
        let mut ping = tokio::time::interval_at(Instant::now() + PING_EVERY, PING_EVERY);
        let mut last_heard = Instant::now();
        loop {
            tokio::select! {
                cmd = commands.recv() => {
                    let Some(cmd) = cmd else { break 'conn Ended::Exit };
                    if on_command(&mut ws, topics, cmd, &metrics).await.is_err() {
                        break 'conn Ended::Lost;
                    }
                }
                frame = ws.next() => {
                    last_heard = Instant::now();
                    match frame {
                        Some(Ok(msg @ Message::Text(_))) => {
                            let Some(hub) = hub.upgrade() else { break 'conn Ended::Exit };
                            if on_frame(&hub, topics, &msg.into_data(), last_heard).is_err() {
                                break 'conn Ended::Lost;
                            }
                        }
                        Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break 'conn Ended::Lost,
                        Some(Ok(_)) => {}
                    }
                }
                _ = ping.tick() => {
                    if last_heard.elapsed() > PING_EVERY * 3
                        || send(&mut ws, Message::Ping(Default::default())).await.is_err()
                    {
                        break 'conn Ended::Lost;
                    }
                }
            }
        }
    };
    metrics.node_connections.dec();
    metrics.node_subscriptions.dec_by(topics.live.len() as i64);
    topics.live.clear();
    for topic in topics.by_id.values() {
        topic.lost();
    }
    ended
}

async fn on_command(
    ws: &mut NodeSocket,
    topics: &mut Topics,
    cmd: Command,
    metrics: &crate::websocket::metrics::WsMetrics,
) -> Result<(), ()> {
    let frame = match cmd {
        Command::Subscribe(topic) => {
            let frame = subscribe_frame("subscribe", &topic.node_id, &topic.key);
            topics.by_id.insert(topic.node_id.clone(), topic);
            frame
        }
        Command::Unsubscribe(topic) => {
            topics.by_id.remove(&topic.node_id);
            if topics.live.remove(&topic.node_id) {
                metrics.node_subscriptions.dec();
            }
            let id = format!("{}/unsubscribe", topic.node_id);
            subscribe_frame("unsubscribe", &id, &topic.key)
        }
    };
    send(ws, frame).await
}

/// Routes one node frame; `Err` when the node ended a live subscription, which it does
/// when it shuts down ("CometBFT exited") or finds the gateway slow: the connection is
/// then taken as lost, so that it and its topics are dialled and subscribed again
/// while clients keep theirs.
fn on_frame(
    hub: &Arc<Hub>,
    topics: &mut Topics,
    frame: &bytes::Bytes,
    read_at: Instant,
) -> Result<(), ()> {
    match event::read(frame) {
        NodeFrame::Event { id, event } => {
            if let Some(topic) = topics.by_id.get(&id) {
                if topic.dispatch(&event, read_at, hub) {
                    hub.after_leaving(topic);
                }
            }
        }
        NodeFrame::Ack { id } => {
            if let Some(topic) = topics.by_id.get(&id) {
                topic.acked();
                if topics.live.insert(id) {
                    hub.metrics.node_subscriptions.inc();
                }
            }
        }
        NodeFrame::Error { id, data } if topics.live.contains(&id) => {
            tracing::warn!(error = %data, "the node ended a fan-out subscription: dialling again");
            return Err(());
        }
        NodeFrame::Error { id, data } => {
            let Some(topic) = topics.by_id.remove(&id) else {
                return Ok(());
            };
            tracing::warn!(query = %topic.key, error = %data, "the node refused a fan-out subscription");
            // Clients already answered `{}` (before a reconnect) see their subscription
            // end; those still waiting see their subscribe refused.
            hub.drop_topic(&topic, |sub, answered| {
                if answered {
                    event::cancelled(&sub.own.id, &data)
                } else {
                    event::refused(&sub.own.id, &data)
                }
            });
        }
        NodeFrame::Other => {}
    }
    Ok(())
}
