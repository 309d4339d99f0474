//! A lane's adaptive limit: how many node calls may run at once, following how much the
//! node stretches them. The algorithm is tower-acc's Vegas, fed not raw latency but
//! each call's *stretch*: the time it took over its method's unloaded time. A lane
//! mixes methods that cost 5 ms and 500 ms, so raw latency says more about the mix than
//! about queueing; and an average of recent latency (Gradient2, tried first) drifts up
//! under sustained overload until calls are stretched fourfold at the ceiling.
//!
//! A method's unloaded time is what it usually takes when it runs alone on its lane (or
//! with no more than the floor's calls): a smoothed average of those calls. It is the
//! usual time, not the fastest: calls of one method differ (a page of 5 txs and one of
//! 100 are both `tx_search`), and against the fastest every ordinary call would look
//! queued and hold the limit below the node's slots. Calls that ran on a busy lane never
//! raise it, so a long overload cannot teach the limiter that slow is normal; one that
//! took less than half of it shows the reference was an outlier (a first call that paid
//! for a new connection) and pulls it down. A node that really became slower stretches
//! every call, the limit falls to its floor, calls run alone again, and the slower times
//! are learned from them.
//!
//! A change of the limit shows in latency only a call's time later. So only calls that
//! started with at most the current limit running count, and a calm one (no queue seen)
//! must have found the lane at its limit. Calm calls move the limit up once a window
//! (the limit's worth of them); each queued call moves it down. Vegas' smoothing makes
//! each move a fifth of a call, so a rise takes about five windows and a fall about five
//! queued calls. Rising on every calm call, the calls started before a rise kept saying
//! "calm": on a processor-sharing model the limit spent half its time one past the
//! node's slots, where every call, an ordinary client's too, is stretched; now under a
//! third. The stretch is smoothed over the last few calls first: calls of one method
//! differ in cost, and with rises this slow, each dear call read alone as a queue would
//! hold the limit below the slots. A quiet lane (calls alone again) starts it afresh.
//! `[lanes.<lane>] max_concurrency` is the ceiling and `min_concurrency` the floor.

use std::collections::HashMap;
use std::time::Duration;

use tower_acc::{Algorithm, Vegas};

/// Stretch below this is the node's own jitter, not a queue: the lane may grow.
const JITTER: f64 = 1.1;

/// How much more than its stretch a call's latency reads to Vegas. Vegas estimates the
/// node's queue as `limit × (1 − 1/stretch)` and holds at one call queued; read plainly
/// that settles a call or two above the node's slots, where every call, an ordinary
/// client's too, takes a quarter or a half longer than alone. Doubled, one call queued
/// already reads as two, and the limit keeps to the slots and one more.
const GAIN: f64 = 2.0;

/// Stretch is handed to Vegas as a latency on this scale (1 ms = unloaded).
const UNIT_NANOS: f64 = 1e6;

/// The weight of a new unloaded time: about the last few quiet calls count.
const WEIGHT: f64 = 0.25;

/// A loaded call faster than this share of its method's unloaded time shows that the
/// reference itself is off; ordinary calls of one method vary less than twofold.
const OUTLIER: f64 = 0.5;

/// The weight of one call in the smoothed stretch: about the last few calls count.
const STRETCH_WEIGHT: f64 = 0.4;

/// How far one call moves the limit (Vegas' smoothing): calls on a busy machine vary,
/// and a limit that followed each one would swing by several calls a second.
const SMOOTHING: f64 = 0.2;

pub(super) struct Adaptive {
    algorithm: Vegas,
    bounds: (usize, usize),
    floor: usize,
    /// Each method's unloaded seconds, once a call of it has run on a quiet lane. Keyed
    /// by the method table's names, so bounded by them.
    unloaded: HashMap<&'static str, f64>,
    /// Calm calls at the current limit since the limit was last let rise.
    calm: usize,
    /// Recent calls' stretch, smoothed; None before the first.
    stretch: Option<f64>,
}

/// What one finished call tells the limiter.
#[derive(Clone, Copy, Debug)]
pub(super) struct Sample {
    pub method: &'static str,
    pub took: Duration,
    /// Calls running on the lane when this one started, itself included.
    pub running_at_start: usize,
    /// Calls running when it finished, itself included.
    pub running: usize,
}

impl Adaptive {
    pub(super) fn new(min: usize, max: usize) -> Adaptive {
        let bounds = (min, max);
        let (min, max) = (min.max(1), max.max(min.max(1)));
        // Start where a static lane would have been, within the bounds.
        let initial = 4.clamp(min, max);
        // One call queued inside the node keeps it busy; two is a queue to drain. Vegas
        // then steps by one call at a time. Its own probing (resetting the unloaded
        // latency to a recent one) is off: a loaded call must never become the
        // reference, which is what each method's unloaded time is.
        let mut algorithm = Vegas::builder()
            .initial_limit(initial)
            .max_limit(max)
            .alpha(|_| 1)
            .beta(|_| 1)
            .threshold(|_| 0)
            .increase(|l| l + 1.0)
            .decrease(|l| l - 1.0)
            .probe_multiplier(usize::MAX)
            .smoothing(SMOOTHING)
            .build();
        // Vegas takes its first sample as the unloaded latency; calm calls may now be
        // held back, so it is given here: stretch 1.
        algorithm.update(Duration::from_nanos(UNIT_NANOS as u64), 0, false, false);
        Adaptive {
            algorithm,
            bounds,
            floor: min,
            unloaded: HashMap::new(),
            calm: 0,
            stretch: None,
        }
    }

    /// The same limiter between new bounds, keeping what it learned: under steady load
    /// no call runs alone, so a limiter that forgot each method's unloaded time could
    /// not move until the load eased.
    pub(super) fn rebound(self, min: usize, max: usize) -> Adaptive {
        Adaptive {
            unloaded: self.unloaded,
            ..Adaptive::new(min, max)
        }
    }

    /// One finished call: how far the node stretched it, given what its method takes
    /// on a quiet lane.
    pub(super) fn record(&mut self, sample: Sample) {
        let took = sample.took.as_secs_f64().max(1e-6);
        let quiet = sample.running_at_start <= self.floor.max(1);
        if quiet {
            let unloaded = self.unloaded.entry(sample.method).or_insert(took);
            *unloaded += WEIGHT * (took - *unloaded);
            self.stretch = None;
        } else if let Some(unloaded) = self.unloaded.get_mut(sample.method) {
            if took < OUTLIER * *unloaded {
                *unloaded += WEIGHT * (took - *unloaded);
            }
        }
        // A method never seen on a quiet lane has only loaded times, which would read as
        // no queue at all.
        let Some(unloaded) = self.unloaded.get(sample.method) else {
            return;
        };
        // Started past the limit: it tells of a limit already left behind.
        if sample.running_at_start > self.limit() {
            return;
        }
        let this = took / unloaded;
        let stretch = match self.stretch {
            Some(s) => s + STRETCH_WEIGHT * (this - s),
            None => this,
        };
        self.stretch = Some(stretch);
        let signal = if stretch < JITTER {
            if !self.may_rise(sample) {
                return;
            }
            1.0
        } else {
            // At the floor this may sink Vegas' estimate below it. That is kept: the
            // climb back is slower, and the calls that run alone meanwhile are what
            // relearns each method's unloaded time on a node that became slower.
            1.0 + GAIN * (stretch - 1.0)
        };
        let rtt = Duration::from_nanos((signal * UNIT_NANOS) as u64);
        let before = self.limit();
        self.algorithm.update(rtt, sample.running, false, false);
        if self.limit() < before {
            // A window counts calm calls at the limit as it now is.
            self.calm = 0;
        }
    }

    /// Whether a calm call may raise the limit: it ran with the lane at its limit, and a
    /// window of such calls has passed since the last rise.
    fn may_rise(&mut self, sample: Sample) -> bool {
        let limit = self.limit();
        if sample.running_at_start < limit {
            return false;
        }
        self.calm += 1;
        if self.calm < limit {
            return false;
        }
        self.calm = 0;
        true
    }

    /// The floor and ceiling it was made with.
    pub(super) fn bounds(&self) -> (usize, usize) {
        self.bounds
    }

    pub(super) fn limit(&self) -> usize {
        self.algorithm.max_concurrency().max(self.floor)
    }
}

#[cfg(test)]
mod tests;
