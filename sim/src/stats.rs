//! What the node observed. Totals are atomics; the per-key maps sit behind one mutex so a
//! snapshot is consistent and nothing is lost to races.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

/// A snapshot of the counters, served as JSON at `GET /_simnode/stats`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    pub total_requests: u64,
    pub per_method: BTreeMap<String, u64>,
    pub per_request: BTreeMap<String, u64>,
    pub peak_inflight: u64,
    pub peak_inflight_per_method: BTreeMap<String, u64>,
    pub inflight: u64,
    pub live_bytes: u64,
    pub peak_bytes: u64,
    pub oom: bool,
    pub down: bool,
    pub height: u64,
    pub oom_count: u64,
    /// What `/metrics` reports as `process_resident_memory_bytes`: the baseline, the
    /// ballast and `live_bytes`.
    #[serde(default)]
    pub resident_bytes: u64,
    /// Memory held besides answers (`set_ballast`), counted towards the limit.
    #[serde(default)]
    pub ballast_bytes: u64,
    /// `/websocket` connections open now. A gauge, not a count: `reset-counters` leaves it.
    #[serde(default)]
    pub ws_connections: u64,
    /// Subscriptions held now over all websocket connections.
    #[serde(default)]
    pub ws_subscriptions: u64,
    /// Subscriptions held now per query, keyed by the text each client sent (two texts
    /// that mean the same are two subscriptions on CometBFT too).
    #[serde(default)]
    pub ws_subscriptions_per_query: BTreeMap<String, u64>,
}

#[derive(Default)]
struct Maps {
    per_method: BTreeMap<String, u64>,
    per_request: BTreeMap<String, u64>,
    inflight_per_method: BTreeMap<String, u64>,
    peak_inflight_per_method: BTreeMap<String, u64>,
}

#[derive(Default)]
pub(crate) struct Counters {
    total: AtomicU64,
    inflight: AtomicU64,
    peak_inflight: AtomicU64,
    maps: Mutex<Maps>,
}

/// Decrements in-flight counts when a request finishes, whatever path it takes.
pub(crate) struct InflightGuard<'a> {
    counters: &'a Counters,
    method: String,
}

impl Drop for InflightGuard<'_> {
    fn drop(&mut self) {
        self.counters.inflight.fetch_sub(1, Ordering::SeqCst);
        let mut m = self.counters.lock();
        if let Some(n) = m.inflight_per_method.get_mut(&self.method) {
            *n = n.saturating_sub(1);
        }
    }
}

impl Counters {
    fn lock(&self) -> std::sync::MutexGuard<'_, Maps> {
        self.maps.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts one request and marks it in flight until the guard drops.
    pub(crate) fn begin(&self, method: &str, request_key: &str) -> InflightGuard<'_> {
        let mut m = self.lock();
        self.total.fetch_add(1, Ordering::SeqCst);
        let now = self.inflight.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak_inflight.fetch_max(now, Ordering::SeqCst);
        *m.per_method.entry(method.to_string()).or_default() += 1;
        *m.per_request.entry(request_key.to_string()).or_default() += 1;
        let cur = m.inflight_per_method.entry(method.to_string()).or_default();
        *cur += 1;
        let cur = *cur;
        let peak = m
            .peak_inflight_per_method
            .entry(method.to_string())
            .or_default();
        *peak = (*peak).max(cur);
        InflightGuard {
            counters: self,
            method: method.to_string(),
        }
    }

    pub(crate) fn inflight(&self) -> u64 {
        self.inflight.load(Ordering::SeqCst)
    }

    pub(crate) fn requests_for(&self, method: &str) -> u64 {
        self.lock().per_method.get(method).copied().unwrap_or(0)
    }

    /// Clears counts and peaks; requests still in flight keep being tracked.
    pub(crate) fn reset(&self) {
        let mut m = self.lock();
        self.total.store(0, Ordering::SeqCst);
        self.peak_inflight
            .store(self.inflight.load(Ordering::SeqCst), Ordering::SeqCst);
        m.per_method.clear();
        m.per_request.clear();
        m.inflight_per_method.retain(|_, n| *n > 0);
        m.peak_inflight_per_method = m.inflight_per_method.clone();
    }

    pub(crate) fn fill(&self, s: &mut Stats) {
        let m = self.lock();
        s.total_requests = self.total.load(Ordering::SeqCst);
        s.inflight = self.inflight.load(Ordering::SeqCst);
        s.peak_inflight = self.peak_inflight.load(Ordering::SeqCst);
        s.per_method = m.per_method.clone();
        s.per_request = m.per_request.clone();
        s.peak_inflight_per_method = m.peak_inflight_per_method.clone();
    }
}

/// What the node's websocket side holds now: connections and subscriptions per query.
/// Sessions keep it current as they open, subscribe, unsubscribe and end.
#[derive(Default)]
pub(crate) struct WsGauges {
    connections: AtomicU64,
    per_query: Mutex<BTreeMap<String, u64>>,
}

impl WsGauges {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, u64>> {
        self.per_query.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn connected(&self) {
        self.connections.fetch_add(1, Ordering::SeqCst);
    }

    pub(crate) fn disconnected(&self) {
        self.connections.fetch_sub(1, Ordering::SeqCst);
    }

    pub(crate) fn subscribed(&self, query: &str) {
        *self.lock().entry(query.to_string()).or_default() += 1;
    }

    pub(crate) fn unsubscribed(&self, query: &str) {
        let mut m = self.lock();
        if let Some(n) = m.get_mut(query) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                m.remove(query);
            }
        }
    }

    pub(crate) fn fill(&self, s: &mut Stats) {
        s.ws_connections = self.connections.load(Ordering::SeqCst);
        s.ws_subscriptions_per_query = self.lock().clone();
        s.ws_subscriptions = s.ws_subscriptions_per_query.values().sum();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ws_gauges_follow_connections_and_queries() {
        let g = WsGauges::default();
        g.connected();
        g.connected();
        g.subscribed("tm.event='NewBlock'");
        g.subscribed("tm.event='NewBlock'");
        g.subscribed("tm.event='Tx'");
        g.unsubscribed("tm.event='Tx'");
        g.disconnected();
        let mut s = Stats::default();
        g.fill(&mut s);
        assert_eq!((s.ws_connections, s.ws_subscriptions), (1, 2));
        assert_eq!(s.ws_subscriptions_per_query.len(), 1, "emptied queries go");
        assert_eq!(s.ws_subscriptions_per_query["tm.event='NewBlock'"], 2);
    }
}
