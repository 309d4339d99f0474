//! Test helpers: a raw HTTP/1.1 client (so faults like truncation stay visible) and a
//! bounded condition wait.

#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub struct Raw {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Raw {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
}

/// Sends one request on a fresh connection and reads until the server closes it.
/// Returns the raw bytes received (possibly partial) and the read error, if any.
pub async fn exchange(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &[u8],
) -> std::io::Result<(Vec<u8>, Option<std::io::Error>)> {
    let mut s = TcpStream::connect(addr).await?;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await?;
    s.write_all(body).await?;
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 65536];
    loop {
        match s.read(&mut chunk).await {
            Ok(0) => return Ok((buf, None)),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => return Ok((buf, Some(e))),
        }
    }
}

pub fn parse_raw(bytes: &[u8]) -> Raw {
    let end = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("no header end");
    let head = String::from_utf8_lossy(&bytes[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    Raw {
        status,
        headers,
        body: bytes[end + 4..].to_vec(),
    }
}

pub async fn request(addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> Raw {
    let (bytes, err) = exchange(addr, method, path, body).await.expect("connect");
    assert!(err.is_none(), "read error {err:?}");
    parse_raw(&bytes)
}

pub async fn post(addr: SocketAddr, body: &str) -> Raw {
    request(addr, "POST", "/", body.as_bytes()).await
}

pub async fn get(addr: SocketAddr, path: &str) -> Raw {
    request(addr, "GET", path, b"").await
}

/// JSON-RPC call by name, returning the whole answer object.
pub async fn call(addr: SocketAddr, method: &str, params: Value) -> Value {
    let body = serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
    post(addr, &body.to_string()).await.json()
}

/// Polls `cond` until it holds or the deadline passes.
pub async fn wait_for<F, Fut>(what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let ok = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if cond().await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(ok.is_ok(), "timed out waiting for {what}");
}

pub async fn refused(addr: SocketAddr) -> bool {
    TcpStream::connect(addr).await.is_err()
}
