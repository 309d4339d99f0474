//! What the cache costs as it fills: cometgate's RSS and hit throughput with 1,000,
//! 10,000 and 100,000 distinct `block` answers cached (about 2 KB each), the hits
//! spread over all of them at random by wrk.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use super::{mib, start};
use crate::client::{Call, Client};
use crate::procs::rss_bytes;
use crate::sampler::node_stats;
use crate::stack::Bins;
use crate::wrk::{ensure_wrk, run as wrk_run};
use cometgate_sim::SimNodeConfig;

/// Filling fetches at once.
const FILLERS: u64 = 32;

/// Room for every entry: nothing is evicted, so the count is what is held.
const SECTIONS: &str = "[cache]\nmax_bytes = \"1 GiB\"\n\n[log]\naccess_log = false\n";

struct Row {
    entries: u64,
    rss_empty: u64,
    rss: u64,
    answer_bytes: u64,
    hits_per_s: f64,
    p99_ms: f64,
    node_calls: u64,
}

pub(super) async fn run(
    bins: &Bins,
    quick: bool,
    dir: &Path,
) -> Result<(String, serde_json::Value), String> {
    let counts: &[u64] = if quick {
        &[1_000, 10_000]
    } else {
        &[1_000, 10_000, 100_000]
    };
    let wrk = ensure_wrk().ok_or("wrk could not be installed")?;
    let mut rows = Vec::new();
    for &k in counts {
        let sub = dir.join(format!("entries-{k}"));
        rows.push(point(bins, &wrk, k, &sub).await?);
        let _ = std::fs::remove_dir_all(&sub);
    }
    let value = rows
        .iter()
        .map(|r| {
            json!({"entries": r.entries, "rss_empty_bytes": r.rss_empty, "rss_bytes": r.rss,
                   "answer_bytes": r.answer_bytes, "hits_per_s": r.hits_per_s,
                   "p99_ms": r.p99_ms, "node_calls_during_hits": r.node_calls})
        })
        .collect::<Vec<_>>();
    Ok((table(&rows), json!(value)))
}

async fn point(bins: &Bins, wrk: &Path, k: u64, dir: &Path) -> Result<Row, String> {
    let node = SimNodeConfig {
        block_interval: Duration::ZERO,
        start_height: k + 10,
        ..SimNodeConfig::default()
    };
    let pair = start(bins, &node, SECTIONS, &[], dir).await?;
    let rss_empty = rss_bytes(pair.gateway.pid()).unwrap_or(0);
    let answer_bytes = fill(&pair.url, k).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss = rss_bytes(pair.gateway.pid()).unwrap_or(0);
    let before = node_stats(pair.node.control).await?.total_requests;
    let script = format!(
        "math.randomseed(7)\nrequest = function()\n  return wrk.format(\"GET\", \"/block?height=\" .. math.random(1, {k}))\nend\n"
    );
    let hits = wrk_run(wrk, &pair.url, &script, Duration::from_secs(5), dir).await?;
    let node_calls = node_stats(pair.node.control).await?.total_requests - before;
    eprintln!(
        "entries/{k}: RSS {} -> {} MiB, {:.0} hits/s, {node_calls} node calls during hits",
        mib(rss_empty),
        mib(rss),
        hits.rps
    );
    Ok(Row {
        entries: k,
        rss_empty,
        rss,
        answer_bytes,
        hits_per_s: hits.rps,
        p99_ms: hits.p99_ms,
        node_calls,
    })
}

/// Asks `block` at every height from 1 to `k` once; returns the answers' total bytes.
async fn fill(url: &str, k: u64) -> Result<u64, String> {
    let client = Client::new(url, None)?;
    let next = Arc::new(AtomicU64::new(1));
    let bytes = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..FILLERS)
        .map(|_| {
            let (client, next, bytes) = (client.clone(), next.clone(), bytes.clone());
            tokio::spawn(async move {
                loop {
                    let h = next.fetch_add(1, Ordering::Relaxed);
                    if h > k {
                        return Ok(());
                    }
                    let call = Call::Get(format!("/block?height={h}"));
                    match client.fetch(&call).await {
                        Ok((200, body)) => bytes.fetch_add(body.len() as u64, Ordering::Relaxed),
                        Ok((status, _)) => return Err(format!("height {h}: status {status}")),
                        Err(e) => return Err(format!("height {h}: {e}")),
                    };
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.map_err(|e| e.to_string())??;
    }
    Ok(bytes.load(Ordering::Relaxed))
}

fn table(rows: &[Row]) -> String {
    let mut s = String::from(
        "\n## Cache entries\n\ncometgate alone (`cache.max_bytes = 1 GiB`, so nothing is evicted), filled with this many distinct `block` answers, then GET hits at random heights over all of them (`wrk -t1 -c50`, 5 s). RSS per entry: the RSS over the empty gateway's, divided by the count, beside the answers' own size.\n\n| entries | answers MiB | RSS empty MiB | RSS full MiB | RSS per entry bytes | answer bytes (mean) | hits/s | p99 ms | node calls during hits |\n|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n",
    );
    for r in rows {
        let per = r.rss.saturating_sub(r.rss_empty) / r.entries.max(1);
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {per} | {} | {:.0} | {:.2} | {} |",
            r.entries,
            mib(r.answer_bytes),
            mib(r.rss_empty),
            mib(r.rss),
            r.answer_bytes / r.entries.max(1),
            r.hits_per_s,
            r.p99_ms,
            r.node_calls
        );
    }
    s
}
