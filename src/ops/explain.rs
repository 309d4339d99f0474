//! `/admin/explain`: what the gateway would do with a request, without doing it. POST a
//! JSON-RPC call, or GET `/admin/explain/<method>?<args>` in the URI form. Nothing is
//! charged to any client and nothing reaches the node.

use std::sync::Arc;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::json;

use super::text;
use crate::error::Rejection;
use crate::gateway::{read_body, Admitted, Gateway};
use crate::jsonrpc::{parse_body, parse_uri, Call, Envelope};
use crate::methods::lookup;
use crate::reply::Chunks;

pub(super) async fn explain(gw: &Arc<Gateway>, req: Request<Incoming>) -> Response<Chunks> {
    let call = match request_call(gw, req).await {
        Ok(call) => call,
        Err(why) => return answer(StatusCode::BAD_REQUEST, json!({ "error": why })),
    };
    answer(StatusCode::OK, describe(gw, &call).await)
}

async fn request_call(gw: &Gateway, req: Request<Incoming>) -> Result<Call, String> {
    if let Some(rest) = req.uri().path().strip_prefix("/admin/explain/") {
        return Ok(parse_uri(&format!("/{rest}"), req.uri().query()));
    }
    let config = gw.config();
    let body = read_body(
        req.into_body(),
        config.server.max_body_bytes,
        config.server.body_read_timeout,
    )
    .await
    .map_err(|r| r.to_string())?;
    match parse_body(&body) {
        Ok(Envelope::Single(call)) => Ok(call),
        Ok(Envelope::Batch(_)) => Err("explain takes one call, not a batch".into()),
        Err(e) => Err(e.0),
    }
}

/// The pipeline's admission and cache plan, run dry: nothing charged, nothing fetched.
async fn describe(gw: &Gateway, call: &Call) -> serde_json::Value {
    let Some(spec) = lookup(&call.method) else {
        return json!({ "method": call.method, "verdict": "refused", "reason": "method not found" });
    };
    let policy = gw.admission().policy(spec);
    let mut out = json!({
        "method": spec.name,
        "allowed": policy.allowed && !spec.websocket_only,
        "lane": policy.lane.as_str(),
        "cost": policy.cost,
        "cache_rule": format!("{:?}", spec.cache),
        "cache_ttl_override": policy.cache_ttl.map(crate::config::format_duration),
    });
    let Admitted {
        policy,
        mut canonical,
    } = match gw.dry_run(call) {
        Ok(admitted) => admitted,
        Err(r) => {
            out["verdict"] = json!("refused");
            out["reason"] = json!(match r {
                Rejection::MethodNotFound if spec.websocket_only => "websocket only".to_owned(),
                Rejection::MethodDenied(_) => "denied by policy".to_owned(),
                Rejection::InvalidParams(why) => why,
                r => r.to_wire(call.form).data,
            });
            return out;
        }
    };
    let plan = gw.cache().plan(&mut canonical, policy.cache_ttl);
    out["verdict"] = json!("admitted");
    out["canonical_key"] = json!(canonical.key().to_string());
    out["upstream_params"] = serde_json::Value::Object(canonical.params.clone());
    out["cache"] =
        serde_json::to_value(gw.cache().explain(&plan).await).unwrap_or(serde_json::Value::Null);
    out
}

fn answer(status: StatusCode, body: serde_json::Value) -> Response<Chunks> {
    text(status, format!("{body:#}\n"), "application/json")
}
