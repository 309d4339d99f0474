//! The proxy and the ops port share one listener: on shutdown it finishes the requests
//! in flight, closes idle keep-alive connections at once and tells websocket subscribers
//! why they are closed, and the ops port keeps its own cap, out of the client connection
//! metrics.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use cometgate_sim::{Fault, SimNodeConfig};
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

use crate::admission::ws::{close_frame, next, send, subscribe, ws_from};
use crate::slow_clients::{post_request, raw_exchange, read_to_close};
use crate::support::*;

const HEALTHZ: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: ops\r\n\r\n";
const HEALTHZ_THEN_CLOSE: &[u8] =
    b"GET /healthz HTTP/1.1\r\nHost: ops\r\nConnection: close\r\n\r\n";

/// A keep-alive connection that has had one answer to `request`.
async fn answered(addr: SocketAddr, request: &[u8]) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(request).await.expect("write");
    let mut buf = vec![0u8; 64 * 1024];
    let n = tokio::time::timeout(DEADLINE, s.read(&mut buf))
        .await
        .expect("answer")
        .expect("read");
    assert!(
        buf[..n].starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );
    s
}

#[tokio::test]
async fn shutdown_finishes_the_request_in_flight_and_closes_idle_connections_at_once() {
    let h = spawn_gateway_with(SimNodeConfig::default(), |c| {
        c.server.shutdown_grace = Duration::from_secs(60);
    })
    .await;
    let health = r#"{"jsonrpc":"2.0","id":1,"method":"health"}"#;
    let keep_alive = format!(
        "POST / HTTP/1.1\r\nHost: gw\r\nContent-Length: {}\r\n\r\n{health}",
        health.len()
    );
    let mut idle = answered(h.addr, keep_alive.as_bytes()).await;
    h.node
        .set_fault_for("block", Fault::Slow(Duration::from_millis(1500)));
    let block =
        post_request(r#"{"jsonrpc":"2.0","id":2,"method":"block","params":{"height":"3"}}"#);
    let addr = h.addr;
    let in_flight = tokio::spawn(async move { raw_exchange(addr, &block).await });
    eventually("the slow call reaches the node", || async {
        h.node.stats().inflight >= 1
    })
    .await;

    let stopping = tokio::spawn(h.shutdown());
    assert_eq!(
        read_to_close(&mut idle).await,
        "",
        "the idle connection is closed"
    );
    assert!(
        !in_flight.is_finished(),
        "closed at once, not after the request in flight"
    );
    let answer = in_flight.await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains(r#""height":"3""#), "{answer}");
    tokio::time::timeout(DEADLINE, stopping)
        .await
        .expect("drained long before the 60 s grace")
        .unwrap();
}

/// A fan-out subscriber hears 1001 with the reason, rather than a reset it would take
/// for a network fault, and the drain does not wait out its grace for it: even while
/// the client keeps its session busy with pings.
#[tokio::test]
async fn shutdown_tells_a_busy_websocket_subscriber_the_gateway_is_going_away() {
    let h = spawn_gateway_with(SimNodeConfig::default(), |c| {
        c.server.shutdown_grace = Duration::from_secs(60);
    })
    .await;
    let mut ws = ws_from(&h, "127.0.0.1").await.expect("websocket");
    send(&mut ws, subscribe(1, "tm.event='NewBlock'")).await;
    let ack = next(&mut ws).await.expect("an answer");
    assert_eq!(ack["result"], json!({}), "{ack}");
    let (mut tx, mut rx) = ws.split();
    let flood = tokio::spawn(async move {
        while tx
            .send(Message::Ping(Bytes::from_static(b"busy")))
            .await
            .is_ok()
        {}
    });
    let started = Instant::now();
    let stopping = tokio::spawn(h.shutdown());
    // Pongs, and events, may come before the close.
    let frame = close_frame(&mut rx).await.expect("a close code");
    assert_eq!(frame.code, CloseCode::Away);
    assert!(frame.reason.contains("shutting down"), "{}", frame.reason);
    stopping.await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "drained in {:?}, not after the 60 s grace",
        started.elapsed()
    );
    flood.abort();
}

#[tokio::test]
async fn the_ops_port_refuses_its_65th_connection_outside_the_client_metrics() {
    let h = spawn_gateway().await;
    let mut held = Vec::new();
    for _ in 0..64 {
        held.push(answered(h.ops_addr, HEALTHZ).await);
    }
    assert_eq!(
        raw_exchange(h.ops_addr, HEALTHZ_THEN_CLOSE).await,
        "",
        "the 65th is closed"
    );
    let health = h
        .post(r#"{"jsonrpc":"2.0","id":1,"method":"health"}"#)
        .await;
    assert_eq!(health.status, 200, "the proxy has its own caps");

    drop(held.pop());
    let ops = h.ops_addr;
    eventually("a freed slot serves the ops port again", || async move {
        raw_exchange(ops, HEALTHZ_THEN_CLOSE)
            .await
            .starts_with("HTTP/1.1 200")
    })
    .await;
    assert_eq!(
        h.metric(
            "cometgate_connections_refused_total",
            &[r#"reason="max_connections""#]
        )
        .await,
        0.0
    );
}
