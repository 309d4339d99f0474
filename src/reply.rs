//! Building what goes back to the client. A body is a list of shared byte slices, so a
//! cached 2 MB result is written as the caller's id, the stored bytes and a closing
//! brace: three `Bytes` and no copy of the result.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};

use crate::admission::ClientPermit;
use crate::cache::CacheStatus;
use crate::error::{Rejection, Transport, WireError};
use crate::jsonrpc::{error_body, Form, Id};
use crate::upstream::Answer;

pub(crate) const CACHE_HEADER: &str = "x-cometgate-cache";

/// A response body made of shared slices; its exact length is known up front, so hyper
/// sends a Content-Length rather than chunking.
#[derive(Default)]
pub struct Chunks {
    parts: VecDeque<Bytes>,
    remaining: u64,
    /// Dropped with the body: once it is written, or the connection is gone.
    held: Option<ClientPermit>,
}

impl std::fmt::Debug for Chunks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chunks")
            .field("parts", &self.parts.len())
            .field("remaining", &self.remaining)
            .finish()
    }
}

impl Chunks {
    pub fn new() -> Chunks {
        Chunks::default()
    }

    pub fn push(&mut self, part: Bytes) {
        if !part.is_empty() {
            self.remaining += part.len() as u64;
            self.parts.push_back(part);
        }
    }

    pub fn extend(&mut self, parts: impl IntoIterator<Item = Bytes>) {
        for p in parts {
            self.push(p);
        }
    }

    pub fn from_parts(parts: impl IntoIterator<Item = Bytes>) -> Chunks {
        let mut c = Chunks::new();
        c.extend(parts);
        c
    }

    pub fn len(&self) -> u64 {
        self.remaining
    }

    /// Keeps a client's concurrency slot until the body has been written, so
    /// a client reading slowly keeps counting against its cap while its answer waits.
    pub(crate) fn hold_until_sent(&mut self, slot: ClientPermit) {
        self.held = Some(slot);
    }

    pub fn is_empty(&self) -> bool {
        self.remaining == 0
    }
}

impl From<Bytes> for Chunks {
    fn from(b: Bytes) -> Chunks {
        let mut c = Chunks::new();
        c.push(b);
        c
    }
}

impl From<&'static str> for Chunks {
    fn from(s: &'static str) -> Chunks {
        Chunks::from(Bytes::from_static(s.as_bytes()))
    }
}

impl Body for Chunks {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.parts.pop_front() {
            Some(part) => {
                self.remaining -= part.len() as u64;
                Poll::Ready(Some(Ok(Frame::data(part))))
            }
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.parts.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

/// One call's outcome as it goes back: the node's answer or the gateway's refusal.
#[derive(Debug)]
pub enum Outcome {
    Answer(Answer),
    Rejected(Rejection),
}

impl Outcome {
    pub(crate) fn is_error(&self) -> bool {
        match self {
            Outcome::Answer(a) => a.is_error(),
            Outcome::Rejected(_) => true,
        }
    }
}

/// Appends the JSON of one entry of a reply to `out`; `id` is `None` where the
/// request's id is unknown.
pub fn entry(out: &mut Vec<Bytes>, id: Option<&Id>, outcome: &Outcome, form: Form) {
    match (outcome, id) {
        (Outcome::Answer(a), Some(id)) => out.extend(a.parts(id)),
        (Outcome::Answer(a), None) => out.extend(a.parts(&Id::uri())),
        (Outcome::Rejected(r), id) => {
            let w = r.to_wire(form);
            out.push(error_body(id, w.code, w.message, &w.data));
        }
    }
}

pub fn json(status: StatusCode, body: Chunks) -> Response<Chunks> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// A whole-request refusal, exactly as `Rejection::to_wire` describes it.
pub fn rejection(
    id: Option<&Id>,
    r: &Rejection,
    transport: impl Into<Transport>,
) -> Response<Chunks> {
    let WireError {
        status,
        code,
        message,
        data,
        retry_after,
        close,
        plain_text,
    } = r.to_wire(transport);
    let mut response = match plain_text {
        Some(text) => plain(status, text),
        None => json(status, Chunks::from(error_body(id, code, message, &data))),
    };
    let headers = response.headers_mut();
    if let Some(after) = retry_after {
        // Retry-After is whole seconds; round up so a client never retries early.
        let secs = after.as_secs() + u64::from(after.subsec_nanos() > 0);
        headers.insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
    }
    if close {
        headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

pub(crate) fn with_cache_status(
    mut response: Response<Chunks>,
    status: CacheStatus,
) -> Response<Chunks> {
    response
        .headers_mut()
        .insert(CACHE_HEADER, HeaderValue::from_static(status.as_str()));
    response
}

pub fn plain(status: StatusCode, text: &'static str) -> Response<Chunks> {
    let mut response = Response::new(Chunks::from(text));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn a_reply_body_has_an_exact_length_and_shares_the_stored_bytes() {
        let stored = Bytes::from(vec![b'7'; 2_000_000]);
        let answer = Answer::Result(stored.clone());
        let mut body = Chunks::new();
        body.extend(answer.parts(&Id::number(1)));
        assert_eq!(
            body.len(),
            2_000_000 + br#"{"jsonrpc":"2.0","id":1,"result":}"#.len() as u64
        );
        assert_eq!(body.size_hint().exact(), Some(body.len()));
        let mut frames = Vec::new();
        while let Some(f) = body.frame().await {
            frames.push(f.unwrap().into_data().unwrap());
        }
        assert_eq!(frames[1].as_ptr(), stored.as_ptr(), "the result was copied");
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        let r = Rejection::RateLimited {
            retry_after: std::time::Duration::from_millis(1200),
        };
        let response = rejection(None, &r, Form::JsonRpc);
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[header::RETRY_AFTER], "2");
    }
}
