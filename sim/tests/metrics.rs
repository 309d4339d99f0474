//! The node's Prometheus page: well-formed text in Go's exposition, resident memory that
//! follows the answers being built and the ballast, the metrics port's life and faults.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;

use cometgate_sim::{Fault, MetricsFault, SimNode, SimNodeConfig};
use common::*;

const BASELINE: u64 = 64 << 20;

/// A parsed page: sample (name with labels) → value. Panics on anything that is not
/// Prometheus text: every sample after its family's `# HELP` and `# TYPE`, one value.
fn parse(text: &str) -> BTreeMap<String, f64> {
    let mut described: Vec<String> = Vec::new();
    let mut out = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            described.push(rest.split(' ').next().unwrap().to_string());
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("# TYPE name kind");
            assert_eq!(described.last().map(String::as_str), Some(name), "{line}");
            assert!(["gauge", "counter"].contains(&kind), "{line}");
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("name value");
        let name = series.split('{').next().unwrap();
        assert!(described.iter().any(|d| d == name), "no HELP for {name}");
        if let Some(labels) = series.strip_prefix(name) {
            assert!(labels.is_empty() || (labels.starts_with('{') && labels.ends_with('}')));
        }
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("value in {line}"));
        out.insert(series.to_string(), value);
    }
    out
}

async fn page_at(addr: SocketAddr, path: &str) -> (u16, String) {
    let r = get(addr, path).await;
    (r.status, String::from_utf8_lossy(&r.body).into_owned())
}

async fn resident(addr: SocketAddr) -> f64 {
    let (status, text) = page_at(addr, "/metrics").await;
    assert_eq!(status, 200, "{text}");
    parse(&text)["process_resident_memory_bytes"]
}

fn slow_results() -> SimNodeConfig {
    SimNodeConfig {
        metrics_listen: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
        // One block_results is held for two seconds: long enough to read it in flight.
        service_ms_per_method: BTreeMap::from([("block_results".to_string(), 2000)]),
        txs_per_block: 20,
        ..SimNodeConfig::default()
    }
}

#[tokio::test]
async fn the_page_is_go_exposition_text_with_the_memory_a_guard_reads() {
    let n = SimNode::start(slow_results()).await.unwrap();
    let m = n.metrics_addr().expect("metrics port");
    assert_eq!(n.metrics_url(), format!("http://{m}/metrics"));
    let r = get(m, "/metrics").await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let text = String::from_utf8(r.body).unwrap();
    // Go writes large values in exponent form: the default baseline is 64 MiB.
    assert!(
        text.contains("\nprocess_resident_memory_bytes 6.7108864e+07\n"),
        "{text}"
    );
    assert!(text.contains("# TYPE process_resident_memory_bytes gauge\n"));
    let page = parse(&text);
    assert_eq!(
        page["cometbft_consensus_height{chain_id=\"dockerchain\"}"],
        10.0
    );
    assert!(page["go_goroutines"] >= 1.0);
    // Only /metrics lives on that port.
    assert_eq!(get(m, "/status").await.status, 404);
}

#[tokio::test]
async fn resident_memory_follows_the_answers_in_flight_and_the_ballast() {
    let n = SimNode::start(slow_results()).await.unwrap();
    let (a, m) = (n.addr(), n.metrics_addr().unwrap());
    assert_eq!(resident(m).await, BASELINE as f64);
    let call = tokio::spawn(async move { get(a, "/block_results?height=5").await.status });
    wait_for("the answer's memory in the page", || async {
        resident(m).await > BASELINE as f64
    })
    .await;
    let live = n.stats().live_bytes;
    assert!(live > 0);
    assert_eq!(resident(m).await, (BASELINE + live) as f64);
    assert_eq!(call.await.unwrap(), 200);
    assert_eq!(resident(m).await, BASELINE as f64, "released when answered");

    n.set_ballast(300 << 20);
    assert_eq!(resident(m).await, (BASELINE + (300 << 20)) as f64);
    assert_eq!(n.stats().resident_bytes, BASELINE + (300 << 20));
    n.set_ballast(0);
    assert_eq!(resident(m).await, BASELINE as f64);
}

#[tokio::test]
async fn the_control_port_serves_the_page_and_sets_the_knobs() {
    let n = SimNode::start(SimNodeConfig {
        control_listen: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
        memory_limit_bytes: Some(1 << 30),
        ..SimNodeConfig::default()
    })
    .await
    .unwrap();
    let c = n.control_addr().unwrap();
    assert_eq!(n.metrics_url(), format!("http://{c}/metrics"));
    assert_eq!(resident(c).await, BASELINE as f64);
    let r = request(c, "POST", "/_simnode/ballast", br#"{"bytes": 1000}"#).await;
    assert_eq!(r.status, 200);
    assert_eq!(resident(c).await, (BASELINE + 1000) as f64);
    let r = request(c, "POST", "/_simnode/speed", br#"{"speed": 0.5}"#).await;
    assert_eq!(r.status, 200);
    assert_eq!(n.speed(), 0.5);
    assert_eq!(
        request(c, "POST", "/_simnode/speed", br#"{"speed": 0}"#)
            .await
            .status,
        400
    );
    // A ballast past the limit is an OOM, as any memory is.
    request(c, "POST", "/_simnode/ballast", br#"{"bytes": 2000000000}"#).await;
    assert!(n.stats().oom);
    wait_for("the RPC port closed", || refused(n.addr())).await;
    // On the RPC port the page is a control route.
    n.set_ballast(0);
    n.restart();
    let (status, text) = page_at(n.addr(), "/_simnode/metrics").await;
    assert_eq!(status, 200);
    assert!(parse(&text).contains_key("process_resident_memory_bytes"));
}

#[tokio::test]
async fn metrics_faults_refuse_fail_or_garble_and_clear() {
    let n = SimNode::start(SimNodeConfig {
        metrics_listen: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
        control_listen: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
        ..SimNodeConfig::default()
    })
    .await
    .unwrap();
    let (m, c) = (n.metrics_addr().unwrap(), n.control_addr().unwrap());
    n.set_metrics_fault(MetricsFault::Down);
    wait_for("the metrics port refuses", || refused(m)).await;
    assert_eq!(
        page_at(c, "/metrics").await.0,
        503,
        "the control port stays up"
    );
    assert_eq!(post(n.addr(), STATUS).await.status, 200, "RPC unaffected");

    n.set_metrics_fault(MetricsFault::Http500);
    assert_eq!(n.metrics_addr(), Some(m), "back on the same port");
    assert_eq!(page_at(m, "/metrics").await.0, 500);

    n.set_metrics_fault(MetricsFault::Garbage);
    let r = get(m, "/metrics").await;
    assert_eq!(r.status, 200);
    assert!(!String::from_utf8_lossy(&r.body).contains("process_resident_memory_bytes "));

    let r = request(c, "POST", "/_simnode/metrics-fault", br#"{"kind": "none"}"#).await;
    assert_eq!(r.status, 200);
    assert_eq!(resident(m).await, BASELINE as f64);
}

#[tokio::test]
async fn the_metrics_port_dies_with_the_node_and_comes_back_with_it() {
    let n = SimNode::start(SimNodeConfig {
        metrics_listen: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
        ..SimNodeConfig::default()
    })
    .await
    .unwrap();
    let m = n.metrics_addr().unwrap();
    n.set_fault(Fault::Down);
    wait_for("the metrics port closed with the node", || refused(m)).await;
    n.set_fault(Fault::None);
    assert_eq!(resident(m).await, BASELINE as f64);
}

const STATUS: &str = r#"{"jsonrpc":"2.0","id":1,"method":"status"}"#;
