//! `cometgate-load demo`: the newcomer's one command. A storm against a simulated node,
//! first direct, then through cometgate, with live progress, and a table of what the node
//! went through each time.

use std::time::Duration;

use crate::bench::bins;
use crate::configs::{Front, Limits};
use crate::measure::measure;
use crate::plan::{storm_load, storm_node, Scenario, STORM_MEMORY_LIMIT};
use crate::report::{entries, Entry};
use crate::stack::Target;

pub async fn demo(total: Duration) -> Result<(), String> {
    let bins = bins()?;
    let half = total / 2;
    let sc = Scenario {
        name: "lcd-storm",
        targets: vec![Target::Direct, Target::Cometgate],
        node: storm_node(),
        front: Front::limits(Limits::UNBINDING),
        load: storm_load(half),
        background: None,
        rounds: 1,
        warmup: Duration::ZERO,
        poll_node: true,
        quick: true,
        cross_check: false,
    };
    let dir = std::env::temp_dir().join(format!("cometgate-load-demo-{}", std::process::id()));
    eprintln!(
        "A storm of 64 clients repeating block_results, tx_search and abci_query at the head, \
         against a simulated node that OOMs above {} MiB; {} s direct, then {} s through cometgate.\n",
        STORM_MEMORY_LIMIT >> 20,
        half.as_secs(),
        half.as_secs()
    );
    let mut runs = Vec::new();
    for target in [Target::Direct, Target::Cometgate] {
        runs.push(measure(&bins, &sc, target, 0, &dir.join(target.name())).await?);
    }
    let _ = std::fs::remove_dir_all(&dir);
    let e = entries(&runs);
    println!("\n{}", table(&e[0], &e[1]));
    Ok(())
}

/// A row of the demo's table: its label and how to read it from an entry.
type Row = (&'static str, fn(&Entry) -> String);

fn table(direct: &Entry, gated: &Entry) -> String {
    let rows: Vec<Row> = vec![
        ("node OOM-killed", |e| {
            if e.node_oom {
                "YES".into()
            } else {
                "no".into()
            }
        }),
        ("node peak memory", |e| {
            format!("{} MiB", e.node_peak_memory_bytes >> 20)
        }),
        ("node peak requests in flight", |e| {
            e.node_peak_inflight.to_string()
        }),
        ("node requests", |e| e.node_requests.to_string()),
        ("node requests beyond 1/question/block", |e| {
            e.storm_excess().2.to_string()
        }),
        ("client requests", |e| e.requests.to_string()),
        ("client success rate", |e| {
            format!("{:.1}%", e.success_rate * 100.0)
        }),
        ("client throughput", |e| {
            format!("{:.0} req/s", e.throughput_rps)
        }),
        ("client p50 / p99 (failures included)", |e| {
            format!("{:.1} / {:.1} ms", e.p50_ms, e.p99_ms)
        }),
    ];
    let mut out = format!("{:<38} {:>18} {:>18}\n", "", "direct", "through cometgate");
    for (label, f) in rows {
        out.push_str(&format!("{label:<38} {:>18} {:>18}\n", f(direct), f(gated)));
    }
    out
}
