//! Counters and histograms, and the one place `/metrics` is encoded (OpenMetrics text,
//! by prometheus-client), the families read at scrape time included. Label sets stay
//! bounded: methods are the route table's names (anything else is `other`), reasons and
//! statuses are fixed words, and there is never a client address in a label.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::cache::CacheStatus;
use crate::methods::{self, Lane};
use crate::shared::SharedMetrics;
use crate::websocket::WsMetrics;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: &'static str,
    outcome: &'static str,
    cache: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabel {
    method: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NodeCallLabels {
    method: &'static str,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LaneLabel {
    lane: &'static str,
}

/// Every family's name starts with it.
const PREFIX: &str = "cometgate";

fn latency_histogram() -> Histogram {
    // 100 µs to ~26 s.
    Histogram::new(exponential_buckets(0.0001, 2.0, 19))
}

pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    rejections: Family<ReasonLabel, Counter>,
    node_calls: Family<NodeCallLabels, Counter>,
    node_latency: Family<MethodLabel, Histogram, fn() -> Histogram>,
    lane_wait: Family<LaneLabel, Histogram, fn() -> Histogram>,
    connections_open: Gauge,
    connections_refused: Family<ReasonLabel, Counter>,
    reloads: Family<ReasonLabel, Counter>,
    memory: Memory,
    pub(crate) shared: SharedMetrics,
    pub(crate) ws: WsMetrics,
    next_request_id: AtomicU64,
}

/// The memory budget's gauges and refresh-ahead's counters.
struct Memory {
    upstream_inflight: Gauge,
    upstream_budget: Gauge,
    refreshes: Family<ResultLabel, Counter>,
    previous: Counter,
}

impl Memory {
    fn register(registry: &mut Registry) -> Memory {
        let m = Memory {
            upstream_inflight: Gauge::default(),
            upstream_budget: Gauge::default(),
            refreshes: Family::default(),
            previous: Counter::default(),
        };
        registry.register(
            "upstream_inflight_bytes",
            "Bytes of node answers being read now, reserved in upstream.max_inflight_bytes",
            m.upstream_inflight.clone(),
        );
        registry.register(
            "upstream_inflight_budget_bytes",
            "upstream.max_inflight_bytes",
            m.upstream_budget.clone(),
        );
        registry.register(
            "cache_refreshes",
            "Refresh-ahead fetches at a new block, by result: fetched (the node call), \
             failed (the node call failed), joined (a caller had started it), cached \
             (already stored), refused (by admission, or no longer cacheable)",
            m.refreshes.clone(),
        );
        registry.register(
            "cache_previous",
            "Callers given the previous block's answer while the new one was being fetched \
             (cache.while_refreshing = \"previous\")",
            m.previous.clone(),
        );
        m
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// A method name from the route table, or `other`: keeps label sets bounded.
pub(crate) fn method_label(name: &str) -> &'static str {
    methods::lookup(name).map_or("other", |spec| spec.name)
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix(PREFIX);
        let requests = Family::<RequestLabels, Counter>::default();
        let rejections = Family::<ReasonLabel, Counter>::default();
        let node_calls = Family::<NodeCallLabels, Counter>::default();
        let node_latency =
            Family::<MethodLabel, Histogram, fn() -> Histogram>::new_with_constructor(
                latency_histogram,
            );
        let lane_wait = Family::<LaneLabel, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_histogram,
        );
        let connections_open = Gauge::default();
        let connections_refused = Family::<ReasonLabel, Counter>::default();
        let reloads = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "requests",
            "Calls answered, by method, outcome and cache status",
            requests.clone(),
        );
        registry.register(
            "rejections",
            "Calls or requests refused, by reason",
            rejections.clone(),
        );
        registry.register(
            "node_requests",
            "Calls sent to the node, by method and result",
            node_calls.clone(),
        );
        registry.register(
            "node_request_duration_seconds",
            "Node latency by method",
            node_latency.clone(),
        );
        registry.register(
            "lane_wait_seconds",
            "Time spent waiting for a lane slot",
            lane_wait.clone(),
        );
        registry.register(
            "connections_open",
            "Client connections open now",
            connections_open.clone(),
        );
        registry.register(
            "connections_refused",
            "Connections closed at accept, by cap",
            connections_refused.clone(),
        );
        registry.register(
            "config_reloads",
            "Config reloads, by result",
            reloads.clone(),
        );
        let memory = Memory::register(&mut registry);
        let shared = SharedMetrics::register(&mut registry);
        let ws = WsMetrics::register(&mut registry);
        Metrics {
            registry,
            requests,
            rejections,
            node_calls,
            node_latency,
            lane_wait,
            connections_open,
            connections_refused,
            reloads,
            memory,
            shared,
            ws,
            next_request_id: AtomicU64::new(1),
        }
    }

    pub(crate) fn next_request_id(&self) -> u64 {
        self.next_request_id.fetch_add(1, Ordering::Relaxed)
    }

    pub fn request(&self, method: &str, error: bool, cache: CacheStatus) {
        let labels = RequestLabels {
            method: method_label(method),
            outcome: if error { "error" } else { "ok" },
            cache: cache.as_str(),
        };
        self.requests.get_or_create(&labels).inc();
    }

    pub fn rejected(&self, reason: &'static str) {
        self.rejections.get_or_create(&ReasonLabel { reason }).inc();
    }

    pub(crate) fn node_call(&self, method: &'static str, elapsed: Duration, ok: bool) {
        let result = if ok { "ok" } else { "error" };
        self.node_calls
            .get_or_create(&NodeCallLabels { method, result })
            .inc();
        self.node_latency
            .get_or_create(&MethodLabel { method })
            .observe(elapsed.as_secs_f64());
    }

    pub(crate) fn lane_waited(&self, lane: Lane, waited: Duration) {
        self.lane_wait
            .get_or_create(&LaneLabel {
                lane: lane.as_str(),
            })
            .observe(waited.as_secs_f64());
    }

    pub(crate) fn connection_opened(&self) {
        self.connections_open.inc();
    }

    pub(crate) fn connection_closed(&self) {
        self.connections_open.dec();
    }

    pub(crate) fn connection_refused(&self, reason: &'static str) {
        self.connections_refused
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }

    /// The gauge the upstream's budget keeps at the bytes it has reserved, and the
    /// budget itself, exported beside it.
    pub(crate) fn upstream_inflight(&self, budget: u64) -> Gauge {
        let m = &self.memory;
        m.upstream_budget
            .set(i64::try_from(budget).unwrap_or(i64::MAX));
        m.upstream_inflight.clone()
    }

    /// One refresh-ahead fetch: "fetched", "joined", "cached" or "refused".
    pub(crate) fn refreshed(&self, result: &'static str) {
        self.memory
            .refreshes
            .get_or_create(&ResultLabel { result })
            .inc();
    }

    pub(crate) fn previous_served(&self) {
        self.memory.previous.inc();
    }

    pub fn reloaded(&self, ok: bool) {
        let reason = if ok { "ok" } else { "rejected" };
        self.reloads.get_or_create(&ReasonLabel { reason }).inc();
    }

    /// The whole exposition in OpenMetrics text: `live`, the families read from the
    /// components at scrape time, then the counters and histograms kept here.
    ///
    /// `live` goes into a registry made for this scrape rather than into the one kept
    /// here: it reads the gateway, which owns these metrics, so registering it for good
    /// would make a reference cycle (and this module depend on the gateway).
    pub fn encode(&self, out: &mut String, live: Box<dyn Collector>) {
        let mut scrape = Registry::with_prefix(PREFIX);
        scrape.register_collector(live);
        // Writing into a String cannot fail.
        let _ = encode_registry(out, &scrape);
        let _ = encode_registry(out, &self.registry);
        let _ = encode_eof(out);
    }
}
