//! A circuit breaker in front of the node. After a run of failures that say the node is
//! sick (unreachable, timing out, answering garbage) it stops sending calls, so a dead
//! node is not hammered and clients fail fast (the cache serves stale answers meanwhile).
//! After a cool-down one probe goes through; its success closes the circuit, its
//! failure doubles the cool-down up to a ceiling.
//!
//! A heavy call that times out says more about the question than about the node (a
//! client can pick a search that takes longer than `upstream.timeout`): it counts only
//! as a failed probe, never towards opening a closed circuit.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::config::Lane;
use crate::error::Rejection;

const FAILURES_TO_OPEN: u32 = 5;
const FIRST_COOLDOWN: Duration = Duration::from_millis(500);
const MAX_COOLDOWN: Duration = Duration::from_secs(10);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    Open,
    /// One probe is in flight; everyone else still fails fast.
    HalfOpen,
}

#[derive(Debug)]
struct Inner {
    state: BreakerState,
    failures: u32,
    cooldown: Duration,
    until: Instant,
}

#[derive(Debug)]
pub struct Breaker {
    inner: Mutex<Inner>,
}

/// Held by the call that probes a half-open circuit. Dropped without a recorded result
/// (the caller went away), it lets the next call probe instead.
pub(crate) struct Probe<'a> {
    breaker: Option<&'a Breaker>,
}

impl Drop for Probe<'_> {
    fn drop(&mut self) {
        if let Some(b) = self.breaker {
            let mut inner = b.lock();
            if inner.state == BreakerState::HalfOpen {
                inner.state = BreakerState::Open;
                inner.until = Instant::now();
            }
        }
    }
}

impl Default for Breaker {
    fn default() -> Self {
        Breaker::new()
    }
}

impl Breaker {
    pub fn new() -> Breaker {
        Breaker {
            inner: Mutex::new(Inner {
                state: BreakerState::Closed,
                failures: 0,
                cooldown: FIRST_COOLDOWN,
                until: Instant::now(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic elsewhere cannot leave this state inconsistent: recover the guard.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn state(&self) -> BreakerState {
        self.lock().state
    }

    /// Whether calls are being kept off the node right now. An open circuit whose
    /// cool-down is over is not: the next call probes it. Readiness reads this, so that
    /// a gateway with no traffic to probe with does not stay unready for good.
    pub(crate) fn holding_off(&self) -> bool {
        let inner = self.lock();
        match inner.state {
            BreakerState::Closed => false,
            BreakerState::Open => Instant::now() < inner.until,
            BreakerState::HalfOpen => true,
        }
    }

    /// How long until the next call may probe the node (zero while closed).
    pub(crate) fn retry_after(&self) -> Duration {
        let inner = self.lock();
        match inner.state {
            BreakerState::Closed => Duration::ZERO,
            _ => inner.until.saturating_duration_since(Instant::now()),
        }
    }

    /// Whether a call may go to the node now.
    pub(crate) fn admit(&self) -> Result<Probe<'_>, Rejection> {
        let mut inner = self.lock();
        match inner.state {
            BreakerState::Closed => Ok(Probe { breaker: None }),
            BreakerState::Open if Instant::now() >= inner.until => {
                inner.state = BreakerState::HalfOpen;
                Ok(Probe {
                    breaker: Some(self),
                })
            }
            BreakerState::Open | BreakerState::HalfOpen => Err(Rejection::CircuitOpen {
                retry_after: inner.until.saturating_duration_since(Instant::now()),
            }),
        }
    }

    /// Records how a call in `lane` went; only failures that mean "the node is sick"
    /// count.
    pub(crate) fn record<T>(&self, lane: Lane, result: &Result<T, Rejection>) {
        let mut inner = self.lock();
        let sick = match result {
            Err(Rejection::UpstreamUnavailable(_) | Rejection::UpstreamInvalid(_)) => true,
            Err(Rejection::UpstreamTimeout(_)) => {
                lane == Lane::Light || inner.state == BreakerState::HalfOpen
            }
            _ => false,
        };
        if !sick {
            if result.is_ok() || inner.state == BreakerState::HalfOpen {
                *inner = Inner {
                    state: BreakerState::Closed,
                    failures: 0,
                    cooldown: FIRST_COOLDOWN,
                    until: inner.until,
                };
            }
            return;
        }
        inner.failures += 1;
        let reopen = inner.state == BreakerState::HalfOpen;
        if reopen || inner.failures >= FAILURES_TO_OPEN {
            if reopen {
                inner.cooldown = (inner.cooldown * 2).min(MAX_COOLDOWN);
            }
            inner.state = BreakerState::Open;
            inner.until = Instant::now() + inner.cooldown;
            tracing::warn!(cooldown = ?inner.cooldown, "node failing: circuit open");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fail() -> Result<(), Rejection> {
        Err(Rejection::UpstreamUnavailable("refused".into()))
    }

    #[test]
    fn opens_after_a_run_of_failures_and_fails_fast() {
        let b = Breaker::new();
        for _ in 0..FAILURES_TO_OPEN {
            drop(b.admit().unwrap());
            b.record(Lane::Light, &fail());
        }
        assert_eq!(b.state(), BreakerState::Open);
        assert!(matches!(b.admit(), Err(Rejection::CircuitOpen { .. })));
    }

    #[test]
    fn client_errors_do_not_count() {
        let b = Breaker::new();
        for _ in 0..20 {
            b.record(
                Lane::Light,
                &Err::<(), _>(Rejection::ResponseTooLarge {
                    max: crate::config::ByteSize::bytes(1),
                }),
            );
        }
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[test]
    fn one_probe_after_the_cooldown_closes_it_on_success() {
        let b = Breaker::new();
        for _ in 0..FAILURES_TO_OPEN {
            b.record(Lane::Light, &fail());
        }
        b.lock().until = Instant::now();
        let probe = b.admit().expect("probe allowed");
        assert_eq!(b.state(), BreakerState::HalfOpen);
        assert!(b.admit().is_err(), "only one probe at a time");
        b.record(Lane::Light, &Ok::<(), Rejection>(()));
        drop(probe);
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[test]
    fn a_failed_probe_doubles_the_cooldown() {
        let b = Breaker::new();
        for _ in 0..FAILURES_TO_OPEN {
            b.record(Lane::Light, &fail());
        }
        b.lock().until = Instant::now();
        let probe = b.admit().unwrap();
        b.record(Lane::Light, &fail());
        drop(probe);
        assert_eq!(b.state(), BreakerState::Open);
        assert_eq!(b.lock().cooldown, FIRST_COOLDOWN * 2);
    }

    #[test]
    fn heavy_timeouts_never_open_a_closed_circuit_but_fail_a_probe() {
        let b = Breaker::new();
        let timeout = || Err::<(), _>(Rejection::UpstreamTimeout(Duration::from_secs(10)));
        for _ in 0..50 {
            b.record(Lane::Heavy, &timeout());
        }
        assert_eq!(b.state(), BreakerState::Closed);
        for _ in 0..FAILURES_TO_OPEN {
            b.record(Lane::Light, &timeout());
        }
        assert_eq!(b.state(), BreakerState::Open);
        b.lock().until = Instant::now();
        let probe = b.admit().unwrap();
        b.record(Lane::Heavy, &timeout());
        drop(probe);
        assert_eq!(b.state(), BreakerState::Open, "a timed-out probe fails");
    }

    #[test]
    fn an_open_circuit_past_its_cooldown_no_longer_holds_off() {
        let b = Breaker::new();
        assert!(!b.holding_off());
        for _ in 0..FAILURES_TO_OPEN {
            b.record(Lane::Light, &fail());
        }
        assert!(b.holding_off());
        b.lock().until = Instant::now();
        assert!(!b.holding_off(), "ready for the probe that closes it");
        let probe = b.admit().unwrap();
        assert!(b.holding_off());
        drop(probe);
    }
}
