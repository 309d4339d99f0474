//! The node side: one pooled keep-alive HTTP/1 client, every call bounded by a timeout,
//! and every answer bounded by `upstream.max_response_bytes` while it is read, so an
//! oversized answer is dropped at the node's side and never held whole.
//!
//! All answers being read at once share one memory budget, `upstream.max_inflight_bytes`
//! (see `budget`).
//!
//! Answers are checked before anyone sees them: valid JSON-RPC, our own id, a `result`
//! or an `error`. Every answer owns its bytes: a single call's `result` is a zero-copy
//! slice of a body that holds little else, a batch's are copied out of the shared body
//! (see `read::owned`). The cache stores them as they are and replies wrap them in the
//! caller's id without re-serialising.

mod budget;
mod read;
pub(crate) mod tls;

pub(crate) use budget::Budget;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, Method, Request, StatusCode, Uri};
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use prometheus_client::metrics::gauge::Gauge;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::config::{ByteSize, UpstreamConfig};
use crate::error::Rejection;
use crate::jsonrpc::Id;
use crate::methods::Canonical;

/// What the node said to one call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// The raw `result` value.
    Result(Bytes),
    /// The raw `error` object, passed on as the node wrote it.
    Error(Bytes),
}

impl Answer {
    /// The reply to one caller: its own id around the node's bytes.
    pub fn parts(&self, id: &Id) -> [Bytes; 3] {
        let (member, body) = match self {
            Answer::Result(b) => (&br#","result":"#[..], b),
            Answer::Error(b) => (&br#","error":"#[..], b),
        };
        let mut head = Vec::with_capacity(24 + id.as_bytes().len());
        head.extend_from_slice(br#"{"jsonrpc":"2.0","id":"#);
        head.extend_from_slice(id.as_bytes());
        head.extend_from_slice(member);
        [Bytes::from(head), body.clone(), Bytes::from_static(b"}")]
    }

    pub(crate) fn is_error(&self) -> bool {
        matches!(self, Answer::Error(_))
    }

    /// Bytes this answer holds (what the cache weighs).
    pub fn len(&self) -> usize {
        match self {
            Answer::Result(b) | Answer::Error(b) => b.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[derive(Deserialize)]
struct RawAnswer<'a> {
    #[serde(borrow, default)]
    id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    result: Option<&'a RawValue>,
    #[serde(borrow, default)]
    error: Option<&'a RawValue>,
}

#[derive(Clone)]
pub(crate) struct Upstream {
    client: Client<tls::Connector, Full<Bytes>>,
    url: Uri,
    timeout: Duration,
    max_response: ByteSize,
    budget: Arc<budget::Budget>,
    next_id: Arc<AtomicU64>,
}

impl Upstream {
    /// A client of the node at `url`. Every node's answers share the one `budget`.
    pub(crate) fn new(
        cfg: &UpstreamConfig,
        url: Uri,
        budget: Arc<Budget>,
        tls: Arc<rustls::ClientConfig>,
    ) -> Upstream {
        let connector = tls::connector(&tls, cfg.connect_timeout);
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(cfg.pool_max_idle)
            .pool_idle_timeout(cfg.pool_idle_timeout)
            .build(connector);
        Upstream {
            client,
            url,
            timeout: cfg.timeout,
            max_response: cfg.max_response_bytes,
            budget,
            next_id: Arc::new(AtomicU64::new(1)),
        }
    }

    /// Bytes of answers being read now, reserved in the budget.
    #[cfg(test)]
    pub(crate) fn inflight_bytes(&self) -> u64 {
        self.budget.reserved()
    }

    fn fresh_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// The budget every node's answers share; `inflight` is the gauge it keeps at the
    /// bytes it has reserved.
    pub(crate) fn budget(cfg: &UpstreamConfig, inflight: Gauge) -> Arc<Budget> {
        Budget::new(cfg.max_inflight_bytes.as_u64(), inflight)
    }

    /// One call, sent in canonical form under a fresh id of the gateway's.
    #[cfg(test)]
    pub(crate) async fn call(&self, call: &Canonical) -> Result<Answer, Rejection> {
        self.call_within(call, self.timeout).await
    }

    /// As `call`, given up after `timeout` (what is left of the caller's deadline).
    pub(crate) async fn call_within(
        &self,
        call: &Canonical,
        timeout: Duration,
    ) -> Result<Answer, Rejection> {
        let id = self.fresh_id();
        let body = self.post(call.upstream_body(id), timeout).await?;
        let raw: RawAnswer =
            serde_json::from_slice(&body).map_err(|e| invalid(format!("not JSON-RPC: {e}")))?;
        answer_for(&body, raw, id)
    }

    /// Several calls as one upstream batch; answers come back in the calls' order.
    pub(crate) async fn call_batch(
        &self,
        calls: &[&Canonical],
        timeout: Duration,
    ) -> Result<Vec<Answer>, Rejection> {
        // One reservation, so a concurrent call's id never lands inside our range.
        let first = self
            .next_id
            .fetch_add(calls.len() as u64, Ordering::Relaxed);
        let mut body = Vec::with_capacity(calls.len() * 96);
        body.push(b'[');
        for (i, call) in calls.iter().enumerate() {
            if i > 0 {
                body.push(b',');
            }
            body.extend_from_slice(&call.upstream_body(first + i as u64));
        }
        body.push(b']');
        let answer = self.post(Bytes::from(body), timeout).await?;
        batch_answers(&answer, first, calls.len())
    }

    /// POSTs a body and reads the answer under the timeout and the response cap.
    async fn post(&self, body: Bytes, timeout: Duration) -> Result<Bytes, Rejection> {
        let request = Request::builder()
            .method(Method::POST)
            .uri(self.url.clone())
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::ACCEPT, "application/json")
            .body(Full::new(body))
            .map_err(|e| Rejection::UpstreamUnavailable(e.to_string()))?;
        match tokio::time::timeout(timeout, self.exchange(request)).await {
            Ok(result) => result,
            Err(_) => Err(Rejection::UpstreamTimeout(self.timeout)),
        }
    }

    async fn exchange(&self, request: Request<Full<Bytes>>) -> Result<Bytes, Rejection> {
        let response = self.client.request(request).await.map_err(|e| {
            tracing::debug!(error = ?e, "upstream request failed");
            Rejection::UpstreamUnavailable(
                if e.is_connect() {
                    "cannot connect to the node"
                } else {
                    "connection failed"
                }
                .into(),
            )
        })?;
        match response.status() {
            StatusCode::OK => {}
            // The node refused what we sent (a body over its max_body_bytes, a batch over
            // its max_request_batch_size): the request's fault, not the node's health.
            status @ (StatusCode::BAD_REQUEST | StatusCode::PAYLOAD_TOO_LARGE) => {
                let why = read::refusal(response.into_body()).await;
                return Err(Rejection::InvalidRequest(format!(
                    "the node refused the request (HTTP {}): {why}",
                    status.as_u16()
                )));
            }
            // The node itself failing (a proxy in front of it, a crash mid-request):
            // another node may answer, as after a refused connection.
            status if status.is_server_error() => {
                return Err(Rejection::UpstreamUnavailable(format!(
                    "the node answered HTTP {}",
                    status.as_u16()
                )))
            }
            status => return Err(invalid(format!("HTTP {}", status.as_u16()))),
        }
        read::body(response, self.max_response, &self.budget).await
    }
}

/// A batch's answers in the calls' order (ids `first..first + n`). A spec-compliant node
/// answers with an array whatever its length; CometBFT answers a batch of one with a bare
/// object. Both are taken.
fn batch_answers(body: &Bytes, first: u64, n: usize) -> Result<Vec<Answer>, Rejection> {
    let is_array = body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[');
    let raws: Vec<RawAnswer> = if !is_array && n == 1 {
        vec![serde_json::from_slice(body).map_err(|e| invalid(format!("not JSON-RPC: {e}")))?]
    } else {
        serde_json::from_slice(body).map_err(|e| invalid(format!("not a JSON-RPC batch: {e}")))?
    };
    let mut out: Vec<Option<Answer>> = vec![None; n];
    for raw in raws {
        let slot = raw
            .id
            .and_then(|id| id.get().parse::<u64>().ok())
            .and_then(|id| id.checked_sub(first))
            .and_then(|slot| usize::try_from(slot).ok())
            .filter(|slot| *slot < n)
            .ok_or_else(|| {
                invalid("an answer in the batch carries an id we did not send".into())
            })?;
        out[slot] = Some(answer_for(body, raw, first + slot as u64)?);
    }
    out.into_iter()
        .map(|a| a.ok_or_else(|| invalid("the batch answer is missing an entry".into())))
        .collect()
}

pub(super) fn invalid(why: String) -> Rejection {
    Rejection::UpstreamInvalid(why)
}

fn answer_for(body: &Bytes, raw: RawAnswer<'_>, expected_id: u64) -> Result<Answer, Rejection> {
    let id_matches = raw
        .id
        .is_some_and(|id| id.get().parse::<u64>().ok() == Some(expected_id));
    if !id_matches {
        return Err(invalid("the answer carries an id we did not send".into()));
    }
    match (raw.result, raw.error) {
        (_, Some(e)) => Ok(Answer::Error(read::owned(body, e.get().as_bytes()))),
        (Some(r), None) => Ok(Answer::Result(read::owned(body, r.get().as_bytes()))),
        (None, None) => Err(invalid("neither result nor error".into())),
    }
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;

#[cfg(test)]
#[path = "read_tests.rs"]
mod read_tests;
