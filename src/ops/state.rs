//! `GET /admin/state`: the live page's data, and a script's. Every field is documented
//! in the README's "The live page and /admin/state"; a change here is a change there.

use std::time::Instant;

use serde_json::{json, Map, Value};

use crate::admission::{ClientKey, ClientUse, LaneSnapshot};
use crate::breaker::BreakerState;
use crate::config::LaneConfig;
use crate::gateway::Gateway;
use crate::recent::{Reasons, Scope, Totals, Window, POINT_TICKS};

/// Clients the page lists. The table behind it keeps more (`admission::usage::TRACKED`)
/// so that a client climbing into the list was already being counted.
pub(crate) const TOP_CLIENTS: usize = 50;

/// Bumped when a field changes meaning or goes away; added fields do not bump it.
const VERSION: u32 = 1;

pub(super) fn state(gw: &Gateway) -> Value {
    let now = Instant::now();
    let window = gw.recent().minute(gw.cache_counts(), now);
    json!({
        "version": VERSION,
        "window_seconds": window.span.as_secs_f64(),
        "gateway": {
            "version": env!("CARGO_PKG_VERSION"),
            "resident_memory_bytes": super::process_rss().map(|b| b.as_u64()),
        },
        "nodes": nodes(gw, &window),
        "lanes": lanes(gw, &window.totals),
        "refusals_outside_lanes": reasons(window.totals.refusals(Scope::Other)),
        "clients": clients(gw),
        "cache": cache(gw, &window.totals),
        "history": history(gw, now),
    })
}

/// One entry per node. With one node it is the gateway's own view of it; with several,
/// each entry is that node's (its head, lag, breaker, calls in flight, why it is not
/// asked), and the last-minute call figures, which are the pool's, are left out.
fn nodes(gw: &Gateway, window: &Window) -> Value {
    let pooled = node(gw, window);
    let nodes = gw.pool().snapshot();
    if nodes.len() == 1 {
        return json!([pooled]);
    }
    let entries = nodes.into_iter().map(|n| {
        let mut entry = pooled.clone();
        let own = json!({
            "url": n.url,
            "up": n.eligible,
            "problems": n.why_not.into_iter().collect::<Vec<_>>(),
            "head_height": n.latest_height,
            "lag_blocks": n.lag,
            "catching_up": n.catching_up,
            "chain_id": n.chain_id,
            "in_flight": n.in_flight,
            "breaker": n.breaker,
            "node_calls": null,
            "latency_p50_seconds": null,
            "latency_p99_seconds": null,
            "latency_ewma_seconds": n.latency_ms / 1000.0,
            "calls_total": n.calls,
        });
        if let (Some(entry), Value::Object(own)) = (entry.as_object_mut(), own) {
            entry.extend(own);
        }
        entry
    });
    Value::Array(entries.collect())
}

/// The nodes as one: the gateway's head, their breakers together, the pool's calls.
fn node(gw: &Gateway, window: &Window) -> Value {
    let head = gw.head();
    let admission = gw.admission().snapshot();
    let guard = gw.guard().snapshot();
    let nodes = gw.pool().snapshot();
    let latency = &window.totals.node_latency;
    let breaker = match gw.pool().breaker_state() {
        BreakerState::Closed => "closed",
        BreakerState::Open => "open",
        BreakerState::HalfOpen => "half_open",
    };
    let problems = super::node_problems(gw);
    json!({
        "url": nodes.first().map(|n| n.url.clone()),
        "up": problems.is_empty(),
        "problems": problems,
        "head_height": head.height(),
        "head_age_seconds": head.age().map(|d| d.as_secs_f64()),
        "lag_blocks": head.height().map(|_| 0),
        "catching_up": head.catching_up(),
        "chain_id": head.chain_id(),
        "in_flight": admission.light.in_flight + admission.heavy.in_flight,
        "node_calls": window.totals.node_calls,
        "latency_p50_seconds": latency.quantile(0.5),
        "latency_p99_seconds": latency.quantile(0.99),
        "breaker": breaker,
        "guard": {
            "state": guard.state.as_str(),
            "node_memory_bytes": (guard.node_memory_bytes > 0).then_some(guard.node_memory_bytes),
            "memory_limit_bytes": (guard.memory_limit_bytes > 0).then_some(guard.memory_limit_bytes),
            "shedding_seconds": guard.shedding_seconds,
            "heavy_call_bytes": (guard.heavy_call_bytes > 0).then_some(guard.heavy_call_bytes),
        },
    })
}

fn lanes(gw: &Gateway, totals: &Totals) -> Value {
    let s = gw.admission().snapshot();
    let config = gw.config();
    let lanes = [
        ("light", &s.light, Scope::Light, &config.lanes.light),
        ("heavy", &s.heavy, Scope::Heavy, &config.lanes.heavy),
    ];
    Value::Array(
        lanes
            .into_iter()
            .map(|(name, snap, scope, cfg)| lane(name, snap, cfg, totals, scope))
            .collect(),
    )
}

fn lane(name: &str, snap: &LaneSnapshot, cfg: &LaneConfig, totals: &Totals, scope: Scope) -> Value {
    let wait = totals.lane_wait(scope).copied().unwrap_or_default();
    json!({
        "name": name,
        "limit": snap.capacity,
        "max_concurrency": snap.ceiling,
        "adaptive": cfg.adaptive,
        "in_flight": snap.in_flight,
        "queued": snap.queued + snap.waiting_for_share,
        "max_queue": snap.max_queue,
        "paused": snap.paused,
        "guard_hold": snap.hold,
        "latency_seconds": snap.latency,
        "waits": wait.total(),
        "wait_p50_seconds": wait.quantile(0.5),
        "wait_p99_seconds": wait.quantile(0.99),
        "refusals": reasons(totals.refusals(scope)),
    })
}

fn reasons(list: &Reasons) -> Value {
    let map: Map<String, Value> = list
        .iter()
        .map(|(reason, n)| ((*reason).to_owned(), json!(n)))
        .collect();
    Value::Object(map)
}

fn clients(gw: &Gateway) -> Value {
    let view = gw.admission().top_clients(TOP_CLIENTS);
    let config = gw.config();
    let top: Vec<Value> = view
        .top
        .iter()
        .map(|c| client(c, view.node_seconds, &config.rate_limit.api_keys))
        .collect();
    json!({
        "window_seconds": view.window.as_secs_f64(),
        "node_seconds": view.node_seconds,
        "node_calls": view.node_calls,
        "refusals": view.refusals,
        "tracked": view.tracked,
        "capacity": view.capacity,
        "top": top,
    })
}

/// An API key is shown as its place in `rate_limit.api_keys`, never as itself.
fn client(c: &ClientUse, total: f64, api_keys: &[crate::config::ApiKeyQuota]) -> Value {
    let (kind, name) = match &c.client {
        ClientKey::Ip(ip) if ip.is_ipv6() => ("ip", format!("{ip}/64")),
        ClientKey::Ip(ip) => ("ip", ip.to_string()),
        ClientKey::Local(ip) => ("local", ip.to_string()),
        ClientKey::ApiKey(key) => (
            "api_key",
            api_keys
                .iter()
                .position(|q| q.key == **key)
                .map_or("api key (no longer configured)".into(), |i| {
                    format!("rate_limit.api_keys[{i}]")
                }),
        ),
    };
    json!({
        "client": name,
        "kind": kind,
        "node_seconds": c.node_seconds,
        "node_calls": c.node_calls,
        "refusals": c.refusals,
        "share": (total > 0.0).then(|| c.node_seconds / total),
    })
}

fn cache(gw: &Gateway, totals: &Totals) -> Value {
    let s = gw.cache().stats();
    let w = &totals.cache;
    json!({
        "hit_ratio": totals.hit_ratio(),
        "hits": w.hits,
        "misses": w.misses,
        "coalesced": w.coalesced,
        "stale": w.stale,
        "entries": s.entries,
        "bytes": s.weighted_bytes,
        "max_bytes": s.max_bytes,
        "in_flight": s.in_flight,
        "chain_generation": gw.head().chain_generation(),
        "since_start": {
            "hits": s.hits,
            "misses": s.misses,
            "coalesced": s.coalesced,
            "stale": s.stale,
            "evictions": s.evictions,
        },
    })
}

fn history(gw: &Gateway, now: Instant) -> Value {
    let points: Vec<Value> = gw
        .recent()
        .points()
        .iter()
        .map(|p| {
            json!({
                "seconds_ago": now.saturating_duration_since(p.end).as_secs_f64(),
                "requests_per_second": p.requests_per_second,
                "node_calls_per_second": p.node_calls_per_second,
                "hit_ratio": p.hit_ratio,
                "p99_seconds": p.p99_seconds,
            })
        })
        .collect();
    json!({
        "step_seconds": (crate::recent::TICK * POINT_TICKS as u32).as_secs_f64(),
        "max_points": crate::recent::POINTS,
        "points": points,
    })
}
