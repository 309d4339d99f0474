//! The gateway: everything a request needs, and the only module that knows the order
//! of the stages. Each stage module (jsonrpc, methods, admission, cache, upstream,
//! reply) does one thing and calls no other.
//!
//! ```text
//! handle            client address (trusted proxy header), span, access log
//!   routes          URI cap (server.max_uri_bytes) -> route by path: `/` JSON-RPC,
//!                   `/<method>` URI form, `/websocket` (ws), `/v1/…` alike, else 404
//!                   -> the client's concurrency slot (held until the answer is written)
//!                   -> read_body (bounded in bytes and time) -> batch count -> jsonrpc
//!   pipeline        admit -> lookup -> fetch the misses -> finish   (a single call is a
//!                   batch of one; websocket calls and /admin/explain use it too)
//!   respond         a single call's answer is the response; a batch keeps its order
//!   refuse          every refusal: counted by reason, logged once, rendered by to_wire
//! ```

mod access_log;
mod fetch;
mod pipeline;
mod refresh;
#[cfg(test)]
mod refresh_tests;
mod refuse;
mod respond;
mod routes;
mod ws;

pub(crate) use routes::read_body;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use http::{Request, Response};
use hyper::body::Incoming;
use tracing::Instrument;

use crate::admission::Admission;
use crate::cache::Cache;
use crate::config::Config;
use crate::error::Rejection;
use crate::guard::Guard;
use crate::head::Head;
use crate::jsonrpc::Call;
use crate::metrics::Metrics;
use crate::pool::Pool;
use crate::recent::{CacheCounts, Recent};
use crate::reply::Chunks;
use crate::shared::SharedTier;
use crate::upstream::Upstream;
use crate::websocket::{Hub, Relays};

use access_log::AccessLog;
pub(crate) use pipeline::Admitted;

/// Everything a request may need, shared by every connection. Reloadable settings are
/// read through `config()` on each request, so a reload applies to the next one.
pub struct Gateway {
    config: ArcSwap<Config>,
    /// The nodes, and which one takes each node call.
    pool: Arc<Pool>,
    admission: Arc<Admission>,
    cache: Cache,
    head: Head,
    metrics: Metrics,
    /// The last minutes, for the operator's live view.
    recent: Recent,
    relays: Arc<Relays>,
    /// The fan-out's node subscriptions (`websocket.mode = "fanout"`).
    hub: Option<Arc<Hub>>,
    guard: Arc<Guard>,
    /// What refresh-ahead counts ("latest" questions asked per block).
    demand: refresh::Demand,
    /// Answers that never change, shared with other replicas through Redis.
    shared: SharedTier,
}

impl Gateway {
    /// Builds the gateway and starts following the nodes' heads.
    pub fn new(config: Config) -> Arc<Gateway> {
        let metrics = Metrics::new();
        let slot = Arc::new(std::sync::OnceLock::new());
        let hub = ws::hub(&config, metrics.ws.clone(), &slot);
        // With a fan-out, a lone node's head follows its NewBlock subscription: the node
        // then encodes each block once for the gateway, not once for each.
        let alone = config.upstream.node_list().len() == 1;
        let feed = hub
            .as_ref()
            .filter(|_| config.head.websocket && alone)
            .and_then(|hub| hub.new_blocks());
        let head = Head::derived(config.head.stall_after);
        let budget = Gateway::budget(&config, &metrics);
        let pool = Pool::spawn(&config, budget, feed, &head);
        let _ = slot.set(Arc::downgrade(&pool));
        Gateway::build(config, head, metrics, hub, pool)
    }

    /// As `new`, with one node whose head the caller supplies (tests drive it by hand).
    pub fn with_head(config: Config, head: Head) -> Arc<Gateway> {
        let metrics = Metrics::new();
        let slot = Arc::new(std::sync::OnceLock::new());
        let hub = ws::hub(&config, metrics.ws.clone(), &slot);
        let budget = Gateway::budget(&config, &metrics);
        let pool = Pool::with_head(&config, budget, head.clone());
        let _ = slot.set(Arc::downgrade(&pool));
        Gateway::build(config, head, metrics, hub, pool)
    }

    fn budget(config: &Config, metrics: &Metrics) -> Arc<crate::upstream::Budget> {
        let inflight = metrics.upstream_inflight(config.upstream.max_inflight_bytes.as_u64());
        Upstream::budget(&config.upstream, inflight)
    }

    fn build(
        config: Config,
        head: Head,
        metrics: Metrics,
        hub: Option<Arc<Hub>>,
        pool: Arc<Pool>,
    ) -> Arc<Gateway> {
        let shared_metrics = metrics.shared.clone();
        let admission = Arc::new(Admission::new(&config));
        let shared = SharedTier::new(&config.shared, shared_metrics, admission.clone());
        let gateway = Arc::new(Gateway {
            pool,
            admission,
            cache: Cache::new(&config.cache, head.clone()),
            head,
            metrics,
            recent: Recent::default(),
            relays: Arc::default(),
            hub,
            guard: Guard::new(&config.node_guard),
            demand: refresh::Demand::new(config.cache.refresh_ahead),
            shared,
            config: ArcSwap::from_pointee(config),
        });
        gateway.admission.spawn_gc();
        gateway.guard.spawn(gateway.admission.clone());
        spawn_sampler(&gateway);
        refresh::spawn(&gateway);
        gateway
    }

    /// Why this replica should get no traffic because of the shared tier, if it should not.
    pub(crate) fn shared_problem(&self) -> Option<String> {
        self.shared.problem()
    }

    /// The websocket relays, which shutdown closes and waits for.
    pub fn relays(&self) -> &Arc<Relays> {
        &self.relays
    }

    pub fn config(&self) -> Arc<Config> {
        self.config.load_full()
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    pub(crate) fn recent(&self) -> &Recent {
        &self.recent
    }

    /// The cache's counters as the live view's windows take them.
    pub(crate) fn cache_counts(&self) -> CacheCounts {
        let s = self.cache.stats();
        CacheCounts {
            hits: s.hits,
            misses: s.misses,
            coalesced: s.coalesced,
            stale: s.stale,
        }
    }

    pub fn cache(&self) -> &Cache {
        &self.cache
    }

    pub fn head(&self) -> &Head {
        &self.head
    }

    pub fn admission(&self) -> &Admission {
        &self.admission
    }

    pub fn guard(&self) -> &Guard {
        &self.guard
    }

    pub(crate) fn pool(&self) -> &Pool {
        &self.pool
    }

    /// The nodes' breakers as one: closed while any node's is.
    pub fn breaker_state(&self) -> crate::breaker::BreakerState {
        self.pool.breaker_state()
    }

    /// Swaps in a validated config. Requests in flight finish under the settings they
    /// started with; permits they hold stay valid. Returns the keys that changed but
    /// only apply after a restart.
    pub fn reload(&self, new: Config) -> Vec<&'static str> {
        let old = self.config.load_full();
        let (new, restart) = old.reloadable(new);
        self.admission.reconfigure(&new);
        self.pool.reconfigure(&new);
        self.cache.reconfigure(&new.cache);
        self.demand.set_limit(new.cache.refresh_ahead);
        self.guard.reconfigure(&new.node_guard);
        self.config.store(Arc::new(new));
        restart
    }

    /// One HTTP request, whatever its route. Never fails: every refusal is an answer.
    pub(crate) async fn handle(
        self: &Arc<Self>,
        req: Request<Incoming>,
        peer: SocketAddr,
    ) -> Response<Chunks> {
        let started = Instant::now();
        let config = self.config();
        let client = self.admission.client_of(peer.ip(), req.headers());
        let id = self.metrics.next_request_id();
        // A span costs ~4% of a cache hit's time: only debug logging, which names the
        // request in every line, uses one. The access line carries the id itself.
        let span = if tracing::enabled!(tracing::Level::DEBUG) {
            tracing::info_span!("request", id, client = %peer.ip())
        } else {
            tracing::Span::none()
        };
        let mut log = AccessLog::default();
        let response = routes::route(self, &config, req, &client, &mut log)
            .instrument(span)
            .await;
        log.emit(
            id,
            peer,
            response.status(),
            started.elapsed(),
            config.log.access_log,
        );
        response
    }
}

/// Copies the live view's counters into its rings once a `recent::TICK`, until the
/// gateway is dropped. Outside a Tokio runtime nothing samples: the windows then cover
/// everything since start.
fn spawn_sampler(gateway: &Arc<Gateway>) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let weak = Arc::downgrade(gateway);
    runtime.spawn(async move {
        let mut every = tokio::time::interval(crate::recent::TICK);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            let Some(gw) = weak.upgrade() else { return };
            gw.recent.tick(gw.cache_counts(), Instant::now());
        }
    });
}

impl Gateway {
    /// A refusal of a request the gateway never routed (the server's framing check),
    /// through the same path as every other: counted, logged, rendered by `to_wire`.
    pub(crate) fn refusal(
        &self,
        r: &Rejection,
        transport: impl Into<crate::error::Transport>,
    ) -> Response<Chunks> {
        refuse::request(self, &mut AccessLog::default(), None, r, transport)
    }

    /// Admission as the pipeline runs it, charging no one: what `/admin/explain` shows.
    pub(crate) fn dry_run(&self, call: &Call) -> Result<Admitted, Rejection> {
        pipeline::admit(self, call, pipeline::Charge::DryRun)
    }
}
