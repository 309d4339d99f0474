//! The one refusal path. Whatever refused a request or one of its calls, on whatever
//! transport, it is counted under its reason, logged once (client mistakes at debug, the
//! node's and the gateway's faults at warn), marked in the access log, and rendered from
//! `Rejection::to_wire` alone.

use http::Response;

use super::access_log::AccessLog;
use super::Gateway;
use crate::error::{Blame, Rejection, Transport};
use crate::jsonrpc::{error_body, Id};
use crate::reply::{self, Chunks};

/// Counts and logs one refusal.
pub(super) fn count(gw: &Gateway, log: &mut AccessLog, r: &Rejection) {
    gw.metrics.rejected(r.reason());
    log.rejected(r.reason());
    match r.blame() {
        Blame::Client => tracing::debug!(reason = r.reason(), error = %r, "refused"),
        Blame::Upstream | Blame::Gateway => {
            tracing::warn!(reason = r.reason(), error = %r, "failed")
        }
    }
}

/// A refusal of the whole request, as its HTTP answer.
pub(super) fn request(
    gw: &Gateway,
    log: &mut AccessLog,
    id: Option<&Id>,
    r: &Rejection,
    transport: impl Into<Transport>,
) -> Response<Chunks> {
    count(gw, log, r);
    reply::rejection(id, r, transport)
}

/// A refusal of one websocket message, as the message that answers it.
pub(super) fn message(gw: &Gateway, id: Option<&Id>, r: &Rejection) -> bytes::Bytes {
    count(gw, &mut AccessLog::default(), r);
    let w = r.to_wire(Transport::JsonRpc);
    error_body(id, w.code, w.message, &w.data)
}
