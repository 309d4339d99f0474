//! The bounded store: a moka cache weighed in bytes. Freshness is judged here at lookup
//! against the head, on tokio's clock; moka's own expiry only reclaims entries that can
//! no longer be served even as stale.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use moka::notification::RemovalCause;
use tokio::time::Instant;

use super::policy::{HeadView, Policy};
use crate::methods::CacheKey;
use crate::upstream::Answer;

/// What an entry costs in memory besides its key and answer bytes: moka's node, access
/// and expiry bookkeeping, the entry's metadata, allocator rounding. Measured, not
/// guessed (`cometgate-load lean --only entries`): from 10,000 to 100,000 cached
/// `block` answers of 1,922 bytes, RSS grew 2,988 bytes an entry, about 1,040 more than
/// key and answer. Counting it keeps many small answers within `max_bytes` of RSS; the
/// earlier estimate of 160 let them overrun it by half.
pub(crate) const ENTRY_OVERHEAD: usize = 1024;

#[derive(Clone, Debug)]
pub(crate) struct Entry {
    pub answer: Answer,
    pub stored_at: Instant,
    pub policy: Policy,
    /// May be served in place of an upstream failure.
    pub stale_ok: bool,
    /// How long moka keeps it at all; `None` until evicted for space.
    pub keep_for: Option<Duration>,
    /// The head's chain generation when it was fetched: another chain's answer is never
    /// served, however "immutable".
    pub chain: u64,
}

impl Entry {
    pub(crate) fn age(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.stored_at)
    }

    /// Fresh: may be served as a hit.
    pub(crate) fn is_fresh(&self, now: Instant, head: HeadView, latest_ttl: Duration) -> bool {
        match self.policy {
            Policy::Immutable => true,
            Policy::Ttl(ttl) => self.age(now) < ttl,
            // A blind tracker cannot tell whether the chain moved on: fall back to a
            // time bound.
            Policy::UntilNextBlock { height } => {
                head.height == Some(height) && (!head.blind || self.age(now) < latest_ttl)
            }
        }
    }
}

pub(crate) type Store = moka::future::Cache<CacheKey, Entry>;

pub(crate) fn weight(key: &CacheKey, entry: &Entry) -> u32 {
    u32::try_from(key.len() + entry.answer.len() + ENTRY_OVERHEAD).unwrap_or(u32::MAX)
}

struct KeepFor;

impl moka::Expiry<CacheKey, Entry> for KeepFor {
    fn expire_after_create(
        &self,
        _: &CacheKey,
        entry: &Entry,
        _: std::time::Instant,
    ) -> Option<Duration> {
        entry.keep_for
    }

    fn expire_after_update(
        &self,
        _: &CacheKey,
        entry: &Entry,
        _: std::time::Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        entry.keep_for
    }
}

#[derive(Default)]
pub(crate) struct Removals {
    pub evicted: AtomicU64,
    pub expired: AtomicU64,
}

pub(crate) fn build(max_bytes: u64, removals: Arc<Removals>) -> Store {
    moka::future::Cache::builder()
        .max_capacity(max_bytes)
        .weigher(weight)
        .expire_after(KeepFor)
        .support_invalidation_closures()
        .eviction_listener(move |_, _, cause| match cause {
            RemovalCause::Size => {
                removals.evicted.fetch_add(1, Ordering::Relaxed);
            }
            RemovalCause::Expired => {
                removals.expired.fetch_add(1, Ordering::Relaxed);
            }
            RemovalCause::Explicit | RemovalCause::Replaced => {}
        })
        .build()
}

/// How long to keep an entry in moka: as long as it can be fresh, or served stale.
/// `stall_after` bounds an `UntilNextBlock` entry: a head that does not advance for
/// that long turns blind, and a blind head serves it for `latest_ttl` at most.
pub(crate) fn keep_for(
    policy: Policy,
    stale_window: Duration,
    latest_ttl: Duration,
    stall_after: Duration,
) -> Option<Duration> {
    // Slack so that moka does not reclaim an entry the instant it could still be used.
    const SLACK: Duration = Duration::from_secs(1);
    match policy {
        Policy::Immutable => None,
        Policy::Ttl(ttl) => Some(ttl.max(stale_window) + SLACK),
        Policy::UntilNextBlock { .. } => {
            Some(stall_after.max(latest_ttl).max(stale_window) + SLACK)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn entry(policy: Policy) -> Entry {
        Entry {
            answer: Answer::Result(Bytes::from_static(b"{\"a\":1}")),
            stored_at: Instant::now(),
            policy,
            stale_ok: !policy.is_immutable(),
            keep_for: None,
            chain: 0,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn freshness_follows_the_head_then_the_clock_when_blind() {
        let ttl = Duration::from_secs(10);
        let e = entry(Policy::UntilNextBlock { height: 7 });
        let at = |height, blind| HeadView { height, blind };
        let now = Instant::now();
        assert!(e.is_fresh(now, at(Some(7), false), ttl));
        assert!(!e.is_fresh(now, at(Some(8), false), ttl));
        assert!(!e.is_fresh(now, at(None, true), ttl));
        assert!(e.is_fresh(now + Duration::from_secs(9), at(Some(7), true), ttl));
        assert!(!e.is_fresh(now + Duration::from_secs(10), at(Some(7), true), ttl));
        assert!(e.is_fresh(now + Duration::from_secs(3600), at(Some(7), false), ttl));
        let t = entry(Policy::Ttl(Duration::from_secs(2)));
        assert!(t.is_fresh(now + Duration::from_secs(1), at(Some(9), false), ttl));
        assert!(!t.is_fresh(now + Duration::from_secs(2), at(Some(7), false), ttl));
        assert!(entry(Policy::Immutable).is_fresh(
            now + Duration::from_secs(1 << 30),
            at(None, true),
            ttl
        ));
    }

    #[test]
    fn weights_count_key_answer_and_overhead() {
        let e = entry(Policy::Immutable);
        let key = crate::methods::Canonical {
            spec: crate::methods::lookup("status").unwrap(),
            params: Default::default(),
        }
        .key();
        assert_eq!(weight(&key, &e) as usize, key.len() + 7 + ENTRY_OVERHEAD);
        assert_eq!(
            keep_for(
                Policy::Immutable,
                Duration::ZERO,
                Duration::ZERO,
                Duration::ZERO
            ),
            None
        );
        let s = Duration::from_secs;
        assert_eq!(
            keep_for(Policy::UntilNextBlock { height: 1 }, s(30), s(10), s(60)),
            Some(s(61))
        );
        assert_eq!(
            keep_for(Policy::Ttl(s(5)), s(30), s(10), s(60)),
            Some(s(31))
        );
    }
}
