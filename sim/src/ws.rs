//! `/websocket`: JSON-RPC over websocket, with subscribe / unsubscribe / unsubscribe_all and
//! `NewBlock` / `Tx` events delivered as CometBFT does (answers carrying the subscribe id).

use std::sync::Arc;

use futures_util::{SinkExt, StreamExt};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::blockgen;
use crate::call::{self, CallCtx};
use crate::chain::{hex_upper, sha256};
use crate::listener::until_dead;
use crate::node::Node;
use crate::query::{self, EventMap, Query, MAX_QUERY_LENGTH};
use crate::response::{respond, Body};
use crate::routes;
use crate::wire::{self, Answer, RpcError, RpcId, RpcResponse};

/// CometBFT's default `max_subscriptions_per_client`.
const MAX_SUBSCRIPTIONS: usize = 5;

pub(crate) fn upgrade(
    node: Arc<Node>,
    mut req: Request<Incoming>,
    dead: watch::Receiver<bool>,
) -> Response<Body> {
    let headers = req.headers();
    let has_token = |name: &str, token: &str| {
        headers.get_all(name).iter().any(|v| {
            v.to_str()
                .is_ok_and(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        })
    };
    let key = headers.get("sec-websocket-key").cloned();
    let (true, true, Some(key)) = (
        has_token("connection", "upgrade"),
        has_token("upgrade", "websocket"),
        key,
    ) else {
        return respond(
            StatusCode::BAD_REQUEST,
            Some("text/plain; charset=utf-8"),
            b"Bad Request\n".to_vec(),
        );
    };
    let accept = derive_accept_key(key.as_bytes());
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let Ok(upgraded) = on_upgrade.await else {
            return;
        };
        let ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
        until_dead(dead, session(node, ws)).await;
    });
    let mut resp = respond(StatusCode::SWITCHING_PROTOCOLS, None, Vec::new());
    let h = resp.headers_mut();
    h.insert(
        "Connection",
        hyper::header::HeaderValue::from_static("Upgrade"),
    );
    h.insert(
        "Upgrade",
        hyper::header::HeaderValue::from_static("websocket"),
    );
    if let Ok(v) = hyper::header::HeaderValue::from_str(&accept) {
        h.insert("Sec-WebSocket-Accept", v);
    }
    resp
}

struct Subscription {
    text: String,
    query: Query,
    id: RpcId,
}

/// One connection's subscriptions, mirrored in the node's gauges so that
/// `/_simnode/stats` shows what the node holds now. Dropped when the session ends
/// however it ends (closed, failed, the node killed), taking its share off the gauges.
struct Subs {
    node: Arc<Node>,
    list: Vec<Subscription>,
}

impl Subs {
    fn open(node: &Arc<Node>) -> Subs {
        node.ws.connected();
        Subs {
            node: node.clone(),
            list: Vec::new(),
        }
    }

    fn push(&mut self, sub: Subscription) {
        self.node.ws.subscribed(&sub.text);
        self.list.push(sub);
    }

    /// Drops the subscriptions `keep` refuses; returns how many went.
    fn remove_where(&mut self, keep: impl Fn(&Subscription) -> bool) -> usize {
        let before = self.list.len();
        let node = &self.node;
        self.list.retain(|s| {
            let kept = keep(s);
            if !kept {
                node.ws.unsubscribed(&s.text);
            }
            kept
        });
        before - self.list.len()
    }
}

impl Drop for Subs {
    fn drop(&mut self) {
        self.remove_where(|_| false);
        self.node.ws.disconnected();
    }
}

async fn session<S>(node: Arc<Node>, mut ws: WebSocketStream<S>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut blocks = node.chain.subscribe();
    let mut subs = Subs::open(&node);
    loop {
        tokio::select! {
            msg = ws.next() => {
                let text = match msg {
                    Some(Ok(Message::Text(t))) => t.to_string(),
                    Some(Ok(Message::Binary(b))) => String::from_utf8_lossy(&b).into_owned(),
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                    Some(Ok(_)) => continue,
                };
                if let Some(answer) = handle_text(&node, &mut subs, &text).await {
                    if ws.send(Message::text(answer)).await.is_err() {
                        return;
                    }
                }
            }
            block = blocks.recv() => {
                let height = match block {
                    Ok(b) => b.height,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(_) => return,
                };
                if subs.list.is_empty() {
                    continue;
                }
                for ev in events_at(&node, height) {
                    for s in subs.list.iter().filter(|s| s.query.matches(&ev.events)) {
                        let result = json!({"query": s.text, "data": ev.data, "events": ev.events});
                        let bytes = RpcResponse::ok(s.id.clone(), result).encode(true);
                        if ws.send(Message::text(String::from_utf8_lossy(&bytes).into_owned())).await.is_err() {
                            return;
                        }
                    }
                }
            }
        }
    }
}

/// Answers one incoming text frame; `None` for notifications.
async fn handle_text(node: &Arc<Node>, subs: &mut Subs, text: &str) -> Option<String> {
    let parsed = serde_json::from_str::<Value>(text)
        .map_err(|e| wire::go_syntax_error(text.as_bytes(), &e))
        .and_then(wire::parse_request);
    let req = match parsed {
        Ok(r) => r,
        Err(e) => {
            node.count_only("(parse_error)", "(parse_error)");
            let r = RpcResponse::err(
                None,
                RpcError::parse(format!("error unmarshaling request: {e}")),
            );
            return Some(lossy(r.encode(true)));
        }
    };
    let id = req.id?;
    let Some(route) = routes::lookup(&req.method) else {
        node.count_only(&req.method, &format!("{}(?)", req.method));
        return Some(lossy(
            RpcResponse::err(Some(id), RpcError::method_not_found()).encode(true),
        ));
    };
    let decoded = route.decode_json(req.params.as_ref());
    if route.ws_only {
        let key = decoded
            .as_ref()
            .map_or(format!("{}(<invalid params>)", route.name), |a| {
                route.request_key(a)
            });
        node.count_only(route.name, &key);
        let outcome = match decoded {
            Err(e) => Err(RpcError::invalid_params(format!(
                "error converting json params to arguments: {e}"
            ))),
            Ok(args) => subscription_call(subs, route.name, args.str(0), &id)
                .map(Answer::Tree)
                .map_err(RpcError::internal),
        };
        return Some(lossy(
            RpcResponse {
                id: Some(id),
                outcome,
            }
            .encode(true),
        ));
    }
    let fault = node.fault_for(std::iter::once(route.name));
    let ctx = CallCtx::new(&fault, false, true);
    let element = call::run(node, id, route, decoded, &ctx).await?;
    Some(lossy(element.bytes))
}

fn lossy(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

fn subscription_call(
    subs: &mut Subs,
    method: &str,
    text: &str,
    id: &RpcId,
) -> Result<Value, String> {
    match method {
        "subscribe" => {
            if subs.list.len() >= MAX_SUBSCRIPTIONS {
                return Err(format!(
                    "max_subscriptions_per_client {MAX_SUBSCRIPTIONS} reached"
                ));
            }
            if text.len() > MAX_QUERY_LENGTH {
                return Err("maximum query length exceeded".to_string());
            }
            let q = query::parse(text).map_err(|e| format!("failed to parse query: {e}"))?;
            if subs.list.iter().any(|s| s.text == text) {
                return Err("already subscribed".to_string());
            }
            subs.push(Subscription {
                text: text.to_string(),
                query: q,
                id: id.clone(),
            });
        }
        "unsubscribe" => {
            if subs.remove_where(|s| s.text != text) == 0 {
                return Err("subscription not found".to_string());
            }
        }
        _ => {
            if subs.remove_where(|_| false) == 0 {
                return Err("subscription not found".to_string());
            }
        }
    }
    Ok(json!({}))
}

struct Event {
    data: Value,
    events: EventMap,
}

/// The NewBlock event of `height`, then one Tx event per transaction.
fn events_at(node: &Node, height: u64) -> Vec<Event> {
    let chain = &node.chain;
    let mut out = Vec::new();
    let mut nb = EventMap::new();
    nb.insert("tm.event".into(), vec!["NewBlock".into()]);
    out.push(Event {
        data: json!({"type": "tendermint/event/NewBlock", "value": {
            "block": blockgen::block(chain, height),
            "block_id": blockgen::block_id(chain, height),
            "result_finalize_block": {
                "app_hash": blockgen::b64(&blockgen::app_hash_bytes(chain, height)),
                "validator_updates": [],
            },
        }}),
        events: nb,
    });
    for (i, tx) in chain.txs(height).iter().enumerate() {
        let tx_events = blockgen::tx_events(chain, height, i, tx);
        let mut m = EventMap::new();
        for ev in &tx_events {
            let ty = ev["type"].as_str().unwrap_or_default();
            for a in ev["attributes"].as_array().into_iter().flatten() {
                let key = format!("{ty}.{}", a["key"].as_str().unwrap_or_default());
                m.entry(key)
                    .or_default()
                    .push(a["value"].as_str().unwrap_or_default().to_string());
            }
        }
        m.insert("tm.event".into(), vec!["Tx".into()]);
        m.insert("tx.hash".into(), vec![hex_upper(&sha256(tx))]);
        m.insert("tx.height".into(), vec![height.to_string()]);
        out.push(Event {
            data: json!({"type": "tendermint/event/Tx", "value": {"TxResult": {
                "height": height.to_string(),
                "index": i,
                "tx": blockgen::b64(tx),
                "result": {"events": tx_events},
            }}}),
            events: m,
        });
    }
    out
}
