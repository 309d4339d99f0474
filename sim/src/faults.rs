//! Fault modes, and the connection wrapper that cuts an answer mid-body (truncation or reset)
//! after hyper has written valid headers with the full `Content-Length`.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::lenient::Rewriter;

/// How the node misbehaves; `Fault::None` is healthy.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum Fault {
    #[default]
    None,
    /// Listener closed: connections refused; the same port comes back when cleared.
    Down,
    /// Added latency before answering.
    Slow(Duration),
    /// Never answers; holds the connection open.
    Hang,
    /// A plain, non-JSON-RPC `500 Internal Server Error`.
    Http500,
    /// Full headers and `Content-Length`, half the body, then the connection closes.
    TruncatedJson,
    /// Full headers, half the body, then a TCP reset.
    ResetMidBody,
    /// The body padded with trailing whitespace to this many bytes.
    Oversized(usize),
    /// The answer carries an id the client did not send.
    WrongId,
}

impl Fault {
    /// Parses the control route's `{"kind": "...", "ms": N, "bytes": N}` form.
    pub(crate) fn from_spec(v: &serde_json::Value) -> Result<Fault, String> {
        let kind = v.get("kind").and_then(|k| k.as_str()).unwrap_or("none");
        let num = |k: &str| v.get(k).and_then(serde_json::Value::as_u64);
        Ok(match kind {
            "none" => Fault::None,
            "down" => Fault::Down,
            "slow" => Fault::Slow(Duration::from_millis(num("ms").ok_or("slow needs \"ms\"")?)),
            "hang" => Fault::Hang,
            "http500" | "http_500" => Fault::Http500,
            "truncated_json" | "truncated" => Fault::TruncatedJson,
            "reset_mid_body" | "reset" => Fault::ResetMidBody,
            "oversized" => {
                Fault::Oversized(num("bytes").ok_or("oversized needs \"bytes\"")? as usize)
            }
            "wrong_id" => Fault::WrongId,
            other => return Err(format!("unknown fault kind {other:?}")),
        })
    }
}

/// How the node's Prometheus endpoint misbehaves; the RPC port is not affected.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MetricsFault {
    #[default]
    None,
    /// The `metrics_listen` port is closed (connection refused); `/metrics` on the control
    /// port, which must stay up, answers 503.
    Down,
    /// A plain `500 Internal Server Error`.
    Http500,
    /// 200 with a body that is not Prometheus text.
    Garbage,
}

impl MetricsFault {
    /// Parses the control route's `{"kind": "none|down|http500|garbage"}`.
    pub(crate) fn from_spec(v: &serde_json::Value) -> Result<MetricsFault, String> {
        Ok(
            match v.get("kind").and_then(|k| k.as_str()).unwrap_or("none") {
                "none" => MetricsFault::None,
                "down" => MetricsFault::Down,
                "http500" | "http_500" => MetricsFault::Http500,
                "garbage" => MetricsFault::Garbage,
                other => return Err(format!("unknown metrics fault kind {other:?}")),
            },
        )
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Phase {
    Idle,
    SeekHeaderEnd { matched: usize },
    Body { remaining: usize },
    Cut,
}

#[derive(Clone, Copy, Debug)]
struct Plan {
    phase: Phase,
    body_budget: usize,
    reset: bool,
}

/// Per-connection switch the request handler arms before returning its response.
pub(crate) struct CutCtl {
    plan: Mutex<Plan>,
}

impl CutCtl {
    pub(crate) fn new() -> Arc<CutCtl> {
        Arc::new(CutCtl {
            plan: Mutex::new(Plan {
                phase: Phase::Idle,
                body_budget: 0,
                reset: false,
            }),
        })
    }

    /// The next response gets `body_bytes` of its body through, then the cut: a close, or a
    /// TCP reset when `reset`.
    pub(crate) fn arm(&self, body_bytes: usize, reset: bool) {
        *self.lock() = Plan {
            phase: Phase::SeekHeaderEnd { matched: 0 },
            body_budget: body_bytes,
            reset,
        };
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Plan> {
        self.plan.lock().unwrap_or_else(|p| p.into_inner())
    }
}

const HEADER_END: &[u8] = b"\r\n\r\n";

/// Walks `bytes` through the plan; returns how many of them may be written.
fn advance(plan: &mut Plan, bytes: &[u8]) -> usize {
    let mut n = 0;
    while n < bytes.len() {
        match plan.phase {
            Phase::Idle => return bytes.len(),
            Phase::Cut => return n,
            Phase::SeekHeaderEnd { matched } => {
                let b = bytes[n];
                let matched = if b == HEADER_END[matched] {
                    matched + 1
                } else if b == HEADER_END[0] {
                    1
                } else {
                    0
                };
                n += 1;
                plan.phase = if matched == HEADER_END.len() {
                    Phase::Body {
                        remaining: plan.body_budget,
                    }
                } else {
                    Phase::SeekHeaderEnd { matched }
                };
            }
            Phase::Body { remaining } => {
                if remaining == 0 {
                    plan.phase = Phase::Cut;
                    return n;
                }
                let take = remaining.min(bytes.len() - n);
                n += take;
                plan.phase = Phase::Body {
                    remaining: remaining - take,
                };
            }
        }
    }
    if plan.phase == (Phase::Body { remaining: 0 }) {
        plan.phase = Phase::Cut;
    }
    n
}

/// A TCP stream that obeys its `CutCtl` when writing, and reads request lines the way
/// Go's server accepts them (see `lenient`).
pub(crate) struct CutIo {
    inner: TcpStream,
    ctl: Arc<CutCtl>,
    rewriter: Rewriter,
    pending: Vec<u8>,
    pending_at: usize,
}

impl CutIo {
    pub(crate) fn new(inner: TcpStream, ctl: Arc<CutCtl>) -> Self {
        CutIo {
            inner,
            ctl,
            rewriter: Rewriter::default(),
            pending: Vec::new(),
            pending_at: 0,
        }
    }
}

impl AsyncRead for CutIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.pending_at >= this.pending.len() {
            let mut raw = vec![0u8; buf.remaining().clamp(1, 64 * 1024)];
            let mut rb = ReadBuf::new(&mut raw);
            match Pin::new(&mut this.inner).poll_read(cx, &mut rb) {
                Poll::Ready(Ok(())) => {}
                other => return other,
            }
            if rb.filled().is_empty() {
                return Poll::Ready(Ok(()));
            }
            this.pending.clear();
            this.pending_at = 0;
            this.rewriter.feed(rb.filled(), &mut this.pending);
        }
        let n = buf.remaining().min(this.pending.len() - this.pending_at);
        buf.put_slice(&this.pending[this.pending_at..this.pending_at + n]);
        this.pending_at += n;
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for CutIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let plan = *self.ctl.lock();
        if plan.phase == Phase::Idle {
            return Pin::new(&mut self.inner).poll_write(cx, buf);
        }
        if plan.phase == Phase::Cut {
            if plan.reset {
                // Linger zero turns the coming close into a RST.
                let _ = self.inner.set_zero_linger();
                return Poll::Ready(Err(io::ErrorKind::ConnectionReset.into()));
            }
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        let mut dry = plan;
        let allowed = advance(&mut dry, buf);
        if allowed == 0 {
            self.ctl.lock().phase = Phase::Cut;
            return self.poll_write(cx, buf);
        }
        match Pin::new(&mut self.inner).poll_write(cx, &buf[..allowed]) {
            Poll::Ready(Ok(n)) => {
                let mut real = self.ctl.lock();
                advance(&mut real, &buf[..n]);
                Poll::Ready(Ok(n))
            }
            other => other,
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_cuts_after_budget() {
        let mut p = Plan {
            phase: Phase::SeekHeaderEnd { matched: 0 },
            body_budget: 3,
            reset: false,
        };
        assert_eq!(advance(&mut p, b"HTTP/1.1 200\r\nA: b\r\n\r\nabcdef"), 25);
        assert_eq!(p.phase, Phase::Cut);
        let mut p = Plan {
            phase: Phase::SeekHeaderEnd { matched: 0 },
            body_budget: 3,
            reset: false,
        };
        assert_eq!(advance(&mut p, b"H\r\n\r"), 4);
        assert_eq!(advance(&mut p, b"\nab"), 3);
        assert_eq!(advance(&mut p, b"cd"), 1);
    }
}
