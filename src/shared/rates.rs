//! Rate limits shared by replicas. A client the load balancer spreads over three
//! replicas would otherwise get three times its rate.
//!
//! No request waits on Redis for this. Each replica still decides from its own GCRA
//! buckets, and counts what it admitted per client. Every `EXCHANGE` a background task
//! writes each client's running total into one Redis hash per client (a field per
//! replica; a total, not an increment, so that an exchange that failed half-way and is
//! sent again counts nothing twice) and reads the other replicas' fields back. What the
//! others admitted since the last look is then charged to the client's local bucket, as
//! if those calls had been made here; what does not fit is owed (`admission::debt`). A
//! client spread evenly over N replicas thus drains every replica's bucket at its whole
//! rate, and is admitted at about its configured rate in total, not N times it; the
//! error is what the replicas admit in one exchange interval before they hear of each
//! other, and each replica's first burst.
//!
//! While Redis is away the totals keep growing here and each replica limits alone, as
//! without Redis; the next exchange reports them whole. Per-client concurrency stays
//! per replica. A field a restarted replica left behind goes with its hash, 60 s after
//! the client was last reported.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use redis::aio::ConnectionManager;
use sha2::{Digest, Sha256};

use super::Inner;
use crate::admission::{Admission, ClientKey};

/// How often replicas exchange their counts: the window in which they can overshoot.
pub(super) const EXCHANGE: Duration = Duration::from_millis(100);
/// A client not seen here for this long is no longer followed.
const IDLE: Duration = Duration::from_secs(30);
/// How long Redis keeps a client's counts after the last report.
const KEEP_SECONDS: u64 = 60;
/// Clients followed at most, here and in one exchange.
const MAX_CLIENTS: usize = 16_384;

/// What this replica admitted since the last exchange.
pub(super) struct Usage {
    /// This replica's field in every client's hash.
    me: String,
    pending: Mutex<HashMap<ClientKey, u64>>,
}

impl Usage {
    pub(super) fn new() -> Usage {
        // Random per process: a restarted replica is a new one, whose counts start at 0.
        let id = RandomState::new().build_hasher().finish();
        Usage {
            me: format!("{id:016x}"),
            pending: Mutex::default(),
        }
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, HashMap<ClientKey, u64>> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// One admitted call of `cost`. Local clients have no limit to share.
    pub(super) fn admitted(&self, client: &ClientKey, cost: u32) {
        if matches!(client, ClientKey::Local(_)) {
            return;
        }
        let mut pending = self.pending();
        if let Some(n) = pending.get_mut(client) {
            *n += u64::from(cost);
        } else if pending.len() < MAX_CLIENTS {
            pending.insert(client.clone(), u64::from(cost));
        }
    }

    fn take(&self) -> HashMap<ClientKey, u64> {
        std::mem::take(&mut *self.pending())
    }
}

/// A client as this replica follows it: what it admitted here in all, and the other
/// replicas' totals last seen.
struct Followed {
    mine: u64,
    /// `mine` as Redis last acknowledged it.
    reported: u64,
    others: HashMap<String, u64>,
    active_at: Instant,
}

/// The client's name in Redis. An API key is a secret: only a digest of it is stored.
fn name(client: &ClientKey) -> String {
    match client {
        ClientKey::Ip(ip) | ClientKey::Local(ip) => format!("ip:{ip}"),
        ClientKey::ApiKey(key) => {
            let digest = Sha256::digest(key.as_bytes());
            format!("key:{}", hex::encode(&digest[..16]))
        }
    }
}

/// Charges, from one exchange's answer, what the other replicas admitted since the
/// last look. A replica seen for the first time sets a baseline and is charged nothing:
/// its count may hold a minute of history.
fn charges(followed: &mut Followed, me: &str, counts: HashMap<String, u64>) -> u64 {
    let mut charge: u64 = 0;
    for (replica, count) in counts {
        if replica == me {
            continue;
        }
        charge = charge.saturating_add(match followed.others.insert(replica, count) {
            Some(last) if count >= last => count - last,
            // The hash expired and started again.
            Some(_) => count,
            None => 0,
        });
    }
    charge
}

/// One client's hash as Redis gave it: replica to total. A field that is not a number
/// (another program's, a hand edit) is skipped, not the whole exchange.
fn totals(hash: redis::Value) -> HashMap<String, u64> {
    let Ok(fields) = redis::from_redis_value::<HashMap<String, redis::Value>>(&hash) else {
        return HashMap::new();
    };
    fields
        .into_iter()
        .filter_map(|(replica, v)| Some((replica, redis::from_redis_value::<u64>(&v).ok()?)))
        .collect()
}

/// Exchanges counts every `EXCHANGE` until the tier is gone.
pub(super) async fn exchange(
    inner: Weak<Inner>,
    admission: Arc<Admission>,
    mut connection: ConnectionManager,
) {
    let mut followed: HashMap<ClientKey, Followed> = HashMap::new();
    loop {
        tokio::time::sleep(EXCHANGE).await;
        let Some(tier) = inner.upgrade() else { return };
        let counts = tier.usage.take();
        let now = Instant::now();
        for (client, n) in &counts {
            if followed.len() < MAX_CLIENTS || followed.contains_key(client) {
                let f = followed.entry(client.clone()).or_insert_with(|| Followed {
                    mine: 0,
                    reported: 0,
                    others: HashMap::new(),
                    active_at: now,
                });
                f.mine = f.mine.saturating_add(*n);
                f.active_at = now;
            }
        }
        followed.retain(|_, f| now.duration_since(f.active_at) < IDLE);
        if followed.is_empty() {
            continue;
        }
        let clients: Vec<ClientKey> = followed.keys().cloned().collect();
        let mut pipe = redis::pipe();
        for client in &clients {
            let key = format!("{}:rate:{}", tier.prefix, name(client));
            let f = &followed[client];
            if f.mine != f.reported {
                pipe.cmd("HSET")
                    .arg(&key)
                    .arg(&tier.usage.me)
                    .arg(f.mine)
                    .ignore();
                pipe.cmd("EXPIRE").arg(&key).arg(KEEP_SECONDS).ignore();
            }
            pipe.cmd("HGETALL").arg(&key);
        }
        let started = Instant::now();
        // Off the request path: a slow Redis delays the exchange, not a request.
        let reply = tokio::time::timeout(
            super::BACKGROUND_TIMEOUT.max(tier.timeout),
            pipe.query_async::<Vec<redis::Value>>(&mut connection),
        )
        .await;
        tier.metrics.latency("exchange", started.elapsed());
        match reply {
            Ok(Ok(all)) => {
                tier.answered(true);
                tier.metrics.op("exchange", "ok");
                for (client, hash) in clients.iter().zip(all) {
                    let Some(f) = followed.get_mut(client) else {
                        continue;
                    };
                    f.reported = f.mine;
                    let charge = charges(f, &tier.usage.me, totals(hash));
                    if charge > 0 {
                        admission.charge_rate(client, charge);
                    }
                }
            }
            Ok(Err(e)) => {
                tier.failed::<()>("exchange", "error", &e.to_string());
            }
            Err(_) => {
                tier.failed::<()>("exchange", "timeout", "no answer to the rate exchange");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn others_are_charged_what_they_admitted_since_the_last_look() {
        let mut f = Followed {
            mine: 0,
            reported: 0,
            others: HashMap::new(),
            active_at: Instant::now(),
        };
        let counts = |pairs: &[(&str, u64)]| {
            pairs
                .iter()
                .map(|(r, n)| (r.to_string(), *n))
                .collect::<HashMap<_, _>>()
        };
        assert_eq!(
            charges(&mut f, "me", counts(&[("me", 5), ("b", 40)])),
            0,
            "baseline"
        );
        assert_eq!(charges(&mut f, "me", counts(&[("me", 9), ("b", 55)])), 15);
        assert_eq!(
            charges(&mut f, "me", counts(&[("b", 60), ("c", 500)])),
            5,
            "a new replica's history is not charged"
        );
        assert_eq!(
            charges(&mut f, "me", counts(&[("b", 3), ("c", 510)])),
            13,
            "b restarted"
        );
    }

    #[test]
    fn api_keys_are_named_by_digest_and_counts_stay_bounded() {
        let key = ClientKey::ApiKey("sekrit-api-key".into());
        assert!(!name(&key).contains("sekrit"));
        assert_eq!(
            name(&key),
            name(&ClientKey::ApiKey("sekrit-api-key".into()))
        );
        assert_eq!(
            name(&ClientKey::ip("10.0.0.1".parse().unwrap())),
            "ip:10.0.0.1"
        );
        let usage = Usage::new();
        usage.admitted(&ClientKey::Local("127.0.0.1".parse().unwrap()), 1);
        for i in 0..(MAX_CLIENTS as u32 + 10) {
            usage.admitted(&ClientKey::ip(std::net::IpAddr::from(i.to_be_bytes())), 2);
        }
        assert_eq!(usage.take().len(), MAX_CLIENTS);
        assert!(usage.take().is_empty(), "taken once");
    }
}
