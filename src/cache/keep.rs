//! What an answer becomes in the store: its verdict, its size against the entry cap,
//! and how long moka keeps it.

use std::sync::atomic::Ordering;

use tokio::time::Instant;

use super::{judge, store, verdict, Cache, Entry, Policy, Verdict};
use crate::error::Rejection;
use crate::methods::CacheKey;
use crate::upstream::Answer;

impl Cache {
    /// The entry an answer becomes, if its verdict and size allow one.
    pub(super) fn entry_for(
        &self,
        method: &str,
        policy: Policy,
        asked_height: Option<u64>,
        chain: u64,
        result: &Result<Answer, Rejection>,
    ) -> Option<Entry> {
        let Ok(answer) = result else { return None };
        let settings = self.inner.settings.load();
        let verdict = match judge(method, policy, answer) {
            Verdict::Storable if !verdict::answers_for(method, asked_height, answer) => {
                Verdict::PassThrough
            }
            verdict => verdict,
        };
        let policy = match verdict {
            Verdict::Storable => policy,
            Verdict::CodeError if !settings.code_error_ttl.is_zero() => {
                Policy::Ttl(settings.code_error_ttl)
            }
            _ => {
                self.inner.counters.reject(verdict);
                return None;
            }
        };
        if answer.len() as u64 > settings.max_entry_bytes {
            self.inner
                .counters
                .too_large
                .fetch_add(1, Ordering::Relaxed);
            return None;
        }
        let keep_for = store::keep_for(
            policy,
            settings.stale_if_error,
            settings.latest_max_ttl,
            self.inner.head.stall_after(),
        );
        Some(Entry {
            // The upstream hands over answers that own their bytes (see
            // `upstream::read::owned`): stored as they are, no second copy.
            answer: answer.clone(),
            stored_at: Instant::now(),
            policy,
            stale_ok: verdict == Verdict::Storable && !policy.is_immutable(),
            keep_for,
            chain,
        })
    }

    /// A "latest" answer from a block the head has not reached yet raises the head and
    /// is kept as that block's (see `verdict::reported_head`). Not across a change of
    /// chain: the other chain's heights say nothing of this one's.
    pub(super) fn caught_up(
        &self,
        method: &str,
        policy: Policy,
        chain: u64,
        result: &Result<Answer, Rejection>,
    ) -> Policy {
        let (Policy::UntilNextBlock { height }, Ok(answer)) = (policy, result) else {
            return policy;
        };
        if chain != self.inner.head.chain_generation() {
            return policy;
        }
        match verdict::reported_head(method, answer) {
            Some(reported) if reported > height => {
                self.inner.head.observe(reported);
                Policy::UntilNextBlock { height: reported }
            }
            _ => policy,
        }
    }

    pub(super) async fn insert(&self, key: CacheKey, entry: Entry) {
        self.inner.store.insert(key, entry).await;
        self.inner.counters.stores.fetch_add(1, Ordering::Relaxed);
    }
}
