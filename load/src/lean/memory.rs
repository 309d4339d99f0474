//! The memory budget under big answers: distinct 2 MB `block_results` through a 32 MiB
//! cache, 4 and 8 at a time, under each allocator; then cache hits under each.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use super::{mib, ms, start, Pair};
use crate::client::{rpc_body, Call, Client};
use crate::procs::{hwm_bytes, rss_bytes};
use crate::record::Recorder;
use crate::stack::Bins;
use cometgate_sim::SimNodeConfig;

const CACHE: u64 = 32 << 20;
/// The target: the cache plus 64 MiB.
const TARGET: u64 = CACHE + (64 << 20);

/// Each allocator is preloaded from Debian's packages (libjemalloc2, libmimalloc2.0) into
/// the same binary, so that nothing but the allocator differs.
const ALLOCATORS: [(&str, Option<&str>); 3] = [
    ("glibc malloc", None),
    (
        "jemalloc 5.3",
        Some("/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"),
    ),
    (
        "mimalloc 2.0",
        Some("/usr/lib/x86_64-linux-gnu/libmimalloc.so.2"),
    ),
];

/// 400 txs of 20 events a block: `block_results` of about 2 MB.
fn node(heights: u64) -> SimNodeConfig {
    SimNodeConfig {
        block_interval: Duration::ZERO,
        start_height: heights + 10,
        txs_per_block: 400,
        events_per_tx: 20,
        // The node's own encode time is not what is measured here: the gateway's memory.
        encode_bytes_per_sec: 10_000_000_000,
        ..SimNodeConfig::default()
    }
}

const SECTIONS: &str = "[cache]\nmax_bytes = \"32 MiB\"\n\n[log]\naccess_log = false\n";

struct Row {
    allocator: &'static str,
    at_once: usize,
    answers: u64,
    per_second: f64,
    p99_ms: f64,
    answer_bytes: usize,
    hwm: u64,
    rss_end: u64,
}

pub(super) async fn run(
    bins: &Bins,
    quick: bool,
    dir: &Path,
) -> Result<(String, serde_json::Value), String> {
    let heights = if quick { 300 } else { 1200 };
    let mut rows = Vec::new();
    let mut hits = Vec::new();
    // A build without the budget, for comparison, where one is named.
    if let Ok(before) = std::env::var("LEAN_BEFORE_BIN") {
        let bins = Bins {
            cometgate: before.into(),
            ..bins.clone()
        };
        for at_once in [4, 8] {
            let sub = dir.join(format!("before-{at_once}"));
            let pair = start(&bins, &node(heights), SECTIONS, &[], &sub).await?;
            let mut row = big_answers(&pair, heights, at_once).await?;
            row.allocator = "glibc malloc, before (LEAN_BEFORE_BIN)";
            rows.push(row);
        }
    }
    for (name, preload) in ALLOCATORS {
        if preload.is_some_and(|p| !Path::new(p).exists()) {
            eprintln!("{name}: {} missing, skipped", preload.unwrap_or(""));
            continue;
        }
        let env: Vec<(&str, &str)> = preload.map(|p| ("LD_PRELOAD", p)).into_iter().collect();
        for at_once in [4, 8] {
            let sub = dir.join(format!("{}-{at_once}", name.replace(' ', "-")));
            let pair = start(bins, &node(heights), SECTIONS, &env, &sub).await?;
            let mut row = big_answers(&pair, heights, at_once).await?;
            row.allocator = name;
            eprintln!(
                "memory {name} x{at_once}: VmHWM {} MiB, {} answers",
                mib(row.hwm),
                row.answers
            );
            if at_once == 4 {
                hits.push((name, hit_rate(&pair, quick).await?));
            }
            rows.push(row);
        }
    }
    Ok((render(&rows, &hits, heights), to_json(&rows, &hits)))
}

/// Every height once, `at_once` clients at a time; the peak RSS is the kernel's VmHWM.
async fn big_answers(pair: &Pair, heights: u64, at_once: usize) -> Result<Row, String> {
    let next = Arc::new(AtomicU64::new(1));
    let client = Client::new(&pair.url, None)?;
    let started = Instant::now();
    let tasks: Vec<_> = (0..at_once)
        .map(|_| {
            let (next, client) = (Arc::clone(&next), client.clone());
            tokio::spawn(async move {
                let mut rec = Recorder::new();
                let mut size = 0;
                loop {
                    let h = next.fetch_add(1, Ordering::Relaxed);
                    if h > heights {
                        return (rec, size);
                    }
                    let params = json!({"height": h.to_string()}).to_string();
                    let call = Call::Post(rpc_body(h, "block_results", &params));
                    let sent = Instant::now();
                    let (outcome, body) = client.send_keep(&call).await;
                    rec.record(sent.elapsed(), &outcome);
                    size = size.max(body.len());
                }
            })
        })
        .collect();
    let pid = pair.gateway.pid();
    let mut rec = Recorder::new();
    let mut answer_bytes = 0;
    for task in tasks {
        let (r, size) = task.await.map_err(|e| e.to_string())?;
        rec.merge(&r);
        answer_bytes = answer_bytes.max(size);
    }
    let elapsed = started.elapsed().as_secs_f64();
    Ok(Row {
        allocator: "",
        at_once,
        answers: rec.ok(),
        per_second: rec.ok() as f64 / elapsed,
        p99_ms: rec.quantile_ms(0.99),
        answer_bytes,
        hwm: hwm_bytes(pid).unwrap_or(0),
        rss_end: rss_bytes(pid).unwrap_or(0),
    })
}

/// 64 closed-loop clients on one cached `block` answer: answers per second and p99.
async fn hit_rate(pair: &Pair, quick: bool) -> Result<(f64, f64), String> {
    let client = Client::new(&pair.url, None)?;
    let call = Call::Post(rpc_body(1, "block", r#"{"height":"5"}"#));
    client.fetch(&call).await.map_err(|e| e.to_string())?;
    let run = Duration::from_secs(if quick { 5 } else { 10 });
    let started = Instant::now();
    let tasks: Vec<_> = (0..64)
        .map(|_| {
            let (client, call) = (client.clone(), call.clone());
            tokio::spawn(async move {
                let mut rec = Recorder::new();
                while started.elapsed() < run {
                    let sent = Instant::now();
                    let outcome = client.send(&call).await;
                    rec.record(sent.elapsed(), &outcome);
                }
                rec
            })
        })
        .collect();
    let mut rec = Recorder::new();
    for task in tasks {
        rec.merge(&task.await.map_err(|e| e.to_string())?);
    }
    Ok((
        rec.ok() as f64 / started.elapsed().as_secs_f64(),
        rec.quantile_ms(0.99),
    ))
}

fn render(rows: &[Row], hits: &[(&str, (f64, f64))], heights: u64) -> String {
    let mut md = format!(
        "\n## Memory under big answers\n\n{heights} distinct `block_results` answers \
         (about {} MB each) through `cache.max_bytes = 32 MiB`, default \
         `upstream.max_inflight_bytes` (64 MiB). Target: peak RSS (VmHWM) ≤ \
         cache.max_bytes + 64 MiB = {} MiB.\n\n\
         | allocator | at a time | answers | answers/s | p99 ms | VmHWM MiB | RSS at end MiB | target |\n\
         |---|---|---|---|---|---|---|---|\n",
        rows.first().map_or(0, |r| r.answer_bytes / 1_000_000),
        TARGET >> 20,
    );
    for r in rows {
        md.push_str(&format!(
            "| {} | {} | {} | {:.1} | {} | {} | {} | {} |\n",
            r.allocator,
            r.at_once,
            r.answers,
            r.per_second,
            ms(r.p99_ms),
            mib(r.hwm),
            mib(r.rss_end),
            if r.hwm <= TARGET { "met" } else { "missed" },
        ));
    }
    md.push_str(
        "\nCache hits after the x4 run, same process: 64 closed-loop clients on one cached \
         `block` answer.\n\n| allocator | hits/s | p99 ms |\n|---|---|---|\n",
    );
    for (name, (rate, p99)) in hits {
        md.push_str(&format!("| {name} | {rate:.0} | {} |\n", ms(*p99)));
    }
    md
}

fn to_json(rows: &[Row], hits: &[(&str, (f64, f64))]) -> serde_json::Value {
    json!({
        "target_bytes": TARGET,
        "runs": rows.iter().map(|r| json!({
            "allocator": r.allocator,
            "at_once": r.at_once,
            "answers": r.answers,
            "answers_per_second": r.per_second,
            "p99_ms": r.p99_ms,
            "answer_bytes": r.answer_bytes,
            "vm_hwm_bytes": r.hwm,
            "rss_end_bytes": r.rss_end,
            "met": r.hwm <= TARGET,
        })).collect::<Vec<_>>(),
        "hits": hits.iter().map(|(name, (rate, p99))| json!({
            "allocator": name, "per_second": rate, "p99_ms": p99,
        })).collect::<Vec<_>>(),
    })
}
