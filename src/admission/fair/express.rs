//! One call past the adaptive limit, for a client the lane owes node time.
//!
//! Fair order decides who takes the next freed slot, but at a full lane even the first
//! in line waits for one: up to a whole call's node time behind a crowd, and then its own
//! call. Beside a crowd of 200 ms calls that doubles an ordinary client's slowest heavy
//! calls. So the first client in fair order may start its call at once, one past the
//! limit, when it has nothing running on the lane, a call of it has ended there before
//! (a newcomer, or a crowd spread over many addresses, is not yet owed anything), and
//! all it has asked for, this call included, finishes behind the virtual time. A crowd's
//! clients keep queues that put their finish tags ahead of the virtual time.
//!
//! The express call borrows the next freed slot rather than adding one: while it runs,
//! the lane counts it, so the node sees one call more until the next call ends. One
//! runs at a time, and the next starts only once another call has ended since (if the
//! express call ends first, the lane is simply back at its limit). Calls that overlapped an express call are not fed to the limiter,
//! which would read the borrowed slot as a queue in the node; so that it always hears
//! enough to follow a node that slows down, no express call starts while fewer than
//! `MIN_HEARD` of the lane's recent calls reached it. (A window of undisturbed calls
//! before each express start was tried: it spaced them by two calls' time, and an
//! ordinary client's second heavy call within half a second waited again.)
//! Never past the lane's ceiling (`max_concurrency`) nor the node guard's hold, never at
//! the floor (where the limiter relearns the node from calls that run alone), and only
//! on an adaptive, fair lane: a static lane's number is the operator's.

use super::state::State;

/// The least share of recent calls the limiter must have heard for an express call to
/// start: beside a crowd an ordinary client's express calls overlap most of the lane's
/// calls, and a tenth still lets the limit fall within seconds when the node slows.
const MIN_HEARD: f64 = 0.1;

/// The weight of one ended call in the heard share: about the last twenty count.
const HEARD_WEIGHT: f64 = 0.05;

/// The lane's express call, if one runs, and which calls saw one.
#[derive(Debug)]
pub(super) struct Express {
    pub running: bool,
    /// Bumped at each express start: a call that started under another epoch, or while
    /// one ran, overlapped one.
    pub epoch: u64,
    /// Express starts since the lane was made, for metrics.
    pub starts: u64,
    /// The share of recent calls that ran without an express call, smoothed.
    pub heard: f64,
    /// A call other than an express one has ended since the last express call started:
    /// the borrowed slot is paid back, and the node is at the limit again.
    pub repaid: bool,
}

impl Default for Express {
    fn default() -> Express {
        Express {
            running: false,
            epoch: 0,
            starts: 0,
            heard: 1.0,
            repaid: true,
        }
    }
}

/// What a slot remembers of the express calls around it.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Seen {
    pub epoch: u64,
    /// An express call ran when this slot started (or this slot is one).
    pub beside: bool,
    /// This slot is the express call.
    pub express: bool,
}

impl State {
    /// Where in `backlogged` a call may start past the limit now, if one may.
    pub(super) fn express_pick(&self) -> Option<usize> {
        let express = &self.express;
        if express.running || !express.repaid || express.heard < MIN_HEARD || !self.settings.fair {
            return None;
        }
        let (floor, ceiling) = self.adaptive.as_ref()?.bounds();
        let room = self.hold.map_or(ceiling, |h| h.min(ceiling));
        if self.running != self.limit || self.running >= room || self.limit <= floor.max(1) {
            return None;
        }
        let at = self.pick()?;
        let c = self.clients.get(self.backlogged.get(at)?)?;
        let owed = c.finish <= self.virtual_time;
        (c.running == 0 && c.served && owed).then_some(at)
    }

    /// What a call starting now will remember.
    pub(super) fn seen(&self, express: bool) -> Seen {
        Seen {
            epoch: self.express.epoch,
            beside: self.express.running,
            express,
        }
    }

    /// An express call starts: the lane remembers it until it ends.
    pub(super) fn express_started(&mut self) {
        self.express.running = true;
        self.express.repaid = false;
        self.express.epoch += 1;
        self.express.starts += 1;
    }

    /// A call ends: whether it ran alongside no express call, itself included (only
    /// those tell the limiter about the node), counted in the heard share.
    pub(super) fn express_ended(&mut self, seen: Seen) -> bool {
        let undisturbed = self.undisturbed(seen);
        if seen.express {
            self.express.running = false;
        } else {
            self.express.repaid = true;
        }
        let heard = if undisturbed { 1.0 } else { 0.0 };
        self.express.heard += HEARD_WEIGHT * (heard - self.express.heard);
        undisturbed
    }

    pub(super) fn undisturbed(&self, seen: Seen) -> bool {
        !seen.express && !seen.beside && !self.express.running && seen.epoch == self.express.epoch
    }
}
