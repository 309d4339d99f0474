//! `spawn_gateway()`: a simulated node and a gateway in front of it, both on port 0, plus
//! a small HTTP client that returns status, headers and body.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cometgate::config::{Config, LocalClients};
use cometgate::gateway::Gateway;
use cometgate_sim::{SimNode, SimNodeConfig};
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How long any wait in these tests may take before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(20);

pub struct Harness {
    pub node: SimNode,
    pub gateway: Arc<Gateway>,
    pub addr: SocketAddr,
    /// The operator listener (metrics, health, admin), also on port 0.
    pub ops_addr: SocketAddr,
    http: Client<HttpConnector, Full<Bytes>>,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<()>>,
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn cache(&self) -> &str {
        self.headers
            .get("x-cometgate-cache")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

/// A frozen chain (blocks advance only when a test says so) and a gateway with the
/// defaults: what most tests want.
pub async fn spawn_gateway() -> Harness {
    spawn_gateway_with(SimNodeConfig::default(), |_| {}).await
}

/// A simulated node whose chain advances only when a test says so.
pub async fn frozen_node(config: SimNodeConfig) -> SimNode {
    SimNode::start(SimNodeConfig {
        block_interval: Duration::ZERO,
        ..config
    })
    .await
    .expect("simnode starts")
}

pub async fn spawn_gateway_with(node: SimNodeConfig, tweak: impl FnOnce(&mut Config)) -> Harness {
    let node = frozen_node(node).await;
    let mut config = Config::default();
    config.upstream.url = node.url().parse().expect("node url");
    config.metrics.listen = None;
    config.head.poll_interval = Duration::from_millis(100);
    // Every test client is 127.0.0.1, which the defaults exempt as a local client; the
    // tests of per-client limits need them to bind, and set their own.
    config.rate_limit.local_clients = LocalClients::Limited;
    // Tests fire requests far faster than one client should; rate-limit tests set their own.
    config.rate_limit.requests_per_second = 1_000_000;
    config.rate_limit.burst = 1_000_000;
    config.rate_limit.max_concurrent_per_client = 100_000;
    config.server.max_pending_connections = config.server.max_connections;
    config.server.max_connections_per_client = config.server.max_connections;
    tweak(&mut config);
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let gateway = Gateway::new(config);
    let (stop, stopped) = oneshot::channel::<()>();
    let ops = TcpListener::bind("127.0.0.1:0").await.expect("bind ops");
    let ops_addr = ops.local_addr().expect("ops addr");
    tokio::spawn(cometgate::ops::run(
        ops,
        gateway.clone(),
        std::future::pending(),
    ));
    let server = tokio::spawn(cometgate::server::run(
        listener,
        gateway.clone(),
        async move {
            let _ = stopped.await;
        },
    ));
    let h = Harness {
        node,
        gateway,
        addr,
        ops_addr,
        http: Client::builder(TokioExecutor::new()).build_http(),
        stop: Some(stop),
        server: Some(server),
    };
    let height = h.node.height();
    h.wait_for_head(height).await;
    h
}

impl Harness {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Produces a block on the node and waits until the gateway has seen it.
    pub async fn advance_block(&self) -> u64 {
        self.node.advance_block();
        let height = self.node.height();
        self.wait_for_head(height).await;
        height
    }

    pub async fn wait_for_head(&self, height: u64) {
        let gw = self.gateway.clone();
        eventually("the gateway sees the node's head", move || {
            let gw = gw.clone();
            async move { gw.head().height() >= Some(height) }
        })
        .await;
    }

    pub async fn ops(&self, method: Method, path: &str, body: &str) -> Reply {
        let url = format!("http://{}{path}", self.ops_addr);
        send(&self.http, method, &url, Bytes::from(body.to_owned()), &[]).await
    }

    /// The value of one sample in `/metrics`: `name` with every `labels` fragment.
    pub async fn metric(&self, name: &str, labels: &[&str]) -> f64 {
        let text = String::from_utf8(self.ops(Method::GET, "/metrics", "").await.body.to_vec())
            .expect("utf-8");
        metric_value(&text, name, labels).unwrap_or(0.0)
    }

    pub async fn post(&self, body: &str) -> Reply {
        self.request_at(&self.url(), Method::POST, "/", body, &[])
            .await
    }

    pub async fn get(&self, path_and_query: &str) -> Reply {
        self.request_at(&self.url(), Method::GET, path_and_query, "", &[])
            .await
    }

    pub async fn post_node(&self, body: &str) -> Reply {
        self.request_at(&self.node.url(), Method::POST, "/", body, &[])
            .await
    }

    pub async fn get_node(&self, path_and_query: &str) -> Reply {
        self.request_at(&self.node.url(), Method::GET, path_and_query, "", &[])
            .await
    }

    pub async fn request(
        &self,
        method: Method,
        path: &str,
        body: &str,
        headers: &[(&str, &str)],
    ) -> Reply {
        self.request_at(&self.url(), method, path, body, headers)
            .await
    }

    /// As `request`, to `base` (the node's url, say).
    pub async fn request_at(
        &self,
        base: &str,
        method: Method,
        path: &str,
        body: &str,
        headers: &[(&str, &str)],
    ) -> Reply {
        send(
            &self.http,
            method,
            &format!("{base}{path}"),
            Bytes::from(body.to_owned()),
            headers,
        )
        .await
    }

    /// Puts another node (another chain, say) at the old node's address, as an operator
    /// replacing the node behind a running gateway would.
    pub async fn replace_node(&mut self, config: SimNodeConfig) {
        let addr = self.node.addr();
        let stand_in = frozen_node(SimNodeConfig::default()).await;
        std::mem::replace(&mut self.node, stand_in).shutdown().await;
        let node = frozen_node(SimNodeConfig {
            listen: addr,
            ..config
        })
        .await;
        std::mem::replace(&mut self.node, node).shutdown().await;
    }

    /// Stops the gateway the way SIGTERM does and waits for the drain.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            let _ = tokio::time::timeout(DEADLINE, server).await;
        }
    }
}

pub async fn send(
    http: &Client<HttpConnector, Full<Bytes>>,
    method: Method,
    url: &str,
    body: Bytes,
    headers: &[(&str, &str)],
) -> Reply {
    let mut builder = Request::builder().method(method).uri(url);
    let typed = headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("content-type"));
    if !body.is_empty() && !typed {
        builder = builder.header("content-type", "application/json");
    }
    for (k, v) in headers {
        builder = builder.header(*k, *v);
    }
    let request = builder.body(Full::new(body)).expect("request");
    let response = tokio::time::timeout(DEADLINE, http.request(request))
        .await
        .expect("answered within the deadline")
        .expect("request succeeds");
    let (parts, body) = response.into_parts();
    let body = tokio::time::timeout(DEADLINE, body.collect())
        .await
        .expect("body within the deadline")
        .expect("body")
        .to_bytes();
    Reply {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

/// A second operator listener on every interface (as in Docker), for the access rules
/// that apply off loopback: its port.
/// Serves `gateway` on a fresh loopback port until the test ends; its address.
pub async fn serve(gateway: std::sync::Arc<Gateway>) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(cometgate::server::run(
        listener,
        gateway,
        std::future::pending(),
    ));
    addr
}

pub async fn spawn_wide_ops(h: &Harness) -> u16 {
    let wide = TcpListener::bind("0.0.0.0:0").await.expect("bind");
    let port = wide.local_addr().expect("addr").port();
    tokio::spawn(cometgate::ops::run(
        wide,
        h.gateway.clone(),
        std::future::pending(),
    ));
    port
}

/// Polls `check` until it holds, failing the test after `DEADLINE`.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The parts of a JSON-RPC answer that must agree between the gateway and the node.
pub fn rpc_view(v: &serde_json::Value) -> serde_json::Value {
    let mut v = v.clone();
    if let Some(obj) = v.as_object_mut() {
        obj.remove("id");
    }
    v
}

/// Finds `name{...}` (or bare `name`) whose labels contain every fragment in `labels`.
pub fn metric_value(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (series_name, series_labels) = match series.split_once('{') {
                Some((n, rest)) => (n, rest),
                None => (series, ""),
            };
            (series_name == name && labels.iter().all(|l| series_labels.contains(l)))
                .then(|| value.parse().ok())?
        })
}
