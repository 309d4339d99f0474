//! `/websocket`: the client's connection is upgraded here and relayed to the node's own
//! `/websocket`. What the node sends (answers, subscription events) goes back untouched.
//! What the client sends is read first: subscriptions are counted and capped, messages
//! are bounded in size and rate, and any other call is served through the same pipeline
//! as HTTP (admission, caps, cache, lanes) so the websocket is no way around them.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt, SinkExt, StreamExt};
use http::{header, HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::admission::{ClientKey, WsConnection};
use crate::error::Rejection;
use crate::gateway::Gateway;
use crate::jsonrpc::{batch_len, error_body, parse_body, Call, Envelope, Form, Params};
use crate::reply::{self, Chunks};

/// The relays open now. An upgraded connection leaves hyper (and the server's drain),
/// so shutdown closes relays through here: 1001 to both sides, then waits for them.
#[derive(Default)]
pub struct Relays {
    open: watch::Sender<usize>,
    closing: watch::Sender<bool>,
}

impl Relays {
    fn enter(self: &Arc<Self>) -> RelayGuard {
        self.open.send_modify(|n| *n += 1);
        RelayGuard(self.clone())
    }

    /// Tells every relay, and any opened from now on, to close.
    pub fn close_all(&self) {
        self.closing.send_replace(true);
    }

    /// Resolves once no relay is open.
    pub async fn closed(&self) {
        let _ = self.open.subscribe().wait_for(|n| *n == 0).await;
    }

    pub fn open(&self) -> usize {
        *self.open.borrow()
    }
}

async fn closing_time(closing: &mut watch::Receiver<bool>) {
    // An error means the gateway itself is gone: nothing to wait for then.
    let _ = closing.wait_for(|c| *c).await;
}

struct RelayGuard(Arc<Relays>);

impl Drop for RelayGuard {
    fn drop(&mut self) {
        self.0.open.send_modify(|n| *n -= 1);
    }
}

pub async fn relay(
    gw: Arc<Gateway>,
    mut req: Request<Incoming>,
    client: ClientKey,
) -> Response<Chunks> {
    let config = gw.config();
    if !config.websocket.enabled {
        return reply::plain(StatusCode::NOT_FOUND, "404 page not found\n");
    }
    let upgrade_requested = req
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    let Some(key) = req
        .headers()
        .get(header::SEC_WEBSOCKET_KEY)
        .filter(|_| upgrade_requested)
        .cloned()
    else {
        return reply::plain(StatusCode::BAD_REQUEST, "Bad Request\n");
    };
    let conn = match gw.admission().ws_connection(&client) {
        Ok(conn) => conn,
        Err(r) => {
            gw.metrics().rejected(r.reason());
            return reply::rejection(None, &r, Form::Uri);
        }
    };
    // Dial the node first, so a dead node fails the handshake instead of an open socket.
    let node_url = node_ws_url(gw.upstream_url());
    let ws_config = WebSocketConfig::default()
        .max_message_size(Some(config.websocket.max_message_bytes.as_usize()))
        .max_frame_size(Some(config.websocket.max_message_bytes.as_usize()));
    let dial = tokio_tungstenite::connect_async_with_config(node_url.as_str(), None, false);
    let node = match tokio::time::timeout(config.upstream.connect_timeout, dial).await {
        Ok(Ok((node, _))) => node,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "node websocket unreachable");
            let r = Rejection::UpstreamUnavailable("cannot open the node's websocket".into());
            return bad_gateway(&r);
        }
        Err(_) => return bad_gateway(&Rejection::UpstreamTimeout(config.upstream.connect_timeout)),
    };
    let upgrade = hyper::upgrade::on(&mut req);
    let ping_interval = config.websocket.ping_interval;
    let guard = gw.relays().enter();
    tokio::spawn(async move {
        let _open = guard;
        match upgrade.await {
            Ok(upgraded) => {
                let client_ws = WebSocketStream::from_raw_socket(
                    TokioIo::new(upgraded),
                    Role::Server,
                    Some(ws_config),
                )
                .await;
                pump(gw, client, client_ws, node, conn, ping_interval).await;
            }
            Err(e) => tracing::debug!(error = %e, "websocket upgrade failed"),
        }
    });
    let mut response = Response::new(Chunks::new());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(accept) = HeaderValue::from_str(&derive_accept_key(key.as_bytes())) {
        headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    }
    response
}

fn bad_gateway(r: &Rejection) -> Response<Chunks> {
    let mut response = reply::rejection(None, r, Form::Uri);
    *response.status_mut() = StatusCode::BAD_GATEWAY;
    response
}

/// `http://host:port/` -> `ws://host:port/websocket`.
fn node_ws_url(upstream: &http::Uri) -> String {
    let authority = upstream
        .authority()
        .map_or("127.0.0.1:26657", |a| a.as_str());
    format!("ws://{authority}/websocket")
}

/// What to do with one client message.
enum Verdict {
    /// Send it to the node as it came.
    Forward,
    /// Answer it here; the node never sees it.
    Answer(Bytes),
    /// Serve it through the pipeline, beside the relay.
    Serve(Call),
    /// A notification: neither run nor answered, as on the node.
    Ignore,
}

/// Calls one connection may have in the pipeline at once; past it the relay stops
/// reading the client (the node's events still flow) until one is answered.
const CALLS_IN_FLIGHT: usize = 16;

async fn pump<C, N>(
    gw: Arc<Gateway>,
    client: ClientKey,
    client_ws: WebSocketStream<C>,
    node: WebSocketStream<N>,
    mut conn: WsConnection,
    ping_interval: std::time::Duration,
) where
    C: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    N: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (mut client_tx, mut client_rx) = client_ws.split();
    let (mut node_tx, mut node_rx) = node.split();
    let mut closing = gw.relays().closing.subscribe();
    // A slow call (a heavy search queued behind its lane) must not hold up the node's
    // events, which the node stops sending to a client that falls behind.
    let mut calls = FuturesUnordered::new();
    // The node pings us and sees our pongs; a client that vanished without a close
    // (a dropped NAT mapping) is only found by pinging it, since nothing may ever be
    // written to it otherwise.
    let mut ping =
        tokio::time::interval_at(tokio::time::Instant::now() + ping_interval, ping_interval);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_heard = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = ping.tick() => {
                if last_heard.elapsed() >= ping_interval * 2 {
                    tracing::debug!("websocket client silent for two ping intervals: closing");
                    let frame = CloseFrame {
                        code: CloseCode::Away,
                        reason: "no answer to pings".into(),
                    };
                    let _ = client_tx.send(Message::Close(Some(frame))).await;
                    let _ = node_tx.send(Message::Close(None)).await;
                    break;
                }
                if client_tx.send(Message::Ping(Bytes::new())).await.is_err() {
                    let _ = node_tx.send(Message::Close(None)).await;
                    break;
                }
            }
            _ = closing_time(&mut closing) => {
                let frame = CloseFrame {
                    code: CloseCode::Away,
                    reason: "cometgate is shutting down".into(),
                };
                let _ = client_tx.send(Message::Close(Some(frame))).await;
                let _ = node_tx.send(Message::Close(None)).await;
                break;
            }
            Some(answer) = calls.next(), if !calls.is_empty() => {
                let Some(answer): Option<Bytes> = answer else { continue };
                let text = String::from_utf8_lossy(&answer).into_owned();
                if client_tx.send(Message::text(text)).await.is_err() {
                    let _ = node_tx.send(Message::Close(None)).await;
                    break;
                }
            }
            from_client = client_rx.next(), if calls.len() < CALLS_IN_FLIGHT => {
                if matches!(from_client, Some(Ok(_))) {
                    last_heard = tokio::time::Instant::now();
                }
                match from_client {
                Some(Ok(Message::Close(frame))) => {
                    let _ = node_tx.send(Message::Close(frame)).await;
                    break;
                }
                Some(Ok(msg @ (Message::Text(_) | Message::Binary(_)))) => {
                    match inspect(&gw, &mut conn, msg.clone().into_data()) {
                        Verdict::Serve(call) => {
                            let (gw, client) = (gw.clone(), client.clone());
                            calls.push(async move { gw.serve_ws_call(&client, call).await }.boxed());
                        }
                        Verdict::Forward => {
                            if node_tx.send(msg).await.is_err() {
                                break;
                            }
                        }
                        Verdict::Ignore => {}
                        Verdict::Answer(answer) => {
                            let text = String::from_utf8_lossy(&answer).into_owned();
                            if client_tx.send(Message::text(text)).await.is_err() {
                                break;
                            }
                        }
                    }
                }
                // Pings are answered by the websocket layer itself.
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "client websocket error");
                    if matches!(e, tokio_tungstenite::tungstenite::Error::Capacity(_)) {
                        // Tell the client which cap it hit rather than just hanging up.
                        let reason = format!(
                            "message over websocket.max_message_bytes ({} bytes)",
                            conn.max_message_bytes()
                        );
                        let frame = CloseFrame { code: CloseCode::Size, reason: reason.into() };
                        let _ = client_tx.send(Message::Close(Some(frame))).await;
                    }
                    let _ = node_tx.send(Message::Close(None)).await;
                    break;
                }
                None => {
                    let _ = node_tx.send(Message::Close(None)).await;
                    break;
                }
                }
            }
            from_node = node_rx.next() => match from_node {
                Some(Ok(Message::Close(frame))) => {
                    let _ = client_tx.send(Message::Close(frame)).await;
                    break;
                }
                Some(Ok(msg @ (Message::Text(_) | Message::Binary(_)))) => {
                    if client_tx.send(msg).await.is_err() {
                        let _ = node_tx.send(Message::Close(None)).await;
                        break;
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => {
                    let _ = client_tx.send(Message::Close(None)).await;
                    break;
                }
            },
        }
    }
}

fn inspect(gw: &Arc<Gateway>, conn: &mut WsConnection, data: Bytes) -> Verdict {
    let refuse = |id: Option<&crate::jsonrpc::Id>, r: &Rejection| {
        let w = r.to_wire(Form::JsonRpc);
        Verdict::Answer(error_body(id, w.code, w.message, &w.data))
    };
    if let Err(r) = conn.check_message(data.len()) {
        gw.metrics().rejected(r.reason());
        return refuse(None, &r);
    }
    // The node's websocket takes one call per message: no batches (refused before
    // their calls are built).
    if batch_len(&data).is_some() {
        return refuse(
            None,
            &Rejection::InvalidRequest("batches are not supported over websocket".into()),
        );
    }
    let call = match parse_body(&data) {
        Ok(Envelope::Single(call)) => call,
        Ok(Envelope::Batch(_)) => {
            return refuse(
                None,
                &Rejection::InvalidRequest("batches are not supported over websocket".into()),
            )
        }
        Err(e) => return refuse(None, &Rejection::Parse(e.0)),
    };
    // Subscriptions are relayed rather than served, so their policy is checked here:
    // a method the operator denied is denied over the websocket too.
    if let Some(spec) = crate::methods::lookup(&call.method).filter(|s| s.websocket_only) {
        if !gw.admission().policy(spec).allowed {
            let r = Rejection::MethodDenied(spec.name.to_owned());
            gw.metrics().rejected(r.reason());
            return refuse(call.id.as_ref(), &r);
        }
    }
    let subscription = matches!(
        call.method.as_str(),
        "subscribe" | "unsubscribe" | "unsubscribe_all"
    );
    if subscription && call.id.is_none() {
        // The node neither runs nor answers a notification; nothing to count either.
        return Verdict::Ignore;
    }
    match (call.method.as_str(), query_of(&call.params)) {
        ("subscribe", Some(query)) => match conn.add_subscription(query) {
            Ok(()) => Verdict::Forward,
            Err(r) => refuse(call.id.as_ref(), &r),
        },
        ("unsubscribe", Some(query)) => {
            conn.remove_subscription(query);
            Verdict::Forward
        }
        ("unsubscribe_all", _) => {
            conn.clear_subscriptions();
            Verdict::Forward
        }
        // Without a query the node answers with an error: nothing to count.
        ("subscribe" | "unsubscribe", None) => Verdict::Forward,
        _ if call.id.is_none() => Verdict::Ignore,
        _ => Verdict::Serve(call),
    }
}

/// The `query` of a subscription call, by name or first position.
fn query_of(params: &Params) -> Option<&str> {
    match params {
        Params::Named(map) => map.get("query").and_then(|q| q.as_str()),
        Params::Positional(items) => items.first().and_then(|q| q.as_str()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_node_websocket_is_beside_its_rpc_url() {
        let uri: http::Uri = "http://10.0.0.5:26657/".parse().unwrap();
        assert_eq!(node_ws_url(&uri), "ws://10.0.0.5:26657/websocket");
    }
}
