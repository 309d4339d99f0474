//! `/websocket` as a transport: the client's connection is upgraded here and relayed to
//! the node's own `/websocket`. What the node sends (answers, subscription events) goes
//! back untouched. What the client sends is handed, message by message, to a `Handler`
//! that says what to do with it; the gateway's handler counts subscriptions and serves
//! other calls through its pipeline. This module knows nothing of the gateway.

mod pump;

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

/// What to do with one client message.
pub(crate) enum Verdict {
    /// Send it to the node as it came.
    Forward,
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

/// What one relay runs under, fixed when it opens.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    /// The node's websocket, `ws://host:port/websocket`.
    pub node_url: String,
    pub connect_timeout: Duration,
    pub max_message_bytes: usize,
    pub ping_interval: Duration,
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
    let dial =
        tokio_tungstenite::connect_async_with_config(settings.node_url.as_str(), None, false);
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

/// `http://host:port/` -> `ws://host:port/websocket`.
pub(crate) fn node_url(upstream: &http::Uri) -> String {
    let authority = upstream
        .authority()
        .map_or("127.0.0.1:26657", |a| a.as_str());
    format!("ws://{authority}/websocket")
}

/// Answers the handshake with 101 and relays the upgraded connection to `node` in a
/// task of its own, counted in `relays` until it ends.
pub(crate) fn accept(
    req: &mut Request<Incoming>,
    key: &HeaderValue,
    node: NodeSocket,
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
            .max_message_size(Some(settings.max_message_bytes))
            .max_frame_size(Some(settings.max_message_bytes));
        let client =
            WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(frames))
                .await;
        pump::run(client, node, handler, &settings, closing).await;
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
