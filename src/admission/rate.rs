//! Cost-weighted GCRA per client: a call of cost N takes N cells of the client's bucket
//! (`rate_limit.requests_per_second` refill, `rate_limit.burst` capacity), an API key
//! its own bucket with its own quota.
//!
//! On reload a limiter whose quota is unchanged is kept, with its clients' state; a
//! changed quota starts its clients afresh (a brief extra burst at worst, never a lockout).

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DashMapStateStore;
use governor::state::{InMemoryState, NotKeyed};
use governor::{InsufficientCapacity, NotUntil, Quota, RateLimiter};

use super::client::ClientKey;
use super::debt::{Debts, MAX_DEBT_SECONDS};
use crate::config::RateLimitConfig;
use crate::error::Rejection;

type Keyed<C> =
    RateLimiter<ClientKey, DashMapStateStore<ClientKey>, C, NoOpMiddleware<<C as Clock>::Instant>>;
pub(super) type Direct<C> =
    RateLimiter<NotKeyed, InMemoryState, C, NoOpMiddleware<<C as Clock>::Instant>>;

/// A refill rate and a bucket size, both in cost units.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Rate {
    pub per_second: u32,
    pub burst: u32,
}

impl Rate {
    /// Zeroes (which validation should already refuse) are read as 1 rather than panicking.
    pub(super) fn quota(self) -> Quota {
        let nz = |n: u32| NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN);
        Quota::per_second(nz(self.per_second)).allow_burst(nz(self.burst))
    }
}

/// How long until the cells would conform, never zero: a zero Retry-After invites a
/// client to hammer straight back.
pub(super) fn retry_after<C: Clock>(not_until: &NotUntil<C::Instant>, clock: &C) -> Duration {
    not_until
        .wait_time_from(clock.now())
        .max(Duration::from_millis(1))
}

struct RateState<C: Clock> {
    enabled: bool,
    ip_rate: Rate,
    ips: Arc<Keyed<C>>,
    keys: HashMap<Arc<str>, (Rate, Arc<Direct<C>>)>,
}

pub(super) struct RateLimits<C: Clock = DefaultClock> {
    clock: C,
    state: ArcSwap<RateState<C>>,
    /// Cells charged for calls admitted elsewhere that did not fit in the bucket.
    debts: Debts,
}

impl<C: Clock + Clone> RateLimits<C> {
    pub(super) fn new(cfg: &RateLimitConfig, clock: C) -> Self {
        let state = ArcSwap::from_pointee(Self::build(cfg, &clock, None));
        RateLimits {
            clock,
            state,
            debts: Debts::default(),
        }
    }

    pub(super) fn reconfigure(&self, cfg: &RateLimitConfig) {
        let old = self.state.load_full();
        self.state
            .store(Arc::new(Self::build(cfg, &self.clock, Some(&old))));
    }

    fn build(cfg: &RateLimitConfig, clock: &C, old: Option<&RateState<C>>) -> RateState<C> {
        let ip_rate = Rate {
            per_second: cfg.requests_per_second,
            burst: cfg.burst,
        };
        let ips = match old {
            Some(o) if o.ip_rate == ip_rate => o.ips.clone(),
            _ => Arc::new(RateLimiter::dashmap_with_clock(
                ip_rate.quota(),
                clock.clone(),
            )),
        };
        let keys = cfg
            .api_keys
            .iter()
            .map(|k| {
                let rate = Rate {
                    per_second: k.requests_per_second,
                    burst: k.burst,
                };
                let kept = old
                    .and_then(|o| o.keys.get(k.key.as_str()))
                    .filter(|(r, _)| *r == rate);
                let limiter = match kept {
                    Some((_, l)) => l.clone(),
                    None => Arc::new(RateLimiter::direct_with_clock(rate.quota(), clock.clone())),
                };
                (Arc::from(k.key.as_str()), (rate, limiter))
            })
            .collect();
        RateState {
            enabled: cfg.enabled,
            ip_rate,
            ips,
            keys,
        }
    }

    pub(super) fn check(&self, client: &ClientKey, cost: u32) -> Result<(), Rejection> {
        let state = self.state.load();
        if !state.enabled {
            return Ok(());
        }
        let Some(cells) = NonZeroU32::new(cost) else {
            return Ok(());
        };
        let own = match client {
            ClientKey::ApiKey(k) => state.keys.get(k),
            ClientKey::Local(_) => return Ok(()),
            ClientKey::Ip(_) => None,
        };
        // A key dropped by a reload between client_of and here falls back to the
        // default quota, under its own name.
        let (outcome, burst, knob) = match own {
            Some((rate, limiter)) => (
                limiter.check_n(cells),
                rate.burst,
                "rate_limit.api_keys.burst",
            ),
            None => (
                state.ips.check_key_n(client, cells),
                state.ip_rate.burst,
                "rate_limit.burst",
            ),
        };
        match outcome {
            Ok(Ok(())) if self.debts.pay(client, cost) => Err(Rejection::RateLimited {
                retry_after: Duration::from_secs_f64(
                    f64::from(cost) / f64::from(self.rate_of(&state, client).per_second.max(1)),
                ),
            }),
            Ok(Ok(())) => Ok(()),
            Ok(Err(not_until)) => {
                let retry_after = retry_after(&not_until, &self.clock);
                Err(Rejection::RateLimited { retry_after })
            }
            Err(InsufficientCapacity(_)) => Err(Rejection::CostOverBurst {
                cost,
                burst,
                key: knob,
            }),
        }
    }

    /// Takes up to `units` cells from the client's bucket, as if it had made those calls
    /// here: what other replicas admitted for it (see `shared`). What does not fit is
    /// owed (`debt`); a bucket is never driven below empty.
    pub(super) fn charge(&self, client: &ClientKey, units: u64) {
        let state = self.state.load();
        if !state.enabled {
            return;
        }
        let own = match client {
            ClientKey::ApiKey(k) => state.keys.get(k),
            ClientKey::Local(_) => return,
            ClientKey::Ip(_) => None,
        };
        let (take, burst): (&dyn Fn(NonZeroU32) -> bool, u32) = match own {
            Some((rate, limiter)) => (&|n| matches!(limiter.check_n(n), Ok(Ok(()))), rate.burst),
            None => (
                &|n| matches!(state.ips.check_key_n(client, n), Ok(Ok(()))),
                state.ip_rate.burst,
            ),
        };
        // The largest chunk that fits, halving on each refusal: a few tries at most.
        let mut left = units;
        let mut chunk = u32::try_from(units.min(u64::from(burst))).unwrap_or(burst);
        while left > 0 {
            let Some(n) = NonZeroU32::new(chunk) else {
                break;
            };
            if take(n) {
                left -= u64::from(chunk);
                chunk = chunk.min(u32::try_from(left).unwrap_or(u32::MAX));
            } else {
                chunk /= 2;
            }
        }
        if left > 0 {
            let cap = u64::from(self.rate_of(&state, client).per_second) * MAX_DEBT_SECONDS;
            self.debts.add(client, left, cap);
        }
    }

    fn rate_of(&self, state: &RateState<C>, client: &ClientKey) -> Rate {
        match client {
            ClientKey::ApiKey(k) => state.keys.get(k).map_or(state.ip_rate, |(rate, _)| *rate),
            _ => state.ip_rate,
        }
    }

    /// Forgets clients whose buckets are full again: they are indistinguishable from new.
    pub(super) fn gc(&self) {
        let state = self.state.load();
        state.ips.retain_recent();
        state.ips.shrink_to_fit();
        self.debts.gc();
    }

    /// Clients with rate state (an upper bound between collections).
    pub(super) fn tracked(&self) -> usize {
        self.state.load().ips.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ApiKeyQuota;
    use governor::clock::FakeRelativeClock;

    fn cfg(rps: u32, burst: u32) -> RateLimitConfig {
        RateLimitConfig {
            requests_per_second: rps,
            burst,
            api_keys: vec![ApiKeyQuota {
                key: "gold".into(),
                requests_per_second: 100,
                burst: 1000,
                max_concurrent_per_client: None,
                max_websocket_connections: None,
            }],
            ..Default::default()
        }
    }

    fn ip(s: &str) -> ClientKey {
        ClientKey::ip(s.parse().unwrap())
    }

    #[test]
    fn a_charge_takes_what_fits_and_the_rest_is_paid_with_the_next_cells() {
        let clock = FakeRelativeClock::default();
        let r = RateLimits::new(&cfg(10, 30), clock.clone());
        let (a, b) = (ip("1.1.1.1"), ip("2.2.2.2"));
        r.charge(&a, 25);
        assert!(r.check(&a, 5).is_ok(), "5 of 30 left");
        assert!(r.check(&a, 1).is_err());
        r.charge(&b, 1_000_000);
        assert!(
            r.check(&b, 1).is_err(),
            "a charge past the burst empties the bucket"
        );
        // 20 cells a second are owed at most (2 s of the rate): paid by the next 20
        // cells, 100 ms each, that its own calls would have taken.
        for _ in 0..20 {
            clock.advance(Duration::from_millis(100));
            assert!(r.check(&b, 1).is_err(), "the debt takes the cell");
        }
        clock.advance(Duration::from_millis(100));
        assert!(r.check(&b, 1).is_ok(), "paid: the client's own again");
        let gold = ClientKey::ApiKey("gold".into());
        r.charge(&gold, 999);
        assert!(r.check(&gold, 1).is_ok());
        assert!(
            r.check(&gold, 1).is_err(),
            "an API key's own bucket is charged"
        );
        r.charge(&ClientKey::Local("127.0.0.1".parse().unwrap()), 10);
    }

    #[test]
    fn cost_takes_that_many_cells() {
        let clock = FakeRelativeClock::default();
        let r = RateLimits::new(&cfg(10, 30), clock.clone());
        let a = ip("1.1.1.1");
        for _ in 0..3 {
            r.check(&a, 10).unwrap();
        }
        let Err(Rejection::RateLimited { retry_after }) = r.check(&a, 10) else {
            panic!("expected RateLimited")
        };
        // 10 cells at 10/s: one second until the call conforms.
        assert_eq!(retry_after, Duration::from_secs(1));
        assert!(r.check(&a, 1).is_err());
        // Another client has its own bucket.
        r.check(&ip("2.2.2.2"), 30).unwrap();
        clock.advance(Duration::from_millis(500));
        r.check(&a, 5).unwrap();
        assert!(r.check(&a, 1).is_err());
    }

    #[test]
    fn api_keys_have_their_own_quota() {
        let clock = FakeRelativeClock::default();
        let r = RateLimits::new(&cfg(1, 5), clock.clone());
        let gold = ClientKey::ApiKey(Arc::from("gold"));
        r.check(&gold, 900).unwrap();
        assert!(matches!(
            r.check(&gold, 200),
            Err(Rejection::RateLimited { .. })
        ));
        r.check(&ip("1.1.1.1"), 5).unwrap();
        // An unknown key (say, removed by a reload) gets the default quota.
        let gone = ClientKey::ApiKey(Arc::from("gone"));
        r.check(&gone, 5).unwrap();
        assert!(r.check(&gone, 1).is_err());
    }

    #[test]
    fn a_cost_over_the_burst_is_refused_with_a_reason() {
        let r = RateLimits::new(&cfg(10, 20), FakeRelativeClock::default());
        assert_eq!(
            r.check(&ip("1.1.1.1"), 21),
            Err(Rejection::CostOverBurst {
                cost: 21,
                burst: 20,
                key: "rate_limit.burst"
            })
        );
        assert_eq!(
            r.check(&ClientKey::ApiKey(Arc::from("gold")), 1001),
            Err(Rejection::CostOverBurst {
                cost: 1001,
                burst: 1000,
                key: "rate_limit.api_keys.burst"
            })
        );
        // What fits still passes: the refusal spent nothing.
        r.check(&ip("1.1.1.1"), 20).unwrap();
    }

    #[test]
    fn disabled_admits_everything() {
        let r = RateLimits::new(
            &RateLimitConfig {
                enabled: false,
                ..cfg(1, 1)
            },
            FakeRelativeClock::default(),
        );
        for _ in 0..100 {
            r.check(&ip("1.1.1.1"), 1_000_000).unwrap();
        }
    }

    #[test]
    fn reload_keeps_state_when_the_quota_is_unchanged() {
        let clock = FakeRelativeClock::default();
        let r = RateLimits::new(&cfg(1, 5), clock.clone());
        r.check(&ip("1.1.1.1"), 5).unwrap();
        r.reconfigure(&cfg(1, 5));
        assert!(r.check(&ip("1.1.1.1"), 1).is_err());
        r.reconfigure(&cfg(1, 50));
        r.check(&ip("1.1.1.1"), 50).unwrap();
    }

    #[test]
    fn gc_forgets_idle_clients() {
        let clock = FakeRelativeClock::default();
        let r = RateLimits::new(&cfg(10, 10), clock.clone());
        for i in 0..1000u32 {
            r.check(&ClientKey::ip(std::net::IpAddr::from(i.to_be_bytes())), 1)
                .unwrap();
        }
        assert_eq!(r.tracked(), 1000);
        clock.advance(Duration::from_secs(2));
        r.gc();
        assert_eq!(r.tracked(), 0);
    }
}
