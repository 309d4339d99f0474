//! `/websocket` on the gateway's side: the handshake's admission, and what each client
//! message becomes. Subscriptions go to the fan-out hub (or, in relay mode, are counted
//! and relayed to the node); any other call is served through the pipeline (admission,
//! caps, cache, lanes), so the websocket is no way around them.

use std::sync::{Arc, OnceLock, Weak};

use bytes::Bytes;
use futures_util::FutureExt;
use http::{Request, Response};
use hyper::body::Incoming;

use super::access_log::AccessLog;
use super::{pipeline, refuse, Gateway};
use crate::admission::{ClientKey, WsConnection};
use crate::config::{Config, WsMode};
use crate::error::{Rejection, Transport};
use crate::jsonrpc::{batch_len, parse_body, Call, Envelope, Params};
use crate::pool::Pool;
use crate::reply::{self, Chunks};
use crate::upstream::tls;
use crate::websocket::{
    self, Handler, Hub, HubSettings, NodeTarget, SubscriptionCall, Verdict, WsMetrics,
};

/// The fan-out hub, in fanout mode; it dials a node only once a client subscribes, and
/// each dial goes to a node the pool (set in `pool` once built) finds eligible for
/// "latest", so subscriptions move on when their node is lost.
pub(super) fn hub(
    config: &Config,
    metrics: WsMetrics,
    pool: &Arc<OnceLock<Weak<Pool>>>,
) -> Option<Arc<Hub>> {
    let w = &config.websocket;
    (w.mode == WsMode::Fanout).then(|| {
        let pool = pool.clone();
        let first = config.upstream.node_list().remove(0);
        let fallback = (
            websocket::node_url(&first.url),
            tls::client_config(first.ca_file.as_deref()),
        );
        let target = NodeTarget::new(move || {
            let node = pool
                .get()
                .and_then(Weak::upgrade)
                .and_then(|p| p.websocket_node());
            match node {
                Some(node) => (websocket::node_url(&node.config.url), node.tls.clone()),
                None => fallback.clone(),
            }
        });
        let settings = HubSettings {
            target,
            connect_timeout: config.upstream.connect_timeout,
            per_connection: w.node_subscriptions_per_connection,
            max_connections: w.max_node_connections,
            grace: w.unsubscribe_grace,
            max_frame_bytes: config.upstream.max_response_bytes.as_usize(),
        };
        Hub::new(settings, metrics)
    })
}

pub(super) async fn upgrade(
    gw: &Arc<Gateway>,
    config: &Config,
    mut req: Request<Incoming>,
    client: &ClientKey,
    log: &mut AccessLog,
) -> Response<Chunks> {
    let refuse = |log: &mut AccessLog, r: Rejection| {
        refuse::request(gw, log, None, &r, Transport::Handshake)
    };
    if !config.websocket.enabled {
        return refuse(log, Rejection::NoRoute);
    }
    let Some(key) = websocket::handshake_key(&req) else {
        return refuse(log, Rejection::NotWebSocket);
    };
    let conn = match gw.admission.ws_connection(client) {
        Ok(conn) => conn,
        Err(r) => return refuse(log, r),
    };
    let w = &config.websocket;
    let Some(node) = gw.pool.websocket_node() else {
        return refuse(
            log,
            Rejection::UpstreamUnavailable("no node can serve a websocket".into()),
        );
    };
    let settings = websocket::Settings {
        node_url: websocket::node_url(&node.config.url),
        connect_timeout: config.upstream.connect_timeout,
        max_message_bytes: w.max_message_bytes.as_usize(),
        ping_interval: w.ping_interval,
        client_buffer_messages: w.client_buffer_messages,
        client_buffer_bytes: w.client_buffer_bytes.as_usize(),
        max_subscriptions: w.max_subscriptions_per_connection,
        max_query_bytes: w.max_query_bytes,
        tls: node.tls.clone(),
    };
    let upstream = match &gw.hub {
        Some(hub) => websocket::Upstream::Fanout(hub.clone()),
        None => match websocket::dial(&settings).await {
            Ok(node) => websocket::Upstream::Relay(Box::new(node)),
            Err(r) => return refuse(log, r),
        },
    };
    let handler = Messages {
        gw: gw.clone(),
        client: client.clone(),
        conn,
    };
    websocket::accept(&mut req, &key, upstream, settings, &gw.relays, handler)
}

/// One connection's client messages.
struct Messages {
    gw: Arc<Gateway>,
    client: ClientKey,
    conn: WsConnection,
}

impl Handler for Messages {
    fn on_message(&mut self, data: Bytes) -> Verdict {
        let refuse = |gw: &Gateway, id, r: &Rejection| Verdict::Answer(refuse::message(gw, id, r));
        if let Err(r) = self.conn.check_message(data.len()) {
            return refuse(&self.gw, None, &r);
        }
        // The node's websocket takes one call per message: no batches (refused before
        // their calls are built).
        let call = match parse_body(&data) {
            _ if batch_len(&data).is_some() => Err(not_batches()),
            Ok(Envelope::Batch(_)) => Err(not_batches()),
            Ok(Envelope::Single(call)) => Ok(call),
            Err(e) => Err(Rejection::Parse(e.0)),
        };
        let call = match call {
            Ok(call) => call,
            Err(r) => return refuse(&self.gw, None, &r),
        };
        // Subscriptions are relayed rather than served, so their policy is checked here:
        // a method the operator denied is denied over the websocket too.
        if let Some(spec) = crate::methods::lookup(&call.method).filter(|s| s.websocket_only) {
            if !self.gw.admission.policy(spec).allowed {
                let r = Rejection::MethodDenied(spec.name.to_owned());
                return refuse(&self.gw, call.id.as_ref(), &r);
            }
        }
        let Some(id) = call.id.as_ref() else {
            // The node neither runs nor answers a notification; nothing to count either.
            return Verdict::Ignore;
        };
        if self.gw.hub.is_some() {
            // The hub holds subscriptions and applies the node's own checks to them.
            let query = match call.method.as_str() {
                "subscribe" | "unsubscribe" => match query_param(&call.params) {
                    Ok(query) => query.to_owned(),
                    Err(r) => return refuse(&self.gw, Some(id), &r),
                },
                _ => String::new(),
            };
            let call = match call.method.as_str() {
                "subscribe" => SubscriptionCall::Subscribe(query),
                "unsubscribe" => SubscriptionCall::Unsubscribe(query),
                "unsubscribe_all" => SubscriptionCall::UnsubscribeAll,
                _ => {
                    return Verdict::Serve(
                        serve(self.gw.clone(), self.client.clone(), call).boxed(),
                    )
                }
            };
            let id = Bytes::copy_from_slice(id.as_bytes());
            return Verdict::Subscription { id, call };
        }
        // An empty or non-string query is the node's to refuse: nothing to count.
        let query = query_param(&call.params).ok().filter(|q| !q.is_empty());
        match (call.method.as_str(), query) {
            ("subscribe", Some(query)) => match self.conn.add_subscription(query) {
                Ok(()) => Verdict::Forward,
                Err(r) => refuse(&self.gw, call.id.as_ref(), &r),
            },
            ("unsubscribe", Some(query)) => {
                self.conn.remove_subscription(query);
                Verdict::Forward
            }
            ("unsubscribe_all", _) => {
                self.conn.clear_subscriptions();
                Verdict::Forward
            }
            // Without a query the node answers with an error: nothing to count.
            ("subscribe" | "unsubscribe", None) => Verdict::Forward,
            _ => Verdict::Serve(serve(self.gw.clone(), self.client.clone(), call).boxed()),
        }
    }
}

fn not_batches() -> Rejection {
    Rejection::InvalidRequest("batches are not supported over websocket".into())
}

/// A call that arrived over the websocket, served like one over HTTP, holding one of
/// the client's concurrent-request slots as it would there.
async fn serve(gw: Arc<Gateway>, client: ClientKey, call: Call) -> Option<Bytes> {
    let mut log = AccessLog::default();
    let id = call.id.clone()?;
    let _slot = match gw.admission.client_slot(&client) {
        Ok(slot) => slot,
        Err(r) => return Some(refuse::message(&gw, Some(&id), &r)),
    };
    let served = pipeline::run(&gw, &client, std::slice::from_ref(&call), &mut log).await;
    let served = served.into_iter().next()?;
    let mut parts = Vec::with_capacity(3);
    reply::entry(&mut parts, Some(&served.id), &served.outcome, call.form);
    Some(parts.concat().into())
}

/// The `query` of a subscription call as the node reads it: absent or null is the empty
/// query (which then fails to parse), anything but a string fails to convert.
fn query_param(params: &Params) -> Result<&str, Rejection> {
    let value = match params {
        Params::Named(map) => map.get("query"),
        Params::Positional(items) => items.first(),
        _ => None,
    };
    let kind = match value {
        None | Some(serde_json::Value::Null) => return Ok(""),
        Some(serde_json::Value::String(s)) => return Ok(s),
        Some(serde_json::Value::Bool(_)) => "bool",
        Some(serde_json::Value::Number(_)) => "number",
        Some(serde_json::Value::Array(_)) => "array",
        Some(serde_json::Value::Object(_)) => "object",
    };
    Err(Rejection::InvalidParams(format!(
        "error converting json params to arguments: json: cannot unmarshal {kind} into Go \
         value of type string"
    )))
}
