//! Per-client counters of things held at once (requests in flight, WebSocket
//! connections). An entry lives only while its count is above zero, so the table is as
//! large as the set of clients busy right now, however many distinct clients come by.
//! Sharded so that unrelated clients rarely meet on one lock; locks are never held
//! across an await.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Mutex, MutexGuard};

use super::client::ClientKey;

const SHARDS: usize = 16;

#[derive(Default)]
pub(super) struct SlotTable {
    shards: [Mutex<HashMap<ClientKey, usize>>; SHARDS],
    hasher: RandomState,
}

impl SlotTable {
    fn shard(&self, key: &ClientKey) -> MutexGuard<'_, HashMap<ClientKey, usize>> {
        let i = (self.hasher.hash_one(key) % SHARDS as u64) as usize;
        // A panic elsewhere while counting leaves the counts themselves consistent.
        self.shards[i].lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One more slot for `key`, unless it already holds `max`.
    pub(super) fn try_take(self: &Arc<Self>, key: &ClientKey, max: usize) -> Option<Slot> {
        let mut shard = self.shard(key);
        let held = shard.get(key).copied().unwrap_or(0);
        if held >= max {
            return None;
        }
        match shard.get_mut(key) {
            Some(n) => *n += 1,
            None => {
                shard.insert(key.clone(), 1);
            }
        }
        Some(Slot {
            table: self.clone(),
            key: key.clone(),
        })
    }

    fn release(&self, key: &ClientKey) {
        let mut shard = self.shard(key);
        if let Some(n) = shard.get_mut(key) {
            *n -= 1;
            if *n == 0 {
                shard.remove(key);
            }
        }
    }

    #[cfg(test)]
    pub(super) fn held(&self, key: &ClientKey) -> usize {
        self.shard(key).get(key).copied().unwrap_or(0)
    }

    /// Clients holding at least one slot.
    pub(super) fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).len())
            .sum()
    }

    /// Gives back the memory of a burst of clients that has since gone.
    pub(super) fn shrink(&self) {
        for s in &self.shards {
            s.lock().unwrap_or_else(|e| e.into_inner()).shrink_to_fit();
        }
    }
}

/// One slot; given back on drop.
pub(super) struct Slot {
    table: Arc<SlotTable>,
    key: ClientKey,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.table.release(&self.key);
    }
}

/// One of a client's `rate_limit.max_concurrent_per_client` requests in flight; hold it
/// until the answer is written (or the request abandoned) and drop it.
#[must_use = "the slot is given back as soon as the permit is dropped"]
pub struct ClientPermit {
    pub(super) _slot: Option<Slot>,
}

impl std::fmt::Debug for ClientPermit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientPermit")
            .field("counted", &self._slot.is_some())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_counted_per_client_and_entries_removed_at_zero() {
        let t = Arc::new(SlotTable::default());
        let a = ClientKey::ip("1.1.1.1".parse().unwrap());
        let b = ClientKey::ApiKey(Arc::from("k"));
        let s1 = t.try_take(&a, 2).unwrap();
        let s2 = t.try_take(&a, 2).unwrap();
        assert!(t.try_take(&a, 2).is_none());
        let _b1 = t.try_take(&b, 2).unwrap();
        assert_eq!((t.held(&a), t.len()), (2, 2));
        drop(s1);
        let s3 = t.try_take(&a, 2).unwrap();
        drop((s2, s3));
        assert_eq!((t.held(&a), t.len()), (0, 1));
        t.shrink();
    }

    #[test]
    fn many_passing_clients_leave_nothing_behind() {
        let t = Arc::new(SlotTable::default());
        for i in 0..10_000u32 {
            let key = ClientKey::ip(std::net::IpAddr::from(i.to_be_bytes()));
            drop(t.try_take(&key, 1).unwrap());
        }
        assert_eq!(t.len(), 0);
    }
}
