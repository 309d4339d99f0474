//! What happened recently, for the operator's live view (`/admin/state`): requests,
//! node calls, node latency, lane waits and refusals over the last minute, and one
//! point every five seconds for the last five minutes.
//!
//! The request path only adds to cumulative counters (relaxed atomics; a lock only on
//! a refusal). Once a second a sampler copies them into a fixed ring of samples, and a
//! window is the difference between now and a sample from the ring: nothing is reset,
//! and memory is fixed by the ring sizes below.

mod histogram;
mod ring;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub(crate) use histogram::Counts;
use histogram::Histogram;
use ring::Ring;

/// How often the sampler copies the counters.
pub(crate) const TICK: Duration = Duration::from_secs(1);
/// Ticks in "the last minute".
pub(crate) const MINUTE_TICKS: usize = 60;
/// Samples kept: a minute's worth and the one it starts from.
const SAMPLES: usize = MINUTE_TICKS + 1;
/// Ticks per sparkline point.
pub(crate) const POINT_TICKS: usize = 5;
/// Sparkline points kept: five minutes.
pub(crate) const POINTS: usize = 60;

/// Where a refusal is counted: the lane of the refused call's method, or `Other` for a
/// request refused before any method was known.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Scope {
    Light,
    Heavy,
    Other,
}

impl Scope {
    fn index(self) -> usize {
        self as usize
    }
}

/// Refusals by reason, in the order reasons were first seen.
pub(crate) type Reasons = Vec<(&'static str, u64)>;

/// The cache's own cumulative counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct CacheCounts {
    pub hits: u64,
    pub misses: u64,
    pub coalesced: u64,
    pub stale: u64,
}

/// Everything counted, since start or (after `since`) within a window.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Totals {
    pub requests: u64,
    pub node_calls: u64,
    pub cache: CacheCounts,
    pub node_latency: Counts,
    /// By lane: light, heavy.
    pub lane_wait: [Counts; 2],
    pub refusals: [Reasons; 3],
}

impl Totals {
    fn since(&self, earlier: &Totals) -> Totals {
        let c = (&self.cache, &earlier.cache);
        Totals {
            requests: self.requests.saturating_sub(earlier.requests),
            node_calls: self.node_calls.saturating_sub(earlier.node_calls),
            cache: CacheCounts {
                hits: c.0.hits.saturating_sub(c.1.hits),
                misses: c.0.misses.saturating_sub(c.1.misses),
                coalesced: c.0.coalesced.saturating_sub(c.1.coalesced),
                stale: c.0.stale.saturating_sub(c.1.stale),
            },
            node_latency: self.node_latency.since(&earlier.node_latency),
            lane_wait: std::array::from_fn(|i| self.lane_wait[i].since(&earlier.lane_wait[i])),
            refusals: std::array::from_fn(|i| {
                reasons_since(&self.refusals[i], &earlier.refusals[i])
            }),
        }
    }

    /// Answers from the cache among the calls that could have been: hits over hits,
    /// misses and coalesced calls (a stale answer is already one of the latter two).
    pub(crate) fn hit_ratio(&self) -> Option<f64> {
        let c = &self.cache;
        let lookups = c.hits + c.misses + c.coalesced;
        (lookups > 0).then(|| c.hits as f64 / lookups as f64)
    }

    pub(crate) fn refusals(&self, scope: Scope) -> &Reasons {
        &self.refusals[scope.index()]
    }

    pub(crate) fn lane_wait(&self, scope: Scope) -> Option<&Counts> {
        self.lane_wait.get(scope.index())
    }
}

fn reasons_since(now: &Reasons, earlier: &Reasons) -> Reasons {
    now.iter()
        .map(|&(reason, n)| {
            let before = earlier
                .iter()
                .find(|(r, _)| *r == reason)
                .map_or(0, |p| p.1);
            (reason, n.saturating_sub(before))
        })
        .filter(|(_, n)| *n > 0)
        .collect()
}

/// What was counted within the last minute (shorter right after start).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Window {
    pub span: Duration,
    pub totals: Totals,
}

/// One sparkline point: the `POINT_TICKS` ticks that ended at `end`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Point {
    pub end: Instant,
    pub requests_per_second: f64,
    pub node_calls_per_second: f64,
    pub hit_ratio: Option<f64>,
    pub p99_seconds: Option<f64>,
}

struct Sample {
    at: Instant,
    totals: Totals,
}

struct History {
    samples: Ring<Sample, SAMPLES>,
    points: Ring<Point, POINTS>,
    ticks: u64,
}

impl History {
    /// Nothing counted at start: the first windows and the first point measure from it.
    fn starting(at: Instant) -> History {
        let mut samples = Ring::default();
        samples.push(Sample {
            at,
            totals: Totals::default(),
        });
        History {
            samples,
            points: Ring::default(),
            ticks: 0,
        }
    }
}

pub(crate) struct Recent {
    started: Instant,
    requests: AtomicU64,
    node_calls: AtomicU64,
    node_latency: Histogram,
    lane_wait: [Histogram; 2],
    refusals: Mutex<[Reasons; 3]>,
    history: Mutex<History>,
}

impl Default for Recent {
    fn default() -> Self {
        Recent::new(Instant::now())
    }
}

impl Recent {
    pub(crate) fn new(started: Instant) -> Recent {
        Recent {
            started,
            requests: AtomicU64::new(0),
            node_calls: AtomicU64::new(0),
            node_latency: Histogram::default(),
            lane_wait: Default::default(),
            refusals: Mutex::default(),
            history: Mutex::new(History::starting(started)),
        }
    }

    pub(crate) fn request(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn node_call(&self, elapsed: Duration) {
        self.node_calls.fetch_add(1, Ordering::Relaxed);
        self.node_latency.observe(elapsed);
    }

    pub(crate) fn lane_waited(&self, lane: Scope, waited: Duration) {
        if let Some(h) = self.lane_wait.get(lane.index()) {
            h.observe(waited);
        }
    }

    pub(crate) fn refused(&self, scope: Scope, reason: &'static str) {
        let mut all = self.refusals.lock().unwrap_or_else(|e| e.into_inner());
        let reasons = &mut all[scope.index()];
        match reasons.iter_mut().find(|(r, _)| *r == reason) {
            Some((_, n)) => *n += 1,
            None => reasons.push((reason, 1)),
        }
    }

    fn totals(&self, cache: CacheCounts) -> Totals {
        Totals {
            requests: self.requests.load(Ordering::Relaxed),
            node_calls: self.node_calls.load(Ordering::Relaxed),
            cache,
            node_latency: self.node_latency.snapshot(),
            lane_wait: std::array::from_fn(|i| self.lane_wait[i].snapshot()),
            refusals: self
                .refusals
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        }
    }

    fn history(&self) -> std::sync::MutexGuard<'_, History> {
        self.history.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The sampler's step: keeps the counters as of `now`, and every `POINT_TICKS`
    /// ticks makes a sparkline point of the ticks since the last one.
    pub(crate) fn tick(&self, cache: CacheCounts, now: Instant) {
        let totals = self.totals(cache);
        let mut history = self.history();
        history.ticks += 1;
        let point = (history.ticks % POINT_TICKS as u64 == 0)
            .then(|| {
                let from = history.samples.back(POINT_TICKS - 1)?;
                Some(point(from, &totals, now))
            })
            .flatten();
        history.samples.push(Sample { at: now, totals });
        if let Some(point) = point {
            history.points.push(point);
        }
    }

    /// The last minute, up to `now`: today's counters against the oldest sample kept.
    pub(crate) fn minute(&self, cache: CacheCounts, now: Instant) -> Window {
        let totals = self.totals(cache);
        let history = self.history();
        let (from, earlier) = match history.samples.oldest() {
            Some(s) => (s.at, s.totals.clone()),
            None => (self.started, Totals::default()),
        };
        Window {
            span: now.saturating_duration_since(from),
            totals: totals.since(&earlier),
        }
    }

    /// The sparkline points, oldest first.
    pub(crate) fn points(&self) -> Vec<Point> {
        self.history().points.iter().copied().collect()
    }
}

fn point(from: &Sample, to: &Totals, now: Instant) -> Point {
    let seconds = now
        .saturating_duration_since(from.at)
        .as_secs_f64()
        .max(1e-3);
    let d = to.since(&from.totals);
    Point {
        end: now,
        requests_per_second: d.requests as f64 / seconds,
        node_calls_per_second: d.node_calls as f64 / seconds,
        hit_ratio: d.hit_ratio(),
        p99_seconds: d.node_latency.quantile(0.99),
    }
}

#[cfg(test)]
mod tests;
