//! HTTP routing as CometBFT's mux does it: `/_simnode/*` control, `/websocket`, URI routes at
//! `/{route}` and `/v1/{route}`, JSON-RPC at `/` and `/v1`, and Go's 404 for the rest.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use tokio::sync::watch;

use crate::call::{self, CallCtx, Element};
use crate::faults::{CutCtl, Fault};
use crate::node::Node;
use crate::response::{respond, Body};
use crate::routes::{self, ROUTES};
use crate::wire::{self, RpcError, RpcResponse, URI_ID};

/// Bodies above this are refused outright; CometBFT's own limit (`max_body_bytes`) applies
/// after the batch-size check, as its middleware order does.
const HARD_BODY_CAP: usize = 256 * 1024 * 1024;

fn json_error(status: StatusCode, r: RpcResponse) -> Response<Body> {
    respond(status, Some("application/json"), r.encode(false))
}

fn not_found() -> Response<Body> {
    let mut r = respond(
        StatusCode::NOT_FOUND,
        Some("text/plain; charset=utf-8"),
        b"404 page not found\n".to_vec(),
    );
    r.headers_mut().insert(
        "X-Content-Type-Options",
        hyper::header::HeaderValue::from_static("nosniff"),
    );
    r
}

pub(crate) async fn handle(
    node: Arc<Node>,
    cut: Arc<CutCtl>,
    dead: watch::Receiver<bool>,
    req: Request<Incoming>,
) -> Response<Body> {
    let path = req.uri().path().to_string();
    if path.starts_with("/_simnode/") {
        return crate::control::handle(node, req, false).await;
    }
    if path == "/websocket" || path == "/v1/websocket" {
        return crate::ws::upgrade(node, req, dead);
    }
    let rest = path
        .strip_prefix("/v1")
        .filter(|r| r.is_empty() || r.starts_with('/'))
        .unwrap_or(&path);
    let host = req
        .headers()
        .get("host")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("")
        .to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    // Who asked, where the caller says: a gateway's own probes are not its clients' calls.
    let agent = req
        .headers()
        .get("user-agent")
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned);
    // Go's FormValue, which getParam falls back to, also reads a form-encoded POST body.
    let form_post = req.method() == hyper::Method::POST
        && req
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    let body = match Limited::new(req.into_body(), HARD_BODY_CAP).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            node.count_only("(bad_body)", "(bad_body)");
            let err = RpcError::invalid_request(format!("error reading request body: {e}"));
            return json_error(StatusCode::BAD_REQUEST, RpcResponse::err(None, err));
        }
    };
    if node.cfg.max_batch_size > 0 && body.first() == Some(&b'[') {
        if let Ok(reqs) = wire::parse_body(&body) {
            if reqs.len() > node.cfg.max_batch_size {
                node.count_only("(batch_too_large)", "(batch_too_large)");
                let err = RpcError::invalid_request(format!(
                    "maximum JSON-RPC batch size exceeded, got: {}, max: {}",
                    reqs.len(),
                    node.cfg.max_batch_size
                ));
                return json_error(StatusCode::BAD_REQUEST, RpcResponse::err(None, err));
            }
        }
    }
    let response = if rest.is_empty() || rest == "/" {
        json_rpc(&node, &host, agent, &body).await
    } else if let Some(route) = ROUTES
        .iter()
        .find(|r| rest.strip_prefix('/') == Some(r.name))
    {
        let query = match (form_post, std::str::from_utf8(&body)) {
            (true, Ok(form)) if !form.is_empty() => format!("{query}&{form}"),
            _ => query,
        };
        uri_call(&node, route, agent, &query).await
    } else {
        node.count_only("(not_found)", "(not_found)");
        Some(not_found())
    };
    let Some(response) = response else {
        // The node died answering: the connection is being dropped, never answer.
        return std::future::pending().await;
    };
    shape(&node, &cut, response, &path, &body).await
}

/// Whole-response faults: a plain 500, padding, and the mid-body cut.
async fn shape(
    node: &Node,
    cut: &CutCtl,
    mut resp: Response<Body>,
    path: &str,
    body: &[u8],
) -> Response<Body> {
    let methods = call_methods(path, body);
    match node.fault_for(methods.iter().map(String::as_str)) {
        Fault::Http500 => respond(
            StatusCode::INTERNAL_SERVER_ERROR,
            Some("text/plain; charset=utf-8"),
            b"Internal Server Error\n".to_vec(),
        ),
        Fault::TruncatedJson | Fault::ResetMidBody => {
            let len = http_body_util::BodyExt::collect(resp.body_mut())
                .await
                .map(|c| c.to_bytes())
                .unwrap_or_default();
            let reset = node.fault().0 == Fault::ResetMidBody;
            cut.arm(len.len() / 2, reset);
            let (parts, _) = resp.into_parts();
            Response::from_parts(parts, Full::new(len))
        }
        Fault::Oversized(n) => {
            let mut bytes = resp
                .body_mut()
                .collect()
                .await
                .map(|c| c.to_bytes().to_vec())
                .unwrap_or_default();
            if bytes.len() < n {
                bytes.resize(n, b' ');
            }
            let (parts, _) = resp.into_parts();
            Response::from_parts(parts, Full::new(Bytes::from(bytes)))
        }
        _ => resp,
    }
}

/// The methods a call names, for method-scoped faults.
fn call_methods(path: &str, body: &[u8]) -> Vec<String> {
    let rest = path
        .strip_prefix("/v1")
        .unwrap_or(path)
        .trim_start_matches('/');
    if !rest.is_empty() {
        return vec![rest.to_string()];
    }
    wire::parse_body(body)
        .map(|r| r.into_iter().map(|r| r.method).collect())
        .unwrap_or_default()
}

async fn json_rpc(
    node: &Arc<Node>,
    host: &str,
    agent: Option<String>,
    body: &[u8],
) -> Option<Response<Body>> {
    if body.is_empty() {
        node.count_only("(list)", "(list)");
        return Some(respond(
            StatusCode::OK,
            Some("text/html"),
            list_endpoints(host),
        ));
    }
    if body.len() > node.cfg.max_body_bytes {
        node.count_only("(bad_body)", "(bad_body)");
        let err = RpcError::invalid_request(
            "error reading request body: http: request body too large".into(),
        );
        return Some(json_error(
            StatusCode::BAD_REQUEST,
            RpcResponse::err(None, err),
        ));
    }
    let requests = match wire::parse_body(body) {
        Ok(r) => r,
        Err(e) => {
            node.count_only("(parse_error)", "(parse_error)");
            return Some(json_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                RpcResponse::err(None, RpcError::parse(e)),
            ));
        }
    };
    let fault = node.fault_for(requests.iter().map(|r| r.method.as_str()));
    let ctx = CallCtx {
        agent,
        ..CallCtx::new(&fault, false, false)
    };
    let mut elements: Vec<Element> = Vec::new();
    for req in requests {
        let Some(id) = req.id else { continue };
        let route = routes::lookup(&req.method).filter(|r| !r.ws_only);
        let Some(route) = route else {
            node.count_only(&req.method, &format!("{}(?)", req.method));
            let id = if ctx.wrong_id { id.wrong() } else { id };
            let r = RpcResponse::err(Some(id), RpcError::method_not_found());
            elements.push(Element {
                bytes: r.encode(false),
                ok: false,
                cacheable: false,
            });
            continue;
        };
        let decoded = route.decode_json(req.params.as_ref());
        elements.push(call::run(node, id, route, decoded, &ctx).await?);
    }
    if elements.is_empty() {
        return Some(respond(StatusCode::OK, None, Vec::new()));
    }
    let cacheable = elements.iter().all(|e| e.cacheable);
    let body = if elements.len() == 1 {
        elements.pop().map(|e| e.bytes).unwrap_or_default()
    } else {
        join_array(elements)
    };
    Some(json_ok(body, cacheable))
}

fn join_array(elements: Vec<Element>) -> Vec<u8> {
    let mut out = Vec::with_capacity(elements.iter().map(|e| e.bytes.len() + 1).sum::<usize>() + 2);
    out.push(b'[');
    for (i, e) in elements.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(&e.bytes);
    }
    out.push(b']');
    out
}

fn json_ok(body: Vec<u8>, cacheable: bool) -> Response<Body> {
    let mut r = respond(StatusCode::OK, Some("application/json"), body);
    if cacheable {
        r.headers_mut().insert(
            "Cache-Control",
            hyper::header::HeaderValue::from_static("public, max-age=86400"),
        );
    }
    r
}

async fn uri_call(
    node: &Arc<Node>,
    route: &'static routes::Route,
    agent: Option<String>,
    query: &str,
) -> Option<Response<Body>> {
    if route.ws_only {
        node.count_only(route.name, &format!("{}(?)", route.name));
        return Some(json_error(
            StatusCode::NOT_FOUND,
            RpcResponse::err(Some(URI_ID), RpcError::method_not_found()),
        ));
    }
    let fault = node.fault_for(std::iter::once(route.name));
    let ctx = CallCtx {
        agent,
        ..CallCtx::new(&fault, true, false)
    };
    let decoded = route.decode_uri(&crate::uri::parse_query(query));
    let e = call::run(node, URI_ID, route, decoded, &ctx).await?;
    if e.ok {
        Some(json_ok(e.bytes, e.cacheable))
    } else {
        Some(respond(
            StatusCode::INTERNAL_SERVER_ERROR,
            Some("application/json"),
            e.bytes,
        ))
    }
}

/// CometBFT's HTML route list. Every route counts as one "that requires arguments" there,
/// because the Go code counts the context argument too.
fn list_endpoints(host: &str) -> Vec<u8> {
    let mut names: Vec<&routes::Route> = ROUTES.iter().collect();
    names.sort_by_key(|r| r.name);
    let mut s = String::from(
        "<html><body><br>Available endpoints:<br><br>Endpoints that require arguments:<br>",
    );
    for r in names {
        let args: Vec<String> = r.args.iter().map(|(n, _)| format!("{n}=_")).collect();
        let link = format!("//{host}/{}?{}", r.name, args.join("&"));
        s.push_str(&format!("<a href=\"{link}\">{link}</a></br>"));
    }
    s.push_str("</body></html>");
    s.into_bytes()
}
