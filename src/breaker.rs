//! A circuit breaker in front of the node. After a run of failures that say the node is
//! sick (unreachable, timing out, answering garbage) it stops sending calls, so a dead
//! node is not hammered and clients fail fast (the cache serves stale answers meanwhile).
//! After a cool-down one probe goes through; its success closes the circuit, its
//! failure doubles the cool-down up to a ceiling.

use std::sync::Mutex;
use std::time::{Duration, Instant};

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
pub struct Probe<'a> {
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

    /// Whether a call may go to the node now.
    pub fn admit(&self) -> Result<Probe<'_>, Rejection> {
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

    /// Records how a call went; only failures that mean "the node is sick" count.
    pub fn record<T>(&self, result: &Result<T, Rejection>) {
        let sick = matches!(
            result,
            Err(Rejection::UpstreamUnavailable(_)
                | Rejection::UpstreamTimeout(_)
                | Rejection::UpstreamInvalid(_))
        );
        let mut inner = self.lock();
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
            b.record(&fail());
        }
        assert_eq!(b.state(), BreakerState::Open);
        assert!(matches!(b.admit(), Err(Rejection::CircuitOpen { .. })));
    }

    #[test]
    fn client_errors_do_not_count() {
        let b = Breaker::new();
        for _ in 0..20 {
            b.record(&Err::<(), _>(Rejection::ResponseTooLarge {
                max: crate::config::ByteSize::bytes(1),
            }));
        }
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[test]
    fn one_probe_after_the_cooldown_closes_it_on_success() {
        let b = Breaker::new();
        for _ in 0..FAILURES_TO_OPEN {
            b.record(&fail());
        }
        b.lock().until = Instant::now();
        let probe = b.admit().expect("probe allowed");
        assert_eq!(b.state(), BreakerState::HalfOpen);
        assert!(b.admit().is_err(), "only one probe at a time");
        b.record(&Ok::<(), Rejection>(()));
        drop(probe);
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[test]
    fn a_failed_probe_doubles_the_cooldown() {
        let b = Breaker::new();
        for _ in 0..FAILURES_TO_OPEN {
            b.record(&fail());
        }
        b.lock().until = Instant::now();
        let probe = b.admit().unwrap();
        b.record(&fail());
        drop(probe);
        assert_eq!(b.state(), BreakerState::Open);
        assert_eq!(b.lock().cooldown, FIRST_COOLDOWN * 2);
    }
}
