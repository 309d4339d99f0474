//! The pipeline. This is the only module that knows the order of the stages; each stage
//! module does one thing and calls no other.
//!
//! ```text
//! handle           route by path: `/` JSON-RPC, `/<method>` URI form, `/websocket`, `/v1/…`
//!   read_body      bounded in bytes (server.max_body_bytes) and time (server.body_read_timeout)
//!   jsonrpc        parse once
//!   prepare        methods::lookup -> admission.policy -> methods::canonicalize
//!                  -> admission.check_params -> admission.check_rate
//!   cache.plan     pin "latest" to the head; Bypass for what never caches
//!   cache          Hit | Coalesced answer without touching the node; otherwise fetch:
//!     fetch        breaker -> admission.lane_slot -> upstream.call
//!   reply          caller's id + the answer's bytes; x-cometgate-cache
//! ```

mod batch;
mod call;
pub use routes::read_body;
mod routes;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use http::{Request, Response};
use hyper::body::Incoming;
use tracing::Instrument;

use crate::admission::Admission;
use crate::breaker::Breaker;
use crate::cache::Cache;
use crate::config::Config;
use crate::head::Head;
use crate::metrics::Metrics;
use crate::reply::Chunks;
use crate::upstream::Upstream;

pub use call::Prepared;

/// Everything a request may need, shared by every connection. Reloadable settings are
/// read through `config()` on each request, so a reload applies to the next one.
pub struct Gateway {
    config: ArcSwap<Config>,
    upstream: Upstream,
    breaker: Breaker,
    admission: Arc<Admission>,
    cache: Cache,
    head: Head,
    metrics: Metrics,
    relays: Arc<crate::websocket::Relays>,
}

impl Gateway {
    /// Builds the gateway and starts following the node's head.
    pub fn new(config: Config) -> Arc<Gateway> {
        let head = Head::spawn(&config.upstream.url, &config.head);
        Gateway::with_head(config, head)
    }

    /// As `new`, with a head supplied by the caller (tests drive it by hand).
    pub fn with_head(config: Config, head: Head) -> Arc<Gateway> {
        let gateway = Arc::new(Gateway {
            upstream: Upstream::new(&config.upstream),
            breaker: Breaker::new(),
            admission: Arc::new(Admission::new(&config)),
            cache: Cache::new(&config.cache, head.clone()),
            head,
            metrics: Metrics::new(),
            relays: Arc::default(),
            config: ArcSwap::from_pointee(config),
        });
        gateway.admission.spawn_gc();
        gateway
    }

    /// The websocket relays, which shutdown closes and waits for.
    pub fn relays(&self) -> &Arc<crate::websocket::Relays> {
        &self.relays
    }

    pub fn config(&self) -> Arc<Config> {
        self.config.load_full()
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
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

    pub fn breaker(&self) -> &Breaker {
        &self.breaker
    }

    /// Swaps in a validated config. Requests in flight finish under the settings they
    /// started with; permits they hold stay valid. Returns the keys that changed but
    /// only apply after a restart.
    pub fn reload(&self, new: Config) -> Vec<&'static str> {
        let old = self.config.load_full();
        let (new, restart) = old.reloadable(new);
        self.admission.reconfigure(&new);
        self.cache.reconfigure(&new.cache);
        self.config.store(Arc::new(new));
        restart
    }

    /// One HTTP request, whatever its route. Never fails: every refusal is an answer.
    pub async fn handle(
        self: &Arc<Self>,
        req: Request<Incoming>,
        peer: SocketAddr,
    ) -> Response<Chunks> {
        let started = Instant::now();
        let config = self.config();
        let client = self.admission.client_of(peer.ip(), req.headers());
        // A span costs ~4% of a cache hit's time; build it only when something will use it:
        // the access log, or debug logging (which names the request in every line).
        let span = if config.log.access_log || tracing::enabled!(tracing::Level::DEBUG) {
            tracing::info_span!("request", id = self.metrics.next_request_id(), client = %peer.ip())
        } else {
            tracing::Span::none()
        };
        let (response, log) = routes::route(self, &config, req, &client)
            .instrument(span.clone())
            .await;
        log.emit(
            &span,
            peer,
            response.status(),
            started.elapsed(),
            config.log.access_log,
        );
        response
    }
}

impl Gateway {
    pub fn upstream_url(&self) -> &http::Uri {
        self.upstream.url()
    }

    /// A call that arrived over the websocket, served like one over HTTP. `None` for a
    /// notification.
    pub async fn serve_ws_call(
        self: &Arc<Self>,
        client: &crate::admission::ClientKey,
        call: crate::jsonrpc::Call,
    ) -> Option<bytes::Bytes> {
        let id = call.id.clone()?;
        let latency = call::NodeLatency::default();
        // Calls on a websocket run side by side: each holds one of the client's
        // concurrent-request slots, as over HTTP.
        let prepared = self
            .admission
            .client_slot(client)
            .and_then(|slot| Ok((slot, call::prepare(self, client, &call)?)));
        let outcome = match prepared {
            Ok((_slot, prepared)) => call::run(self, prepared, &latency).await.0,
            Err(r) => {
                call::refused(self, &r);
                crate::reply::Outcome::Rejected(r)
            }
        };
        let mut parts = Vec::with_capacity(3);
        crate::reply::entry(
            &mut parts,
            Some(&id),
            &outcome,
            crate::jsonrpc::Form::JsonRpc,
        );
        Some(parts.concat().into())
    }
}
