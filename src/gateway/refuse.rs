//! The one refusal path. Whatever refused a request or one of its calls, on whatever
//! transport, it is counted under its reason, logged once (client mistakes at debug, the
//! node's and the gateway's faults at warn), marked in the access log, and rendered from
//! `Rejection::to_wire` alone.

use http::Response;

use super::access_log::AccessLog;
use super::Gateway;
use crate::error::{Blame, Rejection, Transport};
use crate::jsonrpc::{error_body, Id};
use crate::methods::Lane;
use crate::recent::Scope;
use crate::reply::{self, Chunks};

/// Counts and logs one refusal; `lane` is the refused call's, where a call was read.
pub(super) fn count(gw: &Gateway, log: &mut AccessLog, r: &Rejection, lane: Option<Lane>) {
    gw.metrics.rejected(r.reason());
    let lane = match r {
        Rejection::Overloaded { lane, .. } => Some(*lane),
        _ => lane,
    };
    gw.recent
        .refused(lane.map_or(Scope::Other, scope), r.reason());
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
    count(gw, log, r, None);
    reply::rejection(id, r, transport)
}

/// A refusal of one websocket message, as the message that answers it.
pub(super) fn message(gw: &Gateway, id: Option<&Id>, r: &Rejection) -> bytes::Bytes {
    count(gw, &mut AccessLog::default(), r, None);
    let w = r.to_wire(Transport::JsonRpc);
    error_body(id, w.code, w.message, &w.data)
}

/// The live view's name for a lane.
pub(super) fn scope(lane: Lane) -> Scope {
    match lane {
        Lane::Light => Scope::Light,
        Lane::Heavy => Scope::Heavy,
    }
}
