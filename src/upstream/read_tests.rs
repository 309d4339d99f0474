//! Reads against a node that answers the way CometBFT does for large answers: chunked,
//! with no Content-Length, under a budget smaller than what is asked at once.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpListener;

use super::{Answer, Upstream};
use crate::config::{ByteSize, UpstreamConfig};
use crate::methods::{lookup, Canonical};

/// Answers every call with a string result of the size its `height` param names, sent
/// in 16 KiB chunks.
async fn chunked_node() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let service = service_fn(|req: http::Request<Incoming>| async move {
                    let body = req.into_body().collect().await.unwrap().to_bytes();
                    let call: Value = serde_json::from_slice(&body).unwrap();
                    let size: usize = call["params"]["height"].as_str().unwrap().parse().unwrap();
                    let answer =
                        json!({"jsonrpc": "2.0", "id": call["id"], "result": "x".repeat(size)});
                    let bytes = Bytes::from(serde_json::to_vec(&answer).unwrap());
                    let frames: Vec<Result<Frame<Bytes>, Infallible>> = (0..bytes.len())
                        .step_by(16 * 1024)
                        .map(|at| {
                            Ok(Frame::data(
                                bytes.slice(at..bytes.len().min(at + 16 * 1024)),
                            ))
                        })
                        .collect();
                    let body = StreamBody::new(futures_util::stream::iter(frames));
                    Ok::<_, Infallible>(http::Response::new(body))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    url
}

fn upstream(url: &str, budget: ByteSize) -> Upstream {
    let config = UpstreamConfig {
        url: url.parse().unwrap(),
        max_response_bytes: ByteSize::mib(1),
        max_inflight_bytes: budget,
        ..UpstreamConfig::default()
    };
    let budget = Upstream::budget(&config, Default::default());
    Upstream::new(
        &config,
        config.url.clone(),
        budget,
        super::tls::client_config(None),
    )
}

fn sized(size: usize) -> Canonical {
    let Value::Object(params) = json!({"height": size.to_string()}) else {
        unreachable!()
    };
    Canonical {
        spec: lookup("block").unwrap(),
        params,
    }
}

#[tokio::test]
async fn chunked_answers_larger_than_the_budget_together_are_all_read() {
    let url = chunked_node().await;
    let up = Arc::new(upstream(&url, ByteSize::kib(256)));
    // Six answers of 100-600 KB at once: 2.1 MB through a 256 KiB budget, the largest
    // ones alone above it.
    let calls = (1..=6).map(|n| {
        let up = Arc::clone(&up);
        tokio::spawn(async move { (n, up.call(&sized(n * 100_000)).await) })
    });
    for call in calls {
        let (n, answer) = tokio::time::timeout(Duration::from_secs(20), call)
            .await
            .expect("no read waits for ever")
            .unwrap();
        let Ok(Answer::Result(result)) = answer else {
            panic!("answer {n}: {answer:?}")
        };
        assert_eq!(result.len(), n * 100_000 + 2, "a whole JSON string");
    }
    assert_eq!(up.inflight_bytes(), 0, "every reservation given back");
}

#[tokio::test]
async fn a_chunked_answer_over_the_cap_is_refused_and_gives_its_bytes_back() {
    let url = chunked_node().await;
    let up = upstream(&url, ByteSize::kib(256));
    let refused = up.call(&sized(2_000_000)).await;
    assert!(
        matches!(
            refused,
            Err(crate::error::Rejection::ResponseTooLarge { .. })
        ),
        "{refused:?}"
    );
    assert_eq!(up.inflight_bytes(), 0);
    assert!(up.call(&sized(1000)).await.is_ok());
}
