//! `failover` (issue #16): three simulated nodes of one chain behind one gateway, under
//! the explorer's load at a steady rate; the middle one is killed (SIGKILL) for a third of
//! the run, then started again where it was, at the others' height. Each call counts as a
//! success only with HTTP 200 and a JSON-RPC `result`. Per second: the calls the gateway
//! sent each node (`cometgate_upstream_node_calls_total`), for the share chart.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cometgate_sim::SimNodeConfig;
use serde_json::json;

use super::gateway_for;
use crate::charts::{self, Series};
use crate::client::{Call, Client};
use crate::mix::{head_from_status, Form, Mix, Picker};
use crate::procs::free_addr;
use crate::record::{Outcome, Recorder};
use crate::stack::{start_node_at, Bins, Node};

const NODES: usize = 3;
const KILLED: usize = 1;
/// Calls a second, open loop.
const RATE: u64 = 200;
const START_HEIGHT: u64 = 500;
/// The target.
const SUCCESS: f64 = 0.999;
const CHART: &str = "failover-share.png";

fn node_config(start_height: u64, listen: SocketAddr, control: SocketAddr) -> SimNodeConfig {
    SimNodeConfig {
        listen,
        control_listen: Some(control),
        block_interval: Duration::from_secs(1),
        start_height,
        ..SimNodeConfig::default()
    }
}

/// What one round saw.
struct Round {
    /// Every call, by the second it was sent in.
    seconds: Vec<Recorder>,
    /// Node calls per node, per second.
    shares: Vec<[f64; NODES]>,
    phase: u64,
}

impl Round {
    fn total(&self, from: usize, to: usize) -> Recorder {
        let mut r = Recorder::new();
        for s in &self.seconds[from.min(self.seconds.len())..to.min(self.seconds.len())] {
            r.merge(s);
        }
        r
    }
}

/// The load (the explorer, through the cache), then the same with the cache
/// off, so that every call reaches a node and the kill lands on calls in flight.
const VARIANTS: [(&str, bool); 2] = [("explorer", true), ("explorer, cache off", false)];

pub(super) async fn run(
    bins: &Bins,
    quick: bool,
    dir: &Path,
    out: &Path,
) -> Result<(String, serde_json::Value), String> {
    let phase = if quick { 5 } else { 10 };
    let (mut md, mut value) = (String::new(), serde_json::Map::new());
    for (v, (name, cache)) in VARIANTS.iter().enumerate() {
        let mut rounds = Vec::new();
        for i in 0..3 {
            let d = dir.join(format!("{v}-round-{i}"));
            let round = one_round(bins, phase, *cache, &d).await?;
            let all = round.total(0, round.seconds.len());
            eprintln!(
                "failover ({name}) round {}: {} calls, {} failed, p99 in the failover second {:.1} ms",
                i + 1,
                all.count(),
                all.count() - all.ok(),
                round.seconds[phase as usize].quantile_ms(0.99)
            );
            rounds.push(round);
        }
        std::fs::create_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))?;
        let chart_file = if *cache {
            CHART.to_owned()
        } else {
            CHART.replace(".png", "-no-cache.png")
        };
        chart(&rounds[rounds.len() / 2], &out.join(&chart_file))?;
        let (text, figures) = report(name, &chart_file, &rounds);
        md.push_str(&text);
        value.insert((*name).to_owned(), figures);
    }
    Ok((md, serde_json::Value::Object(value)))
}

async fn one_round(bins: &Bins, phase: u64, cache: bool, dir: &Path) -> Result<Round, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let addrs: Vec<(SocketAddr, SocketAddr)> =
        (0..NODES).map(|_| (free_addr(), free_addr())).collect();
    let mut nodes: Vec<Option<Node>> = Vec::new();
    for (i, (rpc, control)) in addrs.iter().enumerate() {
        let d = dir.join(format!("node-{i}"));
        std::fs::create_dir_all(&d).map_err(|e| e.to_string())?;
        nodes.push(Some(
            start_node_at(bins, &node_config(START_HEIGHT, *rpc, *control), &d).await?,
        ));
    }
    let upstream: String = (addrs.iter())
        .map(|(rpc, _)| format!("[[upstream.nodes]]\nurl = \"http://{rpc}/\"\n\n"))
        .collect();
    let sections = format!("[log]\naccess_log = false\n\n[cache]\nenabled = {cache}\n");
    let g = gateway_for(bins, &upstream, "", &sections, &[], dir, "cometgate").await?;
    let client = Client::new(&g.url, None)?;
    let ops = Client::new(&format!("http://{}", g.metrics), None)?;
    wait_all_eligible(&ops).await?;

    let started = Instant::now();
    let run = Duration::from_secs(phase * 3);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let head = Arc::new(std::sync::atomic::AtomicU64::new(START_HEIGHT));
    let driver = tokio::spawn(drive(client.clone(), head.clone(), started, run, tx));
    let scraper = tokio::spawn(scrape(ops.clone(), client, head, started, run));

    tokio::time::sleep_until((started + Duration::from_secs(phase)).into()).await;
    nodes[KILLED] = None;
    tokio::time::sleep_until((started + Duration::from_secs(2 * phase)).into()).await;
    let height = current_head(addrs[0].0).await.unwrap_or(START_HEIGHT);
    let (rpc, control) = addrs[KILLED];
    let d = dir.join(format!("node-{KILLED}"));
    nodes[KILLED] = Some(start_node_at(bins, &node_config(height, rpc, control), &d).await?);

    driver.await.map_err(|e| e.to_string())?;
    let shares = scraper.await.map_err(|e| e.to_string())?;
    let mut seconds: Vec<Recorder> = (0..phase * 3).map(|_| Recorder::new()).collect();
    while let Some((at, took, outcome)) = rx.recv().await {
        let s = (at.as_secs() as usize).min(seconds.len() - 1);
        seconds[s].record(took, &outcome);
    }
    drop(g);
    drop(nodes);
    Ok(Round {
        seconds,
        shares,
        phase,
    })
}

async fn wait_all_eligible(ops: &Client) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok((200, body)) = ops.fetch(&Call::Get("/metrics".into())).await {
            let text = String::from_utf8_lossy(&body);
            let up = text
                .lines()
                .filter(|l| l.starts_with("cometgate_upstream_node_eligible{"))
                .filter(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) == Some(1.0))
                .count();
            if up == NODES {
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err("the nodes never all became eligible".into())
}

async fn current_head(rpc: SocketAddr) -> Option<u64> {
    let node = Client::new(&format!("http://{rpc}"), None).ok()?;
    let (_, body) = node.fetch(&Call::Get("/status".into())).await.ok()?;
    head_from_status(&body)
}

type Sent = (Duration, Duration, Outcome);

/// The explorer's calls at `RATE` a second, open loop; a call counts as ok only with a
/// JSON-RPC `result`.
async fn drive(
    client: Client,
    head: Arc<std::sync::atomic::AtomicU64>,
    started: Instant,
    run: Duration,
    tx: tokio::sync::mpsc::UnboundedSender<Sent>,
) {
    let mut picker = Picker::new(Mix::Explorer, Form::Post, 16);
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / RATE));
    let mut calls = Vec::new();
    while started.elapsed() < run {
        tick.tick().await;
        let call = picker.next(head.load(std::sync::atomic::Ordering::Relaxed));
        let (client, tx) = (client.clone(), tx.clone());
        calls.push(tokio::spawn(async move {
            let sent = Instant::now();
            let (outcome, body) = client.send_keep(&call).await;
            let answered = memchr_result(&body);
            let outcome = match outcome {
                Outcome::Status(200) if !answered => Outcome::Failed("jsonrpc_error"),
                other => other,
            };
            let _ = tx.send((sent - started, sent.elapsed(), outcome));
        }));
    }
    for call in calls {
        let _ = call.await;
    }
}

fn memchr_result(body: &[u8]) -> bool {
    body.windows(9).any(|w| w == b"\"result\":")
}

/// Once a second: the head (for the explorer's heights) and each node's calls so far;
/// returns the calls each node took in each second.
async fn scrape(
    ops: Client,
    gateway: Client,
    head: Arc<std::sync::atomic::AtomicU64>,
    started: Instant,
    run: Duration,
) -> Vec<[f64; NODES]> {
    let mut last = [0.0; NODES];
    let mut out = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    while started.elapsed() < run + Duration::from_secs(1) {
        tick.tick().await;
        if let Ok((200, body)) = gateway.fetch(&Call::Get("/status".into())).await {
            if let Some(h) = head_from_status(&body) {
                head.store(h, std::sync::atomic::Ordering::Relaxed);
            }
        }
        let Ok((200, body)) = ops.fetch(&Call::Get("/metrics".into())).await else {
            continue;
        };
        let text = String::from_utf8_lossy(&body);
        let now: Vec<f64> = text
            .lines()
            .filter(|l| l.starts_with("cometgate_upstream_node_calls_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
            .collect();
        if now.len() == NODES {
            let mut second = [0.0; NODES];
            for i in 0..NODES {
                second[i] = now[i] - last[i];
                last[i] = now[i];
            }
            out.push(second);
        }
    }
    // The first sample is everything before the run.
    out.into_iter().skip(1).collect()
}

fn chart(round: &Round, path: &Path) -> Result<(), String> {
    let series: Vec<Series> = (0..NODES)
        .map(|n| Series {
            name: if n == KILLED {
                format!(
                    "node {} (killed {}–{} s)",
                    n + 1,
                    round.phase,
                    2 * round.phase
                )
            } else {
                format!("node {}", n + 1)
            },
            points: round
                .shares
                .iter()
                .enumerate()
                .map(|(s, calls)| {
                    let all: f64 = calls.iter().sum();
                    (
                        s as f64,
                        if all > 0.0 {
                            100.0 * calls[n] / all
                        } else {
                            0.0
                        },
                    )
                })
                .collect(),
        })
        .collect();
    charts::lines(
        path,
        "Failover: each node's share of node calls, per second",
        ("seconds", "% of node calls"),
        &series,
        None,
    )
}

fn report(name: &str, chart: &str, rounds: &[Round]) -> (String, serde_json::Value) {
    let phase = rounds[0].phase as usize;
    let mut md = format!(
        "\n## Failover: three nodes, one killed ({name})\n\n\
         Three simulated nodes of one chain (1 s blocks) behind one gateway; the explorer's \
         calls at {RATE} a second, open loop. Node 2 is killed (SIGKILL) at {phase} s and \
         started again at {} s, at the others' height. A call succeeds with HTTP 200 and a \
         JSON-RPC `result`. Target: success ≥ 99.9%.\n\n\
         | round | calls | failed | success | p99 before, ms | p99 in the failover second, ms | \
         p99 while down, ms | p99 after restart, ms | met |\n|---|---|---|---|---|---|---|---|---|\n",
        2 * phase
    );
    let mut values = Vec::new();
    let mut met = 0;
    for (i, r) in rounds.iter().enumerate() {
        let all = r.total(0, r.seconds.len());
        let success = all.ok() as f64 / all.count().max(1) as f64;
        let ok = success >= SUCCESS;
        met += usize::from(ok);
        let before = r.total(0, phase);
        let failover = &r.seconds[phase];
        let down = r.total(phase, 2 * phase);
        let after = r.total(2 * phase, 3 * phase);
        md.push_str(&format!(
            "| {} | {} | {} | {:.3}% | {:.1} | {:.1} | {:.1} | {:.1} | {} |\n",
            i + 1,
            all.count(),
            all.count() - all.ok(),
            100.0 * success,
            before.quantile_ms(0.99),
            failover.quantile_ms(0.99),
            down.quantile_ms(0.99),
            after.quantile_ms(0.99),
            if ok { "yes" } else { "no" },
        ));
        values.push(json!({
            "calls": all.count(), "failed": all.count() - all.ok(), "success": success,
            "failures": all.failures, "statuses": all.statuses,
            "p99_ms": {"before": before.quantile_ms(0.99), "failover_second": failover.quantile_ms(0.99),
                        "down": down.quantile_ms(0.99), "after": after.quantile_ms(0.99)},
            "node_calls_per_second": r.shares,
        }));
    }
    md.push_str(&format!(
        "\nSuccess ≥ 99.9%: met in {met} of {} rounds. Each node's share of node calls per \
         second (the middle round): `{chart}`.\n",
        rounds.len()
    ));
    let value = json!({"rate_per_second": RATE, "phase_seconds": phase, "target_success": SUCCESS,
                       "rounds_met": met, "rounds": values});
    (md, value)
}
