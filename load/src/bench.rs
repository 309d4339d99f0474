//! `cometgate-load bench`: every scenario against every target it applies to, on fresh
//! processes, then report.json, the charts and REPORT.md.

use std::path::PathBuf;
use std::time::Instant;

use crate::markdown;
use crate::measure::{measure, Measured};
use crate::plan::{scenarios, Scenario};
use crate::plots::draw_charts;
use crate::procs::find_binary;
use crate::report::{entries, Report};
use crate::setup::{setup, shown};
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
        wrk: None,
        me: std::env::current_exe().map_err(|e| e.to_string())?,
    })
}

pub async fn bench(opts: Options) -> Result<Report, String> {
    let began = Instant::now();
    let mut bins = bins()?;
    bins.nginx = ensure_nginx();
    let work = std::env::temp_dir().join(format!("cometgate-load-{}", std::process::id()));
    // `--quick` alone is the first benchmark's scenarios; `--only` picks from them all.
    let plan: Vec<Scenario> = scenarios(opts.quick)
        .into_iter()
        .filter(|s| match opts.only.is_empty() {
            true => s.quick || !opts.quick,
            false => opts.only.iter().any(|o| s.name.starts_with(o.as_str())),
        })
        .collect();
    if plan.iter().any(|s| s.cross_check) {
        bins.wrk = crate::wrk::ensure_wrk();
    }
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
                // A logged hit run writes about 100 MB of access lines on each side; kept
                // until the end, a full bench would fill a small disk.
                if std::env::var_os("COMETGATE_LOAD_KEEP").is_none() {
                    let _ = std::fs::remove_dir_all(&dir);
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
    if std::env::var_os("COMETGATE_LOAD_KEEP").is_none() {
        let _ = std::fs::remove_dir_all(&work);
    }
    Ok(report)
}
