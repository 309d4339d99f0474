//! Three cometgate replicas sharing one Redis in front of one simulated node, one client
//! spread over them round robin as a load balancer would (issue #15's `replicas`):
//! - the rate that client is admitted at, against its configured limit, shared and not;
//! - node calls per immutable question asked through all three, shared and not;
//! - cache-hit throughput of a replica that shares, beside a lone one without Redis;
//! - p99 and errors before, while and after Redis is killed for 10 s.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use super::{gateway, ms};
use crate::client::{Call, Client};
use crate::procs::{free_addr, wait_listening, Proc};
use crate::record::{Outcome, Recorder};
use crate::sampler::{node_post, node_stats};
use crate::stack::{installed, start_node, Bins, Node};
use cometgate_sim::SimNodeConfig;

const REPLICAS: usize = 3;
/// The client's configured limit, in calls of cost 1 (`status`) a second.
const RATE: u32 = 200;
const BURST: u32 = 50;
/// Immutable questions asked through every replica.
const QUESTIONS: u64 = 60;
const START_HEIGHT: u64 = 500;

fn node() -> SimNodeConfig {
    SimNodeConfig {
        block_interval: Duration::from_secs(1),
        start_height: START_HEIGHT,
        ..SimNodeConfig::default()
    }
}

/// The sections after the listen addresses: limited at `rate` a second for the
/// loopback client, sharing through `redis` when given.
fn sections(rate: u32, burst: u32, redis: Option<std::net::SocketAddr>) -> String {
    let shared = redis
        .map(|r| format!("[shared]\nredis_url = \"redis://{r}\"\n"))
        .unwrap_or_default();
    format!(
        "[rate_limit]\nlocal_clients = \"limited\"\nrequests_per_second = {rate}\n\
         burst = {burst}\nmax_concurrent_per_client = 100000\n\n\
         [log]\naccess_log = false\n\n{shared}"
    )
}

struct Redis {
    proc: Option<Proc>,
    addr: std::net::SocketAddr,
    dir: std::path::PathBuf,
}

impl Redis {
    async fn start(dir: &Path) -> Result<Redis, String> {
        let mut redis = Redis {
            proc: None,
            addr: free_addr(),
            dir: dir.to_owned(),
        };
        redis.restart().await?;
        Ok(redis)
    }

    async fn restart(&mut self) -> Result<(), String> {
        self.proc = None;
        let bin = installed(
            "redis-server",
            &["/usr/bin/redis-server", "/usr/local/bin/redis-server"],
            &["redis-server"],
        )
        .ok_or("redis-server is missing and could not be installed")?;
        let mut cmd = Command::new(bin);
        cmd.args([
            "--port",
            &self.addr.port().to_string(),
            "--bind",
            "127.0.0.1",
        ])
        .args(["--save", "", "--appendonly", "no"]);
        let mut proc = Proc::spawn(cmd, "redis", &self.dir, false)?;
        wait_listening(self.addr, &mut proc).await?;
        self.proc = Some(proc);
        Ok(())
    }

    fn kill(&mut self) {
        self.proc = None;
    }
}

/// One node, an optional Redis and three replicas in front of the node.
struct Set {
    node: Node,
    redis: Option<Redis>,
    _gateways: Vec<Proc>,
    clients: Vec<Client>,
}

async fn start_set(
    bins: &Bins,
    shared: bool,
    rate: u32,
    burst: u32,
    dir: &Path,
) -> Result<Set, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let node = start_node(bins, &node(), false, dir).await?;
    let redis = match shared {
        true => Some(Redis::start(dir).await?),
        false => None,
    };
    let text = sections(rate, burst, redis.as_ref().map(|r| r.addr));
    let (mut gateways, mut clients) = (Vec::new(), Vec::new());
    for i in 0..REPLICAS {
        let name = format!("cometgate-{i}");
        let (proc, url) = gateway(bins, node.rpc, &text, &[], dir, &name).await?;
        gateways.push(proc);
        clients.push(Client::new(&url, None)?);
    }
    // The replicas reach Redis and the head before anything is measured.
    tokio::time::sleep(Duration::from_secs(2)).await;
    Ok(Set {
        node,
        redis,
        _gateways: gateways,
        clients,
    })
}

fn status() -> Call {
    Call::Get("/status".into())
}

fn block(height: u64) -> Call {
    Call::Get(format!("/block?height={height}"))
}

/// Calls admitted a second to one client sending far above its rate, round robin over
/// the replicas, counted after the first two seconds (every replica's first burst).
async fn admitted(set: &Set, run: Duration) -> f64 {
    let started = Instant::now();
    let settle = Duration::from_secs(2);
    let workers: Vec<_> = (0..12)
        .map(|w| {
            let clients = set.clients.clone();
            tokio::spawn(async move {
                let mut ok = 0u64;
                let mut i = w;
                while started.elapsed() < run {
                    let outcome = clients[i % REPLICAS].send(&status()).await;
                    i += 1;
                    if started.elapsed() > settle && outcome == Outcome::Status(200) {
                        ok += 1;
                    }
                }
                ok
            })
        })
        .collect();
    let mut ok = 0;
    for w in workers {
        ok += w.await.unwrap_or(0);
    }
    ok as f64 / (run - settle).as_secs_f64()
}

/// Node calls per immutable question asked through every replica: one after the other,
/// 50 ms apart (a load balancer spreading one explorer's page views), and all at once.
async fn node_calls(set: &Set) -> Result<(f64, f64), String> {
    node_post(set.node.control, "/_simnode/reset-counters").await?;
    for q in 0..QUESTIONS {
        for client in &set.clients {
            client.send(&block(100 + q)).await;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    for q in 0..QUESTIONS {
        let asks: Vec<_> = set
            .clients
            .iter()
            .map(|c| {
                let c = c.clone();
                tokio::spawn(async move { c.send(&block(300 + q)).await })
            })
            .collect();
        for a in asks {
            let _ = a.await;
        }
    }
    let stats = node_stats(set.node.control).await?;
    let calls = |from: u64| -> f64 {
        let n: u64 = (from..from + QUESTIONS)
            .filter_map(|h| stats.per_request.get(&format!("block(height={h})")))
            .sum();
        n as f64 / QUESTIONS as f64
    };
    Ok((calls(100), calls(300)))
}

/// Cache hits a second through one client's 32 connections for `run`.
async fn hits(client: &Client, run: Duration) -> f64 {
    let started = Instant::now();
    let workers: Vec<_> = (0..32)
        .map(|_| {
            let c = client.clone();
            tokio::spawn(async move {
                let mut n = 0u64;
                while started.elapsed() < run {
                    if c.send(&block(5)).await == Outcome::Status(200) {
                        n += 1;
                    }
                }
                n
            })
        })
        .collect();
    let mut n = 0;
    for w in workers {
        n += w.await.unwrap_or(0);
    }
    n as f64 / run.as_secs_f64()
}

/// 300 calls a second, open loop, half `status` and half immutable blocks not asked
/// before, spread over the replicas; Redis killed at 10 s and back at 20 s.
async fn redis_killed(set: &mut Set, quick: bool) -> Result<[Recorder; 3], String> {
    let phase = Duration::from_secs(if quick { 5 } else { 10 });
    let started = Instant::now();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let clients = Arc::new(set.clients.clone());
    let driver = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_micros(3_333));
        let mut n = 0u64;
        while started.elapsed() < phase * 3 {
            tick.tick().await;
            n += 1;
            let (clients, tx) = (Arc::clone(&clients), tx.clone());
            tokio::spawn(async move {
                let call = if n % 2 == 0 {
                    status()
                } else {
                    block(1 + n % (START_HEIGHT - 1))
                };
                let sent = Instant::now();
                let outcome = clients[n as usize % REPLICAS].send(&call).await;
                let _ = tx.send((sent - started, sent.elapsed(), outcome));
            });
        }
    });
    let redis = set.redis.as_mut().ok_or("no Redis to kill")?;
    tokio::time::sleep_until((started + phase).into()).await;
    redis.kill();
    tokio::time::sleep_until((started + phase * 2).into()).await;
    redis.restart().await?;
    driver.await.map_err(|e| e.to_string())?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    rx.close();
    let mut windows = [Recorder::new(), Recorder::new(), Recorder::new()];
    while let Some((at, took, outcome)) = rx.recv().await {
        let w = ((at.as_secs_f64() / phase.as_secs_f64()) as usize).min(2);
        windows[w].record(took, &outcome);
    }
    Ok(windows)
}

pub(super) async fn run(
    bins: &Bins,
    quick: bool,
    dir: &Path,
) -> Result<(String, serde_json::Value), String> {
    let run = Duration::from_secs(if quick { 6 } else { 12 });
    let mut rates = Vec::new();
    let mut calls = Vec::new();
    for shared in [false, true] {
        let name = if shared { "shared" } else { "alone" };
        let set = start_set(bins, shared, RATE, BURST, &dir.join(name)).await?;
        let rate = admitted(&set, run).await;
        eprintln!("replicas {name}: one client admitted at {rate:.0}/s (limit {RATE}/s)");
        rates.push(rate);
        drop(set);
        // Unlimited, for the node calls: only the sharing of answers is in question.
        let set = start_set(bins, shared, 1_000_000, 1_000_000, &dir.join(name)).await?;
        let (apart, together) = node_calls(&set).await?;
        eprintln!(
            "replicas {name}: node calls per question {apart:.2} apart, {together:.2} at once"
        );
        calls.push((apart, together));
    }
    let (lone, sharing) = hit_rounds(bins, quick, dir).await?;
    let mut set = start_set(bins, true, 1_000_000, 1_000_000, &dir.join("killed")).await?;
    let windows = redis_killed(&mut set, quick).await?;
    drop(set);
    Ok(report(&rates, &calls, (lone, sharing), &windows))
}

/// Alternating rounds: a lone replica without Redis, then one of three sharing.
async fn hit_rounds(bins: &Bins, quick: bool, dir: &Path) -> Result<(f64, f64), String> {
    let run = Duration::from_secs(if quick { 3 } else { 6 });
    let limited = sections(1_000_000, 1_000_000, None);
    let lone_dir = dir.join("hits");
    std::fs::create_dir_all(&lone_dir).map_err(|e| format!("{}: {e}", lone_dir.display()))?;
    let node = start_node(bins, &node(), false, &lone_dir).await?;
    let (_lone, url) = gateway(bins, node.rpc, &limited, &[], &lone_dir, "lone").await?;
    let lone = Client::new(&url, None)?;
    let set = start_set(bins, true, 1_000_000, 1_000_000, &dir.join("hits-shared")).await?;
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        a.push(hits(&lone, run).await);
        b.push(hits(&set.clients[0], run).await);
    }
    Ok((median(&mut a), median(&mut b)))
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

fn report(
    rates: &[f64],
    calls: &[(f64, f64)],
    hits: (f64, f64),
    windows: &[Recorder; 3],
) -> (String, serde_json::Value) {
    let mut md = format!(
        "\n## Replicas sharing one Redis\n\n\
         Three replicas in front of one simulated node; one client spread over them round \
         robin, as a load balancer would.\n\n\
         | | without Redis | sharing through Redis |\n|---|---|---|\n\
         | one client above its limit of {RATE}/s: admitted a second | {:.0} ({:.2}×) | {:.0} ({:.2}×) |\n\
         | node calls per immutable question, asked through all three 50 ms apart | {:.2} | {:.2} |\n\
         | the same, asked through all three at once | {:.2} | {:.2} |\n\n\
         Cache hits through one replica that shares, beside a lone replica without Redis \
         (32 connections, median of 3 alternating rounds): {:.0} against {:.0} a second, \
         {:.2}×.\n\n\
         Redis killed for a third of the run, 300 calls a second (half `status`, half \
         immutable blocks not asked before):\n\n\
         | window | calls | errors | p50 ms | p99 ms |\n|---|---|---|---|---|\n",
        rates[0],
        rates[0] / f64::from(RATE),
        rates[1],
        rates[1] / f64::from(RATE),
        calls[0].0,
        calls[1].0,
        calls[0].1,
        calls[1].1,
        hits.1,
        hits.0,
        hits.1 / hits.0.max(1.0),
    );
    for (name, w) in ["before", "Redis down", "Redis back"].iter().zip(windows) {
        md.push_str(&format!(
            "| {name} | {} | {} | {} | {} |\n",
            w.count(),
            w.errors(),
            ms(w.quantile_ms(0.5)),
            ms(w.quantile_ms(0.99))
        ));
    }
    let value = json!({
        "limit_per_second": RATE,
        "admitted_per_second": {"alone": rates[0], "shared": rates[1]},
        "node_calls_per_question": {
            "apart": {"alone": calls[0].0, "shared": calls[1].0},
            "at_once": {"alone": calls[0].1, "shared": calls[1].1},
        },
        "hits_per_second": {"lone_without_redis": hits.0, "sharing": hits.1},
        "redis_killed": windows.iter().zip(["before", "down", "back"]).map(|(w, n)| json!({
            "window": n, "calls": w.count(), "errors": w.errors(),
            "p50_ms": w.quantile_ms(0.5), "p99_ms": w.quantile_ms(0.99),
        })).collect::<Vec<_>>(),
    });
    (md, value)
}
