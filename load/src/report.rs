//! `report.json`: one entry per scenario and target, with the fields the issue names first
//! and the detail behind them after. Several rounds of one pair fold into their medians.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::lane_limit::LimitSeen;
use crate::measure::Measured;
use crate::record::Recorder;
use crate::wrk::WrkFigures;

/// Methods the storm asks; the per-block count is over these.
pub const STORM_METHODS: [&str; 3] = ["block_results", "tx_search", "abci_query"];

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct RoundFigures {
    pub throughput_rps: f64,
    /// 2xx answers to heavy-lane calls a second.
    #[serde(default)]
    pub heavy_rps: f64,
    pub p50_ms: f64,
    #[serde(default)]
    pub p95_ms: f64,
    pub p99_ms: f64,
    /// The wrk cross-check of this round, where the scenario runs one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wrk: Option<WrkFigures>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Entry {
    pub name: String,
    pub target: String,
    pub node_requests: u64,
    pub node_peak_inflight: u64,
    pub node_peak_memory_bytes: u64,
    pub node_oom: bool,
    pub throughput_rps: f64,
    /// 2xx answers to heavy-lane calls a second (median of the rounds).
    #[serde(default)]
    pub heavy_rps: f64,
    pub p50_ms: f64,
    #[serde(default)]
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub errors: u64,
    /// None for `direct`: there is no gateway.
    pub gateway_peak_rss_bytes: Option<u64>,
    pub requests: u64,
    pub success_rate: f64,
    pub statuses: BTreeMap<String, u64>,
    pub duration_s: f64,
    /// Heads the node went through during the run (blocks produced + 1).
    pub blocks: u64,
    pub node_requests_per_method: BTreeMap<String, u64>,
    /// lcd-storm only: node requests per canonical question (simnode's per-request keys).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_requests_per_question: BTreeMap<String, u64>,
    /// The unmeasured background load's own figures (the abuser, the crowd, the squeeze's
    /// heavy clients), where one ran.
    #[serde(default, alias = "abuser", skip_serializing_if = "Option::is_none")]
    pub background: Option<Side>,
    /// The wrk cross-check: medians of the rounds' figures, errors summed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wrk: Option<WrkFigures>,
    /// cometgate's heavy lane limit over the run, read from its metrics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heavy_limit: Option<LimitSeen>,
    pub rounds: Vec<RoundFigures>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Side {
    pub requests: u64,
    pub throughput_rps: f64,
    pub statuses: BTreeMap<String, u64>,
}

/// 2xx answers among `statuses` (failures are keyed by name, never a 2xx number).
pub fn answered(statuses: &BTreeMap<String, u64>) -> u64 {
    statuses
        .iter()
        .filter(|(s, _)| s.len() == 3 && s.starts_with('2'))
        .map(|(_, n)| n)
        .sum()
}

fn statuses(rec: &Recorder, into: &mut BTreeMap<String, u64>) {
    for (s, n) in &rec.statuses {
        *into.entry(s.to_string()).or_insert(0) += n;
    }
    for (k, n) in &rec.failures {
        *into.entry(k.to_string()).or_insert(0) += n;
    }
}

/// A node call the gateway made for itself, not for a client: simnode keys a call that
/// names its sender (a User-Agent, as cometgate's head tracker sends) `… by <sender>`.
pub fn is_gateways_own(key: &str) -> bool {
    key.contains(") by ")
}

impl Entry {
    /// Node requests beyond one per unique question per block, over simnode's canonical
    /// per-request keys. A "latest" question exists once per block; `block_results` pinned
    /// to height N (cometgate pins "latest" to its head) only in block N; `tx_search` for
    /// `tx.height=N` in block N and again in N+1, asked by a client whose `status` answer
    /// came just before block N+1 landed: in N+1 that is a different question from N+1's.
    /// Calls that name their sender (simnode keys them `… by <User-Agent>`) are the
    /// gateway's own, cometgate's head tracker polling `status` every second, not a
    /// client's question. Returns (requests, questions, excess).
    pub fn storm_excess(&self) -> (u64, u64, u64) {
        let (mut requests, mut excess) = (0, 0);
        let mut questions = 0;
        for (key, n) in &self.node_requests_per_question {
            let method = key.split('(').next().unwrap_or("");
            let own = is_gateways_own(key);
            if own || (!STORM_METHODS.contains(&method) && method != "status") {
                continue;
            }
            let allowed = if key.contains("tx.height=") {
                2
            } else if key.contains("height=") && !key.contains("height=0") {
                1
            } else {
                self.blocks
            };
            requests += n;
            questions += 1;
            excess += n.saturating_sub(allowed);
        }
        (requests, questions, excess)
    }
}

/// One of the targets, as checked by `verdict.rs`: part of the report's document.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Verdict {
    pub scenario: String,
    pub goal: String,
    pub measured: String,
    /// None when the run lacks what the check needs (e.g. nginx could not be installed).
    pub met: Option<bool>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Report {
    pub quick: bool,
    pub cores: usize,
    pub wall_seconds: f64,
    pub scenarios: Vec<Entry>,
    pub targets: Vec<Verdict>,
    /// Scenario/target pairs that could not run, and why.
    pub skipped: Vec<String>,
}

pub fn median(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(|a, b| a.total_cmp(b));
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

fn figures(m: &Measured) -> RoundFigures {
    let secs = m.elapsed.as_secs_f64().max(1e-9);
    RoundFigures {
        throughput_rps: m.rec.count() as f64 / secs,
        heavy_rps: m.rec.heavy_ok as f64 / secs,
        p50_ms: m.rec.quantile_ms(0.5),
        p95_ms: m.rec.quantile_ms(0.95),
        p99_ms: m.rec.quantile_ms(0.99),
        wrk: m.wrk,
    }
}

/// Folds the rounds of one scenario and target into one entry (medians of the timings,
/// sums of counts, maxima of peaks).
pub fn entry(runs: &[&Measured]) -> Entry {
    assert!(!runs.is_empty(), "an entry needs at least one run");
    let first = runs[0];
    let rounds: Vec<RoundFigures> = runs.iter().map(|m| figures(m)).collect();
    let pick = |f: fn(&RoundFigures) -> f64| median(&mut rounds.iter().map(f).collect::<Vec<_>>());
    let p999 = median(
        &mut runs
            .iter()
            .map(|m| m.rec.quantile_ms(0.999))
            .collect::<Vec<_>>(),
    );
    let requests: u64 = runs.iter().map(|m| m.rec.count()).sum();
    let ok: u64 = runs.iter().map(|m| m.rec.ok()).sum();
    let mut all_statuses = BTreeMap::new();
    let mut per_method = BTreeMap::new();
    let mut per_question = BTreeMap::new();
    let mut background: Option<Side> = None;
    for m in runs {
        statuses(&m.rec, &mut all_statuses);
        for (k, n) in &m.node.per_method {
            *per_method.entry(k.clone()).or_insert(0) += n;
        }
        if m.scenario == "lcd-storm" {
            for (k, n) in &m.node.per_request {
                *per_question.entry(k.clone()).or_insert(0) += n;
            }
        }
        if let Some(bg) = &m.background {
            let side = background.get_or_insert(Side {
                requests: 0,
                throughput_rps: 0.0,
                statuses: BTreeMap::new(),
            });
            side.requests += bg.count();
            side.throughput_rps = bg.count() as f64 / m.elapsed.as_secs_f64().max(1e-9);
            statuses(bg, &mut side.statuses);
        }
    }
    Entry {
        name: first.scenario.to_string(),
        target: first.target.name(),
        node_requests: runs.iter().map(|m| m.node.total_requests).sum(),
        node_peak_inflight: runs.iter().map(|m| m.node.peak_inflight).max().unwrap_or(0),
        node_peak_memory_bytes: runs.iter().map(|m| m.node.peak_bytes).max().unwrap_or(0),
        node_oom: runs
            .iter()
            .any(|m| m.node.oom || m.node.oom_count > 0 || m.watched.oom_seen),
        throughput_rps: pick(|r| r.throughput_rps),
        heavy_rps: pick(|r| r.heavy_rps),
        p50_ms: pick(|r| r.p50_ms),
        p95_ms: pick(|r| r.p95_ms),
        p99_ms: pick(|r| r.p99_ms),
        p999_ms: p999,
        errors: requests - ok,
        gateway_peak_rss_bytes: runs.iter().filter_map(|m| m.front_peak_rss).max(),
        requests,
        success_rate: if requests == 0 {
            0.0
        } else {
            ok as f64 / requests as f64
        },
        statuses: all_statuses,
        duration_s: runs.iter().map(|m| m.elapsed.as_secs_f64()).sum(),
        blocks: runs
            .iter()
            .map(|m| m.node.height.saturating_sub(m.start_height) + 1)
            .sum(),
        node_requests_per_method: per_method,
        node_requests_per_question: per_question,
        wrk: crate::wrk::fold(rounds.iter().map(|r| r.wrk)),
        heavy_limit: LimitSeen::fold(runs.iter().map(|m| LimitSeen::of(&m.watched.heavy_limits))),
        background,
        rounds,
    }
}

/// One entry per (scenario, target), in the order the runs happened.
pub fn entries(runs: &[Measured]) -> Vec<Entry> {
    let mut keys = Vec::new();
    for m in runs {
        let key = (m.scenario, m.target);
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
    keys.iter()
        .map(|(s, t)| {
            let group: Vec<&Measured> = runs
                .iter()
                .filter(|m| m.scenario == *s && m.target == *t)
                .collect();
            entry(&group)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measure::Measured;
    use crate::record::{Outcome, Recorder};
    use crate::sampler::Watched;
    use crate::stack::Target;
    use std::time::Duration;

    fn run(target: Target, round: usize, ms: u64) -> Measured {
        let mut rec = Recorder::new();
        for _ in 0..100 {
            rec.record(Duration::from_millis(ms), &Outcome::Status(200));
        }
        rec.record(Duration::from_millis(ms), &Outcome::Status(429));
        let mut node = cometgate_sim::Stats {
            total_requests: 30,
            peak_bytes: 1 << 20,
            height: 14,
            ..Default::default()
        };
        node.per_method.insert("block_results".into(), 5);
        node.per_method.insert("tx_search".into(), 5);
        node.per_method.insert("abci_query".into(), 5);
        Measured {
            scenario: "lcd-storm",
            target,
            round,
            rec,
            background: None,
            elapsed: Duration::from_secs(1),
            node,
            start_height: 10,
            watched: Watched::default(),
            front_peak_rss: (target != Target::Direct).then_some(10 << 20),
            config_text: None,
            wrk: None,
        }
    }

    #[test]
    fn report_json_has_the_required_fields() {
        let runs = vec![run(Target::Direct, 0, 5), run(Target::Cometgate, 0, 1)];
        let report = Report {
            quick: true,
            cores: 2,
            wall_seconds: 1.0,
            scenarios: entries(&runs),
            targets: vec![],
            skipped: vec![],
        };
        let v = serde_json::to_value(&report).unwrap();
        let list = v["scenarios"].as_array().unwrap();
        assert_eq!(list.len(), 2);
        for e in list {
            for key in [
                "name",
                "target",
                "node_requests",
                "node_peak_inflight",
                "node_peak_memory_bytes",
                "node_oom",
                "throughput_rps",
                "p50_ms",
                "p99_ms",
                "p999_ms",
                "errors",
                "gateway_peak_rss_bytes",
            ] {
                assert!(e.get(key).is_some(), "missing {key} in {e}");
            }
            assert!(e["node_oom"].is_boolean());
            assert_eq!(e["name"], "lcd-storm");
        }
        assert_eq!(list[0]["target"], "direct");
        assert!(list[0]["gateway_peak_rss_bytes"].is_null());
        assert_eq!(list[1]["gateway_peak_rss_bytes"], 10 << 20);
        assert_eq!(list[1]["errors"], 1);
        assert_eq!(list[1]["throughput_rps"], 101.0);
    }

    #[test]
    fn rounds_fold_into_medians() {
        let runs = vec![
            run(Target::Cometgate, 0, 1),
            run(Target::Cometgate, 1, 9),
            run(Target::Cometgate, 2, 3),
        ];
        let e = &entries(&runs)[0];
        assert_eq!(e.rounds.len(), 3);
        assert!((e.p50_ms - 3.0).abs() < 0.01, "{}", e.p50_ms);
        assert_eq!(e.requests, 303);
        assert_eq!(e.blocks, 15);
    }

    #[test]
    fn storm_excess_counts_repeats_beyond_one_per_question_per_block() {
        let mut e = entries(&[run(Target::Cometgate, 0, 1)]).remove(0);
        assert_eq!(e.blocks, 5);
        let q = &mut e.node_requests_per_question;
        q.insert("block_results(height=12)".into(), 1);
        q.insert("tx_search(query=tx.height=12,per_page=100)".into(), 2);
        q.insert(
            "abci_query(path=/store,data=00,height=0,prove=false)".into(),
            5,
        );
        q.insert("status()".into(), 5);
        q.insert("status() by cometgate/0.1.0 head-tracker".into(), 9);
        q.insert("subscribe(query=tm.event='NewBlock')".into(), 1);
        // 5 heads; the head tracker's own polls are not a client's question.
        assert_eq!(e.storm_excess(), (13, 4, 0));
        e.node_requests_per_question.insert("status()".into(), 6);
        assert_eq!(e.storm_excess(), (14, 4, 1));
        e.node_requests_per_question
            .insert("block_results(height=13)".into(), 3);
        e.node_requests_per_question
            .insert("tx_search(query=tx.height=13,per_page=100)".into(), 3);
        // status 1 over, block_results 2 over (pinned: once), tx_search 1 over (twice).
        assert_eq!(e.storm_excess(), (20, 6, 4));
    }

    #[test]
    fn median_of_even_and_odd() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median(&mut []), 0.0);
    }
}
