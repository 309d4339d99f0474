//! The operator's listener (`[metrics] listen`, loopback by default), never the proxy
//! port: `/metrics`, `/healthz`, `/readyz`, the admin routes (`/admin/purge`,
//! `/admin/explain`, `/admin/config`, `/admin/state`) and the live page at `/`.

use std::convert::Infallible;
use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::config::ByteSize;
use crate::gateway::Gateway;
use crate::reply::Chunks;
use crate::server::{serve_connection, Admitted, Gate, Http, Listener, Policy};

mod explain;
mod live;
mod nodes;
mod page;
mod state;
mod top;

pub use top::top;

/// Scrapers, probes and an operator's curl: a handful at once. More is refused rather
/// than letting this port hold file descriptors the proxy needs. Nobody here is a
/// client to tell apart or a slowloris to evict.
pub(crate) const POLICY: Policy = Policy {
    max_connections: 64,
    per_client: false,
    max_pending: None,
};

const HTTP: Http = Http {
    header_read_timeout: Duration::from_secs(5),
    max_buf_size: None,
};

/// The ops port's connections are the operator's: no per-address cap, and none of
/// them in the client connection metrics (a scrape would count itself).
struct Operator;

impl Gate for Operator {
    type Slot = ();

    fn client_slot(&self, _: IpAddr) -> Option<()> {
        Some(())
    }

    fn refused(&self, reason: &'static str) {
        tracing::debug!(reason, "ops connection refused");
    }

    fn opened(&self) {}

    fn closed(&self) {}
}

/// Serves the operator routes until `shutdown` completes; the connections left then
/// close once their request in flight is answered.
pub async fn run(listener: TcpListener, gw: Arc<Gateway>, shutdown: impl Future<Output = ()>) {
    let loopback = listener
        .local_addr()
        .is_ok_and(|a| a.ip().to_canonical().is_loopback());
    let served = move |admitted: Admitted<Operator>| {
        let gw = gw.clone();
        let Admitted {
            stream,
            peer,
            lease,
        } = admitted;
        let service = service_fn(move |req| {
            let gw = gw.clone();
            async move { Ok::<_, Infallible>(route(&gw, loopback, req).await) }
        });
        serve_connection(TokioIo::new(stream), service, HTTP, lease, peer)
    };
    let draining = Listener::new(listener, POLICY, Arc::new(Operator))
        .serve_until(shutdown, served)
        .await;
    // Nothing waits for the ops port at exit: its connections are told to close, and
    // the process ends with the proxy's drain.
    drop(draining);
}

/// `/admin/*` can empty the cache (a thundering herd at the node) and shows the
/// config: it needs `metrics.admin_token`, or else a loopback listener. The live page
/// shows who the clients are, and is held to the same rule.
fn admin_refusal(
    gw: &Gateway,
    loopback: bool,
    req: &Request<Incoming>,
) -> Option<Response<Chunks>> {
    let config = gw.config();
    let Some(token) = config.metrics.admin_token.as_deref() else {
        return (!loopback).then(|| {
            text(
                StatusCode::FORBIDDEN,
                "admin routes on a non-loopback listener need metrics.admin_token\n".into(),
                "text/plain; charset=utf-8",
            )
        });
    };
    let offered = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| page::offered_token(v.as_bytes()))
        .unwrap_or_default();
    if same_secret(&offered, token.as_bytes()) {
        return None;
    }
    let mut refused = text(
        StatusCode::UNAUTHORIZED,
        "admin routes need Authorization: Bearer <metrics.admin_token>\n".into(),
        "text/plain; charset=utf-8",
    );
    // A browser cannot be told to send a bearer token, but it asks for a password when
    // challenged with Basic, and sends it again with the page's own requests.
    let challenge = if page::is_page(req.uri().path()) {
        HeaderValue::from_static("Basic realm=\"cometgate\", charset=\"UTF-8\"")
    } else {
        HeaderValue::from_static("Bearer")
    };
    refused
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, challenge);
    Some(refused)
}

/// Compares without stopping at the first differing byte.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn route(gw: &Arc<Gateway>, loopback: bool, req: Request<Incoming>) -> Response<Chunks> {
    let path = req.uri().path().to_owned();
    if path.starts_with("/admin/") || page::is_page(&path) {
        if let Some(refused) = admin_refusal(gw, loopback, &req) {
            return refused;
        }
    }
    match (req.method().clone(), path.as_str()) {
        (Method::GET, "/metrics") => text(
            StatusCode::OK,
            metrics(gw),
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        ),
        (Method::GET, "/healthz") => {
            text(StatusCode::OK, "ok\n".into(), "text/plain; charset=utf-8")
        }
        (Method::GET, "/readyz") => readiness(gw),
        (Method::POST, "/admin/purge") => purge(gw, req.uri().query()),
        (Method::GET | Method::POST, p)
            if p == "/admin/explain" || p.starts_with("/admin/explain/") =>
        {
            explain::explain(gw, req).await
        }
        (Method::GET, "/admin/state") => live_json(state::state(gw)),
        (Method::GET, "/admin/nodes") => live_json(nodes::json(gw)),
        (Method::GET, p) if page::is_page(p) => page::serve(p),
        (Method::GET, "/admin/config") => text(
            StatusCode::OK,
            redacted_config(gw),
            "application/toml; charset=utf-8",
        ),
        _ => text(
            StatusCode::NOT_FOUND,
            "404 page not found\n".into(),
            "text/plain; charset=utf-8",
        ),
    }
}

/// A view of now, as JSON: never kept by a cache between the operator and this port.
fn live_json(value: serde_json::Value) -> Response<Chunks> {
    let mut r = text(StatusCode::OK, format!("{value}\n"), "application/json");
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

pub(crate) fn text(
    status: StatusCode,
    body: String,
    content_type: &'static str,
) -> Response<Chunks> {
    let mut response = Response::new(Chunks::from(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// Ready when the node answers `status` over HTTP, its head advances, it is not
/// catching up and the circuit is closed: a load balancer should stop sending traffic
/// here otherwise.
fn readiness(gw: &Gateway) -> Response<Chunks> {
    let head = gw.head();
    let mut problems = node_problems(gw);
    problems.extend(gw.shared_problem());
    let body = serde_json::json!({
        "ready": problems.is_empty(),
        "problems": problems,
        "head_height": head.height(),
        "head_age_seconds": head.age().map(|d| d.as_secs_f64()),
    });
    let status = if problems.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    text(status, format!("{body}\n"), "application/json")
}

/// Why the node should get no traffic now; empty when it is ready.
fn node_problems(gw: &Gateway) -> Vec<String> {
    let head = gw.head();
    let mut problems: Vec<String> = Vec::new();
    if head.height().is_none() {
        problems.push("no chain head seen yet".into());
    } else if head.blind() {
        problems.push("the chain head has not advanced within head.stall_after".into());
    }
    if let Some(why) = head.rpc_failure() {
        problems.push(format!("the node's HTTP RPC fails: {why}"));
    }
    if head.catching_up() {
        problems.push("the node is catching up".into());
    }
    if gw.pool().holding_off() {
        problems.push("every node is failing (circuit open)".into());
    }
    problems
}

fn purge(gw: &Gateway, query: Option<&str>) -> Response<Chunks> {
    let method = query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .find_map(|pair| pair.strip_prefix("method="))
        .filter(|m| !m.is_empty());
    if let Some(m) = method {
        if crate::methods::lookup(m).is_none() {
            return text(
                StatusCode::BAD_REQUEST,
                format!("{{\"error\":\"unknown method {m:?}\"}}\n"),
                "application/json",
            );
        }
    }
    let purged = gw.cache().purge(method);
    tracing::info!(
        method = method.unwrap_or("*"),
        purged,
        "cache purged by operator"
    );
    text(
        StatusCode::OK,
        format!(
            "{}\n",
            serde_json::json!({ "purged": purged, "method": method })
        ),
        "application/json",
    )
}

/// The effective config with API keys masked: it is served over HTTP.
fn redacted_config(gw: &Gateway) -> String {
    let mut config = (*gw.config()).clone();
    for quota in &mut config.rate_limit.api_keys {
        quota.key = "<redacted>".into();
    }
    if config.metrics.admin_token.is_some() {
        config.metrics.admin_token = Some("<redacted>".into());
    }
    // A provider's user:password in a node's URL stays in the file.
    let hide = |url: &mut http::Uri| {
        if url.authority().is_some_and(|a| a.as_str().contains('@')) {
            let public = crate::pool::public_url(url).replacen("://", "://redacted@", 1);
            if let Ok(hidden) = public.parse() {
                *url = hidden;
            }
        }
    };
    hide(&mut config.upstream.url);
    for node in &mut config.upstream.nodes {
        hide(&mut node.url);
    }
    config.to_toml_string()
}

fn metrics(gw: &Arc<Gateway>) -> String {
    let mut out = String::with_capacity(16 * 1024);
    gw.metrics()
        .encode(&mut out, Box::new(live::Live(gw.clone())));
    out
}

/// Resident set size from /proc/self/status (`VmRSS`, in kB): Linux only, None elsewhere.
pub(crate) fn process_rss() -> Option<ByteSize> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(ByteSize::kib(kib))
}
