//! The node's resources: the adaptive heavy lane against the best static size on a slow
//! and a fast node, and the memory guard on a squeezed node.

use super::{find, held, verdict};
use crate::plan::{SQUEEZE_LIMIT, SWEEP};
use crate::report::{answered, Entry, Verdict};

pub(super) fn verdicts(entries: &[Entry]) -> Vec<Verdict> {
    vec![
        sweep(entries, "lcd-storm-slow", "4× slower"),
        sweep(entries, "lcd-storm-fast", "4× faster"),
        squeeze(entries),
    ]
}

fn sweep(entries: &[Entry], name: &str, speed: &str) -> Verdict {
    let goal = format!(
        "64 LCD connections' lookups that reach the node (`Lookups`), on a node {speed} than the default (4 CPU slots): the node never OOMs through cometgate, and the adaptive heavy lane's heavy throughput (2xx heavy answers/s) is ≥ 80% of the best static lane size of {SWEEP:?}"
    );
    let Some(adaptive) = find(entries, name, "cometgate") else {
        return verdict(name, &goal, "not run".into(), None);
    };
    let statics: Vec<&Entry> = SWEEP
        .iter()
        .filter_map(|n| find(entries, name, &format!("cometgate-static-{n}")))
        .collect();
    let Some(best) = statics
        .iter()
        .max_by(|a, b| a.heavy_rps.total_cmp(&b.heavy_rps))
    else {
        return verdict(name, &goal, "not run (no static lane)".into(), None);
    };
    let ratio = adaptive.heavy_rps / best.heavy_rps.max(1e-9);
    let list: Vec<String> = statics
        .iter()
        .map(|e| {
            let n = e.target.trim_start_matches("cometgate-static-");
            format!(
                "{n}: {:.0}{}",
                e.heavy_rps,
                if e.node_oom { " (OOM)" } else { "" }
            )
        })
        .collect();
    let other = |t: &str| {
        find(entries, name, t).map_or("not run".to_string(), |e| {
            format!(
                "{:.0}/s{}",
                e.heavy_rps,
                if e.node_oom { ", node OOM" } else { "" }
            )
        })
    };
    verdict(
        name,
        &goal,
        format!(
            "adaptive {:.0} heavy answers/s{} vs best static ({}) {:.0}/s: {ratio:.2}×; node OOM through cometgate: {} (peak {} MiB); static sizes: {}; first come, first served {}; nginx {}; direct {}",
            adaptive.heavy_rps,
            held(adaptive),
            best.target.trim_start_matches("cometgate-static-"),
            best.heavy_rps,
            adaptive.node_oom,
            adaptive.node_peak_memory_bytes >> 20,
            list.join(", "),
            other("cometgate-fcfs"),
            other("nginx"),
            other("direct"),
        ),
        Some(!adaptive.node_oom && ratio >= 0.8),
    )
}

/// Every client call answered 2xx: the measured light calls and the heavy clients' calls.
fn answered_share(e: &Entry) -> f64 {
    let (mut ok, mut all) = (answered(&e.statuses), e.requests);
    if let Some(bg) = &e.background {
        ok += answered(&bg.statuses);
        all += bg.requests;
    }
    ok as f64 / all.max(1) as f64
}

fn oom(entries: &[Entry], target: &str) -> String {
    find(entries, "memory-squeeze", target).map_or("not run".into(), |e| {
        format!(
            "{} (peak {} MiB, {:.0}% answered)",
            if e.node_oom { "OOM" } else { "alive" },
            e.node_peak_memory_bytes >> 20,
            answered_share(e) * 100.0
        )
    })
}

fn squeeze(entries: &[Entry]) -> Verdict {
    let goal = format!(
        "a node whose memory ({} MB) three concurrent heavy calls pass: it OOMs direct and behind a static lane of 4 without the guard; with the guard it stays alive, ≥ 90% of client calls are answered, and the light calls' p99 is within 2× of theirs without the squeeze",
        SQUEEZE_LIMIT / 1_000_000
    );
    let (Some(c), Some(base)) = (
        find(entries, "memory-squeeze", "cometgate"),
        find(entries, "memory-squeeze-baseline", "cometgate"),
    ) else {
        return verdict("memory-squeeze", &goal, "not run".into(), None);
    };
    let premise = ["direct", "cometgate-static-4"]
        .iter()
        .all(|t| find(entries, "memory-squeeze", t).is_some_and(|e| e.node_oom));
    let share = answered_share(c);
    let ratio = c.p99_ms / base.p99_ms.max(1e-9);
    verdict(
        "memory-squeeze",
        &goal,
        format!(
            "cometgate with the guard: {}, light p99 {:.1} → {:.1} ms ({ratio:.2}×); direct: {}; static lane of 4, no guard: {}; first come, first served with the guard: {}; nginx: {}; static lane of 2, no guard: {}",
            oom(entries, "cometgate"),
            base.p99_ms,
            c.p99_ms,
            oom(entries, "direct"),
            oom(entries, "cometgate-static-4"),
            oom(entries, "cometgate-fcfs"),
            oom(entries, "nginx"),
            oom(entries, "cometgate-static-2"),
        ),
        Some(premise && !c.node_oom && share >= 0.9 && ratio <= 2.0),
    )
}
