//! Accepting connections: the connection caps, the header, body and write timeouts that
//! keep slow and greedy clients from pinning resources, and a graceful drain.
//!
//! `run` binds nothing itself: the caller hands it a listener (tests bind port 0) and a
//! shutdown future (the binary wires SIGTERM/SIGINT to it).

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::time::Sleep;

use crate::gateway::Gateway;

/// Serves `listener` until `shutdown` completes, then stops accepting and lets the
/// requests in flight finish for up to `server.shutdown_grace`.
pub async fn run(listener: TcpListener, gateway: Arc<Gateway>, shutdown: impl Future<Output = ()>) {
    let settings = gateway.config().server.clone();
    let connections = Arc::new(Semaphore::new(settings.max_connections));
    let pending = Arc::new(Semaphore::new(settings.max_pending_connections));
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
        let Ok(pending_permit) = pending.clone().try_acquire_owned() else {
            gateway
                .metrics()
                .connection_refused("max_pending_connections");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let cfg = gateway.config().server.clone();
        let io = TokioIo::new(WriteTimeout::new(stream, cfg.write_timeout));
        // The connection stops counting as pending once it has sent a whole request head.
        let pending_slot = Arc::new(Mutex::new(Some(pending_permit)));
        let gw = gateway.clone();
        let service = service_fn(move |req| {
            if let Ok(mut slot) = pending_slot.lock() {
                slot.take();
            }
            let gw = gw.clone();
            async move { Ok::<_, std::convert::Infallible>(gw.handle(req, peer).await) }
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
            gw.metrics().connection_opened();
            let mut conn = std::pin::pin!(conn);
            let draining = async move {
                let _ = drain.wait_for(|d| *d).await;
            };
            let result = tokio::select! {
                r = conn.as_mut() => r,
                _ = draining => {
                    // Finish the request in flight (if any), then close.
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
            gw.metrics().connection_closed();
        });
    }

    drop(listener);
    let grace = gateway.config().server.shutdown_grace;
    tracing::info!(grace = ?grace, "shutting down: draining connections");
    let _ = drain_tx.send(true);
    // Every open connection holds a permit: holding them all means all have closed.
    let all = u32::try_from(settings.max_connections).unwrap_or(u32::MAX);
    tokio::select! {
        _ = connections.acquire_many(all) => tracing::info!("all connections drained"),
        _ = tokio::time::sleep(grace) => tracing::warn!("grace period over: closing remaining connections"),
    }
}

/// Fails a write that has made no progress for `limit`, so a client that stops reading
/// a multi-MB answer cannot hold its connection and buffers forever.
pub struct WriteTimeout {
    inner: TcpStream,
    limit: Duration,
    stalled: Option<Pin<Box<Sleep>>>,
}

impl WriteTimeout {
    pub fn new(inner: TcpStream, limit: Duration) -> WriteTimeout {
        WriteTimeout {
            inner,
            limit,
            stalled: None,
        }
    }

    fn poll_stall(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Error> {
        let limit = self.limit;
        let sleep = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        ready!(sleep.as_mut().poll(cx));
        Poll::Ready(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "write timed out",
        ))
    }

    fn progress<T>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<std::io::Result<T>>,
    ) -> Poll<std::io::Result<T>> {
        match polled {
            Poll::Ready(r) => {
                self.stalled = None;
                Poll::Ready(r)
            }
            Poll::Pending => match self.poll_stall(cx) {
                Poll::Ready(e) => Poll::Ready(Err(e)),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

impl AsyncRead for WriteTimeout {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for WriteTimeout {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.progress(cx, polled)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.progress(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_flush(cx);
        self.progress(cx, polled)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The address a listener really bound (port 0 resolved), for logs and tests.
pub fn local_addr(listener: &TcpListener) -> SocketAddr {
    listener
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
}
