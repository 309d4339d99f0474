//! One pipeline for every call: what a batch sends upstream and accepts back, and that
//! every refusal on every transport is counted.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;

use cometgate_sim::SimNodeConfig;

use crate::support::*;

/// What a spec-compliant upstream in front of the simulated node saw: for each POST,
/// the method of a single call, or `batch of n`.
type Seen = Arc<Mutex<Vec<String>>>;

/// A proxy that answers as the JSON-RPC spec says (a batch of one with a one-element
/// array, where CometBFT sends a bare object), as another proxy or a provider would.
async fn spec_compliant_upstream(node_url: String) -> (String, Seen) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen: Seen = Arc::default();
    let log = seen.clone();
    tokio::spawn(async move {
        let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let (client, node_url, log) = (client.clone(), node_url.clone(), log.clone());
            let service = service_fn(move |req: Request<Incoming>| {
                let (client, node_url, log) = (client.clone(), node_url.clone(), log.clone());
                async move {
                    let body = req.into_body().collect().await?.to_bytes();
                    let batch = serde_json::from_slice::<Vec<Value>>(&body)
                        .ok()
                        .map(|b| b.len());
                    let single = serde_json::from_slice::<Value>(&body).ok();
                    log.lock().unwrap().push(match (batch, single) {
                        (Some(n), _) => format!("batch of {n}"),
                        (None, Some(call)) => call["method"].as_str().unwrap_or("?").to_owned(),
                        (None, None) => "not JSON".to_owned(),
                    });
                    let forward = Request::post(node_url)
                        .header("content-type", "application/json")
                        .body(Full::new(body))
                        .unwrap();
                    let answer = client.request(forward).await.unwrap();
                    let answer = answer.into_body().collect().await?.to_bytes();
                    let answer = match batch {
                        Some(1) if answer.first() == Some(&b'{') => {
                            Bytes::from([&b"["[..], &answer, b"]"].concat())
                        }
                        _ => answer,
                    };
                    Ok::<_, hyper::Error>(Response::new(Full::new(answer)))
                }
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service),
            );
        }
    });
    (url, seen)
}

fn block(id: u64, height: u64) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "block", "params": {"height": height.to_string()}})
}

#[tokio::test]
async fn a_lone_miss_in_a_batch_goes_upstream_as_a_single_call() {
    let node = frozen_node(SimNodeConfig::default()).await;
    let (upstream, seen) = spec_compliant_upstream(node.url()).await;
    let h = spawn_gateway_with(SimNodeConfig::default(), |c| {
        c.upstream.url = upstream.parse().unwrap();
    })
    .await;
    for height in [1, 3] {
        assert_eq!(h.post(&block(1, height).to_string()).await.cache(), "miss");
    }
    seen.lock().unwrap().clear();

    let batch = json!([block(1, 1), block(2, 2), block(3, 3)]);
    let answers = h.post(&batch.to_string()).await.json();
    let answers = answers.as_array().expect("a batch answer");
    assert_eq!(answers.len(), 3);
    for (answer, height) in answers.iter().zip(["1", "2", "3"]) {
        assert_eq!(
            answer["result"]["block"]["header"]["height"], height,
            "{answer}"
        );
    }
    let sent = seen.lock().unwrap().clone();
    assert!(
        sent.iter().any(|m| m == "block"),
        "the miss went as a single call: {sent:?}"
    );
    assert!(
        !sent.iter().any(|m| m.starts_with("batch")),
        "no batch went upstream: {sent:?}"
    );
}

#[tokio::test]
async fn a_spec_compliant_answer_to_an_upstream_batch_is_accepted() {
    let node = frozen_node(SimNodeConfig::default()).await;
    let (upstream, seen) = spec_compliant_upstream(node.url()).await;
    let h = spawn_gateway_with(SimNodeConfig::default(), |c| {
        c.upstream.url = upstream.parse().unwrap();
    })
    .await;
    let batch = json!([block(1, 1), block(2, 2)]);
    let answers = h.post(&batch.to_string()).await.json();
    assert_eq!(answers[0]["result"]["block"]["header"]["height"], "1");
    assert_eq!(answers[1]["result"]["block"]["header"]["height"], "2");
    let sent = seen.lock().unwrap().clone();
    assert!(
        sent.iter().any(|m| m == "batch of 2"),
        "the misses went as one batch: {sent:?}"
    );
}

#[tokio::test]
async fn refusals_inside_a_batch_are_counted() {
    let h = spawn_gateway().await;
    let before = h
        .metric("cometgate_rejections_total", &["reason=\"denied\""])
        .await;
    let batch = json!([
        block(1, 1),
        {"jsonrpc": "2.0", "id": 2, "method": "dump_consensus_state"},
    ]);
    let answers = h.post(&batch.to_string()).await.json();
    assert_eq!(answers[1]["error"]["code"], -32601);
    let after = h
        .metric("cometgate_rejections_total", &["reason=\"denied\""])
        .await;
    assert_eq!(after - before, 1.0);
}

#[tokio::test]
async fn an_empty_batch_is_counted() {
    let h = spawn_gateway().await;
    let invalid = ["reason=\"invalid\""];
    let before = h.metric("cometgate_rejections_total", &invalid).await;
    let reply = h.post("[]").await;
    assert_eq!(reply.json()["error"]["code"], -32600);
    assert_eq!(
        h.metric("cometgate_rejections_total", &invalid).await - before,
        1.0
    );
}

#[tokio::test]
async fn websocket_refusals_are_counted() {
    let h = spawn_gateway().await;
    let invalid = ["reason=\"invalid\""];
    let before = h.metric("cometgate_rejections_total", &invalid).await;
    let url = format!("ws://{}/websocket", h.addr);
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    for bad in [
        "[{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"status\"}]",
        "{not json",
    ] {
        ws.send(Message::text(bad)).await.unwrap();
        let answer = tokio::time::timeout(DEADLINE, ws.next()).await.unwrap();
        let answer: Value = serde_json::from_str(answer.unwrap().unwrap().to_text().unwrap())
            .expect("a JSON-RPC error");
        assert!(answer["error"]["code"].is_i64(), "{answer}");
    }
    assert_eq!(
        h.metric("cometgate_rejections_total", &invalid).await - before,
        2.0
    );
}

#[tokio::test]
async fn a_path_the_node_does_not_serve_is_a_counted_plain_404() {
    let h = spawn_gateway().await;
    let route = ["reason=\"route\""];
    let before = h.metric("cometgate_rejections_total", &route).await;
    let reply = h.request(Method::GET, "/no/such/path", "", &[]).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_eq!(&reply.body[..], b"404 page not found\n");
    assert_eq!(
        h.metric("cometgate_rejections_total", &route).await - before,
        1.0
    );
}

/// Log lines written while a test runs on its own (current-thread) runtime.
#[derive(Clone, Default)]
struct Lines(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Lines {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn a_batchs_node_latency_is_in_its_access_line() {
    let lines = Lines::default();
    let writer = lines.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _logging = tracing::subscriber::set_default(subscriber);
    let h = spawn_gateway().await;
    let access = |text: &str| {
        text.lines()
            .find(|l| l.contains("cometgate::access") && l.contains("method=block,block"))
            .map(str::to_owned)
    };
    let mut round = 0;
    eventually("the batch's access line is written", || {
        // Another test's thread may register the access callsite with no subscriber
        // listening, and tracing then caches "never" for it: the cache is rebuilt now
        // that this thread's subscriber is set, and the batch sent again.
        tracing::callsite::rebuild_interest_cache();
        // New heights each round: a batch answered from the cache has no node time.
        round += 1;
        let batch = json!([block(1, 2 * round - 1), block(2, 2 * round)]);
        let (h, lines) = (&h, &lines);
        async move {
            assert_eq!(h.post(&batch.to_string()).await.status, StatusCode::OK);
            let text = String::from_utf8_lossy(&lines.0.lock().unwrap()).into_owned();
            access(&text).is_some()
        }
    })
    .await;
    let text = String::from_utf8_lossy(&lines.0.lock().unwrap()).into_owned();
    let line = access(&text).unwrap();
    assert!(line.contains("node_ms="), "{line}");
}
