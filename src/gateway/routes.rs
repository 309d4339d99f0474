//! Routing by path, as CometBFT's mux does it: `/` takes JSON-RPC bodies (an empty one
//! lists the routes), `/<method>` is the URI form whatever the HTTP method, `/websocket`
//! upgrades, and all of it again under `/v1`. Anything else is a plain 404, like the node.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{header, Method, Request, Response};
use http_body::Body as _;
use http_body_util::BodyExt;
use hyper::body::Incoming;

use super::access_log::AccessLog;
use super::{pipeline, refuse, respond, ws, Gateway};
use crate::admission::ClientKey;
use crate::config::{ByteSize, Config};
use crate::error::Rejection;
use crate::jsonrpc::{batch_len, parse_body, parse_uri, Envelope, Form};
use crate::methods::{self, ROUTES};
use crate::reply::Chunks;

/// The request's route, then its client's concurrency slot, then the pipeline.
pub(super) async fn route(
    gw: &Arc<Gateway>,
    config: &Config,
    req: Request<Incoming>,
    client: &ClientKey,
    log: &mut AccessLog,
) -> Response<Chunks> {
    let uri_len = req.uri().path_and_query().map_or(0, |p| p.as_str().len());
    let max = config.server.max_uri_bytes;
    if uri_len as u64 > max.as_u64() {
        let r = Rejection::UriTooLong { len: uri_len, max };
        return refuse::request(gw, log, None, &r, Form::Uri);
    }
    let path = strip_version(req.uri().path()).to_owned();
    if path == "/websocket" {
        return ws::upgrade(gw, config, req, client, log).await;
    }
    let form = if path == "/" {
        Form::JsonRpc
    } else if is_route_name(&path) && methods::lookup(&path[1..]).is_some() {
        Form::Uri
    } else {
        return refuse::request(gw, log, None, &Rejection::NoRoute, Form::Uri);
    };
    // One of the client's concurrent-request slots, held until the answer is written.
    let slot = match gw.admission.client_slot(client) {
        Ok(slot) => slot,
        Err(r) => return refuse::request(gw, log, None, &r, form),
    };
    let mut response = match form {
        Form::JsonRpc => root(gw, config, req, client, log).await,
        Form::Uri => uri_route(gw, config, req, client, &path[1..], log).await,
    };
    response.body_mut().hold_until_sent(slot);
    response
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

/// `/<method>?args`: one call, in the URI form.
async fn uri_route(
    gw: &Arc<Gateway>,
    config: &Config,
    req: Request<Incoming>,
    client: &ClientKey,
    name: &str,
    log: &mut AccessLog,
) -> Response<Chunks> {
    match uri_arguments(config, req).await {
        Ok(args) => {
            let call = parse_uri(&format!("/{name}"), args.as_deref());
            let served = pipeline::run(gw, client, std::slice::from_ref(&call), log).await;
            respond::single(log, served.into_iter().next(), Form::Uri)
        }
        Err(r) => {
            log.method(name);
            refuse::request(gw, log, None, &r, Form::Uri)
        }
    }
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

/// `/`: a JSON-RPC body (one call or a batch); an empty body or a GET lists the routes.
async fn root(
    gw: &Arc<Gateway>,
    config: &Config,
    req: Request<Incoming>,
    client: &ClientKey,
    log: &mut AccessLog,
) -> Response<Chunks> {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned);
    if req.method() == Method::GET || req.method() == Method::HEAD {
        return listing(gw, host.as_deref());
    }
    let server = &config.server;
    let body = match read_body(
        req.into_body(),
        server.max_body_bytes,
        server.body_read_timeout,
    )
    .await
    {
        Ok(body) if body.is_empty() => return listing(gw, host.as_deref()),
        Ok(body) => body,
        Err(r) => return refuse::request(gw, log, None, &r, Form::JsonRpc),
    };
    // Counted before the calls are built: refusing 333 000 of them must not cost 80 MB.
    let max = server.max_batch_size;
    let envelope = match batch_len(&body) {
        Some(got) if got > max => Err(Rejection::BatchTooLarge { got, max }),
        _ => parse_body(&body).map_err(|e| Rejection::Parse(e.0)),
    };
    drop(body);
    match envelope {
        Ok(Envelope::Single(call)) => {
            let served = pipeline::run(gw, client, std::slice::from_ref(&call), log).await;
            respond::single(log, served.into_iter().next(), Form::JsonRpc)
        }
        Ok(Envelope::Batch(calls)) if calls.is_empty() => {
            let r = Rejection::InvalidRequest("empty batch".into());
            refuse::request(gw, log, None, &r, Form::JsonRpc)
        }
        Ok(Envelope::Batch(calls)) if calls.len() > max => {
            let r = Rejection::BatchTooLarge {
                got: calls.len(),
                max,
            };
            refuse::request(gw, log, None, &r, Form::JsonRpc)
        }
        Ok(Envelope::Batch(calls)) => respond::batch(pipeline::run(gw, client, &calls, log).await),
        Err(r) => refuse::request(gw, log, None, &r, Form::JsonRpc),
    }
}

/// Reads a request body bounded in bytes and in time. A declared length over the cap
/// is refused before a byte is read.
pub(crate) async fn read_body(
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
