//! `cometgate-load bench`: every scenario against every target it applies to, on fresh
//! processes, then report.json, the charts and REPORT.md.

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::charts::{self, Series};
use crate::drive::Mode;
use crate::markdown::{self, Shown};
use crate::measure::{measure, Measured};
use crate::plan::{scenarios, storm_node, Scenario, ABUSER, STORM_MEMORY_LIMIT};
use crate::procs::find_binary;
use crate::record::Recorder;
use crate::report::{entries, Report};
use crate::stack::{ensure_nginx, Bins, Target};
use crate::verdict::verdicts;

pub struct Options {
    pub quick: bool,
    pub out: PathBuf,
    /// Run only these scenarios (all when empty).
    pub only: Vec<String>,
}

pub fn bins() -> Result<Bins, String> {
    Ok(Bins {
        simnode: find_binary("simnode", "cometgate-sim")?,
        cometgate: find_binary("cometgate", "cometgate")?,
        nginx: None,
        me: std::env::current_exe().map_err(|e| e.to_string())?,
    })
}

pub async fn bench(opts: Options) -> Result<Report, String> {
    let began = Instant::now();
    let mut bins = bins()?;
    bins.nginx = ensure_nginx();
    let work = std::env::temp_dir().join(format!("cometgate-load-{}", std::process::id()));
    let plan: Vec<Scenario> = scenarios(opts.quick)
        .into_iter()
        .filter(|s| {
            opts.only.is_empty() || opts.only.iter().any(|o| s.name.starts_with(o.as_str()))
        })
        .collect();
    let mut runs: Vec<Measured> = Vec::new();
    let mut skipped = Vec::new();
    for sc in &plan {
        for round in 0..sc.rounds {
            let mut order = sc.targets.clone();
            if round % 2 == 1 {
                order.reverse();
            }
            for target in order {
                if target == Target::Nginx && bins.nginx.is_none() {
                    if round == 0 {
                        skipped.push(format!("{}/nginx: nginx could not be installed", sc.name));
                    }
                    continue;
                }
                let dir = work.join(format!("{}-{}-{round}", sc.name, target.name()));
                match measure(&bins, sc, target, round, &dir).await {
                    Ok(m) => runs.push(m),
                    Err(e) => {
                        eprintln!("{}/{}: {e}", sc.name, target.name());
                        skipped.push(format!("{}/{} round {round}: {e}", sc.name, target.name()));
                    }
                }
            }
        }
    }
    let entries = entries(&runs);
    let report = Report {
        quick: opts.quick,
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        wall_seconds: began.elapsed().as_secs_f64(),
        targets: verdicts(&entries),
        scenarios: entries,
        skipped,
    };
    std::fs::create_dir_all(&opts.out).map_err(|e| format!("{}: {e}", opts.out.display()))?;
    let json = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
    std::fs::write(opts.out.join("report.json"), json + "\n").map_err(|e| e.to_string())?;
    let charts = draw_charts(&opts.out, &plan, &runs);
    let md = markdown::render(&report, &charts, &shown(&runs), &setup(&plan));
    std::fs::write(opts.out.join("REPORT.md"), md).map_err(|e| e.to_string())?;
    let _ = std::fs::remove_dir_all(&work);
    Ok(report)
}

fn draw_charts(out: &Path, plan: &[Scenario], runs: &[Measured]) -> Vec<(String, String)> {
    let mut charts = Vec::new();
    charts.extend(storm_chart(out, runs));
    for sc in plan.iter().filter(|s| s.name != "abuse-baseline") {
        charts.extend(cdf_chart(out, sc, runs));
    }
    charts
}

/// The node's memory through the LCD storm, one line per target; `None` when the storm
/// did not run or its chart could not be drawn.
fn storm_chart(out: &Path, runs: &[Measured]) -> Option<(String, String)> {
    let storm: Vec<Series> = runs
        .iter()
        .filter(|m| m.scenario == "lcd-storm")
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
    if storm.is_empty() {
        return None;
    }
    let file = "storm-memory.png";
    let title = "lcd-storm: simulated node memory";
    let limit = Some((STORM_MEMORY_LIMIT >> 20) as f64);
    match charts::memory(&out.join(file), title, &storm, limit) {
        Ok(()) => Some((file.to_string(), title.to_string())),
        Err(e) => {
            eprintln!("{e}");
            None
        }
    }
}

/// One scenario's latency CDF, one line per target; `abuse` also shows its baseline.
fn cdf_chart(out: &Path, sc: &Scenario, runs: &[Measured]) -> Option<(String, String)> {
    let mut series = cdf_series(sc, runs);
    if series.is_empty() {
        return None;
    }
    if sc.name == "abuse" {
        // Four lines at most keep the chart readable: cometgate both ways, the others
        // with the abuser.
        series.retain(|s| s.name.starts_with("cometgate") || s.name.ends_with("abuser"));
    }
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
    let mut series = Vec::new();
    let names: &[&str] = if sc.name == "abuse" {
        &["abuse-baseline", "abuse"]
    } else {
        &[sc.name]
    };
    for name in names {
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
            let label = if sc.name == "abuse" {
                let with = if *name == "abuse" {
                    "with abuser"
                } else {
                    "baseline"
                };
                format!("{} {with}", target.name())
            } else {
                target.name().to_string()
            };
            series.push(Series {
                name: label,
                points: rec.cdf_points(),
            });
        }
    }
    series
}

fn shown(runs: &[Measured]) -> Shown {
    let mut shown = Vec::new();
    for (scenario, why) in [
        ("lcd-storm", "throughput scenarios (lcd-storm, explorer, cache-hit, miss-overhead): limits that bind on neither side"),
        ("abuse", "abuse and abuse-baseline: the same per-client limit on both sides"),
    ] {
        for target in [Target::Cometgate, Target::Nginx] {
            if let Some(text) = runs
                .iter()
                .find(|m| m.scenario == scenario && m.target == target)
                .and_then(|m| m.config_text.clone())
            {
                let (file, lang) = match target {
                    Target::Nginx => ("nginx.conf", "nginx"),
                    _ => ("cometgate.toml", "toml"),
                };
                shown.push((format!("{file} for {why}"), lang, text));
            }
        }
    }
    let node = serde_json::to_string_pretty(&storm_node()).unwrap_or_default();
    shown.push((
        "simnode config of lcd-storm (ports are picked per run)".into(),
        "json",
        node,
    ));
    shown
}

fn setup(plan: &[Scenario]) -> String {
    let mut s = String::from(
        "Each measurement starts fresh processes: `simnode` (its own process, so its memory and OOM are its own; read through `--control-listen`), then the target in front of it: nothing (`direct`), the release `cometgate` binary (`TOKIO_WORKER_THREADS=2`), nginx from Debian (`worker_processes 2`, foreground, generated config below), or `ceiling` (a minimal hyper server answering the cache-hit body from memory, 2 worker threads). The load generator runs in the `cometgate-load` process on the same 2 cores. Node counters are reset after the warm-up; node memory is polled every 100 ms from the control port; the gateway's RSS is sampled from /proc every 100 ms (nginx: master plus workers summed; cometgate: also its VmHWM).\n\n| scenario | targets | load | duration | rounds |\n|---|---|---|--:|--:|\n",
    );
    for sc in plan {
        let mode = match sc.load.mode {
            Mode::Closed { clients } => format!("closed loop, {clients} clients"),
            Mode::Open { rate } => {
                format!("open loop, {rate:.0} req/s (latency from intended send time)")
            }
        };
        let bg = sc
            .background
            .as_ref()
            .map(|b| format!(" + abuser from {ABUSER}: {:?} {:?}", b.mode, b.mix))
            .unwrap_or_default();
        let targets: Vec<&str> = sc.targets.iter().map(|t| t.name()).collect();
        s.push_str(&format!(
            "| {} | {} | {:?} {:?}, {mode}{bg} | {:.0} s | {} |\n",
            sc.name,
            targets.join(", "),
            sc.load.mix,
            sc.load.form,
            sc.load.duration.as_secs_f64(),
            sc.rounds
        ));
    }
    s.push_str("\nMixes: `Storm` = `block_results` (latest), `tx_search tx.height=<head>` (100 per page) and `abci_query /store` (latest), each client numbering its JSON-RPC ids as real clients do. `Explorer` = `block`, `commit`, `header`, `validators`, `block_results`, `tx_search` at heights drawn Zipf(s=1.1) over the last 100 blocks, plus `block`/`status`/`abci_info` at the head. `Abuser` = `tx_search tx.height=<random height>` with 100 per page, ascending or descending (spread so caches help little). `CacheHit` = `block` at height 5 with a fixed id (the best case for nginx, whose cache key is the whole body). `MissOverhead` = `check_tx` of a unique tx each time (never cached anywhere, always reaches the node).\n");
    s
}
