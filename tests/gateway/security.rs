//! Security (issue #8): forwarded-for only from trusted proxies, request smuggling
//! refused, odd paths refused, denied methods unreachable by every route, hop-by-hop
//! headers never reaching the node.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use cometgate::config::{Config, MethodOverride};
use cometgate::gateway::Gateway;
use cometgate::head::Head;
use cometgate_sim::SimNodeConfig;
use futures_util::{SinkExt, StreamExt};
use http::Method;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;

use crate::faults::assert_rpc_error;
use crate::slow_clients::{post_request, raw_exchange};
use crate::support::*;

const STATUS: &str = r#"{"jsonrpc":"2.0","id":1,"method":"status"}"#;

#[tokio::test]
async fn forwarded_for_is_believed_only_from_trusted_proxies() {
    // Two cost units a client; the third call in a burst is refused.
    let quota = |c: &mut Config| {
        c.rate_limit.requests_per_second = 1;
        c.rate_limit.burst = 2;
    };
    let untrusted = spawn_gateway_with(SimNodeConfig::default(), quota).await;
    let trusted = spawn_gateway_with(SimNodeConfig::default(), |c| {
        quota(c);
        c.rate_limit.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    })
    .await;
    for (h, believed) in [(&untrusted, false), (&trusted, true)] {
        let mut limited = 0;
        for i in 0..6 {
            let xff = format!("203.0.113.{i}");
            let r = h
                .request(Method::POST, "/", STATUS, &[("x-forwarded-for", &xff)])
                .await;
            if r.status == 429 {
                limited += 1;
                assert_rpc_error(&r.json());
            }
        }
        if believed {
            assert_eq!(limited, 0, "each forwarded client has its own quota");
        } else {
            assert_eq!(limited, 4, "a forged header must not buy a fresh quota");
        }
    }
}

#[tokio::test]
async fn conflicting_content_length_and_transfer_encoding_are_refused() {
    let h = spawn_gateway().await;
    let before = h.node.stats().total_requests;
    let smuggled = r#"{"jsonrpc":"2.0","id":9,"method":"unsafe_flush_mempool"}"#;
    for head in [
        "POST / HTTP/1.1\r\nHost: gw\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n",
    ] {
        let chunk = format!("{:x}\r\n{STATUS}\r\n0\r\n\r\n", STATUS.len());
        let request = format!(
            "{head}{chunk}{}",
            String::from_utf8(post_request(smuggled)).unwrap()
        );
        let answer = raw_exchange(h.addr, request.as_bytes()).await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
        assert_eq!(answer.matches("HTTP/1.1").count(), 1, "{answer}");
        let body = answer.split("\r\n\r\n").nth(1).unwrap_or("");
        assert_rpc_error(&serde_json::from_str(body).expect("JSON"));
    }
    // An Upgrade header hyper does not act on leaves the connection plain HTTP, and
    // the request after it is checked like any other.
    let decoy = format!(
        "POST / HTTP/1.1\r\nHost: gw\r\nUpgrade: foo\r\nContent-Length: {}\r\n\r\n{STATUS}",
        STATUS.len()
    );
    let chunk = format!("{:x}\r\n{STATUS}\r\n0\r\n\r\n", STATUS.len());
    let request = format!(
        "{decoy}POST / HTTP/1.1\r\nHost: gw\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n{chunk}{}",
        String::from_utf8(post_request(smuggled)).unwrap()
    );
    let answer = raw_exchange(h.addr, request.as_bytes()).await;
    let statuses: Vec<&str> = answer
        .match_indices("HTTP/1.1 ")
        .map(|(i, _)| &answer[i + 9..i + 12])
        .collect();
    assert_eq!(statuses, ["200", "400"], "{answer}");
    // A plain chunked request is fine.
    let chunked = format!(
        "POST / HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n{STATUS}\r\n0\r\n\r\n",
        STATUS.len()
    );
    let answer = raw_exchange(h.addr, chunked.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(h.node.stats().total_requests <= before + 1);
}

#[tokio::test]
async fn odd_paths_on_uri_routes_are_refused() {
    let h = spawn_gateway().await;
    for path in [
        "/../status",
        "/v1/../status",
        "/status/",
        "//status",
        "/%73tatus",
        "/status%00",
        "/status;x=1",
        "/Status",
        "/v1/v1/status",
        "/./status",
        "/status/..",
        "/websocket/../status",
        "/unsafe_flush_mempool/x",
    ] {
        let r = h.get(path).await;
        assert_eq!(
            r.status,
            404,
            "{path}: {}",
            String::from_utf8_lossy(&r.body)
        );
    }
    // Raw request targets hyper's client would normalise, and ones without a path at all.
    for (method, target) in [
        ("GET", "/..%2fstatus"),
        ("GET", "/%2e%2e/status"),
        ("GET", "/status\\..\\"),
        ("GET", "x"),
        ("OPTIONS", "*"),
        ("CONNECT", "node:26657"),
    ] {
        let req = format!("{method} {target} HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n");
        let answer = raw_exchange(h.addr, req.as_bytes()).await;
        assert!(
            answer.starts_with("HTTP/1.1 404") || answer.starts_with("HTTP/1.1 400"),
            "{method} {target}: {answer:?}"
        );
    }
    assert_eq!(h.get("/v1/status").await.status, 200);
}

#[tokio::test]
async fn denied_methods_are_unreachable_by_every_route() {
    let h = spawn_gateway_with(SimNodeConfig::default(), |c| {
        // A built-in denial, and an operator's: over the websocket too.
        c.methods.insert(
            "subscribe".into(),
            MethodOverride {
                allow: Some(false),
                ..Default::default()
            },
        );
    })
    .await;
    let denied = [
        "dump_consensus_state",
        "unsafe_flush_mempool",
        "dial_seeds",
        "dial_peers",
    ];
    h.node.reset_counters();
    for m in denied {
        let single = h
            .post(&format!(
                r#"{{"jsonrpc":"2.0","id":1,"method":"{m}","params":{{}}}}"#
            ))
            .await
            .json();
        assert_eq!(assert_rpc_error(&single), -32601, "{m}");
        let batch = h
            .post(&format!(
                r#"[{STATUS},{{"jsonrpc":"2.0","id":2,"method":"{m}"}}]"#
            ))
            .await
            .json();
        assert!(batch[0].get("result").is_some());
        assert_eq!(assert_rpc_error(&batch[1]), -32601, "{m} in a batch");
        for path in [
            format!("/{m}"),
            format!("/v1/{m}"),
            format!("/{m}?seeds=%5B%5D"),
        ] {
            let r = h.get(&path).await;
            assert_eq!(assert_rpc_error(&r.json()), -32601, "{path}");
        }
        let v1 = h
            .request(
                Method::POST,
                "/v1/",
                &format!(r#"{{"jsonrpc":"2.0","id":1,"method":"{m}"}}"#),
                &[],
            )
            .await;
        assert_eq!(assert_rpc_error(&v1.json()), -32601, "/v1/ {m}");
    }

    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/websocket", h.addr))
        .await
        .expect("websocket");
    for (i, m) in denied.iter().chain(&["subscribe"]).enumerate() {
        let call = format!(
            r#"{{"jsonrpc":"2.0","id":{i},"method":"{m}","params":{{"query":"tm.event='NewBlock'"}}}}"#
        );
        ws.send(Message::text(call)).await.expect("send");
        let answer = tokio::time::timeout(DEADLINE, ws.next())
            .await
            .expect("an answer")
            .expect("open")
            .expect("frame");
        let v: serde_json::Value = serde_json::from_str(answer.to_text().unwrap()).unwrap();
        assert_eq!(assert_rpc_error(&v), -32601, "{m} over the websocket: {v}");
        assert_eq!(v["id"], i);
    }
    for m in denied.iter().chain(&["subscribe"]) {
        assert_eq!(h.node.requests_for(m), 0, "{m} reached the node");
    }
}

/// A node stand-in that records each request head and answers `{"result":{}}` under the
/// id it was sent.
async fn recording_upstream() -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().unwrap();
    let heads = Arc::new(Mutex::new(Vec::new()));
    let seen = heads.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let Some(end) = find(&buf, b"\r\n\r\n") else {
                        match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                        continue;
                    };
                    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                    let len: usize = head
                        .lines()
                        .find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.eq_ignore_ascii_case("content-length")
                                .then(|| v.trim().parse().ok())?
                        })
                        .unwrap_or(0);
                    while buf.len() < end + 4 + len {
                        match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let body: serde_json::Value =
                        serde_json::from_slice(&buf[end + 4..end + 4 + len]).unwrap_or_default();
                    buf.drain(..end + 4 + len);
                    seen.lock().unwrap().push(head);
                    let answer =
                        format!(r#"{{"jsonrpc":"2.0","id":{},"result":{{}}}}"#, body["id"]);
                    let response = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{answer}",
                        answer.len()
                    );
                    if s.write_all(response.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, heads)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[tokio::test]
async fn hop_by_hop_and_client_headers_never_reach_the_node() {
    let (upstream, heads) = recording_upstream().await;
    let mut config = Config::default();
    config.upstream.url = format!("http://{upstream}/").parse().unwrap();
    config.metrics.listen = None;
    let head = Head::manual();
    head.set(10);
    let addr = serve(Gateway::with_head(config, head)).await;

    let body = r#"{"jsonrpc":"2.0","id":"mine","method":"health"}"#;
    let request = format!(
        "POST / HTTP/1.1\r\nHost: gw\r\nConnection: close, x-secret\r\nX-Secret: s3cret\r\nProxy-Authorization: Basic Zm9vOmJhcg==\r\nTE: trailers\r\nUpgrade: h2c\r\nKeep-Alive: timeout=99\r\nProxy-Connection: keep-alive\r\nAuthorization: Bearer client-token\r\nCookie: a=b\r\nX-Forwarded-For: 198.51.100.7\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let answer = raw_exchange(addr, request.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        answer.contains(r#"{"jsonrpc":"2.0","id":"mine","result":{}}"#),
        "{answer}"
    );
    let heads = heads.lock().unwrap().clone();
    assert_eq!(heads.len(), 1, "{heads:?}");
    let sent = heads[0].to_ascii_lowercase();
    for leaked in [
        "x-secret",
        "proxy-authorization",
        "\nte:",
        "upgrade",
        "keep-alive: timeout",
        "proxy-connection",
        "authorization",
        "cookie",
        "x-forwarded-for",
        "198.51.100.7",
    ] {
        assert!(
            !sent.contains(leaked),
            "{leaked:?} reached the node:\n{sent}"
        );
    }
    assert!(sent.starts_with("post / http/1.1"), "{sent}");
}

#[tokio::test]
async fn metrics_and_admin_routes_are_not_on_the_proxy_port() {
    let h = spawn_gateway().await;
    for path in [
        "/metrics",
        "/healthz",
        "/readyz",
        "/admin/reload",
        "/admin/cache/purge",
        "/debug/pprof",
        "/_simnode/stats",
    ] {
        for method in [Method::GET, Method::POST] {
            let r = h.request(method.clone(), path, "", &[]).await;
            assert_eq!(r.status, 404, "{method} {path}");
            assert!(!String::from_utf8_lossy(&r.body).contains("cometgate_"));
        }
    }
}
