//! One call through the stages: prepare (method, policy, canonical form, caps, rate),
//! then the cache, which fetches from the node only on a miss.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{Response, StatusCode};

use super::Gateway;
use crate::admission::{ClientKey, MethodPolicy};
use crate::cache::CacheStatus;
use crate::config::Lane;
use crate::error::{Blame, Rejection};
use crate::jsonrpc::{Call, Form};
use crate::methods::{self, canonicalize, Canonical};
use crate::reply::{self, Chunks, Outcome};
use crate::upstream::Answer;

/// A call that passed admission: who asked, its effective policy and canonical form.
#[derive(Clone, Debug)]
pub struct Prepared {
    pub client: ClientKey,
    pub policy: MethodPolicy,
    pub canonical: Canonical,
}

/// The stages before the cache, in order. Each refusal names its reason.
pub(super) fn prepare(
    gw: &Gateway,
    client: &ClientKey,
    call: &Call,
) -> Result<Prepared, Rejection> {
    let spec = methods::lookup(&call.method).ok_or(Rejection::MethodNotFound)?;
    if spec.websocket_only {
        return Err(Rejection::MethodNotFound);
    }
    let policy = gw.admission.policy(spec);
    if !policy.allowed {
        return Err(Rejection::MethodDenied(spec.name.to_owned()));
    }
    let mut canonical =
        canonicalize(spec, &call.params, call.form).map_err(Rejection::InvalidParams)?;
    gw.admission.check_params(&policy, &mut canonical)?;
    gw.admission.check_rate(client, policy.cost)?;
    Ok(Prepared {
        client: client.clone(),
        policy,
        canonical,
    })
}

/// The node's latency as seen by the caller that led the fetch; followers see none.
#[derive(Clone, Default)]
pub(super) struct NodeLatency(Arc<AtomicU64>);

impl NodeLatency {
    fn record(&self, d: Duration) {
        self.0.store(d.as_micros().max(1) as u64, Ordering::Relaxed);
    }

    fn get(&self) -> Option<Duration> {
        match self.0.load(Ordering::Relaxed) {
            0 => None,
            us => Some(Duration::from_micros(us)),
        }
    }
}

/// Cache, then (on a miss) the node, for one prepared call.
pub(super) async fn run(
    gw: &Arc<Gateway>,
    prepared: Prepared,
    latency: &NodeLatency,
) -> (Outcome, CacheStatus) {
    let Prepared {
        client,
        policy,
        mut canonical,
    } = prepared;
    let plan = gw.cache.plan(&mut canonical, policy.cache_ttl);
    let (gw2, latency) = (gw.clone(), latency.clone());
    let lane = policy.lane;
    let (result, status) = gw
        .cache
        .get_or_fetch(plan, move || async move {
            gw2.fetch(&client, lane, &canonical, &latency).await
        })
        .await;
    (outcome_of(gw, result), status)
}

pub(super) fn outcome_of(gw: &Gateway, result: Result<Answer, Rejection>) -> Outcome {
    match result {
        Ok(answer) => Outcome::Answer(answer),
        Err(r) => {
            refused(gw, &r);
            Outcome::Rejected(r)
        }
    }
}

impl Gateway {
    /// A node call: breaker, a lane slot (held only while the node works), the upstream.
    /// The lane slot is charged to `client`, the caller that leads the fetch.
    pub(super) async fn fetch(
        &self,
        client: &ClientKey,
        lane: Lane,
        call: &Canonical,
        latency: &NodeLatency,
    ) -> Result<Answer, Rejection> {
        let _probe = self.breaker.admit()?;
        let queued = Instant::now();
        let _slot = self.admission.lane_slot(lane, client).await?;
        self.metrics.lane_waited(lane, queued.elapsed());
        let started = Instant::now();
        let result = self.upstream.call(call).await;
        let elapsed = started.elapsed();
        latency.record(elapsed);
        self.breaker.record(lane, &result);
        self.metrics
            .node_call(call.spec.name, elapsed, result.is_ok());
        result
    }
}

/// A single call (JSON-RPC or URI form) from parse to response.
pub(super) async fn serve_single(
    gw: &Arc<Gateway>,
    client: &ClientKey,
    call: Call,
    log: &mut AccessLog,
) -> Response<Chunks> {
    // CometBFT neither runs nor answers a notification.
    let Some(id) = call.id.clone() else {
        return reply::json(StatusCode::OK, Chunks::new());
    };
    let latency = NodeLatency::default();
    let (outcome, status) = match prepare(gw, client, &call) {
        Ok(prepared) => run(gw, prepared, &latency).await,
        Err(r) => {
            refused(gw, &r);
            (Outcome::Rejected(r), CacheStatus::Bypass)
        }
    };
    log.node_latency = latency.get();
    log.cache = Some(status);
    let response = match &outcome {
        Outcome::Rejected(r) => {
            log.rejected(r.reason());
            reply::rejection(Some(&id), r, call.form)
        }
        Outcome::Answer(answer) => {
            let http_status = match (answer.is_error(), call.form) {
                (true, Form::Uri) => StatusCode::INTERNAL_SERVER_ERROR,
                _ => StatusCode::OK,
            };
            let mut body = Chunks::new();
            body.extend(answer.parts(&id));
            reply::json(http_status, body)
        }
    };
    gw.metrics.request(&call.method, outcome.is_error(), status);
    reply::with_cache_status(response, status)
}

/// What the access log says of one request.
#[derive(Default)]
pub struct AccessLog {
    methods: String,
    pub(super) cache: Option<CacheStatus>,
    pub(super) node_latency: Option<Duration>,
    rejection: Option<&'static str>,
}

impl AccessLog {
    /// Method names are logged as sent but bounded, so a hostile one cannot flood the log.
    pub(super) fn method(&mut self, name: &str) {
        if self.methods.len() < 256 {
            if !self.methods.is_empty() {
                self.methods.push(',');
            }
            let name: String = name.chars().take(64).filter(|c| !c.is_control()).collect();
            self.methods.push_str(&name);
        }
    }

    pub(super) fn rejected(&mut self, reason: &'static str) {
        self.rejection.get_or_insert(reason);
    }

    pub(super) fn emit(
        &self,
        span: &tracing::Span,
        peer: SocketAddr,
        status: StatusCode,
        elapsed: Duration,
        enabled: bool,
    ) {
        // Failures are logged where they happen (`refused`); this line is the access log.
        if !enabled {
            return;
        }
        let cache = self.cache.map_or("-", CacheStatus::as_str);
        let node_ms = self.node_latency.map(|d| d.as_secs_f64() * 1e3);
        tracing::info!(
            target: "cometgate::access",
            parent: span,
            method = %self.methods,
            client = %peer,
            cache,
            node_ms,
            status = status.as_u16(),
            ms = elapsed.as_secs_f64() * 1e3,
            rejected = self.rejection.unwrap_or("-"),
            "request"
        );
    }
}

/// Counts a refusal by reason and logs it: client mistakes at debug, the node's and the
/// gateway's faults at warn.
pub(super) fn refused(gw: &Gateway, r: &Rejection) {
    gw.metrics.rejected(r.reason());
    match r.blame() {
        Blame::Client => tracing::debug!(reason = r.reason(), error = %r, "refused"),
        Blame::Upstream | Blame::Gateway => {
            tracing::warn!(reason = r.reason(), error = %r, "failed")
        }
    }
}
