//! Routing by path, as CometBFT's mux does it: `/` takes JSON-RPC bodies (an empty one
//! lists the routes), `/<method>` is the URI form whatever the HTTP method, `/websocket`
//! upgrades, and all of it again under `/v1`. Anything else is a plain 404, like the node.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{header, Method, Request, Response, StatusCode};
use http_body::Body as _;
use http_body_util::BodyExt;
use hyper::body::Incoming;

use super::{batch, call, Gateway};
use crate::admission::ClientKey;
use crate::config::{ByteSize, Config};
use crate::error::Rejection;
use crate::jsonrpc::{batch_len, parse_body, parse_uri, Envelope, Form};
use crate::methods::{self, ROUTES};
use crate::reply::{self, Chunks};

pub(super) use super::call::AccessLog;

pub(super) async fn route(
    gw: &Arc<Gateway>,
    config: &Config,
    req: Request<Incoming>,
    client: &ClientKey,
) -> (Response<Chunks>, AccessLog) {
    let mut log = AccessLog::default();
    let uri_len = req.uri().path_and_query().map_or(0, |p| p.as_str().len());
    if uri_len as u64 > config.server.max_uri_bytes.as_u64() {
        let why = format!(
            "URI of {uri_len} bytes is over server.max_uri_bytes ({})",
            config.server.max_uri_bytes
        );
        let r = Rejection::InvalidRequest(why);
        gw.metrics.rejected("size");
        let mut response = reply::rejection(None, &r, Form::Uri);
        *response.status_mut() = StatusCode::URI_TOO_LONG;
        log.rejected("size");
        return (response, log);
    }
    let path = strip_version(req.uri().path()).to_owned();
    if path == "/websocket" {
        return (
            crate::websocket::relay(gw.clone(), req, client.clone()).await,
            log,
        );
    }
    let is_root = path == "/";
    let is_route = is_route_name(&path) && methods::lookup(&path[1..]).is_some();
    if !is_root && !is_route {
        return (not_found(&mut log), log);
    }
    // One of the client's concurrent-request slots, held until the answer is written.
    let slot = match gw.admission.client_slot(client) {
        Ok(slot) => slot,
        Err(r) => {
            call::refused(gw, &r);
            log.rejected(r.reason());
            let form = if is_root { Form::JsonRpc } else { Form::Uri };
            return (reply::rejection(None, &r, form), log);
        }
    };
    let mut response = if is_root {
        root(gw, config, req, client, &mut log).await
    } else {
        log.method(&path[1..]);
        match uri_arguments(config, req).await {
            Ok(args) => {
                let call = parse_uri(&path, args.as_deref());
                call::serve_single(gw, client, call, &mut log).await
            }
            Err(r) => {
                call::refused(gw, &r);
                log.rejected(r.reason());
                reply::rejection(None, &r, Form::Uri)
            }
        }
    };
    response.body_mut().hold_until_sent(slot);
    (response, log)
}

/// `/v1/x` is `/x` (CometBFT 1.x serves both).
fn strip_version(path: &str) -> &str {
    match path.strip_prefix("/v1") {
        Some("") => "/",
        Some(rest) if rest.starts_with('/') => rest,
        _ => path,
    }
}

/// One path segment of route-name characters: no traversal, no encodings, no trailing
/// slash, so what the gateway checks is exactly what the node would serve.
fn is_route_name(path: &str) -> bool {
    // hyper hands over an origin-less target (`GET x`, `CONNECT a:1`) with an empty path.
    let Some(name) = path.strip_prefix('/') else {
        return false;
    };
    !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
}

fn not_found(log: &mut AccessLog) -> Response<Chunks> {
    log.rejected("route");
    reply::plain(StatusCode::NOT_FOUND, "404 page not found\n")
}

/// A URI route's arguments: the query, then (as Go's `FormValue` falls back to it) a
/// form-encoded POST body, read under the same caps as a JSON-RPC body.
async fn uri_arguments(
    config: &Config,
    req: Request<Incoming>,
) -> Result<Option<String>, Rejection> {
    let query = req.uri().query().map(str::to_owned);
    let form = req.method() == Method::POST
        && req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if !form {
        return Ok(query);
    }
    let body = read_body(
        req.into_body(),
        config.server.max_body_bytes,
        config.server.body_read_timeout,
    )
    .await?;
    let body = std::str::from_utf8(&body)
        .map_err(|_| Rejection::InvalidRequest("form body is not UTF-8".into()))?;
    // First occurrence wins in parse_uri: the query's value before the body's.
    Ok(Some(match query {
        Some(q) => format!("{q}&{body}"),
        None => body.to_owned(),
    }))
}

async fn root(
    gw: &Arc<Gateway>,
    config: &Config,
    req: Request<Incoming>,
    client: &ClientKey,
    log: &mut AccessLog,
) -> Response<Chunks> {
    if req.method() == Method::GET || req.method() == Method::HEAD {
        return listing(
            gw,
            req.headers()
                .get(header::HOST)
                .and_then(|h| h.to_str().ok()),
        );
    }
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned);
    let body = match read_body(
        req.into_body(),
        config.server.max_body_bytes,
        config.server.body_read_timeout,
    )
    .await
    {
        Ok(b) => b,
        Err(r) => {
            call::refused(gw, &r);
            log.rejected(r.reason());
            return reply::rejection(None, &r, Form::JsonRpc);
        }
    };
    if body.is_empty() {
        return listing(gw, host.as_deref());
    }
    // Counted before the calls are built: refusing 333 000 of them must not cost 80 MB.
    let max = config.server.max_batch_size;
    if let Some(got) = batch_len(&body).filter(|n| *n > max) {
        return batch_too_large(gw, log, got, max);
    }
    let envelope = match parse_body(&body) {
        Ok(e) => e,
        Err(e) => {
            let r = Rejection::Parse(e.0);
            call::refused(gw, &r);
            log.rejected(r.reason());
            return reply::rejection(None, &r, Form::JsonRpc);
        }
    };
    drop(body);
    match envelope {
        Envelope::Single(call) => {
            log.method(&call.method);
            call::serve_single(gw, client, call, log).await
        }
        Envelope::Batch(calls) if calls.len() > max => batch_too_large(gw, log, calls.len(), max),
        Envelope::Batch(calls) => batch::serve(gw, client, calls, log).await,
    }
}

fn batch_too_large(gw: &Gateway, log: &mut AccessLog, got: usize, max: usize) -> Response<Chunks> {
    let r = Rejection::BatchTooLarge { got, max };
    call::refused(gw, &r);
    log.rejected(r.reason());
    reply::rejection(None, &r, Form::JsonRpc)
}

/// Reads a request body bounded in bytes and in time. A declared length over the cap
/// is refused before a byte is read.
pub async fn read_body(
    body: Incoming,
    max: ByteSize,
    timeout: Duration,
) -> Result<Bytes, Rejection> {
    if body.size_hint().lower() > max.as_u64() {
        return Err(Rejection::BodyTooLarge { max });
    }
    let read = async {
        let mut body = body;
        let mut buf = BytesMut::with_capacity(
            body.size_hint().exact().unwrap_or(1024).min(max.as_u64()) as usize,
        );
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| {
                Rejection::InvalidRequest(format!("error reading request body: {e}"))
            })?;
            if let Ok(data) = frame.into_data() {
                if (buf.len() + data.len()) as u64 > max.as_u64() {
                    return Err(Rejection::BodyTooLarge { max });
                }
                buf.extend_from_slice(&data);
            }
        }
        Ok(buf.freeze())
    };
    tokio::time::timeout(timeout, read)
        .await
        .unwrap_or(Err(Rejection::BodyTimeout))
}

/// The route list CometBFT serves at `/`, limited to what this gateway lets through.
fn listing(gw: &Gateway, host: Option<&str>) -> Response<Chunks> {
    let host = host.unwrap_or("");
    let open: Vec<_> = ROUTES
        .iter()
        .filter(|spec| !spec.websocket_only && gw.admission.policy(spec).allowed)
        .collect();
    let mut no_args: Vec<_> = open
        .iter()
        .filter(|s| s.args.is_empty())
        .map(|s| s.name)
        .collect();
    let mut with_args: Vec<_> = open.iter().filter(|s| !s.args.is_empty()).collect();
    no_args.sort_unstable();
    with_args.sort_unstable_by_key(|s| s.name);
    let mut html = String::from("<html><body><br>Available endpoints:<br>");
    for name in no_args {
        html.push_str(&format!("<a href=\"//{host}/{name}\">{name}</a><br>"));
    }
    html.push_str("<br>Endpoints that require arguments:<br>");
    for spec in with_args {
        let args: Vec<String> = spec.args.iter().map(|a| format!("{}=_", a.name)).collect();
        let link = format!("//{host}/{}?{}", spec.name, args.join("&"));
        html.push_str(&format!("<a href=\"{link}\">{link}</a></br>"));
    }
    html.push_str("</body></html>");
    let mut response = Response::new(Chunks::from(Bytes::from(html)));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/html"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_v1_prefix_is_ignored() {
        assert_eq!(strip_version("/v1/status"), "/status");
        assert_eq!(strip_version("/v1"), "/");
        assert_eq!(strip_version("/v1/"), "/");
        assert_eq!(strip_version("/v10/status"), "/v10/status");
        assert_eq!(strip_version("/status"), "/status");
    }

    #[test]
    fn odd_paths_are_not_route_names() {
        for p in [
            "/status/",
            "/../status",
            "/st%61tus",
            "/Status",
            "/",
            "/a/b",
            "/status.json",
        ] {
            assert!(!is_route_name(p), "{p}");
        }
        assert!(is_route_name("/tx_search"));
    }
}
