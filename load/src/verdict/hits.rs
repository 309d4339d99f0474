//! Cache hits against nginx: POST and GET, logging off and on, each judged by the
//! harness and by wrk against the same running targets. A ratio is met only where both
//! clients agree it is; the report shows both either way.

use super::{find, median_ratio, verdict};
use crate::report::{Entry, RoundFigures, Verdict};

/// The hit scenarios, and what each one's row is called.
const HITS: [(&str, &str); 4] = [
    ("cache-hit", "POST, logging off"),
    ("cache-hit-get", "GET, logging off"),
    ("cache-hit-log", "POST, logging on"),
    ("cache-hit-log-get", "GET, logging on"),
];

/// Hit throughput with the access log on, against off, by the same client.
const LOG_COST_FLOOR: f64 = 0.9;

pub(super) fn verdicts(entries: &[Entry]) -> Vec<Verdict> {
    let mut out: Vec<Verdict> = HITS
        .iter()
        .map(|(n, what)| hits(entries, n, what))
        .collect();
    out.push(log_cost(entries, "cache-hit-log"));
    out.push(log_cost(entries, "cache-hit-log-get"));
    out
}

fn wrk_rps(r: &RoundFigures) -> f64 {
    r.wrk.map_or(f64::NAN, |w| w.rps)
}

fn wrk_p99(r: &RoundFigures) -> f64 {
    r.wrk.map_or(f64::NAN, |w| w.p99_ms)
}

fn hits(entries: &[Entry], name: &str, what: &str) -> Verdict {
    let goal =
        format!(
        "{what}: cometgate throughput ≥ 1.2× nginx with p99 no higher, by the harness and by wrk{}",
        if name == "cache-hit" { "; ≥ 0.85× the ceiling (harness)" } else { "" }
    );
    let (Some(c), Some(n)) = (
        find(entries, name, "cometgate"),
        find(entries, name, "nginx"),
    ) else {
        return verdict(name, &goal, "not run (a target is missing)".into(), None);
    };
    let harness = (
        median_ratio(c, n, |r| r.throughput_rps),
        median_ratio(c, n, |r| r.p99_ms),
    );
    let mut measured = format!(
        "median over {} rounds. harness: {:.2}× nginx ({:.0} vs {:.0} rps), p99 {:.2} vs {:.2} ms (ratio {:.2})",
        c.rounds.len(),
        harness.0,
        c.throughput_rps,
        n.throughput_rps,
        c.p99_ms,
        n.p99_ms,
        harness.1
    );
    let mut met = harness.0 >= 1.2 && harness.1 <= 1.0;
    match (c.wrk, n.wrk) {
        (Some(cw), Some(nw)) => {
            let wrk = (median_ratio(c, n, wrk_rps), median_ratio(c, n, wrk_p99));
            measured.push_str(&format!(
                ". wrk: {:.2}× nginx ({:.0} vs {:.0} rps), p99 {:.2} vs {:.2} ms (ratio {:.2})",
                wrk.0, cw.rps, nw.rps, cw.p99_ms, nw.p99_ms, wrk.1
            ));
            met &= wrk.0 >= 1.2 && wrk.1 <= 1.0;
        }
        _ => {
            measured.push_str(". wrk: not run, so not judged");
            return verdict(name, &goal, measured, None);
        }
    }
    if let Some(top) = find(entries, name, "ceiling") {
        let vs_top = median_ratio(c, top, |r| r.throughput_rps);
        measured.push_str(&format!(
            ". {vs_top:.2}× the ceiling ({:.0} rps)",
            top.throughput_rps
        ));
        met &= vs_top >= 0.85;
    }
    verdict(name, &goal, measured, Some(met))
}

/// cometgate's own hit throughput with its default access log against none, side by
/// side in one scenario (alternating rounds), by each client.
fn log_cost(entries: &[Entry], name: &str) -> Verdict {
    let goal = "cometgate's hit throughput with its access log on within 10% of off, by the harness and by wrk";
    let label = format!("{name} cost");
    let (Some(on), Some(off)) = (
        find(entries, name, "cometgate"),
        find(entries, name, "cometgate-unlogged"),
    ) else {
        return verdict(&label, goal, "not run".into(), None);
    };
    let harness = median_ratio(on, off, |r| r.throughput_rps);
    if on.wrk.is_none() || off.wrk.is_none() {
        let measured = format!("harness {harness:.2}×; wrk not run, so not judged");
        return verdict(&label, goal, measured, None);
    }
    let wrk = median_ratio(on, off, wrk_rps);
    verdict(
        &label,
        goal,
        format!(
            "on/off, median over {} rounds: harness {harness:.2}× ({:.0} vs {:.0} rps), wrk {wrk:.2}× ({:.0} vs {:.0} rps)",
            on.rounds.len(),
            on.throughput_rps,
            off.throughput_rps,
            on.wrk.map_or(0.0, |w| w.rps),
            off.wrk.map_or(0.0, |w| w.rps),
        ),
        Some(harness >= LOG_COST_FLOOR && wrk >= LOG_COST_FLOOR),
    )
}
