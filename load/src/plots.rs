//! Which charts the report draws from which runs: the node's memory over time (the storm,
//! the memory squeeze) and one latency CDF per scenario, with its baseline beside it
//! where the scenario has one.

use std::path::Path;

use crate::charts::{self, Series};
use crate::measure::Measured;
use crate::plan::{Scenario, SQUEEZE_LIMIT, STORM_MEMORY_LIMIT};
use crate::record::Recorder;

/// Scenarios measured against a baseline of the same load without what they add.
const WITH_BASELINE: [&str; 3] = ["abuse", "crowd", "memory-squeeze"];

/// Sweeps have a line per static lane size: their figures are in the tables instead.
const NO_CDF: [&str; 2] = ["lcd-storm-slow", "lcd-storm-fast"];

pub fn draw_charts(out: &Path, plan: &[Scenario], runs: &[Measured]) -> Vec<(String, String)> {
    let mut charts = Vec::new();
    charts.extend(memory_chart(
        out,
        runs,
        "lcd-storm",
        "storm-memory.png",
        STORM_MEMORY_LIMIT,
    ));
    charts.extend(memory_chart(
        out,
        runs,
        "memory-squeeze",
        "squeeze-memory.png",
        SQUEEZE_LIMIT,
    ));
    for sc in plan
        .iter()
        .filter(|s| !s.name.ends_with("-baseline") && !NO_CDF.contains(&s.name))
    {
        charts.extend(cdf_chart(out, sc, runs));
    }
    charts
}

/// The node's memory through one scenario, one line per target; `None` when it did not
/// run or its chart could not be drawn.
fn memory_chart(
    out: &Path,
    runs: &[Measured],
    scenario: &str,
    file: &str,
    limit: u64,
) -> Option<(String, String)> {
    let lines: Vec<Series> = runs
        .iter()
        .filter(|m| m.scenario == scenario && m.round == 0)
        .map(|m| Series {
            name: match m.watched.first_oom_ms {
                Some(t) => format!(
                    "{} (peak {} MiB, OOM at {:.1} s)",
                    m.target.name(),
                    m.node.peak_bytes >> 20,
                    t as f64 / 1000.0
                ),
                None => format!("{} (peak {} MiB)", m.target.name(), m.node.peak_bytes >> 20),
            },
            points: m
                .watched
                .timeline
                .node_live_bytes
                .iter()
                .map(|(t, b)| (*t as f64 / 1000.0, *b as f64 / 1048576.0))
                .collect(),
        })
        .collect();
    if lines.is_empty() {
        return None;
    }
    let title = format!("{scenario}: simulated node memory");
    let limit = Some(limit as f64 / 1048576.0);
    match charts::memory(&out.join(file), &title, &lines, limit) {
        Ok(()) => Some((file.to_string(), title)),
        Err(e) => {
            eprintln!("{e}");
            None
        }
    }
}

/// One scenario's latency CDF, one line per target; with a baseline, cometgate both ways
/// and the others with the load added.
fn cdf_chart(out: &Path, sc: &Scenario, runs: &[Measured]) -> Option<(String, String)> {
    let mut series = cdf_series(sc, runs);
    if series.is_empty() {
        return None;
    }
    if WITH_BASELINE.contains(&sc.name) {
        series.retain(|s| s.name.starts_with("cometgate ") || !s.name.ends_with("baseline"));
    }
    // Four lines at most keep the chart readable: direct goes first.
    if series.len() > 4 {
        series.retain(|s| !s.name.starts_with("direct"));
    }
    series.truncate(4);
    let file = format!("cdf-{}.png", sc.name);
    let title = format!("{}: latency CDF", sc.name);
    match charts::cdf(&out.join(&file), &title, &series) {
        Ok(()) => Some((file, title)),
        Err(e) => {
            eprintln!("{e}");
            None
        }
    }
}

/// Every round of each (scenario, target) merged into one line.
fn cdf_series(sc: &Scenario, runs: &[Measured]) -> Vec<Series> {
    let baseline = format!("{}-baseline", sc.name);
    let names: Vec<&str> = if WITH_BASELINE.contains(&sc.name) {
        vec![baseline.as_str(), sc.name]
    } else {
        vec![sc.name]
    };
    let mut series = Vec::new();
    for name in &names {
        for target in &sc.targets {
            let mut rec = Recorder::new();
            for m in runs
                .iter()
                .filter(|m| m.scenario == *name && m.target == *target)
            {
                rec.merge(&m.rec);
            }
            if rec.count() == 0 {
                continue;
            }
            let label = match (names.len(), name.ends_with("-baseline")) {
                (1, _) => target.name(),
                (_, true) => format!("{} baseline", target.name()),
                (_, false) => format!("{} with {}", target.name(), added(sc.name)),
            };
            series.push(Series {
                name: label,
                points: rec.cdf_points(),
            });
        }
    }
    series
}

fn added(scenario: &str) -> &'static str {
    match scenario {
        "abuse" => "abuser",
        "crowd" => "crowd",
        _ => "squeeze",
    }
}
