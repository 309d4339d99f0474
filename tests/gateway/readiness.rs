//! Readiness sees the node's HTTP path, not only its head: a node whose websocket keeps
//! delivering blocks while every HTTP call fails (CometBFT past
//! `rpc.max_open_connections`) is not ready, and is ready again as soon as it answers.

use std::time::Duration;

use cometgate_sim::{Fault, SimNodeConfig};
use http::{Method, StatusCode};

use crate::support::*;

/// Polls counted at the node: readiness must turn within two of them, each
/// `head.poll_interval` apart.
const POLLS: u64 = 2;

#[tokio::test]
async fn readiness_turns_on_failed_status_polls_while_the_websocket_delivers_blocks() {
    let h = spawn_gateway_with(SimNodeConfig::default(), |c| {
        c.head.poll_interval = Duration::from_millis(250);
    })
    .await;
    let readyz = || h.ops(Method::GET, "/readyz", "");
    eventually("ready", || async {
        readyz().await.status == StatusCode::OK
    })
    .await;
    assert_eq!(h.metric("cometgate_node_up", &[]).await, 1.0);

    let before = h.node.requests_for("status");
    h.node.set_fault(Fault::Http500);
    eventually("not ready once status fails", || async {
        readyz().await.status == StatusCode::SERVICE_UNAVAILABLE
    })
    .await;
    let polls = h.node.requests_for("status") - before;
    assert!(
        polls <= POLLS,
        "{polls} failed polls before readiness turned"
    );
    let why = readyz().await.json();
    assert_eq!(why["ready"], false);
    assert!(
        why["problems"]
            .to_string()
            .contains("HTTP RPC fails: status answered HTTP 500"),
        "{why}"
    );
    assert_eq!(h.metric("cometgate_node_up", &[]).await, 0.0);

    // The websocket still delivers: the head moves while every HTTP call fails, and
    // readiness is not fooled by it.
    let height = h.advance_block().await;
    assert_eq!(h.gateway.head().height(), Some(height));
    let why = readyz().await.json();
    assert_eq!(why["ready"], false, "{why}");
    assert_eq!(why["head_height"], height);

    let before = h.node.requests_for("status");
    h.node.set_fault(Fault::None);
    eventually("ready again once status answers", || async {
        readyz().await.status == StatusCode::OK
    })
    .await;
    let polls = h.node.requests_for("status") - before;
    assert!(polls <= POLLS, "{polls} polls before readiness came back");
    assert_eq!(h.metric("cometgate_node_up", &[]).await, 1.0);
}

#[tokio::test]
async fn a_refused_connection_is_a_failed_poll_too() {
    let h = spawn_gateway_with(SimNodeConfig::default(), |c| {
        c.head.poll_interval = Duration::from_millis(250);
    })
    .await;
    let readyz = || h.ops(Method::GET, "/readyz", "");
    eventually("ready", || async {
        readyz().await.status == StatusCode::OK
    })
    .await;
    h.node.set_fault(Fault::Down);
    eventually("not ready once the node refuses", || async {
        let r = readyz().await;
        r.status == StatusCode::SERVICE_UNAVAILABLE
            && r.json()["problems"].to_string().contains("HTTP RPC fails")
    })
    .await;
    h.node.set_fault(Fault::None);
    eventually("ready again", || async {
        readyz().await.status == StatusCode::OK
    })
    .await;
}
