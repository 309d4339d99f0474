//! Cells a client owes: what other replicas admitted for it that did not fit in its
//! bucket here (a flooding client's bucket is always empty). Paid with the next cells
//! its own calls would take, and forgiven once it is older than the time the client's
//! rate would take to earn it back: an idle client must not come back owing.
//!
//! Bounded in clients; while nobody owes, a request reads one atomic and nothing else.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::client::ClientKey;

/// Clients that may owe at once; past it, a charge that does not fit is dropped.
const MAX_DEBTORS: usize = 16_384;
/// A debt is at most this many seconds of the client's rate, and is forgiven this long
/// after it was last added to: stale reports must not lock a client out.
pub(super) const MAX_DEBT_SECONDS: u64 = 2;

#[derive(Default)]
pub(super) struct Debts {
    owed: Mutex<HashMap<ClientKey, (u64, Instant)>>,
    /// Whether `owed` holds anything.
    any: AtomicBool,
}

impl Debts {
    fn owed(&self) -> MutexGuard<'_, HashMap<ClientKey, (u64, Instant)>> {
        self.owed.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds `cells` to the client's debt, capped at `cap`.
    pub(super) fn add(&self, client: &ClientKey, cells: u64, cap: u64) {
        let mut owed = self.owed();
        if owed.len() >= MAX_DEBTORS && !owed.contains_key(client) {
            return;
        }
        let entry = owed.entry(client.clone()).or_insert((0, Instant::now()));
        *entry = (entry.0.saturating_add(cells).min(cap), Instant::now());
        self.any.store(true, Ordering::Release);
    }

    /// Pays `cost` with cells the client's call just took; true if it owed something.
    pub(super) fn pay(&self, client: &ClientKey, cost: u32) -> bool {
        if !self.any.load(Ordering::Acquire) {
            return false;
        }
        let mut owed = self.owed();
        let Some((debt, at)) = owed.get_mut(client) else {
            return false;
        };
        let fresh = at.elapsed() < Duration::from_secs(MAX_DEBT_SECONDS);
        *debt = debt.saturating_sub(u64::from(cost));
        if *debt == 0 || !fresh {
            owed.remove(client);
            self.any.store(!owed.is_empty(), Ordering::Release);
        }
        fresh
    }

    /// Forgets debts too old to be owed.
    pub(super) fn gc(&self) {
        let mut owed = self.owed();
        owed.retain(|_, (_, at)| at.elapsed() < Duration::from_secs(MAX_DEBT_SECONDS));
        self.any.store(!owed.is_empty(), Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_debt_is_capped_paid_down_and_bounded_in_clients() {
        let debts = Debts::default();
        let a = ClientKey::ip("10.0.0.1".parse().unwrap());
        assert!(!debts.pay(&a, 1), "nobody owes");
        debts.add(&a, 50, 3);
        assert!(debts.pay(&a, 2));
        assert!(debts.pay(&a, 2), "capped at 3: the last cell");
        assert!(!debts.pay(&a, 1), "paid");
        for i in 0..(MAX_DEBTORS as u32 + 5) {
            debts.add(
                &ClientKey::ip(std::net::IpAddr::from(i.to_be_bytes())),
                1,
                1,
            );
        }
        assert_eq!(debts.owed().len(), MAX_DEBTORS);
        debts.gc();
        assert_eq!(debts.owed().len(), MAX_DEBTORS, "fresh debts are kept");
    }
}
