//! Reading one node answer: within the response cap, inside the memory budget, into a
//! buffer sized from Content-Length where the node sends one, and handed on without a
//! second copy.

use bytes::Bytes;
use http::header;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde::Deserialize;

use super::budget::{Budget, FIRST_CHUNK};
use crate::config::ByteSize;
use crate::error::Rejection;

/// Bytes of a body around an answer that may ride along with it into the cache (the
/// JSON-RPC envelope: `{"jsonrpc":"2.0","id":N,"result":` and the closing brace, as the
/// node indents them). A slice with more beside it is copied out instead.
pub(super) const ENVELOPE_SLACK: usize = 256;

/// The whole body of a 200 answer. Its bytes are reserved in `budget` while they are
/// read and given back once the body is complete (what holds them from then on, the
/// cache and the replies, is bounded on its own).
pub(super) async fn body(
    response: http::Response<Incoming>,
    max: ByteSize,
    budget: &std::sync::Arc<Budget>,
) -> Result<Bytes, Rejection> {
    let cap = max.as_u64();
    let declared = response
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > cap) {
        return Err(Rejection::ResponseTooLarge { max });
    }
    // A declared length is the most this read can need, and its first reservation; a
    // chunked one may need anything up to the cap, and starts small.
    let mut reservation = budget.open(declared.unwrap_or(cap));
    let first = declared.unwrap_or(FIRST_CHUNK.min(cap));
    reservation.grow_to(first, first).await;
    let mut buf: Vec<u8> = Vec::with_capacity(first as usize);
    let mut body = response.into_body();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            tracing::debug!(error = ?e, "upstream body failed");
            // The connection failed, not the node's answer: another node may answer.
            Rejection::UpstreamUnavailable("the connection broke mid-answer".into())
        })?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        let len = (buf.len() + data.len()) as u64;
        if len > cap {
            // Dropping the body closes the node connection instead of reading on.
            return Err(Rejection::ResponseTooLarge { max });
        }
        if len > buf.capacity() as u64 {
            // Doubling keeps the number of grants and reallocations logarithmic. Past the
            // claim (an answer larger than the whole budget) the read holds all of it and
            // goes on alone, still doubling.
            let want = len.max(2 * buf.capacity() as u64).min(cap);
            reservation.grow_to(len, want).await;
            let held = reservation.held();
            let room = if held >= len { held } else { want } as usize;
            buf.reserve_exact(room - buf.len());
        }
        buf.extend_from_slice(&data);
    }
    // A grown buffer's spare room would ride along with the answer into the cache; a
    // shrinking realloc gives it back without copying the bytes.
    buf.shrink_to_fit();
    drop(reservation);
    Ok(Bytes::from(buf))
}

/// `part` of `body` as bytes of its own: the slice itself where the rest of the body is
/// no more than its envelope (a single answer: no second copy on its way to the cache),
/// a copy where the body holds more (a batch's other answers).
pub(super) fn owned(body: &Bytes, part: &[u8]) -> Bytes {
    if body.len() - part.len() <= ENVELOPE_SLACK {
        body.slice_ref(part)
    } else {
        Bytes::copy_from_slice(part)
    }
}

/// What a node's refusal says: its JSON-RPC error's data or message, read from at most
/// 4 KiB of the body. Never the body itself, which an operator's proxy may have written.
pub(super) async fn refusal(body: Incoming) -> String {
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
