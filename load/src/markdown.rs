//! REPORT.md: the targets first (met or not, with figures), then every measurement, the
//! charts, how the run was set up, and both proxies' configurations inline.

use std::fmt::Write;

use crate::report::{Entry, Report};

/// Generated configurations to show: (title, language, text).
pub type Shown = Vec<(String, &'static str, String)>;

fn mib(b: u64) -> String {
    format!("{:.1}", b as f64 / 1048576.0)
}

fn mark(met: Option<bool>) -> &'static str {
    match met {
        Some(true) => "**met**",
        Some(false) => "**missed**",
        None => "not measured",
    }
}

fn results_table(out: &mut String, entries: &[Entry]) {
    out.push_str(
        "| scenario | target | requests | rps | heavy ok/s | p50 ms | p95 ms | p99 ms | p99.9 ms | errors | success | node requests | node peak in-flight | node peak MiB | node OOM | gateway peak RSS MiB |\n|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|--:|\n",
    );
    for e in entries {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {:.0} | {:.1} | {:.3} | {:.3} | {:.3} | {:.3} | {} | {:.1}% | {} | {} | {} | {} | {} |",
            e.name,
            e.target,
            e.requests,
            e.throughput_rps,
            e.heavy_rps,
            e.p50_ms,
            e.p95_ms,
            e.p99_ms,
            e.p999_ms,
            e.errors,
            e.success_rate * 100.0,
            e.node_requests,
            e.node_peak_inflight,
            mib(e.node_peak_memory_bytes),
            if e.node_oom { "**yes**" } else { "no" },
            e.gateway_peak_rss_bytes.map(mib).unwrap_or_else(|| "–".into()),
        );
    }
}

pub fn render(report: &Report, charts: &[(String, String)], shown: &Shown, setup: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# cometgate load report\n\nProduced by `cometgate-load bench{}` in {:.0} s of wall time on {} cores, all processes on one machine (load generator, simulated node, proxy). Figures are from one run; the machine is shared, so treat small differences as noise.\n",
        if report.quick { " --quick" } else { "" },
        report.wall_seconds,
        report.cores
    );
    out.push_str("## Targets\n\n| scenario | goal | measured | result |\n|---|---|---|---|\n");
    for v in &report.targets {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} |",
            v.scenario,
            v.goal,
            v.measured,
            mark(v.met)
        );
    }
    if !report.skipped.is_empty() {
        out.push_str("\nNot run:\n\n");
        for s in &report.skipped {
            let _ = writeln!(out, "- {s}");
        }
    }
    out.push_str("\n## Every measurement\n\nOne row per scenario and target (`report.json` has the same, plus statuses, per-method node counts and per-round figures). Where a pair ran several rounds (alternating targets), timings are medians of the rounds and counts are sums. `errors` counts every answer that was not 2xx (429 and 503 refusals included) and every failed connection. Latencies cover every request, failed ones included: a refused connection fails in microseconds, so read a low direct `lcd-storm` p50 together with its success rate. `abuse` rows are the well-behaved clients' figures with the abuser running; `abuse-baseline` is the same load without it; likewise `crowd` (the ordinary client's figures beside the crowd) and `memory-squeeze` (the light calls' figures beside the heavy clients). `heavy ok/s` counts 2xx answers to heavy-lane calls (`block_results`, `tx_search`, `abci_query`...) a second: the storm sweeps compare it.\n\n");
    results_table(&mut out, &report.scenarios);
    out.push_str("\n## Charts\n\n");
    for (file, caption) in charts {
        let _ = writeln!(out, "**{caption}**\n\n![{caption}]({file})\n");
    }
    out.push_str("## How it was run\n\n");
    out.push_str(setup);
    out.push_str("\n## Configurations\n\n");
    for (title, lang, text) in shown {
        let _ = writeln!(out, "### {title}\n\n```{lang}\n{}\n```\n", text.trim_end());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Verdict;

    #[test]
    fn report_lists_targets_rows_charts_and_configs() {
        let report = Report {
            quick: true,
            cores: 2,
            wall_seconds: 12.0,
            scenarios: vec![],
            targets: vec![Verdict {
                scenario: "cache-hit".into(),
                goal: "fast".into(),
                measured: "1.3×".into(),
                met: Some(true),
            }],
            skipped: vec!["nginx: not installed".into()],
        };
        let text = render(
            &report,
            &[("cdf-cache-hit.png".into(), "cache-hit latency".into())],
            &vec![("nginx.conf".into(), "nginx", "daemon off;".into())],
            "setup\n",
        );
        assert!(text.contains("| cache-hit | fast | 1.3× | **met** |"));
        assert!(text.contains("![cache-hit latency](cdf-cache-hit.png)"));
        assert!(text.contains("```nginx\ndaemon off;\n```"));
        assert!(text.contains("- nginx: not installed"));
    }
}
