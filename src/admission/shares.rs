//! Per-client shares of a lane: at most `lanes.<lane>.max_per_client` of one client's
//! node calls hold or wait for the lane at once. A client's further calls wait on its
//! own share first, so the lane's FIFO queue holds at most that many of its calls and
//! other clients' calls are not stuck behind a flood from one.
//!
//! A share is a small semaphore per busy client, dropped from the table once nobody
//! holds or waits for it: the table is as large as the set of clients busy in the lane.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::client::ClientKey;

#[derive(Default)]
pub(super) struct Shares {
    table: Mutex<HashMap<ClientKey, Arc<Semaphore>>>,
}

/// One of a client's places in a lane; given back (and the client's entry tidied away
/// when idle) on drop.
pub(super) struct Share {
    shares: Arc<Shares>,
    key: ClientKey,
    permit: Option<OwnedSemaphorePermit>,
}

impl Shares {
    fn table(&self) -> MutexGuard<'_, HashMap<ClientKey, Arc<Semaphore>>> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn semaphore(&self, key: &ClientKey, max: usize) -> Arc<Semaphore> {
        let mut table = self.table();
        table
            .entry(key.clone())
            .or_insert_with(|| Arc::new(Semaphore::new(max.min(Semaphore::MAX_PERMITS))))
            .clone()
    }

    fn share(self: &Arc<Self>, key: &ClientKey, permit: OwnedSemaphorePermit) -> Share {
        Share {
            shares: self.clone(),
            key: key.clone(),
            permit: Some(permit),
        }
    }

    /// A place now, if the client has one free. `max` applies to a client first seen
    /// now; a busy client keeps the size it had until it is idle (a reload).
    pub(super) fn try_take(self: &Arc<Self>, key: &ClientKey, max: usize) -> Option<Share> {
        let permit = self.semaphore(key, max).try_acquire_owned();
        match permit {
            Ok(p) => Some(self.share(key, p)),
            Err(_) => {
                self.tidy(key);
                None
            }
        }
    }

    /// Waits for a place. Cancel-safe: a dropped wait holds nothing, and the entry
    /// it kept alive is tidied by the next one to leave.
    pub(super) async fn take(self: &Arc<Self>, key: &ClientKey, max: usize) -> Option<Share> {
        let sem = self.semaphore(key, max);
        let permit = sem.acquire_owned().await.ok()?;
        Some(self.share(key, permit))
    }

    /// Drops the client's entry if nobody holds or waits for it (the table's own
    /// reference is the only one left).
    fn tidy(&self, key: &ClientKey) {
        let mut table = self.table();
        if table.get(key).is_some_and(|s| Arc::strong_count(s) == 1) {
            table.remove(key);
        }
    }

    pub(super) fn busy_clients(&self) -> usize {
        self.table().len()
    }
}

impl Drop for Share {
    fn drop(&mut self) {
        drop(self.permit.take());
        self.shares.tidy(&self.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, Ipv4Addr};

    fn ip(last: u8) -> ClientKey {
        ClientKey::Ip(IpAddr::V4(Ipv4Addr::new(10, 0, 0, last)))
    }

    #[tokio::test]
    async fn a_client_holds_at_most_its_share_and_idle_clients_leave_the_table() {
        let shares = Arc::new(Shares::default());
        let a1 = shares.try_take(&ip(1), 2).unwrap();
        let a2 = shares.try_take(&ip(1), 2).unwrap();
        assert!(shares.try_take(&ip(1), 2).is_none());
        let b = shares.try_take(&ip(2), 2).unwrap();
        assert_eq!(shares.busy_clients(), 2);

        let waiting = {
            let shares = shares.clone();
            tokio::spawn(async move { shares.take(&ip(1), 2).await.is_some() })
        };
        tokio::task::yield_now().await;
        drop(a1);
        assert!(waiting.await.unwrap(), "a freed place goes to the waiter");
        drop((a2, b));
        assert_eq!(shares.busy_clients(), 0);
    }
}
