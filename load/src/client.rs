//! The HTTP side of a load client: one pooled hyper client per source address, sending
//! JSON-RPC POSTs or URI-form GETs and reducing each answer to an `Outcome`.

use std::net::IpAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client as Pooled;
use hyper_util::rt::TokioExecutor;

use crate::record::Outcome;

/// One request as the wire sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Call {
    /// JSON-RPC 2.0 POST to `/` with this body.
    Post(Bytes),
    /// URI form: path and query, e.g. `/block?height=5`.
    Get(String),
}

/// A JSON-RPC body. `params` is the JSON text of the params object.
pub fn rpc_body(id: u64, method: &str, params: &str) -> Bytes {
    Bytes::from(format!(
        r#"{{"jsonrpc":"2.0","id":{id},"method":"{method}","params":{params}}}"#
    ))
}

#[derive(Clone)]
pub struct Client {
    http: Pooled<HttpConnector, Full<Bytes>>,
    base: String,
    root: Uri,
    timeout: Duration,
    /// Sent with every call (an API key).
    header: Option<(http::HeaderName, http::HeaderValue)>,
}

impl Client {
    /// `base` is `http://host:port`; `local` binds outgoing sockets to that address, which
    /// is how the abuser gets a client key of its own (127.0.0.2) on one machine.
    pub fn new(base: &str, local: Option<IpAddr>) -> Result<Client, String> {
        let base = base.trim_end_matches('/').to_string();
        let root: Uri = format!("{base}/")
            .parse()
            .map_err(|e| format!("bad URL {base}: {e}"))?;
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_local_address(local);
        let http = Pooled::builder(TokioExecutor::new())
            .pool_max_idle_per_host(4096)
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Ok(Client {
            http,
            base,
            root,
            timeout: Duration::from_secs(10),
            header: None,
        })
    }

    /// Sends `name: value` with every call, as a client presenting an API key does.
    pub fn with_header(mut self, name: &str, value: &str) -> Result<Client, String> {
        let name = http::HeaderName::try_from(name).map_err(|e| format!("{name}: {e}"))?;
        let value = http::HeaderValue::try_from(value).map_err(|e| format!("{value}: {e}"))?;
        self.header = Some((name, value));
        Ok(self)
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    pub async fn send(&self, call: &Call) -> Outcome {
        match tokio::time::timeout(self.timeout, self.exchange(call)).await {
            Ok(Ok((status, _))) => Outcome::Status(status),
            Ok(Err(kind)) => Outcome::Failed(kind),
            Err(_) => Outcome::Failed("timeout"),
        }
    }

    /// Like `send`, keeping the body for a client whose next question depends on it.
    pub async fn send_keep(&self, call: &Call) -> (Outcome, Bytes) {
        match tokio::time::timeout(self.timeout, self.exchange(call)).await {
            Ok(Ok((status, body))) => (Outcome::Status(status), body),
            Ok(Err(kind)) => (Outcome::Failed(kind), Bytes::new()),
            Err(_) => (Outcome::Failed("timeout"), Bytes::new()),
        }
    }

    /// Sends and returns the status and whole body (the bench uses it to fetch the
    /// ceiling's fixed answer and to wait for readiness).
    pub async fn fetch(&self, call: &Call) -> Result<(u16, Bytes), &'static str> {
        match tokio::time::timeout(self.timeout, self.exchange(call)).await {
            Ok(r) => r,
            Err(_) => Err("timeout"),
        }
    }

    /// An empty POST to a path (the simulated node's control routes).
    pub async fn fetch_post(&self, path: &str) -> Result<(u16, Bytes), &'static str> {
        let request = Request::builder()
            .method(Method::POST)
            .uri(format!("{}{path}", self.base))
            .body(Full::new(Bytes::new()))
            .map_err(|_| "bad_request")?;
        let response = self.http.request(request).await.map_err(|_| "transport")?;
        let status = response.status().as_u16();
        let body = response.into_body().collect().await.map_err(|_| "body")?;
        Ok((status, body.to_bytes()))
    }

    async fn exchange(&self, call: &Call) -> Result<(u16, Bytes), &'static str> {
        let mut builder = Request::builder();
        if let Some((name, value)) = &self.header {
            builder = builder.header(name, value);
        }
        let request = match call {
            Call::Post(body) => builder
                .method(Method::POST)
                .uri(self.root.clone())
                .header(http::header::CONTENT_TYPE, "application/json")
                .body(Full::new(body.clone())),
            Call::Get(path) => builder
                .method(Method::GET)
                .uri(format!("{}{path}", self.base))
                .body(Full::new(Bytes::new())),
        }
        .map_err(|_| "bad_request")?;
        let response = self.http.request(request).await.map_err(|e| {
            if e.is_connect() {
                "connect"
            } else {
                "transport"
            }
        })?;
        let status = response.status().as_u16();
        // Reading the whole body is part of the latency: a proxy that answers headers
        // fast and trickles the body is not fast.
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|_| "body")?
            .to_bytes();
        Ok((status, body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rpc_body_is_json_rpc() {
        let b = rpc_body(7, "block", r#"{"height":"5"}"#);
        let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(v["jsonrpc"], "2.0");
        assert_eq!(v["id"], 7);
        assert_eq!(v["method"], "block");
        assert_eq!(v["params"]["height"], "5");
    }

    #[test]
    fn base_url_is_normalised() {
        let c = Client::new("http://127.0.0.1:1/", None).unwrap();
        assert_eq!(c.base(), "http://127.0.0.1:1");
        assert!(Client::new("not a url at all", None).is_err());
    }
}
