//! Accepting connections: the connection caps, the header, body and write timeouts that
//! keep slow and greedy clients from pinning resources, and a graceful drain.
//!
//! `run` binds nothing itself: the caller hands it a listener (tests bind port 0) and a
//! shutdown future (the binary wires SIGTERM/SIGINT to it).

use std::collections::VecDeque;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Sleep;

use crate::gateway::Gateway;

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
            async move {
                if conflicting {
                    return Ok::<_, std::convert::Infallible>(refuse_conflicting_framing(&gw));
                }
                Ok::<_, std::convert::Infallible>(gw.handle(req, peer).await)
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
            gw.metrics().connection_opened();
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

/// Connections that have not sent a whole request head yet, oldest first.
struct PendingQueue {
    cap: usize,
    next_id: AtomicU64,
    queue: Mutex<VecDeque<(u64, Arc<Notify>)>>,
}

/// A connection's place in the pending queue; dropped when its head arrives (or it closes).
struct PendingTicket {
    id: u64,
    evict: Arc<Notify>,
    queue: Arc<PendingQueue>,
}

impl Drop for PendingTicket {
    fn drop(&mut self) {
        let mut q = self.queue.lock();
        if let Some(i) = q.iter().position(|(id, _)| *id == self.id) {
            q.remove(i);
        }
    }
}

impl PendingQueue {
    fn new(cap: usize) -> PendingQueue {
        PendingQueue {
            cap: cap.max(1),
            next_id: AtomicU64::new(0),
            queue: Mutex::new(VecDeque::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<(u64, Arc<Notify>)>> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues a new connection; when the queue is full the oldest one is told to close.
    fn admit(self: &Arc<Self>) -> (PendingTicket, bool) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let evict = Arc::new(Notify::new());
        let mut q = self.lock();
        let mut evicted = false;
        while q.len() >= self.cap {
            if let Some((_, oldest)) = q.pop_front() {
                oldest.notify_one();
                evicted = true;
            }
        }
        q.push_back((id, evict.clone()));
        drop(q);
        (
            PendingTicket {
                id,
                evict,
                queue: self.clone(),
            },
            evicted,
        )
    }
}

/// For each request head read on a connection, in order: whether it carried both
/// Content-Length and Transfer-Encoding. hyper drops the conflicting Content-Length
/// before the service sees the request, so the raw bytes are checked on the way in.
#[derive(Default)]
struct Framing {
    verdicts: VecDeque<bool>,
}

impl Framing {
    fn next(&mut self) -> bool {
        self.verdicts.pop_front().unwrap_or(false)
    }
}

/// Where the scanner is in the inbound byte stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scan {
    Head,
    Fixed(u64),
    ChunkSize,
    ChunkData(u64),
    ChunkDataEnd,
    Trailer,
    /// Not HTTP/1 framing any more (an upgrade), or not something hyper will serve.
    Off,
}

/// Follows request framing (heads, Content-Length and chunked bodies) just far enough
/// to see each head's framing headers. Bounded: a line over `max_line` stops it.
struct HeadScan<T> {
    inner: T,
    framing: Arc<Mutex<Framing>>,
    state: Scan,
    line: Vec<u8>,
    max_line: usize,
    lines_in_head: usize,
    content_length: Option<Option<u64>>,
    transfer_encoding: Option<bool>,
    upgrade: bool,
}

impl<T> HeadScan<T> {
    fn new(inner: T, framing: Arc<Mutex<Framing>>, max_line: usize) -> HeadScan<T> {
        HeadScan {
            inner,
            framing,
            state: Scan::Head,
            line: Vec::new(),
            max_line,
            lines_in_head: 0,
            content_length: None,
            transfer_encoding: None,
            upgrade: false,
        }
    }

    fn scan(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            match self.state {
                Scan::Off => return,
                Scan::Fixed(n) | Scan::ChunkData(n) => {
                    let take = n.min(bytes.len() as u64);
                    bytes = &bytes[take as usize..];
                    self.state = match (self.state, n - take) {
                        (Scan::Fixed(_), 0) => Scan::Head,
                        (Scan::Fixed(_), left) => Scan::Fixed(left),
                        (_, 0) => Scan::ChunkDataEnd,
                        (_, left) => Scan::ChunkData(left),
                    };
                }
                Scan::Head | Scan::ChunkSize | Scan::ChunkDataEnd | Scan::Trailer => {
                    let Some(end) = bytes.iter().position(|b| *b == b'\n') else {
                        self.line.extend_from_slice(bytes);
                        if self.line.len() > self.max_line {
                            self.state = Scan::Off;
                        }
                        return;
                    };
                    self.line.extend_from_slice(&bytes[..end]);
                    bytes = &bytes[end + 1..];
                    if self.line.len() > self.max_line {
                        self.state = Scan::Off;
                        return;
                    }
                    let mut line = std::mem::take(&mut self.line);
                    if line.last() == Some(&b'\r') {
                        line.pop();
                    }
                    self.on_line(&line);
                }
            }
        }
    }

    fn on_line(&mut self, line: &[u8]) {
        match self.state {
            Scan::Head => {
                if line.is_empty() {
                    if self.lines_in_head > 0 {
                        self.end_of_head();
                    }
                    return;
                }
                self.lines_in_head += 1;
                if self.lines_in_head == 1 {
                    return; // the request line
                }
                let Some(colon) = line.iter().position(|b| *b == b':') else {
                    return;
                };
                let name = line[..colon].trim_ascii();
                let value = line[colon + 1..].trim_ascii();
                if name.eq_ignore_ascii_case(b"content-length") {
                    let n = std::str::from_utf8(value).ok().and_then(|v| v.parse().ok());
                    self.content_length = Some(match self.content_length {
                        Some(prev) if prev != n => None,
                        _ => n,
                    });
                } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
                    let last = value.rsplit(|b| *b == b',').next().unwrap_or(b"");
                    self.transfer_encoding =
                        Some(last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
                } else if name.eq_ignore_ascii_case(b"upgrade") {
                    self.upgrade = true;
                }
            }
            Scan::ChunkSize => {
                let size = line
                    .split(|b| *b == b';')
                    .next()
                    .unwrap_or(b"")
                    .trim_ascii();
                self.state = match std::str::from_utf8(size)
                    .ok()
                    .and_then(|s| u64::from_str_radix(s, 16).ok())
                {
                    Some(0) => Scan::Trailer,
                    Some(n) => Scan::ChunkData(n),
                    None => Scan::Off,
                };
            }
            Scan::ChunkDataEnd => {
                self.state = if line.is_empty() {
                    Scan::ChunkSize
                } else {
                    Scan::Off
                };
            }
            Scan::Trailer => {
                if line.is_empty() {
                    self.state = Scan::Head;
                }
            }
            Scan::Fixed(_) | Scan::ChunkData(_) | Scan::Off => {}
        }
    }

    fn end_of_head(&mut self) {
        let cl = self.content_length.take();
        let te = self.transfer_encoding.take();
        let upgrade = std::mem::take(&mut self.upgrade);
        self.lines_in_head = 0;
        let conflict = cl.is_some() && te.is_some();
        if let Ok(mut f) = self.framing.lock() {
            if f.verdicts.len() >= 1024 {
                self.state = Scan::Off;
                return;
            }
            f.verdicts.push_back(conflict);
        }
        self.state = match (conflict || upgrade, te, cl) {
            (true, _, _) => Scan::Off,
            (false, Some(true), _) => Scan::ChunkSize,
            (false, Some(false), _) => Scan::Off,
            (false, None, Some(Some(0))) | (false, None, None) => Scan::Head,
            (false, None, Some(Some(n))) => Scan::Fixed(n),
            (false, None, Some(None)) => Scan::Off,
        };
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for HeadScan<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        ready!(Pin::new(&mut self.inner).poll_read(cx, buf))?;
        let this = &mut *self;
        this.scan(&buf.filled()[before..]);
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for HeadScan<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
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

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::FutureExt;

    fn verdicts(chunks: &[&[u8]]) -> (Vec<bool>, Scan) {
        let framing = Arc::new(Mutex::new(Framing::default()));
        let mut scan = HeadScan::new((), framing.clone(), 8192);
        for c in chunks {
            scan.scan(c);
        }
        let v = framing.lock().unwrap().verdicts.iter().copied().collect();
        (v, scan.state)
    }

    #[test]
    fn a_head_with_both_framings_is_flagged_in_either_order() {
        for head in [
            &b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"[..],
            b"POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\ncontent-length: 4\r\n\r\n",
            b"POST / HTTP/1.1\nTransfer-Encoding: gzip, chunked\nContent-Length: 4\n\n",
        ] {
            assert_eq!(verdicts(&[head]).0, vec![true], "{}", String::from_utf8_lossy(head));
        }
    }

    #[test]
    fn pipelined_requests_are_followed_through_their_bodies() {
        let stream: &[u8] = b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\n\r\n\r\nxPOST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=1\r\nab\n\r\n0\r\nTrailer: 1\r\n\r\nGET /status HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
        // Byte by byte and all at once give the same verdicts.
        let whole = verdicts(&[stream]);
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(verdicts(&bytes), whole);
        assert_eq!(whole.0, vec![false, false, true]);
        assert_eq!(whole.1, Scan::Off);
    }

    #[test]
    fn an_upgrade_or_an_endless_line_stops_the_scan() {
        let (v, state) = verdicts(&[b"GET /websocket HTTP/1.1\r\nUpgrade: websocket\r\n\r\nPOST"]);
        assert_eq!((v, state), (vec![false], Scan::Off));
        let long = vec![b'a'; 10_000];
        assert_eq!(verdicts(&[&long]).1, Scan::Off);
    }

    #[test]
    fn a_full_pending_queue_evicts_its_oldest() {
        let q = Arc::new(PendingQueue::new(2));
        let (a, ea) = q.admit();
        let (b, eb) = q.admit();
        assert!(!ea && !eb);
        drop(b); // its head arrived
        let (_c, ec) = q.admit();
        assert!(!ec);
        let (_d, ed) = q.admit();
        assert!(ed, "a is the oldest and goes");
        assert!(a.evict.notified().now_or_never().is_some());
    }
}
