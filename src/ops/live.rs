//! Families read from the components at scrape time (cache, lanes, head, process)
//! rather than counted a second time on the request path.

use std::fmt::Write as _;

use crate::gateway::Gateway;

/// One metric family in the text format; `samples` are (labels, value), labels already
/// rendered as `lane="heavy"` or empty.
fn family(out: &mut String, name: &str, kind: &str, help: &str, samples: &[(&str, f64)]) {
    let _ = writeln!(out, "# HELP cometgate_{name} {help}");
    let _ = writeln!(out, "# TYPE cometgate_{name} {kind}");
    let suffix = if kind == "counter" { "_total" } else { "" };
    for (labels, value) in samples {
        if labels.is_empty() {
            let _ = writeln!(out, "cometgate_{name}{suffix} {value}");
        } else {
            let _ = writeln!(out, "cometgate_{name}{suffix}{{{labels}}} {value}");
        }
    }
}

pub(super) fn write(gw: &Gateway, out: &mut String) {
    let head = gw.head();
    family(
        out,
        "head_height",
        "gauge",
        "Latest block height seen from the node",
        &[("", head.height().unwrap_or(0) as f64)],
    );
    let age = head.age().map_or(-1.0, |d| d.as_secs_f64());
    family(
        out,
        "head_age_seconds",
        "gauge",
        "Time since the head last advanced (-1: never seen)",
        &[("", age)],
    );
    let up = !gw.breaker().holding_off() && !head.blind();
    family(
        out,
        "node_up",
        "gauge",
        "1 when the node answers and its head advances",
        &[("", f64::from(u8::from(up)))],
    );
    let open = f64::from(u8::from(gw.breaker().holding_off()));
    family(
        out,
        "circuit_open",
        "gauge",
        "1 while the circuit breaker keeps calls off the node",
        &[("", open)],
    );
    if let Some(rss) = super::process_rss() {
        family(
            out,
            "process_resident_memory_bytes",
            "gauge",
            "Resident set size of this process",
            &[("", rss.as_u64() as f64)],
        );
    }

    let lanes = gw.admission().snapshot();
    let per_lane = |f: fn(&crate::admission::LaneSnapshot) -> usize| {
        [
            ("lane=\"light\"", f(&lanes.light) as f64),
            ("lane=\"heavy\"", f(&lanes.heavy) as f64),
        ]
    };
    family(
        out,
        "lane_in_flight",
        "gauge",
        "Node calls in flight, by lane",
        &per_lane(|l| l.in_flight),
    );
    family(
        out,
        "lane_queued",
        "gauge",
        "Calls waiting for a lane slot, by lane",
        &per_lane(|l| l.queued),
    );
    family(
        out,
        "lane_capacity",
        "gauge",
        "Lane slots, by lane",
        &per_lane(|l| l.capacity),
    );
    family(
        out,
        "rate_limited_clients",
        "gauge",
        "Clients with rate-limit state",
        &[("", lanes.tracked_clients as f64)],
    );
    family(
        out,
        "websocket_connections",
        "gauge",
        "Client websocket connections open",
        &[("", lanes.ws_connections as f64)],
    );

    let cache = gw.cache().stats();
    family(
        out,
        "cache_entries",
        "gauge",
        "Entries in the cache",
        &[("", cache.entries as f64)],
    );
    family(
        out,
        "cache_bytes",
        "gauge",
        "Weighted bytes in the cache (at most cache.max_bytes)",
        &[("", cache.weighted_bytes as f64)],
    );
    family(
        out,
        "cache_max_bytes",
        "gauge",
        "cache.max_bytes",
        &[("", cache.max_bytes as f64)],
    );
    family(
        out,
        "cache_in_flight",
        "gauge",
        "Distinct fetches in flight (coalescing leaders)",
        &[("", cache.in_flight as f64)],
    );
    family(
        out,
        "cache_hits",
        "counter",
        "Answers served from the cache",
        &[("", cache.hits as f64)],
    );
    family(
        out,
        "cache_misses",
        "counter",
        "Lookups that went to the node",
        &[("", cache.misses as f64)],
    );
    family(
        out,
        "cache_coalesced",
        "counter",
        "Followers that shared another caller's fetch",
        &[("", cache.coalesced as f64)],
    );
    family(
        out,
        "cache_stale",
        "counter",
        "Stale answers served while the node failed",
        &[("", cache.stale as f64)],
    );
    family(
        out,
        "cache_bypass",
        "counter",
        "Calls whose answers are never cached",
        &[("", cache.bypass as f64)],
    );
    family(
        out,
        "cache_evictions",
        "counter",
        "Entries evicted for space",
        &[("", cache.evictions as f64)],
    );
    family(
        out,
        "cache_stores",
        "counter",
        "Answers stored",
        &[("", cache.stores as f64)],
    );
}
