//! Counters for `/metrics` and the admin API. Relaxed atomics: each is a tally, none
//! orders anything.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

use super::store::Removals;
use super::Verdict;

#[derive(Default)]
pub(crate) struct Counters {
    pub hits: AtomicU64,
    pub misses: AtomicU64,
    pub coalesced: AtomicU64,
    pub stale: AtomicU64,
    pub bypass: AtomicU64,
    pub stores: AtomicU64,
    pub too_large: AtomicU64,
    pass_through: AtomicU64,
    code_error: AtomicU64,
    invalid: AtomicU64,
}

/// Answers not stored, by why.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Rejected {
    pub pass_through: u64,
    /// ABCI code ≠ 0 while `cache.code_error_ttl` is zero.
    pub code_error: u64,
    pub invalid: u64,
    /// Over `cache.max_entry_bytes`: served, not stored.
    pub too_large: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct CacheStats {
    /// moka's counts lag until its pending tasks run.
    pub entries: u64,
    pub weighted_bytes: u64,
    pub max_bytes: u64,
    pub in_flight: usize,
    pub hits: u64,
    pub misses: u64,
    pub coalesced: u64,
    /// Upstream failures answered from a "latest" entry (also counted as a miss or a
    /// coalesced call when it went through `get_or_fetch`).
    pub stale: u64,
    pub bypass: u64,
    /// Removed for space.
    pub evictions: u64,
    /// Reclaimed once past any use, stale included.
    pub expirations: u64,
    pub stores: u64,
    pub rejected: Rejected,
}

impl Counters {
    pub(crate) fn reject(&self, verdict: Verdict) {
        let counter = match verdict {
            Verdict::Storable => return,
            Verdict::CodeError => &self.code_error,
            Verdict::PassThrough => &self.pass_through,
            Verdict::Invalid => &self.invalid,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn snapshot(
        &self,
        entries: u64,
        weighted_bytes: u64,
        max_bytes: u64,
        in_flight: usize,
        removals: &Removals,
    ) -> CacheStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        CacheStats {
            entries,
            weighted_bytes,
            max_bytes,
            in_flight,
            hits: get(&self.hits),
            misses: get(&self.misses),
            coalesced: get(&self.coalesced),
            stale: get(&self.stale),
            bypass: get(&self.bypass),
            evictions: get(&removals.evicted),
            expirations: get(&removals.expired),
            stores: get(&self.stores),
            rejected: Rejected {
                pass_through: get(&self.pass_through),
                code_error: get(&self.code_error),
                invalid: get(&self.invalid),
                too_large: get(&self.too_large),
            },
        }
    }
}
