//! Per-client shares of a lane: at most `lanes.<lane>.max_per_client` of one client's
//! node calls hold or queue for the lane at once. A client's further calls wait on its
//! own share first, outside the lane's queue, so that queue holds at most that many of
//! its calls and other clients' calls are not stuck behind a flood from one.
//!
//! A share is a small semaphore per busy client, dropped from the table once nobody
//! holds or waits for it: the table is as large as the set of clients busy in the lane.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::client::ClientKey;

struct Entry {
    semaphore: Arc<Semaphore>,
    /// Holders and waiters: the entry goes when the last of them does.
    users: usize,
}

#[derive(Default)]
pub(super) struct Shares {
    table: Mutex<HashMap<ClientKey, Entry>>,
}

/// One user of a client's entry (a waiter, then a holder); leaving tidies the entry.
struct User {
    shares: Arc<Shares>,
    key: ClientKey,
}

impl Drop for User {
    fn drop(&mut self) {
        let mut table = self.shares.table();
        if let Some(entry) = table.get_mut(&self.key) {
            entry.users -= 1;
            if entry.users == 0 {
                table.remove(&self.key);
            }
        }
    }
}

/// One of a client's places in a lane, given back on drop.
pub(super) struct Share {
    // The permit goes back before the user leaves (field order is drop order).
    _permit: OwnedSemaphorePermit,
    _user: User,
}

impl Shares {
    fn table(&self) -> MutexGuard<'_, HashMap<ClientKey, Entry>> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Joins the client's entry (made with `max` places if the client was idle: a busy
    /// client keeps the size it had until it is idle, which is how a reload reaches it).
    fn join(self: &Arc<Self>, key: &ClientKey, max: usize) -> (User, Arc<Semaphore>) {
        let mut table = self.table();
        let entry = table.entry(key.clone()).or_insert_with(|| Entry {
            semaphore: Arc::new(Semaphore::new(max.min(Semaphore::MAX_PERMITS))),
            users: 0,
        });
        entry.users += 1;
        let semaphore = entry.semaphore.clone();
        drop(table);
        let user = User {
            shares: self.clone(),
            key: key.clone(),
        };
        (user, semaphore)
    }

    /// A place now, if the client has one free.
    pub(super) fn try_take(self: &Arc<Self>, key: &ClientKey, max: usize) -> Option<Share> {
        let (user, semaphore) = self.join(key, max);
        let permit = semaphore.try_acquire_owned().ok()?;
        Some(Share {
            _permit: permit,
            _user: user,
        })
    }

    /// Waits for a place. Cancel-safe: a dropped wait leaves the entry as it found it.
    pub(super) async fn take(self: &Arc<Self>, key: &ClientKey, max: usize) -> Option<Share> {
        let (user, semaphore) = self.join(key, max);
        let permit = semaphore.acquire_owned().await.ok()?;
        Some(Share {
            _permit: permit,
            _user: user,
        })
    }

    pub(super) fn busy_clients(&self) -> usize {
        self.table().len()
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

    #[tokio::test(start_paused = true)]
    async fn a_wait_given_up_leaves_no_entry_behind() {
        let shares = Arc::new(Shares::default());
        let held = shares.try_take(&ip(1), 1).unwrap();
        let gave_up =
            tokio::time::timeout(std::time::Duration::from_secs(1), shares.take(&ip(1), 1)).await;
        assert!(gave_up.is_err());
        drop(held);
        assert_eq!(shares.busy_clients(), 0);
        // And one that gives up after the holder left first.
        let held = shares.try_take(&ip(1), 1).unwrap();
        let one = ip(1);
        let mut wait = Box::pin(shares.take(&one, 1));
        assert!(futures_util::poll!(wait.as_mut()).is_pending());
        drop(held);
        drop(wait);
        assert_eq!(shares.busy_clients(), 0);
    }
}
