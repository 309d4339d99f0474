//! Accepting connections: the connection caps, the header, body and write timeouts that
//! keep slow and greedy clients from pinning resources, and a graceful drain.
//!
//! `run` binds nothing itself: the caller hands it a listener (tests bind port 0) and a
//! shutdown future (the binary wires SIGTERM/SIGINT to it).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};

use crate::gateway::Gateway;

mod framing;
mod pending;
mod write_timeout;

use framing::{Framing, HeadScan};
use pending::PendingQueue;
pub use write_timeout::WriteTimeout;

/// Serves `listener` until `shutdown` completes, then stops accepting and lets the
/// requests in flight finish for up to `server.shutdown_grace`.
pub async fn run(listener: TcpListener, gateway: Arc<Gateway>, shutdown: impl Future<Output = ()>) {
    let settings = gateway.config().server.clone();
    let connections = Arc::new(Semaphore::new(settings.max_connections));
    let pending = Arc::new(PendingQueue::new(settings.max_pending_connections));
    // Connections watch this to finish their current request and close.
    let (drain_tx, drain_rx) = watch::channel(false);
    tokio::pin!(shutdown);

    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning on the error.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(conn_permit) = connections.clone().try_acquire_owned() else {
            gateway.metrics().connection_refused("max_connections");
            continue; // dropping the stream closes it
        };
        // One host may not hold every slot: past its own cap it is refused before any
        // read, while other clients still find room.
        let per_client = gateway.config().server.max_connections_per_client;
        let Some(client_conn) = gateway.admission().connection_slot(peer.ip(), per_client) else {
            gateway
                .metrics()
                .connection_refused("max_connections_per_client");
            continue;
        };
        // A full set of half-open connections makes room by closing the one that has
        // waited longest for its head: a slowloris client cannot lock out a real one,
        // which sends its head within milliseconds of connecting.
        let (ticket, evicted) = pending.admit();
        if evicted {
            gateway
                .metrics()
                .connection_refused("max_pending_connections");
        }
        let _ = stream.set_nodelay(true);
        let cfg = gateway.config().server.clone();
        let framing = Arc::new(Mutex::new(Framing::default()));
        let io = TokioIo::new(HeadScan::new(
            WriteTimeout::new(stream, cfg.write_timeout),
            framing.clone(),
            cfg.max_header_bytes.as_usize().max(8192),
        ));
        // The connection stops counting as pending once it has sent a whole request head.
        let evict = ticket.evict.clone();
        let pending_slot = Arc::new(Mutex::new(Some(ticket)));
        let still_pending = pending_slot.clone();
        let gw = gateway.clone();
        let service = service_fn(move |req| {
            if let Ok(mut slot) = pending_slot.lock() {
                slot.take();
            }
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
                Ok::<_, std::convert::Infallible>(response)
            }
        });
        let conn = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(cfg.header_read_timeout)
            .max_buf_size(cfg.max_header_bytes.as_usize().max(8192))
            .keep_alive(true)
            .serve_connection(io, service)
            .with_upgrades();
        let gw = gateway.clone();
        let mut drain = drain_rx.clone();
        tokio::spawn(async move {
            let _conn_permit: OwnedSemaphorePermit = conn_permit;
            let _client_conn = client_conn;
            let _open = OpenConnection::count(gw.clone());
            let mut conn = std::pin::pin!(conn);
            let draining = async move {
                let _ = drain.wait_for(|d| *d).await;
            };
            let mut draining = std::pin::pin!(draining);
            let (mut drain_started, mut evict_seen) = (false, false);
            let result = loop {
                tokio::select! {
                    r = conn.as_mut() => break r,
                    _ = draining.as_mut(), if !drain_started => {
                        // Finish the request in flight (if any), then close.
                        drain_started = true;
                        conn.as_mut().graceful_shutdown();
                    }
                    _ = evict.notified(), if !evict_seen => {
                        evict_seen = true;
                        // Evicted while still without a head: close. A head that arrived
                        // in the meantime wins; the request is served.
                        if still_pending.lock().map(|s| s.is_some()).unwrap_or(false) {
                            break Ok(());
                        }
                    }
                }
            };
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }

    drop(listener);
    let grace = gateway.config().server.shutdown_grace;
    tracing::info!(grace = ?grace, "shutting down: draining connections");
    let _ = drain_tx.send(true);
    // Every open connection holds a permit: holding them all means all have closed.
    let all = u32::try_from(settings.max_connections).unwrap_or(u32::MAX);
    // Upgraded connections have left hyper: their relays are told to close apart.
    gateway.relays().close_all();
    let drained = async {
        let _ = connections.acquire_many(all).await;
        gateway.relays().closed().await;
    };
    tokio::select! {
        _ = drained => tracing::info!("all connections drained"),
        _ = tokio::time::sleep(grace) => tracing::warn!("grace period over: closing remaining connections"),
    }
}

/// Counts a connection open for as long as its task lives, however the task ends.
struct OpenConnection(Arc<Gateway>);

impl OpenConnection {
    fn count(gw: Arc<Gateway>) -> OpenConnection {
        gw.metrics().connection_opened();
        OpenConnection(gw)
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.metrics().connection_closed();
    }
}

/// 400 for a request carrying both Content-Length and Transfer-Encoding (request
/// smuggling). hyper would read it as chunked and close; the gateway refuses it outright.
fn refuse_conflicting_framing(gw: &Gateway) -> http::Response<crate::reply::Chunks> {
    let r = crate::error::Rejection::InvalidRequest(
        "request has both Content-Length and Transfer-Encoding".into(),
    );
    gw.metrics().rejected(r.reason());
    let mut response = crate::reply::rejection(None, &r, crate::jsonrpc::Form::JsonRpc);
    *response.status_mut() = http::StatusCode::BAD_REQUEST;
    response.headers_mut().insert(
        http::header::CONNECTION,
        http::HeaderValue::from_static("close"),
    );
    response
}

/// The address a listener really bound (port 0 resolved), for logs and tests.
pub fn local_addr(listener: &TcpListener) -> SocketAddr {
    listener
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
}
