//! The node side: one pooled keep-alive HTTP/1 client, every call bounded by a timeout,
//! and every answer bounded by `upstream.max_response_bytes` while it is read, so an
//! oversized answer is dropped at the node's side and never held whole.
//!
//! Answers are checked before anyone sees them: valid JSON-RPC, our own id, a `result`
//! or an `error`. The `result` is kept as a zero-copy slice of the body: the cache stores
//! it and replies wrap it in the caller's id without re-serialising.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{header, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
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

    /// A copy owning exactly its bytes. A slice keeps its whole response buffer alive
    /// (a batch's other answers, the read buffer's spare capacity), which a cache entry
    /// weighed by its own length must not do.
    pub(crate) fn detached(&self) -> Answer {
        match self {
            Answer::Result(b) => Answer::Result(Bytes::copy_from_slice(b)),
            Answer::Error(b) => Answer::Error(Bytes::copy_from_slice(b)),
        }
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
    client: Client<HttpConnector, Full<Bytes>>,
    url: Uri,
    timeout: Duration,
    max_response: ByteSize,
    next_id: std::sync::Arc<AtomicU64>,
}

impl Upstream {
    pub(crate) fn new(cfg: &UpstreamConfig) -> Upstream {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(cfg.connect_timeout));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(cfg.pool_max_idle)
            .pool_idle_timeout(cfg.pool_idle_timeout)
            .build(connector);
        Upstream {
            client,
            url: cfg.url.clone(),
            timeout: cfg.timeout,
            max_response: cfg.max_response_bytes,
            next_id: std::sync::Arc::new(AtomicU64::new(1)),
        }
    }

    pub(crate) fn url(&self) -> &Uri {
        &self.url
    }

    fn fresh_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// One call, sent in canonical form under a fresh id of the gateway's.
    pub(crate) async fn call(&self, call: &Canonical) -> Result<Answer, Rejection> {
        let id = self.fresh_id();
        let body = self.post(call.upstream_body(id)).await?;
        let raw: RawAnswer =
            serde_json::from_slice(&body).map_err(|e| invalid(format!("not JSON-RPC: {e}")))?;
        answer_for(&body, raw, id)
    }

    /// Several calls as one upstream batch; answers come back in the calls' order.
    pub(crate) async fn call_batch(&self, calls: &[&Canonical]) -> Result<Vec<Answer>, Rejection> {
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
        let answer = self.post(Bytes::from(body)).await?;
        batch_answers(&answer, first, calls.len())
    }

    /// POSTs a body and reads the answer under the timeout and the response cap.
    async fn post(&self, body: Bytes) -> Result<Bytes, Rejection> {
        let request = Request::builder()
            .method(Method::POST)
            .uri(self.url.clone())
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::ACCEPT, "application/json")
            .body(Full::new(body))
            .map_err(|e| Rejection::UpstreamUnavailable(e.to_string()))?;
        match tokio::time::timeout(self.timeout, self.exchange(request)).await {
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
                let why = refusal(response.into_body()).await;
                return Err(Rejection::InvalidRequest(format!(
                    "the node refused the request (HTTP {}): {why}",
                    status.as_u16()
                )));
            }
            status => return Err(invalid(format!("HTTP {}", status.as_u16()))),
        }
        let cap = self.max_response.as_u64();
        let declared = response
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > cap) {
            return Err(Rejection::ResponseTooLarge {
                max: self.max_response,
            });
        }
        let mut body = response.into_body();
        let mut buf = BytesMut::with_capacity(declared.unwrap_or(8 * 1024).min(cap) as usize);
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| {
                tracing::debug!(error = ?e, "upstream body failed");
                invalid("the connection broke mid-answer".into())
            })?;
            if let Ok(data) = frame.into_data() {
                if (buf.len() + data.len()) as u64 > cap {
                    // Dropping the body closes the node connection instead of reading on.
                    return Err(Rejection::ResponseTooLarge {
                        max: self.max_response,
                    });
                }
                buf.extend_from_slice(&data);
            }
        }
        Ok(buf.freeze())
    }
}

/// What a node's refusal says: its JSON-RPC error's data or message, read from at most
/// 4 KiB of the body. Never the body itself, which an operator's proxy may have written.
async fn refusal(body: hyper::body::Incoming) -> String {
    #[derive(Deserialize)]
    struct Refusal {
        error: RefusalError,
    }
    #[derive(Deserialize)]
    struct RefusalError {
        #[serde(default)]
        message: String,
        #[serde(default)]
        data: Option<String>,
    }
    let Ok(body) = http_body_util::Limited::new(body, 4096).collect().await else {
        return "no readable reason".into();
    };
    match serde_json::from_slice::<Refusal>(&body.to_bytes()) {
        Ok(Refusal { error }) => error
            .data
            .filter(|d| !d.is_empty())
            .unwrap_or(error.message),
        Err(_) => "no JSON-RPC reason".into(),
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

fn invalid(why: String) -> Rejection {
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
        (_, Some(e)) => Ok(Answer::Error(body.slice_ref(e.get().as_bytes()))),
        (Some(r), None) => Ok(Answer::Result(body.slice_ref(r.get().as_bytes()))),
        (None, None) => Err(invalid("neither result nor error".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_are_zero_copy_slices_of_the_body() {
        let body = Bytes::from_static(br#"{"jsonrpc":"2.0","id":3,"result":{"a":[1,2]}}"#);
        let raw: RawAnswer = serde_json::from_slice(&body).unwrap();
        let Answer::Result(r) = answer_for(&body, raw, 3).unwrap() else {
            panic!()
        };
        assert_eq!(&r[..], br#"{"a":[1,2]}"#);
        assert_eq!(r.as_ptr(), body[33..].as_ptr());
    }

    #[test]
    fn a_batch_answer_is_taken_as_an_array_of_any_length() {
        let two = Bytes::from_static(
            br#"[{"jsonrpc":"2.0","id":8,"result":"b"},{"jsonrpc":"2.0","id":7,"result":"a"}]"#,
        );
        let answers = batch_answers(&two, 7, 2).unwrap();
        assert_eq!(answers[0], Answer::Result(Bytes::from_static(b"\"a\"")));
        assert_eq!(answers[1], Answer::Result(Bytes::from_static(b"\"b\"")));
        // A spec-compliant node (or another proxy) answers a batch of one with an array.
        let one = Bytes::from_static(br#" [{"jsonrpc":"2.0","id":7,"result":"a"}]"#);
        assert_eq!(
            batch_answers(&one, 7, 1).unwrap(),
            vec![Answer::Result(Bytes::from_static(b"\"a\""))]
        );
    }

    #[test]
    fn a_batch_of_one_is_also_taken_as_a_bare_object() {
        // CometBFT's own shape.
        let bare = Bytes::from_static(br#"{"jsonrpc":"2.0","id":7,"result":"a"}"#);
        assert_eq!(
            batch_answers(&bare, 7, 1).unwrap(),
            vec![Answer::Result(Bytes::from_static(b"\"a\""))]
        );
        // Only for a batch of one: a bare object cannot answer two calls.
        assert!(batch_answers(&bare, 7, 2).is_err());
    }

    #[test]
    fn a_batch_answer_with_a_foreign_or_missing_id_is_refused() {
        let foreign = Bytes::from_static(br#"[{"jsonrpc":"2.0","id":9,"result":"a"}]"#);
        assert!(batch_answers(&foreign, 7, 2).is_err());
        let short = Bytes::from_static(br#"[{"jsonrpc":"2.0","id":7,"result":"a"}]"#);
        assert!(batch_answers(&short, 7, 2).is_err());
    }

    #[test]
    fn a_wrong_id_is_refused() {
        let body = Bytes::from_static(br#"{"jsonrpc":"2.0","id":4,"result":{}}"#);
        let raw: RawAnswer = serde_json::from_slice(&body).unwrap();
        assert!(matches!(
            answer_for(&body, raw, 3),
            Err(Rejection::UpstreamInvalid(_))
        ));
    }

    #[test]
    fn errors_keep_the_nodes_object_and_take_the_callers_id() {
        let body = Bytes::from_static(br#"{"jsonrpc":"2.0","id":1,"error":{"code":-32603,"message":"Internal error","data":"x"}}"#);
        let raw: RawAnswer = serde_json::from_slice(&body).unwrap();
        let a = answer_for(&body, raw, 1).unwrap();
        let out = a.parts(&Id::uri()).concat();
        assert_eq!(
            out,
            br#"{"jsonrpc":"2.0","id":-1,"error":{"code":-32603,"message":"Internal error","data":"x"}}"#.to_vec()
        );
    }
}
