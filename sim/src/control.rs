//! The control routes under `/_simnode/`, on the RPC port and on the optional control port.
//! Their hits are not counted as requests.

use std::sync::Arc;

use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{json, Value};

use crate::faults::{Fault, MetricsFault};
use crate::lifecycle;
use crate::metrics;
use crate::metrics_port;
use crate::node::Node;
use crate::response::{respond, Body};

fn reply(status: StatusCode, v: Value) -> Response<Body> {
    respond(
        status,
        Some("application/json"),
        serde_json::to_vec(&v).unwrap_or_default(),
    )
}

/// Killing the RPC port from a request on that port would swallow this very answer: let
/// it go out first.
fn after_reply(f: impl FnOnce() -> std::io::Result<()> + Send + 'static) {
    tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let _ = f();
    });
}

pub(crate) async fn handle(
    node: Arc<Node>,
    req: Request<Incoming>,
    control_port: bool,
) -> Response<Body> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    match (method, path.as_str()) {
        (Method::GET, "/_simnode/stats") => reply(StatusCode::OK, json!(node.stats())),
        (Method::GET, "/_simnode/metrics") => metrics::answer(&node),
        // The control port stands in for a real node's `:26660` when no metrics port is set.
        (Method::GET, "/metrics") if control_port => metrics::answer(&node),
        (Method::POST, "/_simnode/speed" | "/_simnode/ballast" | "/_simnode/metrics-fault") => {
            let spec: Value = serde_json::from_slice(&body).unwrap_or(json!({}));
            knob(&node, &path, &spec)
        }
        (Method::POST, "/_simnode/reset-counters") => {
            lifecycle::reset_counters(&node);
            reply(StatusCode::OK, json!({"ok": true}))
        }
        (Method::POST, "/_simnode/restart") if !control_port => {
            after_reply(move || lifecycle::restart(&node));
            reply(StatusCode::OK, json!({"ok": true}))
        }
        (Method::POST, "/_simnode/restart") => match lifecycle::restart(&node) {
            Ok(()) => reply(StatusCode::OK, json!({"ok": true})),
            Err(e) => reply(
                StatusCode::INTERNAL_SERVER_ERROR,
                json!({"error": e.to_string()}),
            ),
        },
        (Method::POST, "/_simnode/advance") => {
            reply(StatusCode::OK, json!({"height": node.chain.advance()}))
        }
        (Method::POST, "/_simnode/fault") => {
            let spec: Value = serde_json::from_slice(&body).unwrap_or(json!({}));
            match Fault::from_spec(&spec) {
                Ok(fault) => {
                    let scope = spec
                        .get("method")
                        .and_then(Value::as_str)
                        .map(str::to_string);
                    if fault == Fault::Down && !control_port {
                        after_reply(move || lifecycle::apply_fault(&node, fault, scope));
                        return reply(StatusCode::OK, json!({"ok": true, "control_port": false}));
                    }
                    match lifecycle::apply_fault(&node, fault, scope) {
                        Ok(()) => reply(
                            StatusCode::OK,
                            json!({"ok": true, "control_port": control_port}),
                        ),
                        Err(e) => reply(
                            StatusCode::INTERNAL_SERVER_ERROR,
                            json!({"error": e.to_string()}),
                        ),
                    }
                }
                Err(e) => reply(StatusCode::BAD_REQUEST, json!({"error": e})),
            }
        }
        _ => reply(
            StatusCode::NOT_FOUND,
            json!({"error": format!("unknown control route {path}")}),
        ),
    }
}

/// The run-time knobs: `{"speed": 0.25}`, `{"bytes": N}`, `{"kind": "down"}`.
fn knob(node: &Arc<Node>, path: &str, spec: &Value) -> Response<Body> {
    let bad = |e: String| reply(StatusCode::BAD_REQUEST, json!({ "error": e }));
    match path {
        "/_simnode/speed" => match spec.get("speed").and_then(Value::as_f64) {
            Some(speed) if speed.is_finite() && speed > 0.0 => {
                node.cpu.set_speed(speed);
                reply(StatusCode::OK, json!({"ok": true, "speed": speed}))
            }
            _ => bad("speed needs a positive \"speed\"".into()),
        },
        "/_simnode/ballast" => match spec.get("bytes").and_then(Value::as_u64) {
            Some(bytes) => {
                lifecycle::set_ballast(node, bytes);
                reply(
                    StatusCode::OK,
                    json!({"ok": true, "oom": node.mem.is_oom()}),
                )
            }
            None => bad("ballast needs \"bytes\"".into()),
        },
        _ => match MetricsFault::from_spec(spec) {
            Ok(fault) => match metrics_port::apply(node, fault) {
                Ok(()) => reply(StatusCode::OK, json!({"ok": true})),
                Err(e) => reply(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    json!({"error": e.to_string()}),
                ),
            },
            Err(e) => bad(e),
        },
    }
}
