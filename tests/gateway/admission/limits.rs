//! Issue #4's acceptance, part two: sizes. Oversized bodies and batches never reach the
//! node; an oversized answer becomes a clean error without the gateway holding it; a
//! batch is admitted entry by entry.

use std::convert::Infallible;

use bytes::Bytes;
use cometgate::config::ByteSize;
use cometgate_sim::{Fault, SimNodeConfig};
use http::{Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{rpc, Http};
use crate::support::*;

/// A raw HTTP/1.1 exchange: `head` and then `chunks` are written as given, and the
/// answer is read up to its Content-Length. Returns the status and the body.
async fn raw_exchange(h: &Harness, head: &str, chunks: &[Vec<u8>]) -> (u16, Value) {
    let mut tcp = TcpStream::connect(h.addr).await.unwrap();
    tcp.write_all(head.as_bytes()).await.unwrap();
    for c in chunks {
        tcp.write_all(c).await.unwrap();
    }
    let mut got = Vec::new();
    let read = async {
        loop {
            let mut buf = [0u8; 4096];
            let n = tcp.read(&mut buf).await.unwrap();
            got.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&got).into_owned();
            if let Some(end) = text.find("\r\n\r\n") {
                let length: usize = text[..end]
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().parse().unwrap())
                    })
                    .expect("a Content-Length");
                if got.len() >= end + 4 + length || n == 0 {
                    let status = text[9..12].parse().unwrap();
                    let body = serde_json::from_slice(&got[end + 4..]).unwrap();
                    return (status, body);
                }
            }
            assert!(n > 0, "closed before an answer: {text}");
        }
    };
    tokio::time::timeout(DEADLINE, read)
        .await
        .expect("an answer in time")
}

fn small_bodies(c: &mut cometgate::config::Config) {
    c.server.max_body_bytes = ByteSize::bytes(1000);
}

fn assert_body_too_large(status: u16, v: &Value) {
    assert_eq!(status, 413, "{v}");
    assert_eq!(v["error"]["code"], -32600);
    let data = v["error"]["data"].as_str().unwrap();
    assert!(data.contains("server.max_body_bytes"), "{data}");
}

#[tokio::test]
async fn a_declared_content_length_over_the_cap_gets_413_before_a_byte_is_read() {
    let h = spawn_gateway_with(SimNodeConfig::default(), small_bodies).await;
    let before = h.node.stats().total_requests;
    let head = "POST / HTTP/1.1\r\nhost: gw\r\ncontent-type: application/json\r\n\
                content-length: 2000000\r\n\r\n";
    let (status, v) = raw_exchange(&h, head, &[]).await;
    assert_body_too_large(status, &v);
    assert_eq!(
        h.node.stats().total_requests,
        before,
        "the node sees nothing"
    );
}

#[tokio::test]
async fn a_chunked_body_that_grows_past_the_cap_gets_413_and_the_node_sees_nothing() {
    let h = spawn_gateway_with(SimNodeConfig::default(), small_bodies).await;
    let before = h.node.stats().total_requests;
    let head = "POST / HTTP/1.1\r\nhost: gw\r\ncontent-type: application/json\r\n\
                transfer-encoding: chunked\r\n\r\n";
    let mut first = br#"{"jsonrpc":"2.0","id":1,"method":"health","params":{},"pad":""#.to_vec();
    first.resize(400, b'x');
    let chunk = |data: &[u8]| [format!("{:x}\r\n", data.len()).as_bytes(), data, b"\r\n"].concat();
    // 1200 bytes in three chunks, and never the final chunk: the gateway must stop on size.
    let chunks = vec![chunk(&first), chunk(&[b'x'; 400]), chunk(&[b'x'; 400])];
    let (status, v) = raw_exchange(&h, head, &chunks).await;
    assert_body_too_large(status, &v);
    assert_eq!(
        h.node.stats().total_requests,
        before,
        "the node sees nothing"
    );
}

#[tokio::test]
async fn a_batch_over_max_batch_size_gets_400_with_cometbfts_message() {
    let h = spawn_gateway().await;
    let batch: Vec<Value> = (0..11)
        .map(|i| json!({"jsonrpc": "2.0", "id": i, "method": "health"}))
        .collect();
    let body = Value::from(batch).to_string();
    let gw = h.post(&body).await;
    assert_eq!(gw.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        h.node.requests_for("health"),
        0,
        "no entry reaches the node"
    );
    let node = h.post_node(&body).await;
    assert_eq!(gw.status, node.status);
    assert_eq!(rpc_view(&gw.json()), rpc_view(&node.json()));
    assert_eq!(
        gw.json()["error"]["data"],
        "maximum JSON-RPC batch size exceeded, got: 11, max: 10"
    );
}

#[tokio::test]
async fn a_batch_admits_each_entry_on_its_own_keeps_its_order_and_errors_per_entry() {
    let h = spawn_gateway().await;
    let body = json!([
        {"jsonrpc": "2.0", "id": 1, "method": "health"},
        {"jsonrpc": "2.0", "id": 2, "method": "dial_seeds", "params": {"seeds": ["a@1.2.3.4:26656"]}},
        {"jsonrpc": "2.0", "id": 3, "method": "tx_search", "params": {"query": "tx.height=5", "page": "1000"}},
        {"jsonrpc": "2.0", "id": 4, "method": "block", "params": {"height": "5"}},
        {"jsonrpc": "2.0", "id": 5, "method": "no_such_method"},
        {"jsonrpc": "2.0", "id": 6, "method": "tx_search", "params": {"query": "tx.height=5", "per_page": "500"}},
    ]);
    let r = h.post(&body.to_string()).await;
    assert_eq!(r.status, StatusCode::OK);
    let v = r.json();
    let entries = v.as_array().expect("an array");
    let ids: Vec<_> = entries.iter().map(|e| e["id"].as_u64().unwrap()).collect();
    assert_eq!(ids, [1, 2, 3, 4, 5, 6], "the request's order");
    assert_eq!(entries[0]["result"], json!({}));
    assert_eq!(entries[1]["error"]["code"], -32601);
    assert_eq!(entries[2]["error"]["code"], -32602);
    let data = entries[2]["error"]["data"].as_str().unwrap();
    assert!(data.contains("methods.tx_search.max_page"), "{data}");
    assert_eq!(entries[3]["result"]["block"]["header"]["height"], "5");
    assert_eq!(entries[4]["error"]["code"], -32601);
    assert!(entries[5]["result"]["txs"].is_array(), "{}", entries[5]);

    let stats = h.node.stats();
    assert_eq!(h.node.requests_for("dial_seeds"), 0);
    assert_eq!(h.node.requests_for("no_such_method"), 0);
    let searches: Vec<_> = stats
        .per_request
        .keys()
        .filter(|k| k.starts_with("tx_search("))
        .collect();
    assert_eq!(searches.len(), 1, "{searches:?}");
    assert!(
        searches[0].contains("per_page=100"),
        "clamped: {searches:?}"
    );
}

#[tokio::test]
async fn an_answer_over_max_response_bytes_is_a_clean_json_rpc_error_naming_the_cap() {
    let h = spawn_gateway_with(SimNodeConfig::default(), |c| {
        c.upstream.max_response_bytes = ByteSize::mib(1);
    })
    .await;
    h.node
        .set_fault_for("block_results", Fault::Oversized(2 * 1024 * 1024));
    let r = h
        .post(&rpc(9, "block_results", json!({"height": "5"})))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let v = r.json();
    assert_eq!(v["id"], 9);
    assert_eq!(v["error"]["code"], -32603, "{v}");
    let data = v["error"]["data"].as_str().unwrap();
    assert!(
        data.contains("upstream.max_response_bytes (1 MiB)"),
        "{data}"
    );
    let r = h.get("/block_results?height=6").await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(r.json()["error"]["code"], -32603);
    // The node is fine otherwise: a small answer still passes.
    assert_eq!(
        h.post(&rpc(1, "health", json!({}))).await.status,
        StatusCode::OK
    );
}

/// Stands in for the node at its own address: `block_results` is answered with `size`
/// bytes of chunked padding streamed from one static buffer (so this process never
/// holds them), everything else is forwarded to the simulated node.
fn streaming_node(sim: http::Uri, size: usize) -> http::Uri {
    static PAD: [u8; 64 * 1024] = [b' '; 64 * 1024];
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    std_listener.set_nonblocking(true).unwrap();
    let addr = std_listener.local_addr().unwrap();
    let listener = tokio::net::TcpListener::from_std(std_listener).unwrap();
    let forward: Http = Client::builder(TokioExecutor::new()).build_http();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (sim, forward) = (sim.clone(), forward.clone());
            let service = service_fn(move |req: Request<Incoming>| {
                let (sim, forward) = (sim.clone(), forward.clone());
                async move {
                    let (parts, body) = req.into_parts();
                    let body = body.collect().await?.to_bytes();
                    if body.windows(13).any(|w| w == b"block_results") {
                        let pad = (0..size / PAD.len())
                            .map(|_| Ok::<_, Infallible>(Frame::data(Bytes::from_static(&PAD))));
                        let stream = StreamBody::new(futures_util::stream::iter(pad));
                        return Ok::<_, Box<dyn std::error::Error + Send + Sync>>(Response::new(
                            BoxBody::new(stream),
                        ));
                    }
                    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
                    let mut to_sim = Request::builder().method(parts.method).uri(format!(
                        "{}{}",
                        sim.to_string().trim_end_matches('/'),
                        path
                    ));
                    for (k, v) in &parts.headers {
                        to_sim = to_sim.header(k, v);
                    }
                    let answer = forward.request(to_sim.body(Full::new(body))?).await?;
                    let (parts, body) = answer.into_parts();
                    let body = body.collect().await?.to_bytes();
                    Ok(Response::from_parts(parts, Full::new(body).boxed()))
                }
            });
            tokio::spawn(http1::Builder::new().serve_connection(TokioIo::new(tcp), service));
        }
    });
    format!("http://{addr}/").parse().unwrap()
}

/// A line of /proc/self/status, in KiB.
fn proc_status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[tokio::test]
async fn a_64_mib_answer_does_not_grow_the_gateways_memory_by_its_size() {
    const ANSWER: usize = 64 * 1024 * 1024;
    let h = spawn_gateway_with(SimNodeConfig::default(), |c| {
        c.upstream.max_response_bytes = ByteSize::mib(1);
        c.head.websocket = false;
        c.upstream.url = streaming_node(c.upstream.url.clone(), ANSWER);
    })
    .await;
    // "5" resets the peak (VmHWM) to the current RSS: what follows is this request's peak.
    std::fs::write("/proc/self/clear_refs", "5").expect("peak RSS can be reset");
    let before = proc_status_kib("VmRSS:");
    let r = h
        .post(&rpc(1, "block_results", json!({"height": "5"})))
        .await;
    let peak = proc_status_kib("VmHWM:");
    let after = proc_status_kib("VmRSS:");
    let growth_mib = peak.saturating_sub(before) as f64 / 1024.0;
    eprintln!(
        "64 MiB answer, 1 MiB cap: RSS {before} KiB before, peak {peak} KiB, {after} KiB after \
         (peak growth {growth_mib:.1} MiB)"
    );
    assert!(growth_mib < 32.0, "peak RSS grew {growth_mib:.1} MiB");
    let v = r.json();
    assert_eq!(v["error"]["code"], -32603, "{v}");
    assert!(v["error"]["data"]
        .as_str()
        .unwrap()
        .contains("upstream.max_response_bytes"));
}
