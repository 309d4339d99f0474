//! `WS-FANOUT.md`, `ws-fanout.json` and the latency chart: the figures of each point,
//! then each target with its figure, met or missed.

use std::fmt::Write as _;
use std::path::Path;

use serde_json::json;

use super::scrape::{HISTOGRAM, NAMES};
use super::{Mode, Plan, Point, TXS_PER_BLOCK, TX_BYTES};
use crate::charts::{self, Series};

/// The issue's targets.
const P99_MS: f64 = 50.0;
const RSS_PER_CLIENT_KIB: f64 = 16.0;
const NODE_CONNECTIONS: u64 = 2;
const NODE_SUBSCRIPTIONS_ONE_QUERY: u64 = 1;

const CHART: &str = "ws-fanout-latency.png";

/// One target as measured at one point.
struct Verdict {
    goal: String,
    figure: String,
    met: bool,
}

fn verdicts(p: &Point) -> Vec<Verdict> {
    let d = &p.delivery;
    let every = p.subscribed == p.clients && d.in_order == p.subscribed && d.closed_early == 0;
    let own = d.bad_id_frames == 0 && d.bad_query_frames == 0 && d.frames_without_height == 0;
    let mut v = vec![
        Verdict {
            goal: "every client receives every block, in order".into(),
            figure: format!(
                "{} of {} subscribed, {} in order over {} blocks, {} closed early",
                p.subscribed,
                p.clients,
                d.in_order,
                d.blocks(),
                d.closed_early
            ),
            met: every,
        },
        Verdict {
            goal: "each frame carries the client's own id and query".into(),
            figure: format!(
                "{} wrong id, {} wrong query, {} not events",
                d.bad_id_frames, d.bad_query_frames, d.frames_without_height
            ),
            met: own,
        },
        Verdict {
            goal: format!("delivery p99 ≤ {P99_MS} ms"),
            figure: format!("{:.1} ms", d.p99_ms),
            met: d.samples > 0 && d.p99_ms <= P99_MS,
        },
    ];
    if p.queries == 1 {
        // Every subscription the node holds counts, under whatever text the gateway sent
        // it (it may normalise the client's, or share its head tracker's).
        let subs = p.node_during.subscriptions;
        v.push(Verdict {
            goal: format!("node sees ≤ {NODE_CONNECTIONS} websocket connections"),
            figure: p.node_during.connections.to_string(),
            met: p.node_during.connections <= NODE_CONNECTIONS,
        });
        v.push(Verdict {
            goal: format!("node holds {NODE_SUBSCRIPTIONS_ONE_QUERY} subscription for the query"),
            figure: format!("{subs} ({})", by_query(&p.node_during.per_query)),
            met: subs <= NODE_SUBSCRIPTIONS_ONE_QUERY,
        });
        v.push(Verdict {
            goal: format!("gateway RSS per subscribed client ≤ {RSS_PER_CLIENT_KIB} KiB"),
            figure: format!("{:.1} KiB", p.rss_per_client_kib()),
            met: p.rss_per_client_kib() <= RSS_PER_CLIENT_KIB,
        });
    } else {
        v.push(Verdict {
            goal: format!("node holds ≤ {} subscriptions", p.queries),
            figure: p.node_during.subscriptions.to_string(),
            met: p.node_during.subscriptions <= p.queries as u64,
        });
    }
    v
}

/// `text: n` for each query the node holds, as the gateway spelled it.
fn by_query(per_query: &std::collections::BTreeMap<String, u64>) -> String {
    let parts: Vec<String> = per_query
        .iter()
        .take(3)
        .map(|(q, n)| format!("`{q}`: {n}"))
        .collect();
    let more = per_query.len().saturating_sub(3);
    match more {
        0 => parts.join(", "),
        _ => format!("{}, {more} more queries", parts.join(", ")),
    }
}

fn mark(met: bool) -> &'static str {
    if met {
        "**met**"
    } else {
        "**missed**"
    }
}

fn yes(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "**no**"
    }
}

/// Writes the three files into `out`; returns the markdown and the JSON for `lean`.
pub fn write(
    out: &Path,
    plan: &Plan,
    points: &[Point],
) -> Result<(String, serde_json::Value), String> {
    std::fs::create_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))?;
    let chart = draw(out, points);
    let md = markdown(plan, points, chart);
    let value = to_json(plan, points);
    let text = serde_json::to_string_pretty(&value).map_err(|e| e.to_string())?;
    std::fs::write(out.join("ws-fanout.json"), text + "\n").map_err(|e| e.to_string())?;
    let page = format!("# cometgate: websocket fan-out\n{md}");
    std::fs::write(out.join("WS-FANOUT.md"), page).map_err(|e| e.to_string())?;
    Ok((md, value))
}

/// p50 and p99 against clients, on one query; `false` when there is nothing to draw or
/// drawing failed (said on stderr).
fn draw(out: &Path, points: &[Point]) -> bool {
    let one: Vec<&Point> = points.iter().filter(|p| p.queries == 1).collect();
    let line = |name: &str, f: fn(&Point) -> f64| Series {
        name: name.into(),
        points: one.iter().map(|p| (p.clients as f64, f(p))).collect(),
    };
    let series = [
        line("p50", |p| p.delivery.p50_ms),
        line("p99", |p| p.delivery.p99_ms),
    ];
    if one.is_empty() {
        return false;
    }
    let target = format!("target: p99 ≤ {P99_MS} ms");
    let drawn = charts::lines(
        &out.join(CHART),
        "ws-fanout: delivery latency, node frame to client",
        (
            "clients subscribed to tm.event='NewBlock'",
            "delivery latency (ms)",
        ),
        &series,
        Some((P99_MS, &target)),
    );
    drawn.map_err(|e| eprintln!("{e}")).is_ok()
}

fn markdown(plan: &Plan, points: &[Point], chart: bool) -> String {
    let mut md = String::new();
    let mode = match plan.mode {
        Mode::Fanout => "fan-out",
        Mode::Relay => "relay (today's: one node websocket per client), not fan-out",
        Mode::Floor => "none: `ws-floor`, one node subscription written to every client and nothing else, the floor for any fan-out on this machine",
    };
    let frame = points.first().map_or(0, |p| p.frame_bytes);
    let _ = write!(
        md,
        "\n## Websocket fan-out (`ws-fanout`)\n\n\
         Written by `cometgate-load lean --only ws-fanout{}`. Gateway mode: **{mode}**. \
         A fresh simulated node per point: 1 block a second, {TXS_PER_BLOCK} txs of \
         {TX_BYTES} bytes, NewBlock frames of {frame} bytes. Every client opens its own \
         websocket to the gateway's `/websocket` and subscribes with its own id (numbers \
         and strings alternate); a reference subscriber on the node itself, on a thread \
         of its own, stands for the instant the node sent each block. Delivery latency of \
         a (client, block) is the client's read of the frame less the reference's, over \
         the {} blocks after the last client subscribed; the load, the gateway and the \
         node share one 2-core machine, so the clients' own reading is in it too. RSS per \
         client: the gateway's VmRSS {} blocks after the last subscription less before any \
         client, over the clients. The node's counts leave the reference out; \
         \"before\" is the gateway's own, before any client (its head tracker). Where the \
         node holds one connection per client (relay), it writes the reference's frame \
         among as many others, so a client can read its block first: latencies below \
         zero.\n\n",
        if plan.quick { " --quick" } else { "" },
        plan.blocks,
        super::SETTLE_BLOCKS,
    );
    let _ = writeln!(md, "```toml\n{}```\n", plan.sections);
    md.push_str(
        "| clients | queries | subscribed | connect s | blocks | every block in order | own id & query | \
         p50 ms | p99 ms | max ms | last client p50 ms | node ws connections (before) | \
         node subscriptions (before) | RSS before MiB | RSS/client KiB | frames identical to the node's |\n\
         |--:|--:|--:|--:|--:|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n",
    );
    for p in points {
        let d = &p.delivery;
        let _ = writeln!(
            md,
            "| {} | {} | {} | {:.1} | {} | {} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {} ({}) | {} ({}) | {:.1} | {:.1} | {}/{} |",
            p.clients,
            p.queries,
            p.subscribed,
            p.connect_seconds,
            d.blocks(),
            yes(p.subscribed == p.clients && d.in_order == p.subscribed && d.closed_early == 0),
            yes(d.bad_id_frames == 0 && d.bad_query_frames == 0 && d.frames_without_height == 0),
            d.p50_ms,
            d.p99_ms,
            d.max_ms,
            d.last_client_p50_ms,
            p.node_during.connections,
            p.node_before.connections,
            p.node_during.subscriptions,
            p.node_before.subscriptions,
            p.rss_before as f64 / 1048576.0,
            p.rss_per_client_kib(),
            d.frames_identical,
            d.frames_compared,
        );
    }
    targets(&mut md, points);
    problems(&mut md, points);
    metrics(&mut md, points);
    if chart {
        let _ = writeln!(md, "\n![delivery latency against clients]({CHART})");
    }
    md
}

fn targets(md: &mut String, points: &[Point]) {
    md.push_str("\n| clients × queries | target | measured | result |\n|---|---|---|---|\n");
    for p in points {
        for v in verdicts(p) {
            let _ = writeln!(
                md,
                "| {} × {} | {} | {} | {} |",
                p.clients,
                p.queries,
                v.goal,
                v.figure,
                mark(v.met)
            );
        }
    }
}

/// The first problem of each kind, where a point had one.
fn problems(md: &mut String, points: &[Point]) {
    for p in points {
        let d = &p.delivery;
        let found = [
            p.subscribe_errors
                .first()
                .map(|e| format!("subscribe failed: {e}")),
            d.first_problem.clone(),
            d.first_close.as_ref().map(|c| format!("closed early: {c}")),
            d.first_bad_frame
                .as_ref()
                .map(|f| format!("bad frame: `{f}`")),
        ];
        for text in found.into_iter().flatten() {
            let _ = writeln!(
                md,
                "\n- {} × {}: {}",
                p.clients,
                p.queries,
                text.replace('\n', " ")
            );
        }
    }
}

fn metrics(md: &mut String, points: &[Point]) {
    md.push_str(
        "\nThe gateway's `/metrics` after the settling blocks (gauges) and at the end \
         (counters, histogram); \"absent\" where it exports no such name. Names read: ",
    );
    let names: Vec<String> = NAMES
        .iter()
        .chain([&HISTOGRAM])
        .map(|n| format!("`{n}`"))
        .collect();
    md.push_str(&names.join(", "));
    md.push_str(
        ".\n\n\
         | clients × queries | metric | value |\n|---|---|--:|\n",
    );
    for p in points {
        let at = format!("{} × {}", p.clients, p.queries);
        if let Some(e) = &p.metrics_end.error {
            let _ = writeln!(md, "| {at} | (page) | {e} |");
            continue;
        }
        let (during, end) = (&p.metrics_during, &p.metrics_end);
        if during.values.is_empty() && end.values.is_empty() && end.delivery.is_none() {
            let _ = writeln!(md, "| {at} | every name above | absent |");
            continue;
        }
        for name in NAMES {
            let source = if name.ends_with("_total") {
                &p.metrics_end
            } else {
                &p.metrics_during
            };
            let value = source
                .values
                .get(name)
                .map_or("absent".into(), |v| format!("{v}"));
            let _ = writeln!(md, "| {at} | `{name}` | {value} |");
        }
        let hist = p
            .metrics_end
            .delivery
            .as_ref()
            .map_or("absent".into(), |h| {
                if h.count <= 0.0 {
                    return "0 writes".to_string();
                }
                let le = |v: Option<f64>| v.map_or("+Inf".into(), |s| format!("{:.1} ms", s * 1e3));
                format!(
                    "{} writes, mean {:.2} ms, p50 ≤ {}, p99 ≤ {}",
                    h.count,
                    h.sum_seconds * 1e3 / h.count.max(1.0),
                    le(h.p50_le_seconds),
                    le(h.p99_le_seconds)
                )
            });
        let _ = writeln!(md, "| {at} | `{HISTOGRAM}` | {hist} |");
    }
}

fn to_json(plan: &Plan, points: &[Point]) -> serde_json::Value {
    json!({
        "mode": plan.mode,
        "quick": plan.quick,
        "blocks_measured": plan.blocks,
        "gateway_sections": plan.sections,
        "node": {"block_interval_ms": 1000, "txs_per_block": TXS_PER_BLOCK, "tx_bytes": TX_BYTES},
        "points": points.iter().map(|p| json!({
            "figures": p,
            "rss_per_client_kib": p.rss_per_client_kib(),
            "targets": verdicts(p).iter().map(|v| json!({
                "goal": v.goal, "measured": v.figure, "met": v.met,
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    })
}
