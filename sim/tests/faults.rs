//! Fault modes, each behaving as named, switched while the node runs.

mod common;

use std::time::Duration;

use cometgate_sim::{Fault, SimNode, SimNodeConfig};
use common::*;
use serde_json::json;

const STATUS: &str = r#"{"jsonrpc":"2.0","id":1,"method":"status"}"#;

async fn node() -> SimNode {
    SimNode::start(SimNodeConfig::default()).await.unwrap()
}

#[tokio::test]
async fn down_refuses_then_returns_on_the_same_port() {
    let n = node().await;
    let a = n.addr();
    n.set_fault(Fault::Down);
    wait_for("connection refused", || refused(a)).await;
    n.set_fault(Fault::None);
    assert_eq!(n.addr(), a);
    assert_eq!(post(a, STATUS).await.status, 200);
}

#[tokio::test]
async fn slow_adds_latency_and_hang_never_answers() {
    let n = node().await;
    let a = n.addr();
    n.set_fault(Fault::Slow(Duration::from_millis(200)));
    let started = tokio::time::Instant::now();
    assert_eq!(post(a, STATUS).await.status, 200);
    assert!(started.elapsed() >= Duration::from_millis(200));

    n.set_fault(Fault::Hang);
    let hung = tokio::time::timeout(
        Duration::from_millis(300),
        exchange(a, "POST", "/", STATUS.as_bytes()),
    )
    .await;
    assert!(hung.is_err(), "a hung node must not answer");
    wait_for("the hung call in flight", || async {
        n.stats().inflight == 1
    })
    .await;
    n.set_fault(Fault::None);
    assert_eq!(post(a, STATUS).await.status, 200);
}

#[tokio::test]
async fn http_500_is_plain_text() {
    let n = node().await;
    n.set_fault(Fault::Http500);
    let r = post(n.addr(), STATUS).await;
    assert_eq!(r.status, 500);
    assert!(serde_json::from_slice::<serde_json::Value>(&r.body).is_err());
}

#[tokio::test]
async fn truncated_json_keeps_full_content_length() {
    let n = node().await;
    n.set_fault(Fault::TruncatedJson);
    let (bytes, err) = exchange(n.addr(), "GET", "/block?height=5", b"")
        .await
        .unwrap();
    assert!(err.is_none(), "a clean close, not a reset: {err:?}");
    let r = parse_raw(&bytes);
    assert_eq!(r.status, 200);
    let declared: usize = r.header("content-length").unwrap().parse().unwrap();
    assert!(
        !r.body.is_empty() && r.body.len() < declared,
        "{} of {declared}",
        r.body.len()
    );
    assert!(serde_json::from_slice::<serde_json::Value>(&r.body).is_err());
}

#[tokio::test]
async fn reset_mid_body_resets() {
    let n = node().await;
    n.set_fault(Fault::ResetMidBody);
    let (bytes, err) = exchange(n.addr(), "GET", "/block?height=5", b"")
        .await
        .unwrap();
    let complete = bytes.windows(4).any(|w| w == b"\r\n\r\n") && {
        let r = parse_raw(&bytes);
        r.header("content-length")
            .unwrap()
            .parse::<usize>()
            .unwrap()
            == r.body.len()
    };
    assert!(!complete, "the body must not arrive whole");
    if let Some(e) = err {
        assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset);
    }
}

#[tokio::test]
async fn oversized_pads_and_wrong_id_lies() {
    let n = node().await;
    n.set_fault(Fault::Oversized(100_000));
    let r = post(n.addr(), STATUS).await;
    assert_eq!(r.body.len(), 100_000);
    assert_eq!(r.json()["id"], 1);

    n.set_fault(Fault::WrongId);
    assert_ne!(post(n.addr(), STATUS).await.json()["id"], 1);
    assert_ne!(get(n.addr(), "/status").await.json()["id"], -1);
}

#[tokio::test]
async fn faults_can_be_scoped_to_one_method() {
    let n = node().await;
    n.set_fault_for("block", Fault::Http500);
    assert_eq!(get(n.addr(), "/status").await.status, 200);
    assert_eq!(get(n.addr(), "/block?height=3").await.status, 500);
    let r = post(n.addr(), r#"{"jsonrpc":"2.0","id":1,"method":"block"}"#).await;
    assert_eq!(r.status, 500);
}

#[tokio::test]
async fn control_route_switches_faults() {
    let n = node().await;
    let a = n.addr();
    let r = request(
        a,
        "POST",
        "/_simnode/fault",
        json!({"kind": "http500", "method": "status"})
            .to_string()
            .as_bytes(),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(post(a, STATUS).await.status, 500);
    request(a, "POST", "/_simnode/fault", br#"{"kind":"none"}"#).await;
    assert_eq!(post(a, STATUS).await.status, 200);
    let bad = request(a, "POST", "/_simnode/fault", br#"{"kind":"explode"}"#).await;
    assert_eq!(bad.status, 400);
    // Down asked on the RPC port itself: the answer still goes out, then the port closes.
    let r = request(a, "POST", "/_simnode/fault", br#"{"kind":"down"}"#).await;
    assert_eq!(r.status, 200);
    wait_for("rpc port down", || refused(a)).await;
    n.set_fault(Fault::None);
    let r = request(a, "POST", "/_simnode/restart", b"").await;
    assert_eq!(r.status, 200);
    wait_for("restarted", || async { !refused(a).await }).await;
}

#[tokio::test]
async fn control_port_outlives_the_rpc_port() {
    let n = SimNode::start(SimNodeConfig {
        control_listen: Some("127.0.0.1:0".parse().unwrap()),
        ..SimNodeConfig::default()
    })
    .await
    .unwrap();
    let (a, c) = (n.addr(), n.control_addr().unwrap());
    post(a, STATUS).await;
    request(c, "POST", "/_simnode/fault", br#"{"kind":"down"}"#).await;
    wait_for("rpc port down", || refused(a)).await;
    let stats = get(c, "/_simnode/stats").await.json();
    assert_eq!(stats["down"], true);
    assert_eq!(stats["per_method"]["status"], 1);
    request(c, "POST", "/_simnode/fault", br#"{"kind":"none"}"#).await;
    assert_eq!(post(a, STATUS).await.status, 200);
    // The control port answers only control routes.
    assert_eq!(get(c, "/status").await.status, 404);
}
