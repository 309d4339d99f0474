//! Admission control: whether, as whom and when a call may reach the node.
//!
//! The gateway calls, in order:
//! 1. [`Admission::client_of`] — the client a request is charged to (peer IP, forwarding
//!    headers only from `rate_limit.trusted_proxies`, or a known API key), and whether it
//!    is a local client exempt from the per-client limits (`rate_limit.local_clients`);
//! 2. [`Admission::policy`] — the route's effective policy (refuse with `MethodDenied`
//!    when `!allowed`);
//! 3. [`Admission::check_params`] — parameter caps, clamping where the node clamps and
//!    refusing where it would do the expensive work (the table is in `params.rs`);
//! 4. [`Admission::check_rate`] — the client's cost-weighted GCRA bucket;
//! 5. [`Admission::client_slot`] — the client's concurrent-request cap (RAII);
//! 6. [`Admission::lane_slot`] — only for calls that go to the node (not cache hits):
//!    a lane slot and a slot of the total, queued for a bounded time (RAII).
//!
//! Everything config-driven is swapped whole on [`Admission::reconfigure`]; permits held
//! across a reload stay valid and are released into the new limits. Per-client state
//! stays bounded: concurrency entries vanish at zero, idle rate-limit state is collected
//! every `rate_limit.gc_interval` by [`Admission::spawn_gc`].
//!
//! `rate_limit.enabled = false` switches off both per-client limits (rate and
//! concurrency), for everyone; `rate_limit.local_clients = "unlimited"` switches them off
//! for loopback and private peers that connect directly. Lanes and WebSocket caps always
//! apply.

mod adaptive;
mod client;
mod debt;
mod estimate;
mod fair;
mod gate;
mod glob;
mod lanes;
mod params;
mod policy;
mod query;
mod rate;
mod shares;
mod slots;
mod usage;
mod ws;

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use governor::clock::DefaultClock;

pub(crate) use client::ClientKey;
pub(crate) use lanes::{LanePermit, LaneSnapshot};
pub use policy::MethodPolicy;
pub(crate) use slots::ClientPermit;
pub(crate) use usage::{ClientUse, TopClients};
pub(crate) use ws::WsConnection;

use crate::config::{Config, Lane, LocalClients};
use crate::error::Rejection;
use crate::methods::{Canonical, MethodSpec};

/// Per-client settings read on every request.
struct ClientLimits {
    enabled: bool,
    max_concurrent: usize,
    /// API keys with their own concurrency cap.
    per_key: HashMap<Arc<str>, usize>,
    gc_interval: Duration,
}

impl ClientLimits {
    fn new(cfg: &Config) -> ClientLimits {
        ClientLimits {
            enabled: cfg.rate_limit.enabled,
            max_concurrent: cfg.rate_limit.max_concurrent_per_client,
            per_key: cfg
                .rate_limit
                .api_keys
                .iter()
                .filter_map(|q| Some((Arc::from(q.key.as_str()), q.max_concurrent_per_client?)))
                .collect(),
            gc_interval: cfg.rate_limit.gc_interval,
        }
    }

    /// The client's cap and the config key that sets it.
    fn max_concurrent(&self, client: &ClientKey) -> (usize, &'static str) {
        match client {
            ClientKey::ApiKey(key) => match self.per_key.get(key) {
                Some(max) => (*max, "rate_limit.api_keys.max_concurrent_per_client"),
                None => (self.max_concurrent, "rate_limit.max_concurrent_per_client"),
            },
            ClientKey::Ip(_) | ClientKey::Local(_) => {
                (self.max_concurrent, "rate_limit.max_concurrent_per_client")
            }
        }
    }
}

pub struct Admission {
    rules: ArcSwap<client::ClientRules>,
    policies: ArcSwap<policy::Policies>,
    limits: ArcSwap<ClientLimits>,
    ws_limits: ArcSwap<ws::WsLimits>,
    rate: rate::RateLimits<DefaultClock>,
    lanes: lanes::Lanes,
    clients: Arc<slots::SlotTable>,
    connections: Arc<slots::SlotTable>,
    ws: ws::WsCounts,
    /// Requests from a local peer outside `trusted_proxies` carrying a forwarding header.
    untrusted_forwarding: AtomicU64,
    warned_untrusted_forwarding: AtomicBool,
}

/// Admission state for metrics and readiness.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct AdmissionSnapshot {
    pub light: LaneSnapshot,
    pub heavy: LaneSnapshot,
    /// `upstream.max_concurrency`; in flight is `light.in_flight + heavy.in_flight`.
    pub total_capacity: usize,
    /// Clients with rate-limit state (an upper bound between collections).
    pub tracked_clients: usize,
    /// Clients with at least one request in flight.
    pub busy_clients: usize,
    pub ws_connections: usize,
    /// Requests from a loopback or private peer not in `rate_limit.trusted_proxies` that
    /// carried a forwarding header (a proxy that is not trusted), since start.
    pub untrusted_forwarding: u64,
}

fn client_rules(cfg: &Config) -> client::ClientRules {
    let rl = &cfg.rate_limit;
    client::ClientRules {
        trusted_proxies: rl.trusted_proxies.clone(),
        ip_header: rl.client_ip_header,
        api_key_header: rl.api_key_header.clone(),
        api_keys: rl
            .api_keys
            .iter()
            .map(|k| Arc::from(k.key.as_str()))
            .collect::<HashSet<_>>(),
        local_unlimited: rl.local_clients == LocalClients::Unlimited,
    }
}

impl Admission {
    pub fn new(config: &Config) -> Admission {
        Admission {
            rules: ArcSwap::from_pointee(client_rules(config)),
            policies: ArcSwap::from_pointee(policy::Policies::new(&config.methods)),
            limits: ArcSwap::from_pointee(ClientLimits::new(config)),
            ws_limits: ArcSwap::from_pointee(ws::WsLimits::new(config)),
            rate: rate::RateLimits::new(&config.rate_limit, DefaultClock::default()),
            lanes: lanes::Lanes::new(config),
            clients: Arc::default(),
            connections: Arc::default(),
            ws: ws::WsCounts::default(),
            untrusted_forwarding: AtomicU64::new(0),
            warned_untrusted_forwarding: AtomicBool::new(false),
        }
    }

    /// New quotas, lane sizes and method overrides for new requests; permits already
    /// held stay valid and are released into the new limits. Rate state survives for
    /// quotas that did not change.
    pub(crate) fn reconfigure(&self, config: &Config) {
        self.rules.store(Arc::new(client_rules(config)));
        self.policies
            .store(Arc::new(policy::Policies::new(&config.methods)));
        self.limits.store(Arc::new(ClientLimits::new(config)));
        self.ws_limits.store(Arc::new(ws::WsLimits::new(config)));
        self.rate.reconfigure(&config.rate_limit);
        self.lanes.reconfigure(config);
    }

    /// The client a request is charged to; see `client.rs` for the header rules.
    /// IPv6 clients are keyed by their /64. A forwarding header from a local peer that
    /// is not a trusted proxy is counted, and logged the first time.
    pub(crate) fn client_of(&self, peer: IpAddr, headers: &http::HeaderMap) -> ClientKey {
        let seen = self.rules.load().identify(peer, headers);
        if let Some(header) = seen.untrusted_forwarding {
            self.untrusted_forwarding.fetch_add(1, Ordering::Relaxed);
            if !self
                .warned_untrusted_forwarding
                .swap(true, Ordering::Relaxed)
            {
                tracing::warn!(
                    peer = %peer,
                    header,
                    "a request from a local address that is not in rate_limit.trusted_proxies \
                     carries a forwarding header: a proxy on this host or network forwards \
                     clients that all look like this one address. They are held to the \
                     per-client limits as one client (never exempt as local clients); list \
                     the proxy in rate_limit.trusted_proxies and set client_ip_header so \
                     each is told apart (logged once; see \
                     cometgate_untrusted_forwarding_requests_total)"
                );
            }
        }
        seen.key
    }

    pub fn policy(&self, spec: &'static MethodSpec) -> MethodPolicy {
        self.policies.load().get(spec)
    }

    /// Clamps in place where the node clamps; `ParamCap` (naming the config key) where
    /// it refuses. Call on the canonical form before the cache key is taken, so clamped
    /// and unclamped spellings share one entry.
    pub fn check_params(
        &self,
        policy: &MethodPolicy,
        call: &mut Canonical,
    ) -> Result<(), Rejection> {
        params::check(policy, call)
    }

    /// Takes `cost` cells of the client's bucket. A cost above the bucket's burst can
    /// never pass and is refused with `CostOverBurst`, naming the burst's key.
    pub(crate) fn check_rate(&self, client: &ClientKey, cost: u32) -> Result<(), Rejection> {
        self.rate.check(client, cost)
    }

    /// Whether the client's calls are rate limited at all (limits on, not an exempt local).
    pub(crate) fn rate_limited(&self, client: &ClientKey) -> bool {
        self.limits.load().enabled && !matches!(client, ClientKey::Local(_))
    }

    /// Charges the client's rate for calls admitted elsewhere (another replica's report).
    pub(crate) fn charge_rate(&self, client: &ClientKey, units: u64) {
        self.rate.charge(client, units);
    }

    /// One of the `server.max_connections_per_client` connections of the address `peer`
    /// (a trusted proxy's are not capped: it carries many clients). `None` past the cap.
    pub(crate) fn connection_slot(&self, peer: IpAddr, max: usize) -> Option<ClientPermit> {
        if self.rules.load().is_trusted(peer) {
            return Some(ClientPermit { _slot: None });
        }
        let slot = self.connections.try_take(&ClientKey::ip(peer), max)?;
        Some(ClientPermit { _slot: Some(slot) })
    }

    pub(crate) fn client_slot(&self, client: &ClientKey) -> Result<ClientPermit, Rejection> {
        let limits = self.limits.load();
        if !limits.enabled || matches!(client, ClientKey::Local(_)) {
            return Ok(ClientPermit { _slot: None });
        }
        let (max, key) = limits.max_concurrent(client);
        match self.clients.try_take(client, max) {
            Some(slot) => Ok(ClientPermit { _slot: Some(slot) }),
            None => Err(Rejection::ClientBusy { max, key }),
        }
    }

    /// A node-call slot in `lane` and in the total; waits in the lane's bounded queue
    /// for at most its `queue_timeout`. Cancel-safe: dropping the future while it waits
    /// gives back the queue place and anything already acquired.
    pub(crate) async fn lane_slot(
        &self,
        lane: Lane,
        client: &ClientKey,
        method: &'static str,
    ) -> Result<LanePermit, Rejection> {
        self.lanes.acquire(lane, client, method).await
    }

    /// The node guard's hold on a lane: at most `hold` calls run, `Some(0)` starting
    /// nothing new (the waiting keep waiting within their queue timeout), `None` none.
    pub(crate) fn hold_lane(&self, lane: Lane, hold: Option<usize>) {
        self.lanes.hold(lane, hold);
    }

    /// A WebSocket connection slot (per client and overall) carrying the per-connection
    /// message and subscription caps.
    pub(crate) fn ws_connection(&self, client: &ClientKey) -> Result<WsConnection, Rejection> {
        ws::open(&self.ws_limits.load_full(), &self.ws, client)
    }

    /// One of `client`'s calls was refused: counted against it in the live view.
    pub(crate) fn refused(&self, client: &ClientKey) {
        self.lanes
            .usage()
            .refused(client, std::time::Instant::now());
    }

    /// The `n` clients that used the most node time over the last minute.
    pub(crate) fn top_clients(&self, n: usize) -> TopClients {
        self.lanes.usage().top(n, std::time::Instant::now())
    }

    pub fn snapshot(&self) -> AdmissionSnapshot {
        AdmissionSnapshot {
            light: self.lanes.snapshot(Lane::Light),
            heavy: self.lanes.snapshot(Lane::Heavy),
            total_capacity: self.lanes.total_capacity(),
            tracked_clients: self.rate.tracked(),
            busy_clients: self.clients.len(),
            ws_connections: self.ws.open.load(Ordering::Relaxed),
            untrusted_forwarding: self.untrusted_forwarding.load(Ordering::Relaxed),
        }
    }

    /// Drops idle per-client state and gives its memory back.
    pub(crate) fn gc(&self) {
        self.rate.gc();
        self.clients.shrink();
        self.ws.per_client.shrink();
    }

    /// Runs [`Admission::gc`] every `rate_limit.gc_interval` (re-read after each run, so
    /// reloads apply) until the last `Arc<Admission>` is dropped. Outside a Tokio runtime
    /// nothing is spawned (`None`) and [`Admission::gc`] is the caller's to run.
    pub(crate) fn spawn_gc(self: &Arc<Self>) -> Option<tokio::task::JoinHandle<()>> {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!("no Tokio runtime: idle per-client state will not be collected");
            return None;
        };
        let weak = Arc::downgrade(self);
        Some(runtime.spawn(async move {
            loop {
                // Never hold a strong reference while asleep, or the Admission never dies.
                let Some(interval) = weak.upgrade().map(|a| a.limits.load().gc_interval) else {
                    return;
                };
                tokio::time::sleep(interval.max(Duration::from_secs(1))).await;
                match weak.upgrade() {
                    Some(admission) => admission.gc(),
                    None => return,
                }
            }
        }))
    }
}

#[cfg(test)]
mod tests;
