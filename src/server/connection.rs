//! Serving one admitted connection with hyper, for every listener alike: HTTP/1 with
//! upgrades, a header timeout, and an end on drain or on eviction.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::{service_fn, Service};
use hyper_util::rt::TokioTimer;

use super::listener::{Gate, Lease};
use super::pending::HeadWait;
use crate::reply::Chunks;

/// How hyper reads a connection's requests.
#[derive(Clone, Copy, Debug)]
pub struct Http {
    /// From accept (or the previous answer) to a whole request head.
    pub header_read_timeout: Duration,
    /// hyper's read buffer, which bounds a request head; `None` keeps hyper's default.
    pub max_buf_size: Option<usize>,
}

/// Serves `io` with `service` until the client leaves, the listener drains (the request
/// in flight is finished first) or the connection is evicted while still without a
/// request head. `lease` is held, and so counted, until then.
pub async fn serve_connection<G, I, S>(
    io: I,
    service: S,
    http: Http,
    lease: Lease<G>,
    peer: SocketAddr,
) where
    G: Gate,
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: Service<Request<Incoming>, Response = Response<Chunks>, Error = Infallible> + Send + 'static,
    S::Future: Send + 'static,
{
    let mut lease = lease;
    let head = HeadWait::new(lease.pending.take());
    let arrived = head.clone();
    let service = service_fn(move |req| {
        arrived.arrived();
        service.call(req)
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(http.header_read_timeout)
        .keep_alive(true);
    if let Some(bytes) = http.max_buf_size {
        builder.max_buf_size(bytes);
    }
    // Upgrades on every listener: one connection type, and a 101 only ever comes from
    // a service that answers one.
    let conn = builder.serve_connection(io, service).with_upgrades();
    let mut conn = std::pin::pin!(conn);
    let mut draining = std::pin::pin!(lease.draining());
    let mut evicted = std::pin::pin!(head.evicted());
    let mut drain_started = false;
    let result = loop {
        tokio::select! {
            r = conn.as_mut() => break r,
            _ = draining.as_mut(), if !drain_started => {
                drain_started = true;
                // hyper finishes the request in flight, if any, then closes; an idle
                // keep-alive connection closes at once.
                conn.as_mut().graceful_shutdown();
            }
            _ = evicted.as_mut() => break Ok(()),
        }
    };
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
    drop(lease);
}
