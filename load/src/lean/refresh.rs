//! Refresh-ahead at each block: 200 clients polling `status` and `abci_query` at the head,
//! the node taking 50 ms for both. The p99 of the calls sent in the 200 ms after each block
//! (as the node produced it) against the p99 of those sent between, and node calls per
//! question per block.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;

use super::{ms, start};
use crate::client::{rpc_body, Call, Client};
use crate::record::Recorder;
use crate::sampler::{node_post, node_stats};
use crate::stack::Bins;
use cometgate_sim::SimNodeConfig;

const CLIENTS: usize = 200;
const NODE_MS: u64 = 50;
const AFTER: Duration = Duration::from_millis(200);
/// Each client's pause between two polls: 200 clients ask about 2 000 times a second.
const THINK: Duration = Duration::from_millis(100);

const VARIANTS: [(&str, &str); 3] = [
    ("off", "refresh_ahead = 0\n"),
    ("wait", "refresh_ahead = 16\nwhile_refreshing = \"wait\"\n"),
    (
        "previous",
        "refresh_ahead = 16\nwhile_refreshing = \"previous\"\n",
    ),
];

fn node() -> SimNodeConfig {
    SimNodeConfig {
        block_interval: Duration::from_secs(1),
        start_height: 100,
        service_ms_per_method: BTreeMap::from([
            ("status".to_string(), NODE_MS),
            ("abci_query".to_string(), NODE_MS),
        ]),
        ..SimNodeConfig::default()
    }
}

/// The head tracker polls `status` every 100 s only, once before the run, so that the
/// node's `status` count is the clients' (its NewBlock subscription follows the head).
fn sections(variant: &str) -> String {
    format!(
        "[cache]\n{variant}\n[head]\npoll_interval = \"100s\"\nstall_after = \"300s\"\n\n\
         [log]\naccess_log = false\n"
    )
}

struct Row {
    variant: &'static str,
    blocks: u64,
    after: Recorder,
    mid: Recorder,
    calls_per_block: BTreeMap<&'static str, f64>,
}

pub(super) async fn run(
    bins: &Bins,
    quick: bool,
    dir: &Path,
) -> Result<(String, serde_json::Value), String> {
    let duration = Duration::from_secs(if quick { 15 } else { 40 });
    let mut rows = Vec::new();
    for (variant, text) in VARIANTS {
        let pair = start(bins, &node(), &sections(text), &[], &dir.join(variant)).await?;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let row = measure(&pair, variant, duration).await?;
        eprintln!(
            "refresh {variant}: p99 after {} ms, between {} ms, {:?} calls/question/block",
            ms(row.after.quantile_ms(0.99)),
            ms(row.mid.quantile_ms(0.99)),
            row.calls_per_block
        );
        rows.push(row);
    }
    Ok((render(&rows, duration), to_json(&rows)))
}

/// Sent at, and how long it took.
type Sample = (Instant, Duration, crate::record::Outcome);

async fn measure(pair: &super::Pair, variant: &'static str, run: Duration) -> Result<Row, String> {
    let control = pair.node.control;
    node_post(control, "/_simnode/reset-counters").await?;
    let first = node_stats(control).await?.height;
    let started = Instant::now();
    let blocks = Arc::new(Mutex::new(Vec::new()));
    let watcher = tokio::spawn(watch_blocks(control, Arc::clone(&blocks), started + run));
    let client = Client::new(&pair.url, None)?;
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|i| tokio::spawn(poll(client.clone(), i, started, run)))
        .collect();
    let mut samples = Vec::new();
    for task in tasks {
        samples.extend(task.await.map_err(|e| e.to_string())?);
    }
    watcher.await.map_err(|e| e.to_string())?;
    let stats = node_stats(control).await?;
    let landed = blocks.lock().map_err(|e| e.to_string())?.clone();
    let (mut after, mut mid) = (Recorder::new(), Recorder::new());
    for (sent, took, outcome) in &samples {
        let recent = landed.iter().rev().find(|b| *b <= sent);
        match recent {
            Some(b) if *sent - *b < AFTER => after.record(*took, outcome),
            Some(_) => mid.record(*took, outcome),
            None => {}
        }
    }
    let count = stats.height - first;
    // The run saw the head it started at and every block after it: one answer each.
    let heads = count + 1;
    let calls_per_block = ["status", "abci_query"]
        .into_iter()
        .map(|m| {
            let calls = stats.per_method.get(m).copied().unwrap_or(0);
            (m, calls as f64 / heads as f64)
        })
        .collect();
    Ok(Row {
        variant,
        blocks: count,
        after,
        mid,
        calls_per_block,
    })
}

/// When each block landed at the node, read from its control port every 2 ms.
async fn watch_blocks(
    control: std::net::SocketAddr,
    out: Arc<Mutex<Vec<Instant>>>,
    until: Instant,
) {
    let mut height = 0;
    while Instant::now() < until {
        if let Ok(stats) = node_stats(control).await {
            if stats.height > height {
                if height > 0 {
                    if let Ok(mut v) = out.lock() {
                        v.push(Instant::now());
                    }
                }
                height = stats.height;
            }
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// One client: `status` and `abci_query` in turn, a pause between polls.
async fn poll(client: Client, i: usize, started: Instant, run: Duration) -> Vec<Sample> {
    let status = Call::Post(rpc_body(1, "status", "{}"));
    let query = Call::Post(rpc_body(
        2,
        "abci_query",
        &json!({"path": "/store", "data": hex::encode("gen-1-0")}).to_string(),
    ));
    // Spread over one pause, so that the clients do not poll in step.
    tokio::time::sleep(THINK * i as u32 / CLIENTS as u32).await;
    let mut samples = Vec::new();
    let mut turn = 0;
    while started.elapsed() < run {
        let call = if turn % 2 == 0 { &status } else { &query };
        turn += 1;
        let sent = Instant::now();
        let outcome = client.send(call).await;
        samples.push((sent, sent.elapsed(), outcome));
        tokio::time::sleep(THINK).await;
    }
    samples
}

fn verdict(row: &Row) -> (String, bool) {
    let (after, mid) = (row.after.quantile_ms(0.99), row.mid.quantile_ms(0.99));
    let once = row
        .calls_per_block
        .values()
        .all(|c| *c <= 1.0 + 1.0 / row.blocks as f64);
    match row.variant {
        "previous" => (format!("≤ 1.5 × {}", ms(mid)), after <= 1.5 * mid && once),
        "wait" => (
            format!("≤ {NODE_MS} + {}", ms(mid)),
            after <= NODE_MS as f64 + mid && once,
        ),
        _ => ("(reference)".into(), true),
    }
}

fn render(rows: &[Row], run: Duration) -> String {
    let mut md = format!(
        "\n## Refresh-ahead at each block\n\n{CLIENTS} clients polling `status` and \
         `abci_query` at the head (one call each {} ms), blocks every second, the node \
         {NODE_MS} ms for both calls; {} s per variant. \"after\": calls sent within \
         {} ms of a block landing at the node; \"between\": the others. Node calls per \
         question per block: the node's own count over the heads the run saw (the one it \
         started at and each block after), the head tracker's `status` polls (every 100 s, \
         none within the run) included.\n\n\
         | refresh-ahead | blocks | calls after | p99 after ms | calls between | p99 between ms | target for p99 after | status calls/block | abci_query calls/block | met |\n\
         |---|---|---|---|---|---|---|---|---|---|\n",
        THINK.as_millis(),
        run.as_secs(),
        AFTER.as_millis()
    );
    for r in rows {
        let (target, met) = verdict(r);
        md.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {target} | {:.2} | {:.2} | {} |\n",
            r.variant,
            r.blocks,
            r.after.count(),
            ms(r.after.quantile_ms(0.99)),
            r.mid.count(),
            ms(r.mid.quantile_ms(0.99)),
            r.calls_per_block["status"],
            r.calls_per_block["abci_query"],
            if r.variant == "off" {
                "-"
            } else if met {
                "met"
            } else {
                "missed"
            },
        ));
    }
    md
}

fn to_json(rows: &[Row]) -> serde_json::Value {
    json!(rows
        .iter()
        .map(|r| json!({
            "variant": r.variant,
            "blocks": r.blocks,
            "after": {"calls": r.after.count(), "errors": r.after.errors(), "p50_ms": r.after.quantile_ms(0.5), "p99_ms": r.after.quantile_ms(0.99)},
            "between": {"calls": r.mid.count(), "errors": r.mid.errors(), "p50_ms": r.mid.quantile_ms(0.5), "p99_ms": r.mid.quantile_ms(0.99)},
            "node_calls_per_question_per_block": r.calls_per_block,
            "met": verdict(r).1,
        }))
        .collect::<Vec<_>>())
}
