//! Soak (issue #8): a bounded mixed run at a constant rate, with blocks landing and a hot
//! reload halfway. RSS and open fds stay flat, unexpected errors do not grow, and every
//! request sent gets its answer, across the reload too.
//!
//! Runs in its own test binary (`tests/soak/main.rs`) so that the process's readings are
//! this run's. `COMETGATE_SOAK_SECS` (default 15) and `COMETGATE_SOAK_RATE` (requests per
//! second, default 100) size it; `load/soak.sh` runs it for 10 minutes.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cometgate_sim::{Fault, SimNodeConfig};
use http::Method;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Semaphore;

use crate::support::*;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn resident_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

#[derive(Default)]
struct Tally {
    sent: AtomicU64,
    answered: AtomicU64,
    /// Answers that are not what the request deserved: a node-side or capacity error.
    unexpected: [AtomicU64; 2],
}

/// One request of the mix; `n` picks it. Returns whether the answer was as expected.
async fn one(h: &Harness, n: u64, head: u64) -> bool {
    let height = 1 + n % head.max(1);
    let (reply, deliberate_error) = match n % 10 {
        0 | 1 => (h.post(r#"{"jsonrpc":"2.0","id":1,"method":"status"}"#).await, false),
        2 | 3 => (
            h.post(&format!(
                r#"{{"jsonrpc":"2.0","id":"b{n}","method":"block","params":{{"height":"{height}"}}}}"#
            ))
            .await,
            false,
        ),
        4 => (h.get(&format!("/block_results?height={height}")).await, false),
        5 => (
            h.post(&format!(
                r#"[{{"jsonrpc":"2.0","id":1,"method":"header","params":{{"height":"{height}"}}}},{{"jsonrpc":"2.0","id":2,"method":"abci_info"}}]"#
            ))
            .await,
            false,
        ),
        6 => (
            h.post(&format!(
                r#"{{"jsonrpc":"2.0","id":{n},"method":"tx_search","params":{{"query":"tx.height={height}","per_page":"5"}}}}"#
            ))
            .await,
            false,
        ),
        7 => (h.get("/v1/net_info").await, false),
        8 => (
            h.request(Method::POST, "/", r#"{"jsonrpc":"2.0","id":1,"method":"unsafe_flush_mempool"}"#, &[])
                .await,
            true,
        ),
        _ => (h.post("{not json").await, true),
    };
    let Ok(v) = serde_json::from_slice::<Value>(&reply.body) else {
        return false;
    };
    let entries = match &v {
        Value::Array(a) => a.clone(),
        other => vec![other.clone()],
    };
    entries.iter().all(|e| match e.get("error") {
        None => e.get("result").is_some(),
        Some(err) => deliberate_error && err["code"] != -32603 && err["code"] != -32000,
    })
}

/// `n` calls that linger at the node, each on a connection of its own that closes after
/// its answer; returns once the node holds all of them.
async fn linger(h: &Arc<Harness>, n: u64) -> Vec<tokio::task::JoinHandle<Value>> {
    let before = h.node.requests_for("health");
    let tasks = (0..n)
        .map(|i| {
            let addr = h.addr;
            tokio::spawn(async move {
                let body = format!(r#"{{"jsonrpc":"2.0","id":{i},"method":"health"}}"#);
                let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
                let request = format!(
                    "POST / HTTP/1.1\r\nHost: gw\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                s.write_all(request.as_bytes()).await.expect("write");
                let mut answer = Vec::new();
                tokio::time::timeout(DEADLINE, s.read_to_end(&mut answer))
                    .await
                    .expect("answered")
                    .expect("read");
                let text = String::from_utf8_lossy(&answer).into_owned();
                let (_, json) = text.split_once("\r\n\r\n").expect("an HTTP answer");
                serde_json::from_str(json).expect("JSON")
            })
        })
        .collect();
    let node = &h.node;
    eventually("the lingering calls reach the node", || async move {
        node.requests_for("health") >= before + n
    })
    .await;
    tasks
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mixed_constant_rate_run_stays_flat_across_a_hot_reload() {
    let secs = env("COMETGATE_SOAK_SECS", 15);
    let rate = env("COMETGATE_SOAK_RATE", 100).max(1);
    let h = Arc::new(
        spawn_gateway_with(SimNodeConfig::default(), |c| {
            c.log.access_log = false;
        })
        .await,
    );
    // `health` lingers at the node, so the reload can land with requests in flight.
    h.node
        .set_fault_for("health", Fault::Slow(Duration::from_millis(500)));
    let mut lingering = Vec::new();
    let mut warmed_pool = false;
    let tally = Arc::new(Tally::default());
    let in_flight = Arc::new(Semaphore::new(256));
    let started = Instant::now();
    let total = Duration::from_secs(secs);
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut next_sample = Duration::ZERO;
    let mut next_block = Duration::ZERO;
    let mut reloaded = false;
    let mut samples: Vec<(Duration, u64, usize)> = Vec::new();
    let mut tasks = Vec::new();
    let mut n = 0u64;
    while started.elapsed() < total {
        tick.tick().await;
        let now = started.elapsed();
        if now >= next_block {
            h.node.advance_block();
            next_block = now + Duration::from_millis(500);
        }
        if now >= next_sample {
            samples.push((now, resident_bytes(), open_fds()));
            next_sample = now + Duration::from_secs(1);
        }
        if !warmed_pool && now >= total / 10 {
            // The same burst once during warm-up: the upstream pool grows to it here,
            // not in the measured part of the run.
            warmed_pool = true;
            for t in linger(&h, 16).await {
                t.await.expect("warm-up call");
            }
        }
        if !reloaded && now >= total / 2 {
            reloaded = true;
            lingering = linger(&h, 16).await;
            let mut new = (*h.gateway.config()).clone();
            new.lanes.light.max_concurrency -= 8;
            new.lanes.heavy.max_concurrency += 1;
            new.cache.stale_if_error = Duration::from_secs(20);
            let restart = h.gateway.reload(new);
            assert!(restart.is_empty(), "{restart:?}");
            eprintln!(
                "soak: hot reload at {now:?} with {} requests in flight",
                256 - in_flight.available_permits() + 16
            );
        }
        let permit = in_flight.clone().acquire_owned().await.expect("open");
        let (h2, t) = (h.clone(), tally.clone());
        let half = usize::from(now >= total / 2);
        let head = h.node.height();
        n += 1;
        t.sent.fetch_add(1, Ordering::Relaxed);
        tasks.push(tokio::spawn(async move {
            let ok = one(&h2, n, head).await;
            t.answered.fetch_add(1, Ordering::Relaxed);
            if !ok {
                t.unexpected[half].fetch_add(1, Ordering::Relaxed);
            }
            drop(permit);
        }));
        if tasks.len() > 4096 {
            tasks.retain(|t| !t.is_finished());
        }
    }
    for t in tasks {
        t.await.expect("a request task failed: its answer was lost");
    }
    for (i, t) in lingering.into_iter().enumerate() {
        let v = t
            .await
            .expect("a call in flight across the reload was lost");
        assert_eq!(v["id"], i, "{v}");
        assert!(v["result"].is_object(), "in flight across the reload: {v}");
    }
    samples.push((started.elapsed(), resident_bytes(), open_fds()));

    let sent = tally.sent.load(Ordering::Relaxed);
    let answered = tally.answered.load(Ordering::Relaxed);
    let bad = [0, 1].map(|i| tally.unexpected[i].load(Ordering::Relaxed));
    // After the first quarter: caches, pools and allocator arenas have warmed up.
    let warm = samples
        .iter()
        .find(|(t, _, _)| *t >= total / 4)
        .copied()
        .unwrap_or(samples[0]);
    let last = *samples.last().expect("samples");
    let peak_rss = samples.iter().map(|s| s.1).max().unwrap_or(0);
    let peak_fds = samples.iter().map(|s| s.2).max().unwrap_or(0);
    eprintln!(
        "soak: {secs}s at {rate}/s: {sent} sent, {answered} answered, unexpected {bad:?} (1st/2nd half); \
         RSS {} -> {} MiB (peak {}), fds {} -> {} (peak {peak_fds})",
        warm.1 >> 20,
        last.1 >> 20,
        peak_rss >> 20,
        warm.2,
        last.2
    );
    assert_eq!(answered, sent, "requests lost");
    assert!(
        sent >= rate * secs * 8 / 10,
        "the load ran at {} of {rate}/s",
        sent / secs.max(1)
    );
    assert!(
        bad[0] + bad[1] <= sent / 200,
        "{bad:?} unexpected answers of {sent}"
    );
    assert!(bad[1] <= bad[0] + sent / 400, "errors grew: {bad:?}");
    assert!(
        last.2 <= warm.2 + 32,
        "open fds crept from {} to {}",
        warm.2,
        last.2
    );
    assert!(
        last.1 <= warm.1 + 64 * 1024 * 1024,
        "RSS crept from {} to {} MiB",
        warm.1 >> 20,
        last.1 >> 20
    );
}
