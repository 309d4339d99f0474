//! The node misbehaving (issue #8): every fault the simulated node has gives the client a
//! well-formed JSON-RPC error within `upstream.timeout`, nothing broken is passed on or
//! cached, timeouts give back every slot, the breaker spares a dead node and stale
//! answers stand in meanwhile, and the gateway recovers on its own.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cometgate::breaker::BreakerState;
use cometgate::config::ByteSize;
use cometgate_sim::{Fault, SimNodeConfig};
use serde_json::{json, Value};

use crate::support::*;

/// What "a small margin" over `upstream.timeout` means here: generous, for a loaded CI box.
pub const MARGIN: Duration = Duration::from_millis(1500);

/// A JSON-RPC error in CometBFT's shape: `jsonrpc` "2.0", an integer `code`, a string
/// `message`, `data` a string when present, no `result`, and an `id` (if any) that is a
/// string or a number.
pub fn assert_rpc_error(v: &Value) -> i64 {
    let obj = v
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"));
    assert_eq!(obj.get("jsonrpc"), Some(&Value::from("2.0")), "{v}");
    assert!(!obj.contains_key("result"), "an error with a result: {v}");
    if let Some(id) = obj.get("id") {
        assert!(id.is_string() || id.is_number(), "odd id: {v}");
    }
    let err = obj["error"]
        .as_object()
        .unwrap_or_else(|| panic!("no error object: {v}"));
    assert!(err["message"].is_string(), "{v}");
    if let Some(data) = err.get("data") {
        assert!(data.is_string(), "{v}");
    }
    err["code"]
        .as_i64()
        .unwrap_or_else(|| panic!("no code: {v}"))
}

/// Either shape CometBFT answers with: a result or an error, in JSON-RPC 2.0.
pub fn assert_rpc_shaped(v: &Value) {
    let obj = v
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"));
    if obj.contains_key("error") {
        assert_rpc_error(v);
    } else {
        assert_eq!(obj.get("jsonrpc"), Some(&Value::from("2.0")), "{v}");
        assert!(obj.contains_key("result"), "{v}");
    }
}

fn block(height: u64, id: u64) -> String {
    format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"block","params":{{"height":"{height}"}}}}"#)
}

/// Sends uncached calls (each a new height) until one of them, the probe, closes the
/// circuit.
async fn until_breaker_closes(h: &Harness) {
    static NEXT: AtomicU64 = AtomicU64::new(50_000_000);
    eventually("the breaker closes again", || async move {
        let height = NEXT.fetch_add(1, Ordering::Relaxed);
        h.post(&block(height, 1)).await;
        h.gateway.breaker_state() == BreakerState::Closed
    })
    .await;
}

async fn fault_harness() -> Harness {
    spawn_gateway_with(SimNodeConfig::default(), |c| {
        c.upstream.timeout = Duration::from_secs(1);
        c.upstream.max_response_bytes = ByteSize::kib(64);
    })
    .await
}

#[tokio::test]
async fn each_node_fault_is_a_well_formed_error_in_time_and_is_not_cached() {
    let h = fault_harness().await;
    let timeout = h.gateway.config().upstream.timeout;
    let faults = [
        (Fault::Down, -32603),
        (Fault::Slow(Duration::from_secs(3)), -32603),
        (Fault::Hang, -32603),
        (Fault::Http500, -32603),
        (Fault::TruncatedJson, -32603),
        (Fault::ResetMidBody, -32603),
        (Fault::Oversized(200_000), -32603),
        (Fault::WrongId, -32603),
    ];
    for (n, (fault, code)) in faults.into_iter().enumerate() {
        let height = 2 + n as u64;
        let expected = h.post_node(&block(height, 1)).await.json();
        match &fault {
            // `Down` closes the port whatever the scope.
            Fault::Down => h.node.set_fault(Fault::Down),
            f => h.node.set_fault_for("block", f.clone()),
        }
        let started = Instant::now();
        let reply = h.post(&block(height, 77)).await;
        let took = started.elapsed();
        let v = reply.json();
        assert_eq!(assert_rpc_error(&v), code, "{fault:?}: {v}");
        assert_eq!(v["id"], 77, "{fault:?}: the caller's own id");
        assert!(
            took < timeout + MARGIN,
            "{fault:?} answered after {took:?} (timeout {timeout:?})"
        );
        // The URI form fails alike, with CometBFT's 500.
        let uri = h.get(&format!("/block?height={height}")).await;
        assert_eq!(uri.status, 500, "{fault:?}");
        assert_rpc_error(&uri.json());

        h.node.set_fault(Fault::None);
        let before = h.node.requests_for("block");
        let healed = h.post(&block(height, 78)).await;
        assert_eq!(
            healed.cache(),
            "miss",
            "{fault:?}: the failure was not cached"
        );
        assert_eq!(
            h.node.requests_for("block"),
            before + 1,
            "{fault:?}: the next request reached the node"
        );
        assert_eq!(rpc_view(&healed.json()), rpc_view(&expected), "{fault:?}");
        assert_eq!(healed.json()["id"], 78);
    }
    assert_eq!(h.gateway.breaker_state(), BreakerState::Closed);
}

#[tokio::test]
async fn a_thousand_timeouts_give_back_every_slot() {
    const LANE: usize = 250;
    let h = spawn_gateway_with(SimNodeConfig::default(), |c| {
        c.upstream.timeout = Duration::from_secs(1);
        c.upstream.max_concurrency = LANE;
        c.upstream.pool_max_idle = LANE;
        c.lanes.light.max_concurrency = LANE;
        c.lanes.light.max_queue = 1;
        c.lanes.light.queue_timeout = Duration::from_millis(50);
        c.rate_limit.max_concurrent_per_client = 100_000;
    })
    .await;
    let h = Arc::new(h);
    let mut timeouts = 0;
    let mut wave = 0u64;
    while timeouts < 1000 {
        // The breaker opens after a few failures; let a probe close it before each wave
        // so that every call of the wave really goes to the node and times out.
        h.node.set_fault(Fault::None);
        until_breaker_closes(&h).await;
        h.node.set_fault_for("block", Fault::Hang);
        let calls: Vec<_> = (0..LANE as u64)
            .map(|i| {
                let h = h.clone();
                // Distinct keys: nothing coalesces, every call takes its own slot.
                let body = block(1_000_000 + wave * 10_000 + i, i);
                tokio::spawn(async move { h.post(&body).await.json() })
            })
            .collect();
        for c in calls {
            let v = c.await.expect("task");
            assert_rpc_error(&v);
            if v["error"]["data"]
                .as_str()
                .is_some_and(|d| d.starts_with("upstream timeout"))
            {
                timeouts += 1;
            }
        }
        wave += 1;
        assert!(wave < 10, "only {timeouts} timeouts after {wave} waves");
    }
    h.node.set_fault(Fault::None);
    let gw = h.gateway.clone();
    eventually("every lane slot and client permit is back", move || {
        let s = gw.admission().snapshot();
        async move { s.light.in_flight == 0 && s.light.queued == 0 && s.busy_clients == 0 }
    })
    .await;
    until_breaker_closes(&h).await;

    // Full capacity: a whole lane's worth at once, each held at the node for a while.
    h.node
        .set_fault_for("block", Fault::Slow(Duration::from_millis(500)));
    h.node.reset_counters();
    // Paced in groups: the simulated node listens with std's backlog of 128, and SYNs
    // beyond it wait a 1 s retransmit (a real node listens with somaxconn).
    let mut calls = Vec::new();
    for i in 0..LANE as u64 {
        if i % 25 == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let h = h.clone();
        let body = block(2_000_000 + i, i);
        calls.push(tokio::spawn(async move {
            let started = Instant::now();
            (h.post(&body).await, started.elapsed())
        }));
    }
    let mut slowest = Duration::ZERO;
    for c in calls {
        let (r, took) = c.await.expect("task");
        slowest = slowest.max(took);
        assert_eq!(r.status, 200);
        let v = r.json();
        assert!(
            v["error"]["code"] != -32000,
            "refused at full capacity: {v}"
        );
        assert_ne!(
            v["error"]["data"].as_str().unwrap_or("").get(..8),
            Some("upstream"),
            "{v}"
        );
    }
    let peak = h
        .node
        .stats()
        .peak_inflight_per_method
        .get("block")
        .copied()
        .unwrap_or(0);
    assert!(
        peak as usize >= LANE * 3 / 4,
        "the lane ran {peak} calls at once, not up to {LANE}"
    );
    eprintln!("faults: {timeouts} upstream timeouts in {wave} waves; then {LANE} concurrent calls served, node peak {peak}, slowest {slowest:?}");
}

#[tokio::test]
async fn the_breaker_spares_a_failing_node_serves_stale_and_probes_it_back() {
    let h = spawn_gateway_with(SimNodeConfig::default(), |c| {
        c.upstream.timeout = Duration::from_secs(1);
        c.cache.stale_if_error = Duration::from_secs(30);
    })
    .await;
    // A "latest" answer, then a block: the entry is past its block but in the stale window.
    let abci = r#"{"jsonrpc":"2.0","id":5,"method":"abci_info"}"#;
    let primed = h.post(abci).await;
    assert_eq!(primed.cache(), "miss");
    h.advance_block().await;

    h.node.set_fault_for("block", Fault::Http500);
    h.node.reset_counters();
    let clients = 200u64;
    for i in 0..clients {
        let r = h.post(&block(3_000_000 + i, i)).await;
        let v = r.json();
        assert_eq!(assert_rpc_error(&v), -32603, "{v}");
    }
    let node_calls = h.node.requests_for("block");
    eprintln!("breaker: {clients} client requests, {node_calls} reached the failing node");
    assert!(
        node_calls <= 20,
        "{node_calls} of {clients} requests hammered the failing node"
    );
    assert_ne!(h.gateway.breaker_state(), BreakerState::Closed);

    // Meanwhile the "latest" entry stands in, marked stale.
    let stale = h.post(abci).await;
    assert_eq!(stale.cache(), "stale");
    assert_eq!(rpc_view(&stale.json()), rpc_view(&primed.json()));
    assert_eq!(stale.json()["id"], 5);

    // The node comes back: the gateway finds out by itself.
    h.node.set_fault(Fault::None);
    let started = Instant::now();
    let hh = &h;
    eventually("a probe closes the circuit", || async move {
        let v = hh.post(&block(2, 9)).await.json();
        v.get("result").is_some()
    })
    .await;
    eprintln!(
        "breaker: recovered {:?} after the node came back",
        started.elapsed()
    );
    assert_eq!(h.gateway.breaker_state(), BreakerState::Closed);
}

#[tokio::test]
async fn a_dead_node_coming_back_needs_no_restart() {
    let h = fault_harness().await;
    h.node.set_fault(Fault::Down);
    for i in 0..20 {
        let v = h.post(&block(2, i)).await.json();
        assert_eq!(assert_rpc_error(&v), -32603);
    }
    h.node.set_fault(Fault::None);
    let hh = &h;
    eventually("the gateway answers from the node again", || async move {
        hh.post(&block(3, 1)).await.json().get("result").is_some()
    })
    .await;
    let v = h.post(&block(4, 2)).await.json();
    assert!(v.get("result").is_some(), "{v}");
    // And it still drains cleanly.
    h.shutdown().await;
}

#[tokio::test]
async fn coalesced_callers_each_get_their_own_id_and_a_wrong_id_is_nobodys_answer() {
    let h = Arc::new(fault_harness().await);
    // Held at the node so the identical calls pile onto one flight.
    h.node
        .set_fault_for("block", Fault::Slow(Duration::from_millis(700)));
    let ids: Vec<String> = (0..20)
        .map(|i| match i % 3 {
            0 => format!("{i}"),
            1 => format!("\"client-{i}\""),
            _ => format!("-{i}.5"),
        })
        .collect();
    let before = h.node.requests_for("block");
    let calls: Vec<_> = ids
        .iter()
        .map(|id| {
            let h = h.clone();
            let body = format!(
                r#"{{"jsonrpc":"2.0","id":{id},"method":"block","params":{{"height":"3"}}}}"#
            );
            tokio::spawn(async move { h.post(&body).await })
        })
        .collect();
    for (id, c) in ids.iter().zip(calls) {
        let r = c.await.expect("task");
        let text = String::from_utf8_lossy(&r.body).into_owned();
        assert!(
            text.starts_with(&format!(r#"{{"jsonrpc":"2.0","id":{id},"result":"#)),
            "id {id} got {}",
            &text[..text.len().min(80)]
        );
    }
    // One flight (a caller arriving after it landed on a loaded box may start another).
    let node_calls = h.node.requests_for("block") - before;
    assert!(
        node_calls <= 2,
        "{node_calls} node calls for 20 identical callers"
    );

    h.node.set_fault_for("block", Fault::WrongId);
    let v = h.post(&block(4, 42)).await.json();
    assert_eq!(assert_rpc_error(&v), -32603);
    assert_eq!(v["id"], 42);
    assert!(v["error"]["data"].as_str().unwrap().contains("id"), "{v}");
    // A batch too.
    let batch = format!("[{},{}]", block(5, 1), block(6, 2));
    let v = h.post(&batch).await.json();
    for (entry, id) in v.as_array().expect("batch answer").iter().zip([1, 2]) {
        assert_rpc_error(entry);
        assert_eq!(entry["id"], id);
    }
}

#[tokio::test]
async fn requests_the_node_refuses_as_too_large_are_the_clients_error_and_spare_the_breaker() {
    // The node's own limit is below the gateway's, as after a node config change.
    let h = spawn_gateway_with(
        SimNodeConfig {
            max_body_bytes: 2_000,
            ..SimNodeConfig::default()
        },
        |_| {},
    )
    .await;
    let tx = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, [7u8; 3_000]);
    for id in 0..20 {
        let body = json!({"jsonrpc": "2.0", "id": id, "method": "broadcast_tx_sync", "params": {"tx": tx}});
        let r = h.post(&body.to_string()).await;
        assert_eq!(r.status, 200);
        let v = r.json();
        assert_eq!(assert_rpc_error(&v), -32600, "{v}");
        assert_eq!(v["id"], id);
        let data = v["error"]["data"].as_str().unwrap_or_default();
        assert!(data.contains("request body too large"), "{v}");
    }
    assert_eq!(h.gateway.breaker_state(), BreakerState::Closed);
    let v = h.post(&block(3, 99)).await.json();
    assert!(
        v.get("result").is_some(),
        "other calls still reach the node: {v}"
    );
}
