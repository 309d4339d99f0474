//! `/websocket` as a transport. What the client sends is handed, message by message, to
//! a `Handler` that says what to do with it (the gateway's serves calls through its
//! pipeline); subscriptions then go one of two ways:
//!
//! - **fanout** (`session`, `hub`): the gateway holds one node subscription per distinct
//!   query and delivers each event, read once, to every client subscribed to it;
//! - **relay** (`pump`): the client's connection is relayed to a node websocket of its
//!   own, and what the node sends goes back untouched.
//!
//! This module knows nothing of the gateway.

mod frame;
mod hub;
mod metrics;
mod outbox;
mod pump;
pub(crate) mod query;
mod session;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use http::{header, HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::error::Rejection;
use crate::reply::Chunks;

pub(crate) use hub::{Hub, HubSettings, NodeTarget};
pub(crate) use metrics::WsMetrics;

/// Calls one connection may have in the pipeline at once; past it the connection stops
/// reading the client (events still flow) until one is answered.
const CALLS_IN_FLIGHT: usize = 16;

/// A subscription call, with the `query` it names.
pub(crate) enum SubscriptionCall {
    Subscribe(String),
    Unsubscribe(String),
    UnsubscribeAll,
}

/// What to do with one client message.
pub(crate) enum Verdict {
    /// Send it to the node as it came (relay only).
    Forward,
    /// A subscription call with its raw id: held by the hub (fanout) or sent to the
    /// node as it came (relay).
    Subscription { id: Bytes, call: SubscriptionCall },
    /// Answer it here; the node never sees it.
    Answer(Bytes),
    /// Answer it with what this resolves to, beside the relay (`None`: nothing to send).
    Serve(BoxFuture<'static, Option<Bytes>>),
    /// A notification: neither run nor answered, as on the node.
    Ignore,
}

/// Decides what each client message of one connection becomes.
pub(crate) trait Handler: Send + 'static {
    fn on_message(&mut self, data: Bytes) -> Verdict;
}

/// What one connection runs under, fixed when it opens.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    /// The node's websocket, `ws://host:port/websocket` (relay).
    pub node_url: String,
    pub connect_timeout: Duration,
    pub max_message_bytes: usize,
    pub ping_interval: Duration,
    /// Fanout: the client's outbox bounds, and its subscription caps.
    pub client_buffer_messages: usize,
    pub client_buffer_bytes: usize,
    pub max_subscriptions: usize,
    pub max_query_bytes: usize,
    /// For a node reached over `wss://` (relay).
    pub tls: Arc<rustls::ClientConfig>,
}

/// Resolves when shutdown starts. The watch's guard is not `Send`, so it is dropped
/// here rather than held across the shutdown step's writes.
async fn closing_time(closing: &mut watch::Receiver<bool>) {
    // An error means the gateway itself is gone: close then too.
    let _ = closing.wait_for(|c| *c).await;
}

pub(crate) type NodeSocket = WebSocketStream<MaybeTlsStream<TcpStream>>;

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
    pub(crate) fn close_all(&self) {
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

struct RelayGuard(Arc<Relays>);

impl Drop for RelayGuard {
    fn drop(&mut self) {
        self.0.open.send_modify(|n| *n -= 1);
    }
}

/// The client's `Sec-WebSocket-Key`, if the request really asks for a websocket.
pub(crate) fn handshake_key(req: &Request<Incoming>) -> Option<HeaderValue> {
    let upgrade_requested = req
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    req.headers()
        .get(header::SEC_WEBSOCKET_KEY)
        .filter(|_| upgrade_requested)
        .cloned()
}

/// Opens the node's side first, so a dead node fails the handshake instead of leaving
/// the client an open socket to nowhere.
pub(crate) async fn dial(settings: &Settings) -> Result<NodeSocket, Rejection> {
    let dial = tokio_tungstenite::connect_async_tls_with_config(
        settings.node_url.as_str(),
        None,
        false,
        Some(tokio_tungstenite::Connector::Rustls(settings.tls.clone())),
    );
    match tokio::time::timeout(settings.connect_timeout, dial).await {
        Ok(Ok((node, _))) => Ok(node),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "node websocket unreachable");
            Err(Rejection::UpstreamUnavailable(
                "cannot open the node's websocket".into(),
            ))
        }
        Err(_) => Err(Rejection::UpstreamTimeout(settings.connect_timeout)),
    }
}

/// `http://host:port/` -> `ws://host:port/websocket` (`https` -> `wss`).
pub(crate) fn node_url(upstream: &http::Uri) -> String {
    let scheme = match upstream.scheme_str() {
        Some("https") => "wss",
        _ => "ws",
    };
    let authority = upstream
        .authority()
        .map_or("127.0.0.1:26657", |a| a.as_str());
    format!("{scheme}://{authority}/websocket")
}

/// Where an accepted connection's subscriptions go.
pub(crate) enum Upstream {
    Relay(Box<NodeSocket>),
    Fanout(Arc<Hub>),
}

/// Client frames are small calls: a read buffer of the library's default 128 KiB,
/// which it zero-fills, would be most of what each of 10,000 connections costs.
const CLIENT_READ_BUFFER: usize = 4 * 1024;

/// Answers the handshake with 101 and serves the upgraded connection in a task of its
/// own, counted in `relays` until it ends.
pub(crate) fn accept(
    req: &mut Request<Incoming>,
    key: &HeaderValue,
    upstream: Upstream,
    settings: Settings,
    relays: &Arc<Relays>,
    handler: impl Handler,
) -> Response<Chunks> {
    let upgrade = hyper::upgrade::on(req);
    let guard = relays.enter();
    let closing = relays.closing.subscribe();
    tokio::spawn(async move {
        let _open = guard;
        let upgraded = match upgrade.await {
            Ok(upgraded) => upgraded,
            Err(e) => return tracing::debug!(error = %e, "websocket upgrade failed"),
        };
        let frames = WebSocketConfig::default()
            .read_buffer_size(CLIENT_READ_BUFFER)
            .max_message_size(Some(settings.max_message_bytes))
            .max_frame_size(Some(settings.max_message_bytes));
        let client =
            WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(frames))
                .await;
        match upstream {
            Upstream::Relay(node) => pump::run(client, *node, handler, &settings, closing).await,
            Upstream::Fanout(hub) => session::run(client, hub, handler, settings, closing).await,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_node_websocket_is_beside_its_rpc_url() {
        let uri: http::Uri = "http://10.0.0.5:26657/".parse().unwrap();
        assert_eq!(node_url(&uri), "ws://10.0.0.5:26657/websocket");
    }
}
