//! WebSocket caps for the relay: connection slots per client and overall, then, per
//! connection, message size, message rate (GCRA) and subscription count.
//!
//! A connection keeps the message caps it was opened under; a reload changes them for
//! new connections only (the relay would otherwise need a lock per message). Connection
//! counts are shared, so closing an old connection frees room under the new caps.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use governor::clock::DefaultClock;
use governor::RateLimiter;

use super::client::ClientKey;
use super::rate::{retry_after, Direct, Rate};
use super::slots::{Slot, SlotTable};
use crate::config::{Config, Lane};
use crate::error::Rejection;

/// The `[websocket]` caps as one reloadable value.
#[derive(Debug)]
pub(super) struct WsLimits {
    pub enabled: bool,
    pub max_connections_per_client: usize,
    /// API keys with their own connection cap.
    pub per_key: HashMap<Arc<str>, usize>,
    pub max_connections: usize,
    pub max_subscriptions: usize,
    pub max_message_bytes: u64,
    pub rate: Rate,
}

impl WsLimits {
    pub(super) fn new(config: &Config) -> WsLimits {
        let cfg = &config.websocket;
        WsLimits {
            enabled: cfg.enabled,
            max_connections_per_client: cfg.max_connections_per_client,
            per_key: config
                .rate_limit
                .api_keys
                .iter()
                .filter_map(|q| Some((Arc::from(q.key.as_str()), q.max_websocket_connections?)))
                .collect(),
            max_connections: cfg.max_connections,
            max_subscriptions: cfg.max_subscriptions_per_connection,
            max_message_bytes: cfg.max_message_bytes.as_u64(),
            rate: Rate {
                per_second: cfg.messages_per_second,
                burst: cfg.message_burst,
            },
        }
    }
}

/// Connections open across all clients.
#[derive(Default)]
pub(super) struct WsCounts {
    pub open: Arc<AtomicUsize>,
    pub per_client: Arc<SlotTable>,
}

struct Open(Arc<AtomicUsize>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// One admitted WebSocket connection; its slots are given back on drop.
pub(crate) struct WsConnection {
    limits: Arc<WsLimits>,
    messages: Direct<DefaultClock>,
    clock: DefaultClock,
    /// The queries subscribed to, as the node keys them: subscribing to one twice or
    /// unsubscribing from one never held changes nothing, at the node or here.
    subscriptions: HashSet<String>,
    _client: Slot,
    _open: Open,
}

impl std::fmt::Debug for WsConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WsConnection")
            .field("subscriptions", &self.subscriptions)
            .finish()
    }
}

pub(super) fn open(
    limits: &Arc<WsLimits>,
    counts: &WsCounts,
    client: &ClientKey,
) -> Result<WsConnection, Rejection> {
    if !limits.enabled {
        return Err(Rejection::MethodDenied("websocket".to_owned()));
    }
    // The client's own cap first: one greedy client is told it is the problem.
    let (max, key) = match client {
        ClientKey::ApiKey(k) if limits.per_key.contains_key(k) => (
            limits.per_key[k],
            "rate_limit.api_keys.max_websocket_connections",
        ),
        _ => (
            limits.max_connections_per_client,
            "websocket.max_connections_per_client",
        ),
    };
    let slot = counts
        .per_client
        .try_take(client, max)
        .ok_or(Rejection::ClientBusy { max, key })?;
    let total = limits.max_connections;
    if counts
        .open
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < total).then_some(n + 1)
        })
        .is_err()
    {
        return Err(Rejection::Overloaded {
            lane: Lane::Light,
            retry_after: Duration::from_secs(1),
        });
    }
    let clock = DefaultClock::default();
    Ok(WsConnection {
        limits: limits.clone(),
        messages: RateLimiter::direct_with_clock(limits.rate.quota(), clock.clone()),
        clock,
        subscriptions: HashSet::new(),
        _client: slot,
        _open: Open(counts.open.clone()),
    })
}

impl WsConnection {
    /// Every client message, before it is parsed: its size, then one cell of the rate.
    pub(crate) fn check_message(&self, len: usize) -> Result<(), Rejection> {
        let max = self.limits.max_message_bytes;
        if len as u64 > max {
            return Err(Rejection::ParamCap(format!(
                "message of {len} bytes is over this gateway's cap of {max} bytes \
                 (websocket.max_message_bytes)"
            )));
        }
        match self.messages.check() {
            Ok(()) => Ok(()),
            Err(not_until) => Err(Rejection::RateLimited {
                retry_after: retry_after(&not_until, &self.clock),
            }),
        }
    }

    /// Call before relaying a `subscribe`; refused once the connection holds its cap.
    /// A subscription the node then refuses stays counted until `unsubscribe_all`:
    /// counting too many is safe, too few is a way around the cap.
    pub(crate) fn add_subscription(&mut self, query: &str) -> Result<(), Rejection> {
        if self.subscriptions.contains(query) {
            return Ok(());
        }
        let max = self.limits.max_subscriptions;
        if self.subscriptions.len() >= max {
            return Err(Rejection::ParamCap(format!(
                "this connection already holds {max} subscriptions, this gateway's cap \
                 (websocket.max_subscriptions_per_connection); unsubscribe first"
            )));
        }
        self.subscriptions.insert(query.to_owned());
        Ok(())
    }

    /// Before relaying an `unsubscribe`: only a query held is given back.
    pub(crate) fn remove_subscription(&mut self, query: &str) {
        self.subscriptions.remove(query);
    }

    /// Before relaying `unsubscribe_all`.
    pub(crate) fn clear_subscriptions(&mut self) {
        self.subscriptions.clear();
    }

    #[cfg(test)]
    pub(crate) fn subscriptions(&self) -> usize {
        self.subscriptions.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ByteSize, WebSocketConfig};

    fn limits() -> Arc<WsLimits> {
        let config = Config {
            websocket: WebSocketConfig {
                max_connections_per_client: 2,
                max_connections: 3,
                max_subscriptions_per_connection: 2,
                max_message_bytes: ByteSize::bytes(100),
                messages_per_second: 1,
                message_burst: 3,
                ..Default::default()
            },
            ..Config::default()
        };
        Arc::new(WsLimits::new(&config))
    }

    fn ip(s: &str) -> ClientKey {
        ClientKey::ip(s.parse().unwrap())
    }

    #[test]
    fn connections_are_capped_per_client_and_overall() {
        let (l, counts) = (limits(), WsCounts::default());
        let a1 = open(&l, &counts, &ip("1.1.1.1")).unwrap();
        let _a2 = open(&l, &counts, &ip("1.1.1.1")).unwrap();
        assert_eq!(
            open(&l, &counts, &ip("1.1.1.1")).unwrap_err(),
            Rejection::ClientBusy {
                max: 2,
                key: "websocket.max_connections_per_client"
            }
        );
        let _b1 = open(&l, &counts, &ip("2.2.2.2")).unwrap();
        assert!(matches!(
            open(&l, &counts, &ip("3.3.3.3")),
            Err(Rejection::Overloaded { .. })
        ));
        assert_eq!(
            counts.per_client.held(&ip("3.3.3.3")),
            0,
            "a refused connection holds no slot"
        );
        drop(a1);
        let _c1 = open(&l, &counts, &ip("3.3.3.3")).unwrap();
        assert_eq!(counts.open.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn messages_are_capped_in_size_and_rate() {
        let c = open(&limits(), &WsCounts::default(), &ip("1.1.1.1")).unwrap();
        let Err(Rejection::ParamCap(m)) = c.check_message(101) else {
            panic!()
        };
        assert!(m.contains("websocket.max_message_bytes"), "{m}");
        for _ in 0..3 {
            c.check_message(100).unwrap();
        }
        let Err(Rejection::RateLimited { retry_after }) = c.check_message(1) else {
            panic!()
        };
        assert!(retry_after > Duration::ZERO);
    }

    #[test]
    fn subscriptions_are_counted() {
        let mut c = open(&limits(), &WsCounts::default(), &ip("1.1.1.1")).unwrap();
        c.add_subscription("a").unwrap();
        c.add_subscription("b").unwrap();
        c.add_subscription("a").unwrap();
        let Err(Rejection::ParamCap(m)) = c.add_subscription("c") else {
            panic!()
        };
        assert!(
            m.contains("websocket.max_subscriptions_per_connection"),
            "{m}"
        );
        // Unsubscribing from a query never held gives nothing back.
        c.remove_subscription("bogus");
        assert!(c.add_subscription("c").is_err());
        c.remove_subscription("a");
        c.add_subscription("c").unwrap();
        assert_eq!(c.subscriptions(), 2);
        c.clear_subscriptions();
        c.remove_subscription("c");
        assert_eq!(c.subscriptions(), 0);
    }

    #[test]
    fn an_api_key_may_have_its_own_connection_cap() {
        let mut config = Config::default();
        config.websocket.max_connections_per_client = 1;
        config.rate_limit.api_keys = vec![crate::config::ApiKeyQuota {
            key: "dapp".into(),
            requests_per_second: 10,
            burst: 10,
            max_concurrent_per_client: None,
            max_websocket_connections: Some(3),
        }];
        let limits = Arc::new(WsLimits::new(&config));
        let counts = WsCounts::default();
        let key = ClientKey::ApiKey(Arc::from("dapp"));
        let held: Vec<_> = (0..3)
            .map(|_| open(&limits, &counts, &key).unwrap())
            .collect();
        let Err(Rejection::ClientBusy { max: 3, key: which }) = open(&limits, &counts, &key) else {
            panic!("the key's own cap binds")
        };
        assert_eq!(which, "rate_limit.api_keys.max_websocket_connections");
        let _one = open(&limits, &counts, &ip("1.1.1.1")).unwrap();
        assert!(
            open(&limits, &counts, &ip("1.1.1.1")).is_err(),
            "others keep the shared cap"
        );
        drop(held);
    }

    #[test]
    fn disabled_websocket_admits_no_one() {
        let l = Arc::new(WsLimits {
            enabled: false,
            ..WsLimits::new(&Config::default())
        });
        assert!(matches!(
            open(&l, &WsCounts::default(), &ip("1.1.1.1")),
            Err(Rejection::MethodDenied(_))
        ));
    }
}
