//! The node memory guard against the simulated node's own `/metrics`: over `shed_above`
//! heavy calls wait (light calls and cache hits are still answered) until memory falls
//! under `resume_below`; an endpoint that is down or serves garbage leaves the guard
//! blind, and blind it acts as off.

use std::net::SocketAddr;
use std::time::Duration;

use cometgate::config::ByteSize;
use cometgate_sim::{MetricsFault, SimNodeConfig};
use serde_json::json;

use crate::support::*;

const LIMIT: u64 = 512 << 20;

fn node() -> SimNodeConfig {
    SimNodeConfig {
        // Like a real node's :26660; the page's baseline is 64 MiB of the 512 MiB.
        metrics_listen: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
        start_height: 50,
        ..SimNodeConfig::default()
    }
}

/// A gateway whose guard reads the node's own metrics port. The port is known once the
/// node runs, so the guard is switched on by a reload, as an operator would.
async fn guarded() -> Harness {
    let h = spawn_gateway_with(node(), |c| {
        c.lanes.heavy.queue_timeout = DEADLINE;
    })
    .await;
    let mut config = (*h.gateway.config()).clone();
    config.node_guard.metrics_url = Some(h.node.metrics_url().parse().expect("a URL"));
    config.node_guard.memory_limit = Some(ByteSize::bytes(LIMIT));
    config.node_guard.interval = Duration::from_millis(100);
    assert!(h.gateway.reload(config).is_empty(), "the guard reloads");
    h
}

fn block_results(height: u64) -> String {
    json!({"jsonrpc": "2.0", "id": 1, "method": "block_results",
           "params": {"height": height.to_string()}})
    .to_string()
}

fn header(height: u64) -> String {
    json!({"jsonrpc": "2.0", "id": 1, "method": "header",
           "params": {"height": height.to_string()}})
    .to_string()
}

async fn state_is(h: &Harness, state: &str) -> bool {
    h.metric(
        "cometgate_node_guard_state",
        &[&format!("state=\"{state}\"")],
    )
    .await
        == 1.0
}

async fn wait_state(h: &Harness, state: &str) {
    eventually(&format!("the guard is {state}"), || state_is(h, state)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_threshold_heavy_calls_wait_until_memory_falls() {
    let h = std::sync::Arc::new(guarded().await);
    wait_state(&h, "watching").await;
    // A heavy answer cached before the squeeze: hits need no node.
    assert_eq!(h.post(&block_results(20)).await.status, 200);

    // Something else fills the node: 64 MiB + 400 MiB of 512 MiB is over 0.85.
    h.node.set_ballast(400 << 20);
    wait_state(&h, "shedding").await;
    let memory = h.metric("cometgate_node_memory_bytes", &[]).await;
    assert_eq!(memory, ((64 << 20) + (400 << 20)) as f64);
    assert_eq!(
        h.metric("cometgate_lane_paused", &["lane=\"heavy\""]).await,
        1.0
    );

    let waiting = {
        let h = h.clone();
        tokio::spawn(async move { h.post(&block_results(30)).await })
    };
    eventually("the heavy call waits in its lane", || async {
        h.metric("cometgate_lane_queued", &["lane=\"heavy\""]).await >= 1.0
    })
    .await;
    // Light calls and cache hits are still answered while it waits.
    assert_eq!(h.post(&header(31)).await.status, 200);
    let hit = h.post(&block_results(20)).await;
    assert_eq!((hit.status.as_u16(), hit.cache()), (200, "hit"));
    assert_eq!(
        h.node.stats().per_request.get("block_results(height=30)"),
        None,
        "the heavy call has not reached the node while memory is high"
    );
    assert!(!waiting.is_finished());

    // Under 0.75 again: heavy calls start.
    h.node.set_ballast(0);
    let answer = tokio::time::timeout(DEADLINE, waiting)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    assert_eq!(answer.json()["result"]["height"], "30");
    wait_state(&h, "watching").await;
    assert_eq!(
        h.metric("cometgate_lane_paused", &["lane=\"heavy\""]).await,
        0.0
    );
    assert!(
        h.metric("cometgate_node_guard_shedding_seconds_total", &[])
            .await
            > 0.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn between_the_thresholds_it_keeps_its_state() {
    let h = guarded().await;
    wait_state(&h, "watching").await;
    // 64 + 360 MiB = 0.83 of 512: under shed_above, so it keeps watching.
    h.node.set_ballast(360 << 20);
    eventually("the guard reads the new memory", || async {
        h.metric("cometgate_node_memory_bytes", &[]).await == ((424u64 << 20) as f64)
    })
    .await;
    assert!(state_is(&h, "watching").await);
    h.node.set_ballast(400 << 20);
    wait_state(&h, "shedding").await;
    // Back to 0.83, above resume_below: still shedding.
    h.node.set_ballast(360 << 20);
    eventually("the guard reads the lower memory", || async {
        h.metric("cometgate_node_memory_bytes", &[]).await == ((424u64 << 20) as f64)
    })
    .await;
    assert!(state_is(&h, "shedding").await);
    h.node.set_ballast(300 << 20);
    wait_state(&h, "watching").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_down_or_garbled_endpoint_leaves_it_blind_and_heavy_calls_flow() {
    let h = guarded().await;
    wait_state(&h, "watching").await;
    // The node's memory is high, but the guard can no longer see it.
    h.node.set_ballast(400 << 20);
    wait_state(&h, "shedding").await;
    for (fault, height) in [
        (MetricsFault::Down, 40),
        (MetricsFault::Garbage, 41),
        (MetricsFault::Http500, 42),
    ] {
        h.node.set_metrics_fault(fault);
        wait_state(&h, "blind").await;
        assert_eq!(
            h.metric("cometgate_lane_paused", &["lane=\"heavy\""]).await,
            0.0
        );
        let r = h.post(&block_results(height)).await;
        assert_eq!(r.status, 200, "{fault:?}: {:?}", r.body);
        assert_eq!(
            h.node
                .stats()
                .per_request
                .get(&format!("block_results(height={height})")),
            Some(&1),
            "{fault:?}: the call reached the node"
        );
        h.node.set_metrics_fault(MetricsFault::None);
        wait_state(&h, "shedding").await;
    }
    h.node.set_ballast(0);
    wait_state(&h, "watching").await;
}
