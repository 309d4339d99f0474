//! One client's flood of heavy calls waits behind itself, not in front of everyone:
//! `lanes.heavy.max_per_client` bounds its place in the lane's queue, while a lane
//! nobody else wants is still all its own.

use std::time::Duration;

use cometgate_sim::{Fault, SimNodeConfig};
use serde_json::json;

use super::{client_at, post_as};
use crate::support::*;

fn block_results(height: u64) -> String {
    json!({"jsonrpc": "2.0", "id": height, "method": "block_results",
           "params": {"height": height.to_string()}})
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_clients_heavy_call_goes_ahead_of_a_floods_queue() {
    let h = spawn_gateway_with(
        SimNodeConfig {
            start_height: 200,
            ..SimNodeConfig::default()
        },
        |c| {
            c.lanes.heavy.max_concurrency = 4;
            // A static lane: these count the node's peak against it.
            c.lanes.heavy.adaptive = false;
            c.lanes.heavy.max_per_client = 2;
            c.lanes.heavy.max_queue = 256;
            c.lanes.heavy.queue_timeout = Duration::from_secs(60);
            c.rate_limit.max_concurrent_per_client = 1000;
        },
    )
    .await;
    h.node
        .set_fault_for("block_results", Fault::Slow(Duration::from_millis(100)));
    let h = std::sync::Arc::new(h);
    let flood: Vec<_> = (1..=60u64)
        .map(|height| {
            let h = h.clone();
            tokio::spawn(async move {
                let http = client_at("127.0.0.2");
                post_as(&http, &h, &block_results(height), &[]).await
            })
        })
        .collect();
    let gw = h.gateway.clone();
    eventually("the flood queues", || {
        let s = gw.admission().snapshot();
        async move { s.heavy.waiting_for_share > 40 }
    })
    .await;

    // Another client's one call, sent after 40+ of the flood's are waiting.
    let other = post_as(&client_at("127.0.0.3"), &h, &block_results(150), &[]).await;
    assert_eq!(
        other.json()["result"]["height"],
        "150",
        "{:?}",
        other.json()
    );
    let still_queued = h.gateway.admission().snapshot().heavy.waiting_for_share;
    assert!(
        still_queued > 20,
        "the other client waited behind the flood: {still_queued} of it still queued"
    );

    for task in flood {
        assert_eq!(task.await.unwrap().status, 200);
    }
    // Read once everything has been answered: the flood's first calls may still be on
    // their way to the node when its queue is already long.
    let node_peak = h.node.stats().peak_inflight_per_method["block_results"];
    assert_eq!(node_peak, 4, "alone, the flood could use the whole lane");
    eprintln!(
        "fairness: answered another client with {still_queued} of a 60-call flood still queued"
    );
}
