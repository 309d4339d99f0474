//! The issues' targets, checked against one run's entries. Ratios are taken round by round
//! (targets measured alternately, side by side), then the median of the rounds. The first
//! benchmark's targets are here; `admission` has the crowd's and the LCD's, `node` the
//! adaptive lane's and the memory guard's.

mod admission;
mod hits;
mod node;

use crate::configs::CACHE_MIB;
use crate::plan::STORM_MEMORY_LIMIT;
use crate::report::{is_gateways_own, median, Entry, RoundFigures, Verdict};

/// " (heavy lane limit: median M, a to b)" where the run read it, for the verdicts.
pub(super) fn held(e: &Entry) -> String {
    e.heavy_limit
        .map(|l| format!(" (heavy lane limit: {l})"))
        .unwrap_or_default()
}

pub(super) fn find<'a>(entries: &'a [Entry], name: &str, target: &str) -> Option<&'a Entry> {
    entries
        .iter()
        .find(|e| e.name == name && e.target == target)
}

/// Per-round ratio a/b of one figure, then their median.
pub(super) fn median_ratio(a: &Entry, b: &Entry, f: fn(&RoundFigures) -> f64) -> f64 {
    let mut r: Vec<f64> = a
        .rounds
        .iter()
        .zip(&b.rounds)
        .map(|(x, y)| f(x) / f(y).max(1e-12))
        .collect();
    median(&mut r)
}

pub(super) fn verdict(scenario: &str, goal: &str, measured: String, met: Option<bool>) -> Verdict {
    Verdict {
        scenario: scenario.into(),
        goal: goal.into(),
        measured,
        met,
    }
}

pub fn verdicts(entries: &[Entry]) -> Vec<Verdict> {
    let mut out = vec![storm(entries)];
    out.extend(hits::verdicts(entries));
    out.extend([miss(entries), abuse(entries)]);
    out.extend(admission::verdicts(entries));
    out.extend(node::verdicts(entries));
    out.push(rss(entries));
    // A scenario left out with `--only` has nothing to say.
    out.retain(|v| v.met.is_some() || !v.measured.starts_with("not run"));
    out
}

fn storm(entries: &[Entry]) -> Verdict {
    let goal = "the node OOMs direct and never through cometgate; through cometgate the node gets one request per unique question per block (counted per canonical question; cometgate's own `status` poll every second, sent with its own User-Agent, is not a client's question)";
    let (Some(d), Some(c)) = (
        find(entries, "lcd-storm", "direct"),
        find(entries, "lcd-storm", "cometgate"),
    ) else {
        return verdict("lcd-storm", goal, "not run".into(), None);
    };
    let (requests, questions, excess) = c.storm_excess();
    let per_method: Vec<String> = ["status", "block_results", "abci_query", "tx_search"]
        .iter()
        .map(|m| {
            let n: u64 = c
                .node_requests_per_question
                .iter()
                .filter(|(k, _)| k.starts_with(&format!("{m}(")) && !is_gateways_own(k))
                .map(|(_, n)| n)
                .sum();
            format!("{m} {:.2}", n as f64 / c.blocks.max(1) as f64)
        })
        .collect();
    verdict(
        "lcd-storm",
        goal,
        format!(
            "direct: OOM {} (peak {} MiB of a {} MiB limit); cometgate: OOM {} (peak {} MiB); {requests} node requests for {questions} distinct questions over {} heads, {excess} beyond one per question per block; node requests per block: {}",
            d.node_oom,
            d.node_peak_memory_bytes >> 20,
            STORM_MEMORY_LIMIT >> 20,
            c.node_oom,
            c.node_peak_memory_bytes >> 20,
            c.blocks,
            per_method.join(", ")
        ),
        Some(d.node_oom && !c.node_oom && excess == 0),
    )
}

fn miss(entries: &[Entry]) -> Verdict {
    let goal = "cometgate adds at most 200 µs at p50 over direct";
    let (Some(c), Some(d)) = (
        find(entries, "miss-overhead", "cometgate"),
        find(entries, "miss-overhead", "direct"),
    ) else {
        return verdict("miss-overhead", goal, "not run".into(), None);
    };
    let mut added: Vec<f64> = c
        .rounds
        .iter()
        .zip(&d.rounds)
        .map(|(x, y)| (x.p50_ms - y.p50_ms) * 1000.0)
        .collect();
    let added = median(&mut added);
    let nginx = find(entries, "miss-overhead", "nginx")
        .map(|n| format!("; nginx adds {:.0} µs", (n.p50_ms - d.p50_ms) * 1000.0))
        .unwrap_or_default();
    verdict(
        "miss-overhead",
        goal,
        format!(
            "p50 {:.3} ms through cometgate vs {:.3} ms direct: +{added:.0} µs (median of per-round differences){nginx}",
            c.p50_ms, d.p50_ms
        ),
        Some(added <= 200.0),
    )
}

fn abuse(entries: &[Entry]) -> Verdict {
    let goal = "with an abuser flooding from another address, the well-behaved clients' p99 stays within 2× of the run without it";
    let (Some(with), Some(without)) = (
        find(entries, "abuse", "cometgate"),
        find(entries, "abuse-baseline", "cometgate"),
    ) else {
        return verdict("abuse", goal, "not run".into(), None);
    };
    let ratio = with.p99_ms / without.p99_ms.max(1e-9);
    let others: Vec<String> = ["cometgate-fcfs", "direct", "nginx"]
        .iter()
        .filter_map(|t| {
            let (w, b) = (
                find(entries, "abuse", t)?,
                find(entries, "abuse-baseline", t)?,
            );
            Some(format!(
                "{t}: {:.1}× ({:.1} → {:.1} ms, success {:.1}%)",
                w.p99_ms / b.p99_ms.max(1e-9),
                b.p99_ms,
                w.p99_ms,
                w.success_rate * 100.0
            ))
        })
        .collect();
    let abuser = with
        .background
        .as_ref()
        .map(|a| {
            let refused = a.statuses.get("429").copied().unwrap_or(0);
            format!(
                " (abuser: {} requests, {:.0}% refused with 429)",
                a.requests,
                100.0 * refused as f64 / a.requests.max(1) as f64
            )
        })
        .unwrap_or_default();
    verdict(
        "abuse",
        goal,
        format!(
            "cometgate: p99 {:.2} → {:.2} ms ({ratio:.2}×), success {:.1}% → {:.1}%{abuser}; {}",
            without.p99_ms,
            with.p99_ms,
            without.success_rate * 100.0,
            with.success_rate * 100.0,
            others.join("; ")
        ),
        Some(ratio <= 2.0),
    )
}

fn rss(entries: &[Entry]) -> Verdict {
    let limit = (CACHE_MIB + 64) << 20;
    let goal = format!(
        "every scenario: cometgate's RSS ≤ cache.max_bytes + 64 MiB = {} MiB",
        limit >> 20
    );
    let peaks: Vec<(String, u64)> = entries
        .iter()
        .filter(|e| e.target.starts_with("cometgate"))
        .filter_map(|e| {
            let who = match e.target.as_str() {
                "cometgate" => e.name.clone(),
                variant => format!("{} ({variant})", e.name),
            };
            Some((who, e.gateway_peak_rss_bytes?))
        })
        .collect();
    if peaks.is_empty() {
        return verdict("all", &goal, "not run".into(), None);
    }
    let worst = peaks.iter().map(|(_, b)| *b).max().unwrap_or(0);
    let list: Vec<String> = peaks
        .iter()
        .map(|(n, b)| format!("{n} {:.1} MiB", *b as f64 / 1048576.0))
        .collect();
    verdict(
        "all",
        &goal,
        format!(
            "peak {:.1} MiB ({})",
            worst as f64 / 1048576.0,
            list.join(", ")
        ),
        Some(worst <= limit),
    )
}

#[cfg(test)]
mod tests;
