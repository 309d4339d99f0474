//! The CPU model over the wire: past `cpu_slots` calls share the CPU and every one of
//! them takes longer; the speed divides service times and can change while the node runs.
//! Only lower bounds are asserted (a loaded machine can only make calls slower); the
//! exact arithmetic is checked on a paused clock in `src/cpu.rs`.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use cometgate_sim::{SimNode, SimNodeConfig};
use common::*;

const WORK: Duration = Duration::from_millis(200);

fn node(cpu_slots: usize) -> SimNodeConfig {
    SimNodeConfig {
        cpu_slots,
        service_ms_per_method: BTreeMap::from([("tx_search".to_string(), 200)]),
        control_listen: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
        ..SimNodeConfig::default()
    }
}

/// `n` tx_search calls at once; each one's latency.
async fn burst(addr: SocketAddr, n: usize) -> Vec<Duration> {
    let calls: Vec<_> = (0..n)
        .map(|i| {
            tokio::spawn(async move {
                let t0 = Instant::now();
                let path = format!("/tx_search?query=%22tx.height%3D{}%22", 2 + i % 5);
                assert_eq!(get(addr, &path).await.status, 200);
                t0.elapsed()
            })
        })
        .collect();
    let mut out = Vec::new();
    for c in calls {
        out.push(c.await.unwrap());
    }
    out
}

#[tokio::test]
async fn past_the_slots_every_call_stretches() {
    let n = SimNode::start(node(2)).await.unwrap();
    // Eight calls of 200 ms on two slots: each gets a quarter of a slot once all have
    // arrived, so even the first to finish needs far more than its 200 ms.
    let took = burst(n.addr(), 8).await;
    let fastest = took.iter().min().unwrap();
    assert!(*fastest >= Duration::from_millis(500), "{took:?}");
    // Work is conserved: 1.6 s of work on two slots cannot end before 800 ms.
    assert!(*took.iter().max().unwrap() >= Duration::from_millis(790));
    assert_eq!(n.stats().live_bytes, 0);
}

#[tokio::test]
async fn without_the_model_calls_do_not_share() {
    // The same eight calls on a node without the CPU model: the fastest is not held back
    // by the others, so it ends long before a shared CPU would let it.
    let shared = SimNode::start(node(2)).await.unwrap();
    let alone = SimNode::start(node(0)).await.unwrap();
    let (s, a) = tokio::join!(burst(shared.addr(), 8), burst(alone.addr(), 8));
    let (s_min, a_min) = (s.iter().min().unwrap(), a.iter().min().unwrap());
    assert!(*a_min >= WORK);
    assert!(a_min < s_min, "model off {a:?}, on {s:?}");
}

#[tokio::test]
async fn speed_divides_service_time_and_changes_at_run_time() {
    let n = SimNode::start(SimNodeConfig {
        speed: 0.5,
        ..node(4)
    })
    .await
    .unwrap();
    assert!(burst(n.addr(), 1).await[0] >= 2 * WORK);
    let c = n.control_addr().unwrap();
    let r = request(c, "POST", "/_simnode/speed", br#"{"speed": 0.25}"#).await;
    assert_eq!(r.status, 200);
    assert_eq!(n.speed(), 0.25);
    assert!(burst(n.addr(), 1).await[0] >= 4 * WORK);
}
