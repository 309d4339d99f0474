//! What an operator sees and does: metrics that move, readiness that follows the node,
//! admin routes kept off the proxy port, and reloads that drop nothing.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cometgate_sim::Fault;
use http::{Method, StatusCode};

use crate::support::*;

const BLOCK_3: &str = r#"{"jsonrpc":"2.0","id":1,"method":"block","params":{"height":"3"}}"#;

#[tokio::test]
async fn each_metric_family_moves_when_its_event_happens() {
    let h = spawn_gateway().await;
    h.post(BLOCK_3).await;
    h.post(BLOCK_3).await;
    h.post(r#"{"jsonrpc":"2.0","id":1,"method":"dump_consensus_state"}"#)
        .await;

    assert_eq!(
        h.metric(
            "cometgate_requests_total",
            &[r#"method="block""#, r#"cache="miss""#]
        )
        .await,
        1.0
    );
    assert_eq!(
        h.metric(
            "cometgate_requests_total",
            &[r#"method="block""#, r#"cache="hit""#]
        )
        .await,
        1.0
    );
    assert_eq!(
        h.metric("cometgate_rejections_total", &[r#"reason="denied""#])
            .await,
        1.0
    );
    assert_eq!(
        h.metric(
            "cometgate_node_requests_total",
            &[r#"method="block""#, r#"result="ok""#]
        )
        .await,
        1.0
    );
    assert_eq!(
        h.metric(
            "cometgate_node_request_duration_seconds_count",
            &[r#"method="block""#]
        )
        .await,
        1.0
    );
    assert_eq!(
        h.metric("cometgate_lane_wait_seconds_count", &[r#"lane="light""#])
            .await,
        1.0
    );
    assert_eq!(h.metric("cometgate_cache_hits_total", &[]).await, 1.0);
    assert!(h.metric("cometgate_cache_misses_total", &[]).await >= 1.0);
    h.gateway.cache().run_pending_tasks().await;
    assert!(h.metric("cometgate_cache_entries", &[]).await >= 1.0);
    assert!(h.metric("cometgate_cache_bytes", &[]).await > 0.0);
    assert_eq!(
        h.metric("cometgate_head_height", &[]).await,
        h.node.height() as f64
    );
    assert_eq!(h.metric("cometgate_node_up", &[]).await, 1.0);
    assert!(
        h.metric("cometgate_process_resident_memory_bytes", &[])
            .await
            > 1e6
    );
    assert!(h.metric("cometgate_connections_open", &[]).await >= 1.0);

    // Coalesced followers: identical calls while the first is still at a slow node.
    h.node.set_fault(Fault::Slow(Duration::from_millis(300)));
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"block_results","params":{"height":"4"}}"#;
    let calls: Vec<_> = (0..5).map(|_| h.post(body)).collect();
    futures_util::future::join_all(calls).await;
    assert_eq!(h.metric("cometgate_cache_coalesced_total", &[]).await, 4.0);
    assert_eq!(h.node.requests_for("block_results"), 1);

    // A node failure shows as an upstream rejection.
    h.node.set_fault(Fault::Down);
    h.post(r#"{"jsonrpc":"2.0","id":1,"method":"health"}"#)
        .await;
    assert_eq!(
        h.metric("cometgate_rejections_total", &[r#"reason="upstream_down""#])
            .await,
        1.0
    );

    let reloaded = h
        .metric("cometgate_config_reloads_total", &[r#"reason="ok""#])
        .await;
    h.gateway.reload((*h.gateway.config()).clone());
    h.gateway.metrics().reloaded(true);
    assert_eq!(
        h.metric("cometgate_config_reloads_total", &[r#"reason="ok""#])
            .await,
        reloaded + 1.0
    );
}

#[tokio::test]
async fn readiness_follows_the_node_failing_stalling_and_recovering() {
    let h = Arc::new(
        spawn_gateway_with(Default::default(), |c| {
            c.head.stall_after = Duration::from_secs(1);
            c.head.poll_interval = Duration::from_millis(100);
        })
        .await,
    );
    // A live chain: a block every 100 ms while `producing` is set.
    let producing = Arc::new(AtomicBool::new(true));
    let (node, on) = (h.clone(), producing.clone());
    let producer = tokio::spawn(async move {
        loop {
            if on.load(Ordering::Relaxed) {
                node.node.advance_block();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let ready = |h: Arc<Harness>| async move {
        h.ops(Method::GET, "/readyz", "").await.status == StatusCode::OK
    };
    eventually("ready while blocks advance", || ready(h.clone())).await;

    producing.store(false, Ordering::Relaxed);
    h.node.set_fault(Fault::Down);
    eventually("not ready once the node is down", || async {
        !ready(h.clone()).await
    })
    .await;
    let why = h.ops(Method::GET, "/readyz", "").await.json();
    assert_eq!(why["ready"], false);

    h.node.set_fault(Fault::None);
    producing.store(true, Ordering::Relaxed);
    eventually("ready again once it is back", || ready(h.clone())).await;

    producing.store(false, Ordering::Relaxed);
    eventually("not ready when the chain stalls", || async {
        !ready(h.clone()).await
    })
    .await;
    producing.store(true, Ordering::Relaxed);
    eventually("ready again when blocks resume", || ready(h.clone())).await;
    assert_eq!(
        h.ops(Method::GET, "/healthz", "").await.status,
        StatusCode::OK,
        "healthz only says the process is up"
    );
    producer.abort();
}

#[tokio::test]
async fn metrics_and_admin_routes_are_not_reachable_on_the_proxy_port() {
    let h = spawn_gateway().await;
    h.node.reset_counters();
    for (method, path) in [
        (Method::GET, "/metrics"),
        (Method::GET, "/healthz"),
        (Method::GET, "/readyz"),
        (Method::POST, "/admin/purge"),
        (Method::GET, "/admin/config"),
        (Method::GET, "/admin/explain/block?height=1"),
        (Method::GET, "/v1/metrics"),
    ] {
        let reply = h.request(method.clone(), path, "", &[]).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{method} {path}");
    }
    assert_eq!(h.node.stats().total_requests, 0);
    assert_eq!(
        h.ops(Method::GET, "/metrics", "").await.status,
        StatusCode::OK,
        "they live on the ops listener"
    );
}

#[tokio::test]
async fn purge_empties_the_cache_and_explain_describes_a_request() {
    let h = spawn_gateway().await;
    h.post(BLOCK_3).await;
    assert_eq!(h.post(BLOCK_3).await.cache(), "hit");
    let explained = h
        .ops(Method::GET, "/admin/explain/block?height=3", "")
        .await
        .json();
    assert_eq!(explained["method"], "block");
    assert_eq!(explained["lane"], "light");
    assert_eq!(explained["canonical_key"], r#"block {"height":"3"}"#);
    assert_eq!(explained["cache"]["cached"], true, "{explained}");
    let by_post = h.ops(Method::POST, "/admin/explain", BLOCK_3).await.json();
    assert_eq!(by_post["canonical_key"], explained["canonical_key"]);

    let purged = h
        .ops(Method::POST, "/admin/purge?method=block", "")
        .await
        .json();
    assert_eq!(purged["purged"], 1);
    assert_eq!(h.post(BLOCK_3).await.cache(), "miss");
    assert_eq!(h.node.requests_for("block"), 2);
    let config =
        String::from_utf8(h.ops(Method::GET, "/admin/config", "").await.body.to_vec()).unwrap();
    assert!(
        cometgate::config::Config::from_toml_str(&config).is_ok(),
        "the effective config parses back"
    );
}

#[tokio::test]
async fn a_reload_with_a_tighter_rate_limit_takes_effect_without_a_restart() {
    let h = spawn_gateway().await;
    for _ in 0..20 {
        assert_eq!(h.post(BLOCK_3).await.status, StatusCode::OK);
    }
    let mut tighter = (*h.gateway.config()).clone();
    tighter.rate_limit.requests_per_second = 1;
    tighter.rate_limit.burst = 5;
    assert!(
        h.gateway.reload(tighter).is_empty(),
        "nothing here needs a restart"
    );
    let statuses: Vec<u16> = futures_util::future::join_all((0..10).map(|_| h.post(BLOCK_3)))
        .await
        .iter()
        .map(|r| r.status.as_u16())
        .collect();
    assert!(statuses.contains(&429), "{statuses:?}");
}

#[tokio::test]
async fn a_reload_under_steady_load_drops_no_request() {
    let h = Arc::new(spawn_gateway().await);
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let workers: Vec<_> = (0..8)
        .map(|w| {
            let (h, stop, ok, failed) = (h.clone(), stop.clone(), ok.clone(), failed.clone());
            tokio::spawn(async move {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let body = format!(r#"{{"jsonrpc":"2.0","id":{n},"method":"block","params":{{"height":"{}"}}}}"#, 1 + (n + w) % 9);
                    let reply = h.post(&body).await;
                    let good = reply.status == StatusCode::OK && reply.json().get("result").is_some();
                    if good { ok.fetch_add(1, Ordering::Relaxed) } else { failed.fetch_add(1, Ordering::Relaxed) };
                }
            })
        })
        .collect();
    for i in 0..10 {
        let mut next = (*h.gateway.config()).clone();
        next.lanes.light.max_concurrency = 8 + i;
        next.cache.stale_if_error = Duration::from_secs(10 + i as u64);
        h.gateway.reload(next);
        let before = ok.load(Ordering::Relaxed);
        eventually("requests flow after the reload", || async {
            ok.load(Ordering::Relaxed) > before + 20
        })
        .await;
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "{} ok",
        ok.load(Ordering::Relaxed)
    );
}

#[tokio::test]
async fn the_grafana_dashboard_only_uses_metrics_the_gateway_exports() {
    let h = spawn_gateway().await;
    h.post(BLOCK_3).await;
    h.post(BLOCK_3).await;
    h.post(r#"{"jsonrpc":"2.0","id":1,"method":"dump_consensus_state"}"#)
        .await;
    let text = String::from_utf8(h.ops(Method::GET, "/metrics", "").await.body.to_vec()).unwrap();
    let dashboard = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/grafana-dashboard.json"
    ))
    .unwrap();
    let mut checked = 0;
    for (i, _) in dashboard.match_indices("cometgate_") {
        let name: String = dashboard[i..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if name == "cometgate_" {
            continue;
        }
        assert!(
            text.lines().any(|l| l.starts_with(&name)),
            "{name} is on the dashboard but not in /metrics"
        );
        checked += 1;
    }
    assert!(checked > 10);
}

#[tokio::test]
async fn readiness_returns_after_the_node_recovers_even_with_no_client_traffic() {
    let h = spawn_gateway().await;
    h.node.set_fault_for("block", Fault::Http500);
    for id in 0..10u64 {
        let body = format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"block","params":{{"height":"{}"}}}}"#,
            2 + id
        );
        h.post(&body).await;
    }
    assert_ne!(
        h.gateway.breaker_state(),
        cometgate::breaker::BreakerState::Closed
    );
    assert_eq!(
        h.ops(Method::GET, "/readyz", "").await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );

    // The node is fine again, and no client calls: nothing will probe the circuit, so
    // readiness must not wait for one (a load balancer would never send it).
    h.node.set_fault(Fault::None);
    eventually("ready again without a client's probe", || async {
        h.ops(Method::GET, "/readyz", "").await.status == StatusCode::OK
    })
    .await;
    let v = h
        .post(r#"{"jsonrpc":"2.0","id":1,"method":"block","params":{"height":"3"}}"#)
        .await;
    assert!(
        v.json().get("result").is_some(),
        "the next call probes and closes it"
    );
    assert_eq!(
        h.gateway.breaker_state(),
        cometgate::breaker::BreakerState::Closed
    );
}

#[tokio::test]
async fn admin_routes_need_a_token_off_loopback() {
    let h = spawn_gateway().await;
    let port = spawn_wide_ops(&h).await;
    let http = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http();
    let purge = |auth: Option<&'static str>| {
        let http = http.clone();
        async move {
            let headers: Vec<(&str, &str)> =
                auth.map(|a| ("authorization", a)).into_iter().collect();
            send(
                &http,
                Method::POST,
                &format!("http://127.0.0.1:{port}/admin/purge"),
                bytes::Bytes::new(),
                &headers,
            )
            .await
            .status
        }
    };
    assert_eq!(purge(None).await, StatusCode::FORBIDDEN);
    let metrics = send(
        &http,
        Method::GET,
        &format!("http://127.0.0.1:{port}/metrics"),
        bytes::Bytes::new(),
        &[],
    )
    .await;
    assert_eq!(metrics.status, StatusCode::OK, "metrics stay open");

    let mut config = (*h.gateway.config()).clone();
    config.metrics.admin_token = Some("0123456789abcdef-secret".into());
    h.gateway.reload(config);
    assert_eq!(purge(None).await, StatusCode::UNAUTHORIZED);
    assert_eq!(
        purge(Some("Bearer wrong-token-0123456789")).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        purge(Some("Bearer 0123456789abcdef-secret")).await,
        StatusCode::OK
    );
    // The loopback listener the harness runs still needs the token once one is set.
    assert_eq!(
        h.ops(Method::POST, "/admin/purge", "").await.status,
        StatusCode::UNAUTHORIZED
    );
    let shown = String::from_utf8(
        send(
            &http,
            Method::GET,
            &format!("http://127.0.0.1:{port}/admin/config"),
            bytes::Bytes::new(),
            &[("authorization", "Bearer 0123456789abcdef-secret")],
        )
        .await
        .body
        .to_vec(),
    )
    .unwrap();
    assert!(!shown.contains("abcdef-secret"), "{shown}");
}
