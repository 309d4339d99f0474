//! What replicas behind one load balancer share through Redis:
//! - answers that never change (a pinned height at or below the head, a hash that was
//!   found), so that N replicas make one node call per such question instead of N;
//! - what each admitted per client, so that a client spread over N replicas is held to
//!   its rate in total, not N times it (`rates`).
//!
//! Redis is an optimisation, never a dependency (under `on_error = "local"`). Every
//! lookup is bounded by `shared.timeout` and a failure is a miss; once one has failed,
//! lookups are skipped until something (a lookup, the PING every second, the rate
//! exchange) succeeds again; every store is detached, bounded in number
//! and in bytes, and dropped when it cannot go at once. Until Redis answers (at start, or
//! after it went away) the gateway runs on its own cache, logs the change of state once
//! and shows it in `cometgate_shared_up`. Readiness looks at Redis only under "deny".
//!
//! Keys carry the node's chain id, which every replica reads from the same chain: a
//! reset chain never serves another chain's answers, where a per-process generation
//! would not agree between replicas. "Latest" answers stay local: replicas see new
//! blocks at slightly different moments.

mod codec;
mod metrics;
mod rates;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::{OnceCell, Semaphore};

pub(crate) use metrics::SharedMetrics;

use crate::admission::{Admission, ClientKey};
use crate::config::{OnError, SharedConfig};
use crate::error::Rejection;
use crate::methods::CacheKey;

/// Stores in flight at most; past it a store is dropped (the answer stays local).
const MAX_STORES: usize = 64;
/// The first connection is retried this far apart at most.
const CONNECT_BACKOFF_MAX: Duration = Duration::from_secs(5);
/// How often Redis's state is checked when no request looks.
const HEARTBEAT: Duration = Duration::from_secs(1);
/// How long the PING and the rate exchange may take before Redis counts as failed.
pub(super) const BACKGROUND_TIMEOUT: Duration = Duration::from_secs(1);

/// Cheap to clone. Off (no `shared.redis_url`), every call does nothing.
#[derive(Clone, Default)]
pub(crate) struct SharedTier {
    inner: Option<Arc<Inner>>,
}

struct Inner {
    connection: OnceCell<ConnectionManager>,
    prefix: String,
    timeout: Duration,
    max_entry_bytes: usize,
    compress_above: usize,
    ttl_seconds: u64,
    stores: Arc<Semaphore>,
    /// Redis's health as the PING and the rate exchange see it: what the gauge, the log,
    /// `on_error = "deny"` and readiness go by.
    up: AtomicBool,
    /// A request-path lookup or store failed since the last success: lookups are skipped
    /// (no request spends `timeout` on a Redis that just failed) until one succeeds.
    trouble: AtomicBool,
    on_error: OnError,
    metrics: SharedMetrics,
    usage: rates::Usage,
}

impl SharedTier {
    /// Starts connecting in the background when `config` names a Redis; must be called
    /// inside a Tokio runtime then.
    pub(crate) fn new(
        config: &SharedConfig,
        metrics: SharedMetrics,
        admission: Arc<Admission>,
    ) -> SharedTier {
        let Some(url) = &config.redis_url else {
            return SharedTier::default();
        };
        let client = match redis::Client::open(url.as_str()) {
            Ok(client) => client,
            Err(e) => {
                // The config check vetted the URL; a client refusing it still must not
                // stop the gateway.
                tracing::error!(error = %e, "shared.redis_url is not usable: nothing is shared");
                return SharedTier::default();
            }
        };
        let inner = Arc::new(Inner {
            connection: OnceCell::new(),
            prefix: config.key_prefix.clone(),
            timeout: config.timeout,
            max_entry_bytes: config.max_entry_bytes.as_u64() as usize,
            compress_above: config.compress_above.as_u64() as usize,
            ttl_seconds: config.ttl.as_secs().max(1),
            stores: Arc::new(Semaphore::new(MAX_STORES)),
            up: AtomicBool::new(false),
            trouble: AtomicBool::new(false),
            on_error: config.on_error,
            metrics,
            usage: rates::Usage::new(),
        });
        tokio::spawn(follow(Arc::downgrade(&inner), client, admission));
        SharedTier { inner: Some(inner) }
    }

    /// Whether a Redis is configured: with none, the request path skips this tier whole.
    pub(crate) fn is_on(&self) -> bool {
        self.inner.is_some()
    }

    /// Under `on_error = "deny"`, refuses a rate-limited call while Redis does not answer:
    /// its limit cannot be shared then.
    pub(crate) fn check(&self, limited: bool) -> Result<(), Rejection> {
        match &self.inner {
            Some(inner)
                if limited
                    && inner.on_error == OnError::Deny
                    && !inner.up.load(Ordering::Acquire) =>
            {
                Err(Rejection::SharedUnavailable)
            }
            _ => Ok(()),
        }
    }

    /// Why the replica should get no traffic, under "deny" while Redis does not answer.
    pub(crate) fn problem(&self) -> Option<String> {
        let inner = self.inner.as_ref()?;
        (inner.on_error == OnError::Deny && !inner.up.load(Ordering::Acquire))
            .then(|| "shared.on_error = \"deny\" and the shared Redis does not answer".to_owned())
    }

    /// One call admitted for `client` at `cost`, to report to the other replicas.
    pub(crate) fn admitted(&self, client: &ClientKey, cost: u32) {
        if let Some(inner) = &self.inner {
            inner.usage.admitted(client, cost);
        }
    }

    /// The shared answer to `key` on chain `chain`, if Redis has one within the timeout.
    pub(crate) async fn get(&self, chain: &str, key: &CacheKey) -> Option<Bytes> {
        let inner = self.inner.as_ref()?;
        // Known down or just failed: not even `timeout` is spent on it; the heartbeat
        // brings it back within a second of Redis answering.
        if !inner.usable() {
            inner.metrics.op("get", "down");
            return None;
        }
        let mut connection = inner.connection.get()?.clone();
        let started = Instant::now();
        let name = inner.key(chain, key);
        let reply = tokio::time::timeout(
            inner.timeout,
            redis::cmd("GET")
                .arg(&name)
                .query_async::<Option<Vec<u8>>>(&mut connection),
        )
        .await;
        inner.metrics.latency("get", started.elapsed());
        let found = match reply {
            Ok(Ok(found)) => {
                inner.trouble.store(false, Ordering::Release);
                found
            }
            Ok(Err(_)) => return inner.stumbled("get", "error"),
            Err(_) => return inner.stumbled("get", "timeout"),
        };
        let Some(stored) = found else {
            inner.metrics.op("get", "miss");
            return None;
        };
        match codec::decode(&stored, inner.max_entry_bytes) {
            Ok(answer) => {
                inner.metrics.op("get", "hit");
                Some(answer)
            }
            Err(why) => {
                tracing::warn!(key = %String::from_utf8_lossy(&name), reason = %why, "a shared answer is unreadable; ignored");
                inner.metrics.op("get", "unreadable");
                None
            }
        }
    }

    /// Shares an answer the node gave for `key`, in the background. Dropped, and counted,
    /// when it is too large or too many stores are in flight.
    pub(crate) fn put(&self, chain: &str, key: &CacheKey, answer: &Bytes) {
        let Some(inner) = &self.inner else { return };
        let Some(connection) = inner.connection.get().filter(|_| inner.usable()) else {
            inner.metrics.op("set", "down");
            return;
        };
        if answer.len() > inner.max_entry_bytes {
            inner.metrics.op("set", "too_large");
            return;
        }
        let Ok(permit) = Arc::clone(&inner.stores).try_acquire_owned() else {
            inner.metrics.op("set", "busy");
            return;
        };
        let (inner, mut connection) = (Arc::clone(inner), connection.clone());
        let name = inner.key(chain, key);
        let answer = answer.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let value = codec::encode(&answer, inner.compress_above);
            let started = Instant::now();
            let stored = tokio::time::timeout(
                inner.timeout,
                redis::cmd("SET")
                    .arg(&name)
                    .arg(value)
                    .arg("EX")
                    .arg(inner.ttl_seconds)
                    .query_async::<()>(&mut connection),
            )
            .await;
            inner.metrics.latency("set", started.elapsed());
            match stored {
                Ok(Ok(())) => {
                    inner.trouble.store(false, Ordering::Release);
                    inner.metrics.op("set", "stored");
                }
                Ok(Err(_)) => {
                    inner.stumbled::<()>("set", "error");
                }
                Err(_) => {
                    inner.stumbled::<()>("set", "timeout");
                }
            }
        });
    }
}

impl Inner {
    fn key(&self, chain: &str, key: &CacheKey) -> Vec<u8> {
        let mut name = Vec::with_capacity(self.prefix.len() + chain.len() + key.len() + 2);
        name.extend_from_slice(self.prefix.as_bytes());
        name.push(b':');
        name.extend_from_slice(chain.as_bytes());
        name.push(b':');
        name.extend_from_slice(key.as_bytes());
        name
    }

    fn usable(&self) -> bool {
        self.up.load(Ordering::Acquire) && !self.trouble.load(Ordering::Acquire)
    }

    /// A request-path operation failed: counted, and lookups skipped until a success.
    /// Health (the gauge, "deny", readiness) is the PING's and the exchange's to judge:
    /// one slow GET of a large answer is no outage.
    fn stumbled<T>(&self, op: &'static str, outcome: &'static str) -> Option<T> {
        self.metrics.op(op, outcome);
        self.trouble.store(true, Ordering::Release);
        None
    }

    /// Records Redis's health; a change is logged once.
    fn answered(&self, up: bool) {
        if up {
            self.trouble.store(false, Ordering::Release);
        }
        if self.up.swap(up, Ordering::AcqRel) != up {
            self.metrics.set_up(up);
            if up {
                tracing::info!("shared Redis answers: answers are shared");
            }
        }
    }

    fn failed<T>(&self, op: &'static str, outcome: &'static str, why: &str) -> Option<T> {
        self.metrics.op(op, outcome);
        if self.up.swap(false, Ordering::AcqRel) {
            self.metrics.set_up(false);
            tracing::warn!(reason = %why, "shared Redis failed: running on the local cache");
        }
        None
    }
}

/// Makes the first connection, retrying with back-off until it succeeds or the tier is
/// gone; from then on the connection manager reconnects by itself, the rate exchange
/// runs, and a PING every `HEARTBEAT` keeps `cometgate_shared_up` true to Redis even
/// without traffic.
async fn follow(inner: std::sync::Weak<Inner>, client: redis::Client, admission: Arc<Admission>) {
    let Some(timeout) = inner.upgrade().map(|i| i.timeout) else {
        return;
    };
    // The request path bounds its own calls by `timeout`; this bound is the background
    // work's (the PING, a rate exchange of many clients), which may take longer.
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(timeout.max(Duration::from_millis(250)))
        .set_response_timeout(BACKGROUND_TIMEOUT.max(timeout))
        .set_number_of_retries(1)
        .set_max_delay(1000);
    let mut backoff = Duration::from_millis(100);
    let mut logged = false;
    let mut connection = loop {
        let attempt = ConnectionManager::new_with_config(client.clone(), config.clone()).await;
        let Some(tier) = inner.upgrade() else { return };
        match attempt {
            Ok(connection) => {
                let _ = tier.connection.set(connection.clone());
                tier.answered(true);
                tokio::spawn(rates::exchange(
                    Arc::downgrade(&tier),
                    admission,
                    connection.clone(),
                ));
                break connection;
            }
            Err(e) if !logged => {
                tracing::warn!(error = %e, "shared Redis unreachable: running on the local cache until it answers");
                logged = true;
            }
            Err(_) => {}
        }
        drop(tier);
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(CONNECT_BACKOFF_MAX);
    };
    loop {
        tokio::time::sleep(HEARTBEAT).await;
        let Some(tier) = inner.upgrade() else { return };
        let ping = tokio::time::timeout(
            BACKGROUND_TIMEOUT.max(tier.timeout),
            redis::cmd("PING").query_async::<()>(&mut connection),
        )
        .await;
        match ping {
            Ok(Ok(())) => {
                tier.metrics.op("ping", "ok");
                tier.answered(true);
            }
            Ok(Err(e)) => tier
                .failed::<()>("ping", "error", &e.to_string())
                .unwrap_or(()),
            Err(_) => tier
                .failed::<()>("ping", "timeout", "no answer to PING")
                .unwrap_or(()),
        }
    }
}
