//! Fair admission's targets: an ordinary client keeps its latency beside a crowd, and an
//! LCD whose operator raised its own limits is neither refused nor slowed by fairness.

use super::{find, held, median_ratio, verdict};
use crate::report::{answered, Entry, Verdict};

pub(super) fn verdicts(entries: &[Entry]) -> Vec<Verdict> {
    vec![crowd(entries), lcd_shape(entries)]
}

/// One target's ordinary-client ratios, with the crowd over alone: (p95, p99).
fn ratios(entries: &[Entry], target: &str) -> Option<(f64, f64)> {
    let with = find(entries, "crowd", target)?;
    let alone = find(entries, "crowd-baseline", target)?;
    Some((
        with.p95_ms / alone.p95_ms.max(1e-9),
        with.p99_ms / alone.p99_ms.max(1e-9),
    ))
}

fn crowd(entries: &[Entry]) -> Verdict {
    let goal = "an ordinary client (8 mixed calls/s) beside 20 polite clients asking 4.5× the node's heavy capacity of 200 ms `tx_search`: its p95 ≤ 1.5× and p99 ≤ 2× its figures alone, with the shipped defaults";
    let (Some(with), Some(alone)) = (
        find(entries, "crowd", "cometgate"),
        find(entries, "crowd-baseline", "cometgate"),
    ) else {
        return verdict("crowd", goal, "not run".into(), None);
    };
    let (p95, p99) = ratios(entries, "cometgate").unwrap_or((f64::NAN, f64::NAN));
    let others: Vec<String> = ["cometgate-fcfs", "cometgate-static-4", "nginx", "direct"]
        .iter()
        .filter_map(|t| {
            let (a, b) = ratios(entries, t)?;
            let w = find(entries, "crowd", t)?;
            Some(format!(
                "{t}: p95 {a:.2}×, p99 {b:.2}× (p99 {:.0} ms, success {:.1}%)",
                w.p99_ms,
                w.success_rate * 100.0
            ))
        })
        .collect();
    let crowd_side = with
        .background
        .as_ref()
        .map(|c| {
            format!(
                "; the crowd: {} calls, {:.0}% answered",
                c.requests,
                100.0 * answered(&c.statuses) as f64 / c.requests.max(1) as f64
            )
        })
        .unwrap_or_default();
    verdict(
        "crowd",
        goal,
        format!(
            "cometgate: p95 {:.1} → {:.1} ms ({p95:.2}×), p99 {:.1} → {:.1} ms ({p99:.2}×), success {:.1}%{crowd_side}{}; {}",
            alone.p95_ms,
            with.p95_ms,
            alone.p99_ms,
            with.p99_ms,
            with.success_rate * 100.0,
            held(with),
            others.join("; ")
        ),
        Some(p95 <= 1.5 && p99 <= 2.0),
    )
}

/// Answers that were refusals: 429 and 503.
fn refusals(e: &Entry) -> u64 {
    ["429", "503"]
        .iter()
        .filter_map(|s| e.statuses.get(*s))
        .sum()
}

fn lcd_shape(entries: &[Entry]) -> Verdict {
    let l = crate::plan::LCD_KEY.limits;
    let goal = format!("one LCD address with its operator's raised limits (API key: {}/s, burst {}, {} concurrent), 64 concurrent explorer calls, a node with capacity to spare: 0 refusals and throughput within 10% of cometgate first come, first served", l.per_second, l.burst, l.concurrent);
    let goal = goal.as_str();
    let (Some(c), Some(f)) = (
        find(entries, "lcd-shape", "cometgate"),
        find(entries, "lcd-shape", "cometgate-fcfs"),
    ) else {
        return verdict("lcd-shape", goal, "not run".into(), None);
    };
    let ratio = median_ratio(c, f, |r| r.throughput_rps);
    let others: Vec<String> = ["nginx", "direct"]
        .iter()
        .filter_map(|t| {
            let e = find(entries, "lcd-shape", t)?;
            Some(format!(
                "{t} {:.0} rps ({} refusals)",
                e.throughput_rps,
                refusals(e)
            ))
        })
        .collect();
    verdict(
        "lcd-shape",
        goal,
        format!(
            "cometgate {:.0} rps vs first come, first served {:.0} rps: {ratio:.2}× (median of {} rounds' ratios); refusals: cometgate {}, first come, first served {}, errors {}; {}",
            c.throughput_rps,
            f.throughput_rps,
            c.rounds.len(),
            refusals(c),
            refusals(f),
            c.errors,
            others.join(", ")
        ),
        Some(refusals(c) == 0 && c.errors == 0 && ratio >= 0.9),
    )
}
