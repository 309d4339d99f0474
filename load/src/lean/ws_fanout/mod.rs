//! `ws-fanout`: websocket clients subscribed to NewBlock through one gateway, at 1,000,
//! 5,000 and 10,000 clients on one query, then the largest count spread over 20 queries.
//! Each point runs on a fresh node (1 block a second, NewBlock frames of about 10 KB)
//! and a fresh gateway. Measured: delivery latency of each (client, block) against a
//! subscriber on the node itself, every block in order with the client's own id and
//! query, the node's websocket connections and subscriptions, and the gateway's RSS per
//! client.
//!
//! `WS_FANOUT_MODE=relay` runs the relay instead (one node websocket per client, at
//! most 500: 100 to 400 clients), for comparison or on a gateway without fan-out;
//! `WS_FANOUT_CLIENTS=200,1000` picks the counts; `WS_FANOUT_CONFIG=FILE` replaces the
//! gateway's sections after `[upstream]`. `WS_FANOUT_MODE=floor` puts `ws-floor` where
//! the gateway was, with the same clients: the least any fan-out must do on this machine.

mod clients;
mod frames;
mod plan;
mod report;
mod scrape;
mod tally;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::json;
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinHandle;

use super::{gateway_with, Gateway};
use crate::procs::{free_addr, raise_open_files, rss_bytes, wait_listening, Proc};
use crate::sampler::node_stats;
use crate::stack::{start_node, Bins};
use clients::{follow, subscribe, Reference, Seen, Spec, Stop};
pub(crate) use plan::{node, queries, Mode, Plan, TXS_PER_BLOCK, TX_BYTES};
use plan::{OPENING, QUERIES, SERVER, SETTLE_BLOCKS, SUBSCRIBING};
use scrape::{scrape, Scrape};
use tally::{tally, Delivery};

/// What the node's websocket side held, our reference subscriber taken off.
#[derive(Clone, Debug, Default, Serialize)]
pub struct NodeWs {
    pub connections: u64,
    pub subscriptions: u64,
    pub per_query: BTreeMap<String, u64>,
}

/// One point: `clients` subscribed over `queries` distinct queries.
#[derive(Debug, Serialize)]
pub struct Point {
    pub clients: usize,
    pub queries: usize,
    pub subscribed: usize,
    pub subscribe_errors: Vec<String>,
    pub connect_seconds: f64,
    pub delivery: Delivery,
    pub frame_bytes: usize,
    /// Before any client: the gateway's own (its head tracker's).
    pub node_before: NodeWs,
    pub node_during: NodeWs,
    pub rss_before: u64,
    pub rss_during: u64,
    pub metrics_during: Scrape,
    pub metrics_end: Scrape,
}

impl Point {
    pub fn rss_per_client_kib(&self) -> f64 {
        self.rss_during.saturating_sub(self.rss_before) as f64 / 1024.0 / self.clients as f64
    }
}

pub(super) async fn run(
    bins: &Bins,
    quick: bool,
    dir: &Path,
    out: &Path,
) -> Result<(String, serde_json::Value), String> {
    let plan = Plan::from_env(bins, quick, dir)?;
    let largest = plan.counts.iter().copied().max().unwrap_or(0);
    let files = raise_open_files()?;
    if files < largest as u64 + 256 {
        return Err(format!(
            "the open-files limit is {files}: {largest} clients need more (ulimit -Hn)"
        ));
    }
    let mut points = Vec::new();
    for &n in &plan.counts {
        points.push(point(bins, &plan, n, 1, &dir.join(format!("{n}"))).await?);
    }
    // The floor serves one query.
    if largest > 0 && plan.mode != Mode::Floor {
        let sub = dir.join(format!("{largest}-q{QUERIES}"));
        points.push(point(bins, &plan, largest, QUERIES, &sub).await?);
    }
    report::write(out, &plan, &points)
}

async fn point(
    bins: &Bins,
    plan: &Plan,
    n: usize,
    spread: usize,
    dir: &Path,
) -> Result<Point, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let node = start_node(bins, &node(), false, dir).await?;
    let qs = queries(spread);
    let gw = match plan.mode {
        Mode::Floor => floor(bins, node.rpc, &qs[0], dir).await?,
        _ => gateway_with(
            bins,
            node.rpc,
            SERVER,
            &plan.sections,
            &[],
            dir,
            "cometgate",
        )
        .await
        .map_err(|e| refused(e, plan, dir))?,
    };
    let reference = Reference::start(Spec {
        url: format!("ws://{}/websocket", node.rpc),
        id: json!("reference"),
        query: qs[0].clone(),
        keep_frames: true,
    })
    .await?;
    // The gateway's head tracker is on the node's websocket before anything is read.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let pid = gw.proc.pid();
    let node_before = node_ws(node.control, &qs[0]).await?;
    let rss_before = rss_bytes(pid).unwrap_or(0);
    let (stop, stopped) = watch::channel(Stop::Run);
    let began = Instant::now();
    let (tasks, subscribed, subscribe_errors) = open_clients(&gw, n, &qs, stopped).await;
    let connect_seconds = began.elapsed().as_secs_f64();
    eprintln!("ws-fanout {n}×{spread}q: {subscribed} subscribed in {connect_seconds:.1} s");
    let last_subscribed = reference.latest();
    let wait = Duration::from_secs(SETTLE_BLOCKS + 30);
    reference
        .wait_for(last_subscribed + SETTLE_BLOCKS, wait)
        .await?;
    let rss_during = rss_bytes(pid).unwrap_or(0);
    let node_during = node_ws(node.control, &qs[0]).await?;
    let metrics_during = scrape_unless_floor(plan, &gw).await;
    let end = last_subscribed + plan.blocks;
    reference
        .wait_for(end, Duration::from_secs(plan.blocks + 30))
        .await?;
    let clients = finish(tasks, &stop, end).await?;
    let metrics_end = scrape_unless_floor(plan, &gw).await;
    let reference = (reference.spec.clone(), reference.finish()?);
    let delivery = tally(&clients, &reference, last_subscribed + 1, end);
    let frame_bytes = reference.1.frames.first().map_or(0, |f| f.1.len());
    drop(clients);
    Ok(Point {
        clients: n,
        queries: spread,
        subscribed,
        subscribe_errors,
        connect_seconds,
        delivery,
        frame_bytes,
        node_before,
        node_during,
        rss_before,
        rss_during,
        metrics_during,
        metrics_end,
    })
}

/// `ws-floor` in a process of its own, with the gateway's two workers.
async fn floor(
    bins: &Bins,
    rpc: std::net::SocketAddr,
    query: &str,
    dir: &Path,
) -> Result<Gateway, String> {
    let listen = free_addr();
    let mut cmd = std::process::Command::new(&bins.me);
    cmd.arg("ws-floor")
        .arg("--listen")
        .arg(listen.to_string())
        .arg("--node")
        .arg(rpc.to_string())
        .arg("--query")
        .arg(query)
        .env("TOKIO_WORKER_THREADS", "2");
    let mut proc = Proc::spawn(cmd, "ws-floor", dir, false)?;
    wait_listening(listen, &mut proc).await?;
    Ok(Gateway {
        proc,
        url: format!("http://{listen}"),
        listen,
        metrics: listen,
    })
}

async fn scrape_unless_floor(plan: &Plan, gw: &Gateway) -> Scrape {
    match plan.mode {
        Mode::Floor => Scrape {
            error: Some("the floor exports no metrics".into()),
            ..Scrape::default()
        },
        _ => scrape(gw.metrics).await,
    }
}

type ClientTask = JoinHandle<(Spec, Result<Seen, String>)>;

/// Opens `n` clients, `OPENING` at a time, round robin over `qs`; returns their tasks
/// (reading until `stop`) once every one has subscribed or failed to.
async fn open_clients(
    gw: &Gateway,
    n: usize,
    qs: &[String],
    stop: watch::Receiver<Stop>,
) -> (Vec<ClientTask>, usize, Vec<String>) {
    let url = format!("ws://{}/websocket", gw.listen);
    let gate = Arc::new(Semaphore::new(OPENING));
    let (done, mut results) = mpsc::unbounded_channel::<Result<(), String>>();
    // Some clients keep their frames whole, to compare with the node's.
    let sample_every = (n / 16).max(1);
    let tasks: Vec<ClientTask> = (0..n)
        .map(|i| {
            let spec = Spec {
                url: url.clone(),
                // Numbers and strings both: a fan-out must echo each as it came.
                id: if i % 2 == 0 {
                    json!(i + 1)
                } else {
                    json!(format!("c-{i}"))
                },
                query: qs[i % qs.len()].clone(),
                keep_frames: i % sample_every == 0,
            };
            let (gate, done, stop) = (gate.clone(), done.clone(), stop.clone());
            tokio::spawn(async move {
                let permit = gate.acquire_owned().await;
                let ws = subscribe(&spec).await;
                drop(permit);
                let _ = done.send(ws.as_ref().map(|_| ()).map_err(Clone::clone));
                let seen = match ws {
                    Ok(ws) => Ok(follow(ws, &spec, stop).await),
                    Err(e) => Err(e),
                };
                (spec, seen)
            })
        })
        .collect();
    drop(done);
    // One report per client; the channel stays open while they read.
    let (mut ok, mut errors) = (0, Vec::new());
    let deadline = tokio::time::Instant::now() + SUBSCRIBING;
    for _ in 0..n {
        match tokio::time::timeout_at(deadline, results.recv()).await {
            Ok(Some(Ok(()))) => ok += 1,
            Ok(Some(Err(e))) if errors.len() < 5 => errors.push(e),
            Ok(Some(Err(_))) => {}
            Ok(None) => break,
            Err(_) => {
                errors.push(format!("not all subscribed within {SUBSCRIBING:?}"));
                break;
            }
        }
    }
    (tasks, ok, errors)
}

/// Tells the clients to stop once block `end` came, gives them 5 s to, then stops the
/// rest; the subscribed clients and what each saw.
async fn finish(
    tasks: Vec<ClientTask>,
    stop: &watch::Sender<Stop>,
    end: u64,
) -> Result<Vec<(Spec, Seen)>, String> {
    let _ = stop.send(Stop::Until(end));
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline && !tasks.iter().all(|t| t.is_finished()) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = stop.send(Stop::Now);
    let mut out = Vec::with_capacity(tasks.len());
    for task in tasks {
        if let (spec, Ok(seen)) = task.await.map_err(|e| e.to_string())? {
            out.push((spec, seen));
        }
    }
    Ok(out)
}

async fn node_ws(control: std::net::SocketAddr, reference_query: &str) -> Result<NodeWs, String> {
    let s = node_stats(control).await?;
    let mut per_query = s.ws_subscriptions_per_query;
    if let Some(n) = per_query.get_mut(reference_query) {
        *n = n.saturating_sub(1);
    }
    per_query.retain(|_, n| *n > 0);
    Ok(NodeWs {
        connections: s.ws_connections.saturating_sub(1),
        subscriptions: s.ws_subscriptions.saturating_sub(1),
        per_query,
    })
}

/// A gateway that exited at start: most likely it does not know the fan-out keys yet.
fn refused(e: String, plan: &Plan, dir: &Path) -> String {
    let log = std::fs::read_to_string(dir.join("cometgate.log")).unwrap_or_default();
    let tail: Vec<&str> = log.lines().rev().take(5).collect();
    let hint = match plan.mode {
        Mode::Fanout => {
            "; until the gateway knows `websocket.mode`, WS_FANOUT_MODE=relay runs today's relay"
        }
        Mode::Relay | Mode::Floor => "",
    };
    format!(
        "{e}{hint}\ngateway log (last lines, newest first):\n{}",
        tail.join("\n")
    )
}

#[cfg(test)]
mod tests;
