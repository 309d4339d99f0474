//! The new targets' arithmetic on hand-made entries: which figure each compares, and
//! that a miss is reported as one.

use std::collections::BTreeMap;

use super::verdicts;
use crate::report::{Entry, RoundFigures, Side};

fn entry(name: &str, target: &str, p95: f64, p99: f64, heavy: f64) -> Entry {
    let round = RoundFigures {
        throughput_rps: 100.0,
        heavy_rps: heavy,
        p50_ms: 1.0,
        p95_ms: p95,
        p99_ms: p99,
        wrk: None,
    };
    Entry {
        name: name.into(),
        target: target.into(),
        node_requests: 0,
        node_peak_inflight: 0,
        node_peak_memory_bytes: 0,
        node_oom: false,
        throughput_rps: 100.0,
        heavy_rps: heavy,
        p50_ms: 1.0,
        p95_ms: p95,
        p99_ms: p99,
        p999_ms: p99,
        errors: 0,
        gateway_peak_rss_bytes: Some(1 << 20),
        requests: 100,
        success_rate: 1.0,
        statuses: BTreeMap::from([("200".into(), 100)]),
        duration_s: 1.0,
        blocks: 1,
        node_requests_per_method: BTreeMap::new(),
        node_requests_per_question: BTreeMap::new(),
        background: None,
        wrk: None,
        heavy_limit: None,
        rounds: vec![round],
    }
}

fn met(entries: &[Entry], scenario: &str) -> Option<bool> {
    verdicts(entries)
        .into_iter()
        .find(|v| v.scenario == scenario)
        .unwrap_or_else(|| panic!("no verdict for {scenario}"))
        .met
}

#[test]
fn the_crowd_compares_the_ordinary_clients_p95_and_p99_with_its_own_alone() {
    let alone = entry("crowd-baseline", "cometgate", 200.0, 220.0, 0.0);
    let within = entry("crowd", "cometgate", 290.0, 430.0, 0.0);
    assert_eq!(met(&[alone.clone(), within], "crowd"), Some(true));
    let slow_tail = entry("crowd", "cometgate", 290.0, 450.0, 0.0);
    assert_eq!(met(&[alone.clone(), slow_tail], "crowd"), Some(false));
    let slow_p95 = entry("crowd", "cometgate", 310.0, 300.0, 0.0);
    assert_eq!(met(&[alone, slow_p95], "crowd"), Some(false));
}

#[test]
fn the_adaptive_lane_is_held_to_the_best_static_size() {
    let mut run = vec![entry("lcd-storm-slow", "cometgate", 1.0, 1.0, 85.0)];
    for (n, heavy) in [(1, 40.0), (4, 100.0), (16, 90.0)] {
        let target = format!("cometgate-static-{n}");
        run.push(entry("lcd-storm-slow", &target, 1.0, 1.0, heavy));
    }
    assert_eq!(
        met(&run, "lcd-storm-slow"),
        Some(true),
        "85 of the best 100"
    );
    run[0].heavy_rps = 75.0;
    assert_eq!(met(&run, "lcd-storm-slow"), Some(false), "75 of 100");
    run[0].heavy_rps = 95.0;
    run[0].node_oom = true;
    assert_eq!(
        met(&run, "lcd-storm-slow"),
        Some(false),
        "the node must live"
    );
}

#[test]
fn the_squeeze_needs_its_premise_a_live_node_and_answers() {
    let base = entry("memory-squeeze-baseline", "cometgate", 5.0, 10.0, 0.0);
    let mut direct = entry("memory-squeeze", "direct", 1.0, 1.0, 0.0);
    direct.node_oom = true;
    let mut static4 = entry("memory-squeeze", "cometgate-static-4", 1.0, 1.0, 0.0);
    static4.node_oom = true;
    let mut guarded = entry("memory-squeeze", "cometgate", 5.0, 15.0, 0.0);
    guarded.background = Some(Side {
        requests: 100,
        throughput_rps: 8.0,
        statuses: BTreeMap::from([("200".into(), 85), ("503".into(), 15)]),
    });
    let run = vec![base, direct, static4.clone(), guarded.clone()];
    assert_eq!(
        met(&run, "memory-squeeze"),
        Some(true),
        "185 of 200 answered"
    );
    let mut dead = run.clone();
    dead[3].node_oom = true;
    assert_eq!(met(&dead, "memory-squeeze"), Some(false));
    let mut no_premise = run.clone();
    no_premise[2].node_oom = false;
    assert_eq!(met(&no_premise, "memory-squeeze"), Some(false));
    let mut refused = run;
    refused[3].background.as_mut().unwrap().statuses = BTreeMap::from([("503".into(), 100)]);
    assert_eq!(met(&refused, "memory-squeeze"), Some(false), "100 of 200");
}

#[test]
fn the_lcd_shape_allows_no_refusal_and_ten_percent() {
    let fcfs = entry("lcd-shape", "cometgate-fcfs", 1.0, 1.0, 0.0);
    let mut fair = entry("lcd-shape", "cometgate", 1.0, 1.0, 0.0);
    fair.rounds[0].throughput_rps = 91.0;
    assert_eq!(met(&[fair.clone(), fcfs.clone()], "lcd-shape"), Some(true));
    fair.rounds[0].throughput_rps = 89.0;
    assert_eq!(met(&[fair.clone(), fcfs.clone()], "lcd-shape"), Some(false));
    fair.rounds[0].throughput_rps = 100.0;
    fair.statuses.insert("429".into(), 1);
    assert_eq!(met(&[fair, fcfs], "lcd-shape"), Some(false));
}

#[test]
fn scenarios_that_did_not_run_are_left_out() {
    let only_crowd = vec![
        entry("crowd-baseline", "cometgate", 1.0, 1.0, 0.0),
        entry("crowd", "cometgate", 1.0, 1.0, 0.0),
    ];
    let names: Vec<String> = verdicts(&only_crowd)
        .into_iter()
        .map(|v| v.scenario)
        .collect();
    assert_eq!(names, ["crowd", "all"]);
}

/// A hit entry: the harness's throughput and p99, and wrk's where given.
fn hit(name: &str, target: &str, rps: f64, p99: f64, wrk: Option<(f64, f64)>) -> Entry {
    let mut e = entry(name, target, p99, p99, 0.0);
    let wrk = wrk.map(|(rps, p99_ms)| crate::wrk::WrkFigures {
        rps,
        p50_ms: p99_ms / 2.0,
        p99_ms,
        errors: 0,
    });
    e.throughput_rps = rps;
    e.wrk = wrk;
    e.rounds[0].throughput_rps = rps;
    e.rounds[0].wrk = wrk;
    e
}

#[test]
fn a_hit_ratio_is_met_only_where_the_harness_and_wrk_both_see_it() {
    let nginx = hit("cache-hit-get", "nginx", 100.0, 2.0, Some((100.0, 2.0)));
    let both = hit("cache-hit-get", "cometgate", 125.0, 1.9, Some((121.0, 2.0)));
    assert_eq!(met(&[both, nginx.clone()], "cache-hit-get"), Some(true));
    let wrk_disagrees = hit("cache-hit-get", "cometgate", 125.0, 1.9, Some((95.0, 2.0)));
    assert_eq!(
        met(&[wrk_disagrees, nginx.clone()], "cache-hit-get"),
        Some(false)
    );
    let wrk_tail = hit("cache-hit-get", "cometgate", 125.0, 1.9, Some((130.0, 2.5)));
    assert_eq!(
        met(&[wrk_tail, nginx.clone()], "cache-hit-get"),
        Some(false)
    );
    let no_wrk = hit("cache-hit-get", "cometgate", 125.0, 1.9, None);
    assert_eq!(met(&[no_wrk, nginx], "cache-hit-get"), None, "not judged");
}

#[test]
fn the_access_log_costs_at_most_a_tenth_by_either_client() {
    let off = hit(
        "cache-hit-log",
        "cometgate-unlogged",
        100.0,
        1.0,
        Some((200.0, 1.0)),
    );
    let on = hit("cache-hit-log", "cometgate", 92.0, 1.0, Some((185.0, 1.0)));
    let name = "cache-hit-log cost";
    assert_eq!(met(&[off.clone(), on], name), Some(true));
    let costly = hit("cache-hit-log", "cometgate", 95.0, 1.0, Some((170.0, 1.0)));
    assert_eq!(met(&[off, costly], name), Some(false), "wrk sees 0.85×");
}
