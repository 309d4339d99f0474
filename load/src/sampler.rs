//! Watches one run from outside: the simulated node's memory, in-flight count and OOM state
//! (from its control port, which stays up while the node is dead), and the resident memory
//! of the processes in front of it.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::watch;

use crate::client::{Call, Client};
use crate::drive::Live;
use crate::mix::head_from_status;
use crate::procs::rss_bytes;
use cometgate_sim::Stats;

/// Memory over time: milliseconds since the run started, bytes.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Timeline {
    pub node_live_bytes: Vec<(u64, u64)>,
    pub gateway_rss_bytes: Vec<(u64, u64)>,
}

#[derive(Clone, Debug, Default)]
pub struct Watched {
    pub timeline: Timeline,
    pub peak_rss: u64,
    /// cometgate's heavy lane limit, read every half second.
    pub heavy_limits: Vec<f64>,
    pub oom_seen: bool,
    pub first_oom_ms: Option<u64>,
}

pub struct Watch {
    pub control: Option<SocketAddr>,
    /// Poll the node's stats during the run (its per-request map makes each poll cost the
    /// node something, so latency-only runs read the stats just once, at the end).
    pub poll_node: bool,
    pub pids: Vec<u32>,
    pub every: Duration,
    /// cometgate's metrics listener, when the front is cometgate.
    pub gateway_metrics: Option<SocketAddr>,
}

pub async fn node_stats(control: SocketAddr) -> Result<Stats, String> {
    let client = Client::new(&format!("http://{control}"), None)?;
    let (status, body) = client
        .fetch(&Call::Get("/_simnode/stats".into()))
        .await
        .map_err(|e| format!("node stats: {e}"))?;
    if status != 200 {
        return Err(format!("node stats: HTTP {status}"));
    }
    serde_json::from_slice(&body).map_err(|e| format!("node stats: {e}"))
}

pub async fn node_post(control: SocketAddr, route: &str) -> Result<(), String> {
    let client = Client::new(&format!("http://{control}"), None)?;
    let (status, _) = client
        .fetch_post(route)
        .await
        .map_err(|e| format!("{route}: {e}"))?;
    if status >= 300 {
        return Err(format!("{route}: HTTP {status}"));
    }
    Ok(())
}

/// How often the gateway's lane limit is read: its page is a few KB to render.
const LIMIT_EVERY: Duration = Duration::from_millis(500);
const LIMIT_READ: Duration = Duration::from_millis(200);

/// Runs until `stop` changes, then returns what it saw.
pub async fn watch(w: Watch, live: Arc<Live>, mut stop: watch::Receiver<bool>) -> Watched {
    let mut out = Watched::default();
    let start = Instant::now();
    let mut last_peak = 0u64;
    let mut tick = tokio::time::interval(w.every);
    let mut limit_read = Instant::now();
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => break,
        }
        let t = start.elapsed().as_millis() as u64;
        if w.poll_node {
            if let Some(control) = w.control {
                if let Ok(s) = node_stats(control).await {
                    live.head.store(s.height, Ordering::Relaxed);
                    out.oom_seen |= s.oom || s.oom_count > 0;
                    // A spike between two polls still shows: the node's running peak rose,
                    // so memory was that high within this window.
                    let level = if s.peak_bytes > last_peak {
                        s.peak_bytes
                    } else {
                        s.live_bytes
                    };
                    last_peak = last_peak.max(s.peak_bytes);
                    out.timeline.node_live_bytes.push((t, level));
                    if s.oom && out.first_oom_ms.is_none() {
                        out.first_oom_ms = Some(t);
                    }
                    if let Ok(mut line) = live.node_line.lock() {
                        *line = format!(
                            "node: h {} mem {:>4} MiB peak {:>4} MiB inflight {:>3}{}",
                            s.height,
                            s.live_bytes >> 20,
                            s.peak_bytes >> 20,
                            s.inflight,
                            if s.oom { "  OOM" } else { "" }
                        );
                    }
                }
            }
        }
        if let Some(metrics) = w
            .gateway_metrics
            .filter(|_| limit_read.elapsed() >= LIMIT_EVERY)
        {
            limit_read = Instant::now();
            // Bounded: a slow page must not hold up the node's memory polling.
            let read = tokio::time::timeout(LIMIT_READ, crate::lane_limit::heavy_limit(metrics));
            out.heavy_limits.extend(read.await.ok().flatten());
        }
        if !w.pids.is_empty() {
            let rss: u64 = w.pids.iter().filter_map(|p| rss_bytes(*p)).sum();
            out.peak_rss = out.peak_rss.max(rss);
            out.timeline.gateway_rss_bytes.push((t, rss));
        }
    }
    out
}

/// Keeps `live.head` current from the target's own `status`, for runs against a URL with
/// no simulated node's control port to read.
pub async fn follow_head(url: String, live: Arc<Live>, mut stop: watch::Receiver<bool>) {
    let Ok(client) = Client::new(&url, None) else {
        return;
    };
    loop {
        if let Ok((200, body)) = client.fetch(&Call::Get("/status".into())).await {
            if let Some(h) = head_from_status(&body) {
                live.head.store(h, Ordering::Relaxed);
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            _ = stop.changed() => return,
        }
    }
}
