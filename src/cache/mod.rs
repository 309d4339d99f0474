//! The height-aware cache: decoded answers kept so that repeated heavy questions never
//! reach the node's encoder again.
//!
//! CometBFT has instant finality: an answer pinned to a height at or below the head never
//! changes (`Policy::Immutable`), and a "latest" answer stays true exactly until the next
//! block (`Policy::UntilNextBlock`). A "latest" call is rewritten to the head's height
//! where that gives the same answer, so it shares the explicit height's entry. Identical
//! concurrent misses share one upstream call (`coalesce`), run detached so that a caller
//! hanging up does not waste it. A "latest" entry outlives its block by the stale window,
//! to stand in for an upstream failure.
//!
//! Clocks: freshness and the stale window use tokio's clock (tests pause it); moka's own
//! expiry, which only reclaims entries that can no longer be served, uses the wall clock.

mod coalesce;
mod explain;
mod keep;
mod policy;
mod previous;
mod stats;
mod store;
mod verdict;

#[cfg(test)]
mod lifetime_tests;
#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::time::Instant;

pub(crate) use policy::Policy;
pub(crate) use stats::CacheStats;
pub(crate) use verdict::{judge, Verdict};

pub(crate) use coalesce::{Follower, Kept, Leader};
pub(crate) use previous::Latest;

use coalesce::{FlightKey, Flights, Joined};
use policy::{Decision, HeadView};
use stats::Counters;
use store::{Entry, Removals, Store};

use crate::config::{CacheConfig, WhileRefreshing};
use crate::error::{Blame, Rejection};
use crate::head::Head;
use crate::methods::{CacheKey, Canonical};
use crate::upstream::Answer;

/// The `x-cometgate-cache` header value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheStatus {
    Hit,
    Miss,
    Coalesced,
    Stale,
    Bypass,
    /// Another replica's answer, from the shared tier: the node was not asked.
    Shared,
}

impl CacheStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CacheStatus::Hit => "hit",
            CacheStatus::Miss => "miss",
            CacheStatus::Coalesced => "coalesced",
            CacheStatus::Stale => "stale",
            CacheStatus::Bypass => "bypass",
            CacheStatus::Shared => "shared",
        }
    }
}

#[derive(Clone, Debug)]
pub enum Plan {
    Bypass,
    Cached {
        key: CacheKey,
        method: &'static str,
        policy: Policy,
        /// The explicit height an immutable answer was asked for, which it must report.
        asked_height: Option<u64>,
        /// Set where the question follows the head ("latest").
        latest: Option<Latest>,
    },
}

/// The two-phase form's first step.
pub(crate) enum Begin {
    Hit(Answer),
    /// An identical call is in flight: wait for its answer.
    Wait(Follower),
    /// This caller fetches, then calls `Leader::finish`.
    Lead(Leader),
    /// The previous block's answer while the new one is being fetched
    /// (`while_refreshing = "previous"`).
    Previous(Answer),
    Bypass,
}

/// What can change while running; `max_bytes` cannot (moka's capacity is fixed).
#[derive(Clone, Debug)]
struct Settings {
    enabled: bool,
    max_entry_bytes: u64,
    stale_if_error: Duration,
    latest_max_ttl: Duration,
    code_error_ttl: Duration,
    while_refreshing: WhileRefreshing,
    previous_max_age: Duration,
}

impl Settings {
    fn from(config: &CacheConfig) -> Settings {
        Settings {
            enabled: config.enabled,
            max_entry_bytes: config.max_entry_bytes.as_u64(),
            stale_if_error: config.stale_if_error,
            latest_max_ttl: config.latest_max_ttl,
            code_error_ttl: config.code_error_ttl,
            while_refreshing: config.while_refreshing,
            previous_max_age: config.previous_max_age,
        }
    }
}

struct Inner {
    store: Store,
    flights: Arc<Flights>,
    head: Head,
    settings: ArcSwap<Settings>,
    max_bytes: u64,
    counters: Counters,
    removals: Arc<Removals>,
    /// The chain generation the stored entries were last purged for.
    chain: AtomicU64,
}

/// Cheap to clone: every clone shares one store.
#[derive(Clone)]
pub struct Cache {
    inner: Arc<Inner>,
}

impl Cache {
    pub fn new(config: &CacheConfig, head: Head) -> Cache {
        let removals = Arc::new(Removals::default());
        let max_bytes = config.max_bytes.as_u64();
        let chain = AtomicU64::new(head.chain_generation());
        Cache {
            inner: Arc::new(Inner {
                store: store::build(max_bytes, Arc::clone(&removals)),
                flights: Arc::default(),
                head,
                settings: ArcSwap::from_pointee(Settings::from(config)),
                max_bytes,
                counters: Counters::default(),
                removals,
                chain,
            }),
        }
    }

    /// Applies TTLs, the stale window, the entry cap and `enabled` at once (to entries
    /// stored from now on where it concerns their lifetime in moka). Returns the config
    /// keys that only a restart applies.
    pub(crate) fn reconfigure(&self, config: &CacheConfig) -> Vec<&'static str> {
        self.inner.settings.store(Arc::new(Settings::from(config)));
        if config.max_bytes.as_u64() == self.inner.max_bytes {
            return Vec::new();
        }
        tracing::warn!(
            running = self.inner.max_bytes,
            configured = config.max_bytes.as_u64(),
            "cache.max_bytes changes only on restart"
        );
        vec!["cache.max_bytes"]
    }

    /// Decides the policy for one canonical call. Where the rule allows, a "latest" call
    /// is rewritten to the head's height (`height` set) so that it shares the explicit
    /// height's immutable entry. `ttl_override` is the method's `cache_ttl`
    /// (`Some(0s)`: never cache).
    pub(crate) fn plan(&self, call: &mut Canonical, ttl_override: Option<Duration>) -> Plan {
        let settings = self.inner.settings.load();
        if !settings.enabled {
            return Plan::Bypass;
        }
        self.follow_chain();
        let asked = call.int("height");
        match policy::decide(
            call,
            self.head_view(),
            settings.latest_max_ttl,
            ttl_override,
        ) {
            Decision::Bypass => Plan::Bypass,
            Decision::Cache(policy) => Plan::Cached {
                latest: previous::latest(call, asked, policy, settings.while_refreshing),
                key: call.key(),
                method: call.spec.name,
                policy,
                asked_height: policy
                    .is_immutable()
                    .then(|| call.int("height"))
                    .flatten()
                    .and_then(|h| u64::try_from(h).ok()),
            },
        }
    }

    /// After a call's answer (or failure) is known: a failure that is the node's (or a
    /// full lane's), not the caller's, may be answered from a "latest" entry stored no
    /// longer than `stale_if_error` ago (`Stale`). The one place that fallback is made.
    pub(crate) async fn settle(
        &self,
        plan: &Plan,
        result: Result<Answer, Rejection>,
        status: CacheStatus,
    ) -> (Result<Answer, Rejection>, CacheStatus) {
        match result {
            Err(error) => match self.stale(plan, &error).await {
                Some(answer) => (Ok(answer), CacheStatus::Stale),
                None => (Err(error), status),
            },
            ok => (ok, status),
        }
    }

    /// Looks one planned call up: a fresh entry is a hit; an identical miss in flight is
    /// joined (`Wait`, then `Coalesced`); otherwise this caller leads the fetch and hands
    /// its answer to `Leader::finish`. Async because moka's lookups are.
    pub(crate) async fn begin(&self, plan: Plan) -> Begin {
        let Plan::Cached {
            key,
            method,
            policy,
            asked_height,
            latest,
        } = plan
        else {
            self.inner.counters.bypass.fetch_add(1, Ordering::Relaxed);
            return Begin::Bypass;
        };
        if let Some(answer) = self.fresh(&key).await {
            self.inner.counters.hits.fetch_add(1, Ordering::Relaxed);
            return Begin::Hit(answer);
        }
        let flight = FlightKey {
            key,
            tag: policy.flight_tag(),
        };
        match self.inner.flights.join(flight.clone()) {
            Joined::Follow(outcome) => {
                if let Some(answer) = self.previous(&flight.key, latest.as_ref()).await {
                    return Begin::Previous(answer);
                }
                self.inner
                    .counters
                    .coalesced
                    .fetch_add(1, Ordering::Relaxed);
                Begin::Wait(Follower { outcome })
            }
            Joined::Lead(ticket) => {
                // A leader may have stored and left between our lookup and our join.
                if let Some(answer) = self.fresh(&flight.key).await {
                    ticket.publish(&Ok(answer.clone()));
                    self.inner.counters.hits.fetch_add(1, Ordering::Relaxed);
                    return Begin::Hit(answer);
                }
                self.inner.counters.misses.fetch_add(1, Ordering::Relaxed);
                Begin::Lead(Leader {
                    cache: self.clone(),
                    key: flight.key,
                    method,
                    policy,
                    asked_height,
                    chain: self.inner.head.chain_generation(),
                    ticket,
                })
            }
        }
    }

    /// A "latest" answer stored no longer than `stale_if_error` ago, to serve instead of
    /// `error` when the failure is the node's (or a full lane's), not the caller's.
    async fn stale(&self, plan: &Plan, error: &Rejection) -> Option<Answer> {
        let Plan::Cached { key, .. } = plan else {
            return None;
        };
        let standing_in =
            error.blame() == Blame::Upstream || matches!(error, Rejection::Overloaded { .. });
        if !standing_in {
            return None;
        }
        let window = self.inner.settings.load().stale_if_error;
        let entry = self.inner.store.get(key).await?;
        if !entry.stale_ok
            || entry.age(Instant::now()) > window
            || entry.chain != self.inner.head.chain_generation()
        {
            return None;
        }
        self.inner.counters.stale.fetch_add(1, Ordering::Relaxed);
        Some(entry.answer)
    }

    /// Once the node serves another chain, its entries can never be served again: free
    /// their bytes now rather than as they age out. Only the first caller to see the new
    /// generation purges.
    fn follow_chain(&self) {
        let now = self.inner.head.chain_generation();
        let had = self.inner.chain.load(Ordering::Acquire);
        if now != had
            && self
                .inner
                .chain
                .compare_exchange(had, now, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            let dropped = self.purge(None);
            tracing::warn!(dropped, "the node's chain id changed: cache purged");
        }
    }

    /// Drops every entry, or one method's; returns how many there were.
    pub fn purge(&self, method: Option<&str>) -> u64 {
        let store = &self.inner.store;
        let Some(method) = method else {
            let count = store.iter().count() as u64;
            store.invalidate_all();
            return count;
        };
        let prefix: Vec<u8> = [method.as_bytes(), b" "].concat();
        let count = store
            .iter()
            .filter(|(k, _)| k.as_bytes().starts_with(&prefix))
            .count() as u64;
        if let Err(e) = store.invalidate_entries_if(move |k, _| k.as_bytes().starts_with(&prefix)) {
            tracing::error!(error = %e, "cache purge failed");
            return 0;
        }
        count
    }

    pub fn stats(&self) -> CacheStats {
        let inner = &self.inner;
        inner.counters.snapshot(
            inner.store.entry_count(),
            inner.store.weighted_size(),
            inner.max_bytes,
            inner.flights.len(),
            &inner.removals,
        )
    }

    /// Applies moka's pending evictions now (they run asynchronously otherwise); the
    /// weight reported by `stats` is exact only after this.
    pub async fn run_pending_tasks(&self) {
        self.inner.store.run_pending_tasks().await;
    }

    fn head_view(&self) -> HeadView {
        let head = &self.inner.head;
        HeadView {
            height: head.height(),
            blind: head.blind(),
        }
    }

    async fn fresh(&self, key: &CacheKey) -> Option<Answer> {
        let entry = self.inner.store.get(key).await?;
        let latest_ttl = self.inner.settings.load().latest_max_ttl;
        (entry.chain == self.inner.head.chain_generation()
            && entry.is_fresh(Instant::now(), self.head_view(), latest_ttl))
        .then_some(entry.answer)
    }
}
