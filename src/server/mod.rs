//! The proxy's listener: the connection caps of `[server]`, the header, body and write
//! timeouts that keep slow and greedy clients from pinning resources, request-smuggling
//! refusal, and a graceful drain. The accept loop itself is [`Listener`], which the ops
//! port shares.
//!
//! `run` binds nothing itself: the caller hands it a listener (tests bind port 0) and a
//! shutdown future (the binary wires SIGTERM/SIGINT to it).
//!
//! The drain is made here rather than with hyper-util's `GracefulShutdown`: that one
//! watches only connections implementing its sealed `GracefulConnection`, which in
//! hyper-util 0.1.21 excludes `http1::UpgradeableConnection`, and `/websocket` needs
//! `with_upgrades()`. Its one alternative, the `auto` builder, would also speak HTTP/2
//! to any client that asks. The drain here works the same way: a watch channel every
//! connection holds, closed once the last one has gone.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::admission::ClientPermit;
use crate::config::ServerConfig;
use crate::gateway::Gateway;

mod connection;
mod framing;
mod listener;
mod pending;
mod write_timeout;

pub use connection::{serve_connection, Http};
use framing::{Framing, HeadScan};
pub(crate) use listener::{Admitted, Draining, Gate, Listener, Policy};
pub(crate) use write_timeout::WriteTimeout;

/// Serves `listener` until `shutdown` completes, then stops accepting and lets the
/// requests in flight finish for up to `server.shutdown_grace`.
pub async fn run(listener: TcpListener, gateway: Arc<Gateway>, shutdown: impl Future<Output = ()>) {
    let policy = policy(&gateway.config().server);
    let gw = gateway.clone();
    let draining = Listener::new(listener, policy, gateway.clone())
        .serve_until(shutdown, move |admitted| {
            proxy_connection(gw.clone(), admitted)
        })
        .await;
    drain(&gateway, draining).await;
}

/// `[server]`'s caps; they are read once, at startup.
pub fn policy(server: &ServerConfig) -> Policy {
    Policy {
        max_connections: server.max_connections,
        per_client: true,
        max_pending: Some(server.max_pending_connections),
    }
}

/// The per-address cap is admission's, read at each accept so that a reload applies;
/// counts go to the gateway's metrics.
impl Gate for Gateway {
    type Slot = ClientPermit;

    fn client_slot(&self, peer: IpAddr) -> Option<ClientPermit> {
        let max = self.config().server.max_connections_per_client;
        self.admission().connection_slot(peer, max)
    }

    fn refused(&self, reason: &'static str) {
        self.metrics().connection_refused(reason);
    }

    fn opened(&self) {
        self.metrics().connection_opened();
    }

    fn closed(&self) {
        self.metrics().connection_closed();
    }
}

/// One proxy connection: the raw bytes are scanned for conflicting framing on the way
/// in, and writes that stall fail after `server.write_timeout`.
async fn proxy_connection(gw: Arc<Gateway>, admitted: Admitted<Gateway>) {
    let Admitted {
        stream,
        peer,
        lease,
    } = admitted;
    let config = gw.config();
    let settings = &config.server;
    let head_bytes = settings.max_header_bytes.as_usize().max(8192);
    let framing = Arc::new(Mutex::new(Framing::default()));
    let io = TokioIo::new(HeadScan::new(
        WriteTimeout::new(stream, settings.write_timeout),
        framing.clone(),
        head_bytes,
    ));
    let http = Http {
        header_read_timeout: settings.header_read_timeout,
        max_buf_size: Some(head_bytes),
    };
    drop(config);
    let service = service_fn(move |req| {
        let conflicting = framing.lock().map(|mut f| f.next()).unwrap_or(false);
        let gw = gw.clone();
        let framing = framing.clone();
        async move {
            if conflicting {
                return Ok::<_, std::convert::Infallible>(refuse_conflicting_framing(&gw));
            }
            let response = gw.handle(req, peer).await;
            if response.status() == http::StatusCode::SWITCHING_PROTOCOLS {
                if let Ok(mut f) = framing.lock() {
                    f.upgraded();
                }
            }
            Ok(response)
        }
    });
    serve_connection(io, service, http, lease, peer).await;
}

/// Waits for the connections `draining` was told to close, and for the websocket
/// relays, which left hyper at their upgrade, for up to `server.shutdown_grace`.
async fn drain(gateway: &Gateway, draining: Draining) {
    let grace = gateway.config().server.shutdown_grace;
    tracing::info!(grace = ?grace, "shutting down: draining connections");
    gateway.relays().close_all();
    let drained = async {
        draining.finished().await;
        gateway.relays().closed().await;
    };
    tokio::select! {
        _ = drained => tracing::info!("all connections drained"),
        _ = tokio::time::sleep(grace) => tracing::warn!("grace period over: closing remaining connections"),
    }
}

/// 400 for a request carrying both Content-Length and Transfer-Encoding (request
/// smuggling). hyper would read it as chunked and close; the gateway refuses it outright.
fn refuse_conflicting_framing(gw: &Gateway) -> http::Response<crate::reply::Chunks> {
    gw.refusal(
        &crate::error::Rejection::ConflictingFraming,
        crate::jsonrpc::Form::JsonRpc,
    )
}

/// The address a listener really bound (port 0 resolved), for logs and tests.
pub fn local_addr(listener: &TcpListener) -> SocketAddr {
    listener
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
}
