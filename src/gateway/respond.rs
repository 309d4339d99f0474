//! The respond stage for HTTP: what the pipeline served, shaped as the node would shape
//! it. A single call's answer is the whole response (with its refusal's status and
//! headers); a batch's answers keep the request's order, and a batch of one is answered
//! with a bare object, as CometBFT does.

use bytes::Bytes;
use http::{Response, StatusCode};

use super::access_log::AccessLog;
use super::pipeline::Served;
use crate::jsonrpc::Form;
use crate::reply::{self, Chunks, Outcome};

/// A single call, JSON-RPC or URI form. `None`: a notification, answered with nothing.
pub(super) fn single(log: &mut AccessLog, served: Option<Served>, form: Form) -> Response<Chunks> {
    let Some(Served { id, outcome, cache }) = served else {
        return reply::json(StatusCode::OK, Chunks::new());
    };
    log.cache = Some(cache);
    let response = match &outcome {
        Outcome::Rejected(r) => reply::rejection(Some(&id), r, form),
        Outcome::Answer(answer) => {
            let status = match (answer.is_error(), form) {
                (true, Form::Uri) => StatusCode::INTERNAL_SERVER_ERROR,
                _ => StatusCode::OK,
            };
            reply::json(status, Chunks::from_parts(answer.parts(&id)))
        }
    };
    reply::with_cache_status(response, cache)
}

/// A batch's answers, in order, with per-call errors.
pub(super) fn batch(served: Vec<Served>) -> Response<Chunks> {
    let bare = served.len() == 1;
    let mut parts: Vec<Bytes> = Vec::with_capacity(served.len() * 4 + 2);
    if !bare && !served.is_empty() {
        parts.push(Bytes::from_static(b"["));
    }
    for (i, s) in served.iter().enumerate() {
        if i > 0 {
            parts.push(Bytes::from_static(b","));
        }
        reply::entry(&mut parts, Some(&s.id), &s.outcome, Form::JsonRpc);
    }
    if !bare && !served.is_empty() {
        parts.push(Bytes::from_static(b"]"));
    }
    reply::json(StatusCode::OK, Chunks::from_parts(parts))
}
