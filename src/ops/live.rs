//! Families read from the components at scrape time (cache, lanes, head, process)
//! rather than counted a second time on the request path.

use std::fmt;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeGaugeValue, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;

use crate::admission::LaneSnapshot;
use crate::gateway::Gateway;
use crate::guard::GuardState;

/// The gateway's live state as metric families, read anew at each scrape.
pub(super) struct Live(pub(super) Arc<Gateway>);

impl fmt::Debug for Live {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Live")
    }
}

impl Collector for Live {
    fn encode(&self, mut out: DescriptorEncoder) -> fmt::Result {
        head(&self.0, &mut out)?;
        super::nodes::metrics(&self.0, &mut out)?;
        process(&mut out)?;
        lanes(&self.0, &mut out)?;
        guard(&self.0, &mut out)?;
        counter(
            &mut out,
            "log_lines_dropped",
            "Log lines dropped because the log writer could not keep up",
            crate::logging::dropped_lines(),
        )?;
        cache(&self.0, &mut out)
    }
}

fn gauge(
    out: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: impl EncodeGaugeValue,
) -> fmt::Result {
    let metric = out.encode_descriptor(name, help, None, MetricType::Gauge)?;
    ConstGauge::new(value).encode(metric)
}

fn counter(out: &mut DescriptorEncoder, name: &str, help: &str, value: u64) -> fmt::Result {
    let metric = out.encode_descriptor(name, help, None, MetricType::Counter)?;
    ConstCounter::new(value).encode(metric)
}

/// One gauge family of counts with a sample per lane.
fn per_lane(
    out: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    both: (&LaneSnapshot, &LaneSnapshot),
    value: fn(&LaneSnapshot) -> usize,
) -> fmt::Result {
    let gauge = |l: &LaneSnapshot| ConstGauge::new(value(l) as u64);
    per_lane_metric(out, (name, help, MetricType::Gauge), both, gauge)
}

/// One family of any metric type with a sample per lane.
fn per_lane_metric<M: EncodeMetric>(
    out: &mut DescriptorEncoder,
    (name, help, kind): (&str, &str, MetricType),
    (light, heavy): (&LaneSnapshot, &LaneSnapshot),
    value: impl Fn(&LaneSnapshot) -> M,
) -> fmt::Result {
    let mut metric = out.encode_descriptor(name, help, None, kind)?;
    for (lane, snapshot) in [("light", light), ("heavy", heavy)] {
        let labels = [("lane", lane)];
        value(snapshot).encode(metric.encode_family(&labels)?)?;
    }
    Ok(())
}

fn guard(gw: &Gateway, out: &mut DescriptorEncoder) -> fmt::Result {
    let g = gw.guard().snapshot();
    gauge(
        out,
        "node_memory_bytes",
        "The node's resident memory at the guard's last good read (0: none)",
        g.node_memory_bytes,
    )?;
    gauge(
        out,
        "node_guard_heavy_call_bytes",
        "What one heavy call was seen to add to the node's memory (0: not yet measured)",
        g.heavy_call_bytes,
    )?;
    let mut metric = out.encode_descriptor(
        "node_guard_state",
        "1 for the node guard's current state: off, blind (cannot read; acts as off), watching or shedding",
        None,
        MetricType::Gauge,
    )?;
    for state in [
        GuardState::Off,
        GuardState::Blind,
        GuardState::Watching,
        GuardState::Shedding,
    ] {
        let labels = [("state", state.as_str())];
        ConstGauge::new(i64::from(g.state == state)).encode(metric.encode_family(&labels)?)?;
    }
    let metric = out.encode_descriptor(
        "node_guard_shedding_seconds",
        "Time the node guard has kept heavy calls from starting",
        None,
        MetricType::Counter,
    )?;
    ConstCounter::new(g.shedding_seconds).encode(metric)
}

fn head(gw: &Gateway, out: &mut DescriptorEncoder) -> fmt::Result {
    let head = gw.head();
    gauge(
        out,
        "head_height",
        "Latest block height seen from the node",
        head.height().unwrap_or(0),
    )?;
    gauge(
        out,
        "head_age_seconds",
        "Time since the head last advanced (-1: never seen)",
        head.age().map_or(-1.0, |d| d.as_secs_f64()),
    )?;
    let holding_off = gw.pool().holding_off();
    gauge(
        out,
        "node_up",
        "1 when the node answers status over HTTP, its head advances and the circuit is closed",
        i64::from(!holding_off && !head.blind() && head.rpc_failure().is_none()),
    )?;
    gauge(
        out,
        "circuit_open",
        "1 while the circuit breaker keeps calls off the node",
        i64::from(holding_off),
    )
}

/// Absent where the platform has no /proc: a made-up zero would read as a leak fixed.
fn process(out: &mut DescriptorEncoder) -> fmt::Result {
    let Some(rss) = super::process_rss() else {
        return Ok(());
    };
    gauge(
        out,
        "process_resident_memory_bytes",
        "Resident set size of this process",
        rss.as_u64(),
    )
}

fn lanes(gw: &Gateway, out: &mut DescriptorEncoder) -> fmt::Result {
    let s = gw.admission().snapshot();
    let both = (&s.light, &s.heavy);
    per_lane(
        out,
        "lane_in_flight",
        "Node calls in flight, by lane",
        both,
        |l| l.in_flight,
    )?;
    per_lane(
        out,
        "lane_queued",
        "Calls waiting for a lane slot, by lane",
        both,
        |l| l.queued,
    )?;
    per_lane(out, "lane_capacity", "Lane slots, by lane", both, |l| {
        l.ceiling
    })?;
    per_lane(
        out,
        "lane_limit",
        "Node calls a lane lets run at once now: the adaptive limit, or max_concurrency",
        both,
        |l| l.capacity,
    )?;
    per_lane(
        out,
        "lane_guard_hold",
        "Node calls the node guard lets a lane run at once, for the node's memory (the lane's ceiling when it holds nothing back)",
        both,
        |l| l.hold.unwrap_or(l.ceiling),
    )?;
    per_lane(
        out,
        "lane_paused",
        "1 while the node guard keeps a lane from starting calls",
        both,
        |l| usize::from(l.paused),
    )?;
    per_lane_metric(
        out,
        (
            "lane_express_starts",
            "Calls started one past a lane's adaptive limit for a client owed node time, which borrow the next freed slot",
            MetricType::Counter,
        ),
        both,
        |l| ConstCounter::new(l.express_starts),
    )?;
    per_lane_metric(
        out,
        (
            "lane_latency_seconds",
            "Node time of a lane's calls, smoothed (what its adaptive limit and fair queue see)",
            MetricType::Gauge,
        ),
        both,
        |l| ConstGauge::new(l.latency.unwrap_or(0.0)),
    )?;
    clients(&s, out)
}

/// Admission's per-client state.
fn clients(s: &crate::admission::AdmissionSnapshot, out: &mut DescriptorEncoder) -> fmt::Result {
    gauge(
        out,
        "rate_limited_clients",
        "Clients with rate-limit state",
        s.tracked_clients as u64,
    )?;
    gauge(
        out,
        "websocket_connections",
        "Client websocket connections open",
        s.ws_connections as u64,
    )?;
    counter(
        out,
        "untrusted_forwarding_requests",
        "Requests from a loopback or private address not in rate_limit.trusted_proxies that \
         carried a forwarding header: a proxy that is not trusted, whose clients all count as \
         its one address",
        s.untrusted_forwarding,
    )
}

fn cache(gw: &Gateway, out: &mut DescriptorEncoder) -> fmt::Result {
    let c = gw.cache().stats();
    gauge(out, "cache_entries", "Entries in the cache", c.entries)?;
    gauge(
        out,
        "cache_bytes",
        "Weighted bytes in the cache (at most cache.max_bytes)",
        c.weighted_bytes,
    )?;
    gauge(out, "cache_max_bytes", "cache.max_bytes", c.max_bytes)?;
    gauge(
        out,
        "cache_in_flight",
        "Distinct fetches in flight (coalescing leaders)",
        c.in_flight as u64,
    )?;
    let counters: [(&str, &str, u64); 7] = [
        ("cache_hits", "Answers served from the cache", c.hits),
        ("cache_misses", "Lookups that went to the node", c.misses),
        (
            "cache_coalesced",
            "Followers that shared another caller's fetch",
            c.coalesced,
        ),
        (
            "cache_stale",
            "Stale answers served while the node failed",
            c.stale,
        ),
        (
            "cache_bypass",
            "Calls whose answers are never cached",
            c.bypass,
        ),
        ("cache_evictions", "Entries evicted for space", c.evictions),
        ("cache_stores", "Answers stored", c.stores),
    ];
    for (name, help, value) in counters {
        counter(out, name, help, value)?;
    }
    Ok(())
}
