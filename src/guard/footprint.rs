//! What one heavy call costs the node's memory, learned from the guard's readings, and
//! so how many may run at once. A threshold alone acts too late: the guard reads every
//! `interval`, and heavy calls that start together can take the node from idle to dead
//! between two readings. Each reading is paired with the heavy calls running when it
//! was taken: with none, it is the node's memory at rest; with some, what is above rest
//! is theirs.

use std::time::Duration;

/// How much of the previous estimate survives a second: a call mix that turned lighter
/// is believed after about ten seconds, a heavier one at once.
const KEEP_PER_SECOND: f64 = 0.94;

/// The weight of a new reading at rest.
const WEIGHT: f64 = 0.3;

/// Past this many calls the memory is no constraint worth holding the lane for.
const UNHELD: usize = 1024;

/// Readings with heavy calls running before their cost is believed: a reading taken
/// just as a call ended, before the gateway saw it end, shows nothing above rest.
const MEASURED: u32 = 3;

#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(super) struct Footprint {
    /// The node's memory with no heavy call running (bytes).
    rest: Option<f64>,
    /// The most one heavy call has recently been seen to add (bytes).
    per_call: Option<f64>,
    /// Readings taken with heavy calls running, up to `MEASURED`.
    busy_readings: u32,
}

impl Footprint {
    /// One reading of the node's memory, with the heavy calls running when it was read,
    /// `interval` after the previous one.
    pub(super) fn observe(&mut self, memory: u64, running: usize, interval: Duration) {
        let memory = memory as f64;
        if running == 0 {
            self.rest = Some(self.rest.map_or(memory, |r| r + WEIGHT * (memory - r)));
            return;
        }
        let Some(rest) = self.rest else {
            return;
        };
        let each = (memory - rest).max(0.0) / running as f64;
        let keep = KEEP_PER_SECOND.powf(interval.as_secs_f64());
        self.per_call = Some(self.per_call.map_or(each, |p| each.max(p * keep)));
        self.busy_readings = (self.busy_readings + 1).min(MEASURED);
    }

    /// Heavy calls that fit under `ceiling` bytes of node memory: one at a time until
    /// calls have been measured, at least one while there is any room (the guard sheds
    /// above its threshold anyway), `None` when memory is no constraint.
    pub(super) fn room(&self, ceiling: f64) -> Option<usize> {
        let (Some(rest), Some(per_call)) = (self.rest, self.per_call) else {
            return Some(1);
        };
        if self.busy_readings < MEASURED {
            return Some(1);
        }
        let fits = ((ceiling - rest) / per_call).floor().max(1.0);
        (fits < UNHELD as f64).then_some(fits as usize)
    }

    /// The room, only once calls have been measured (no caution for the unknown).
    pub(super) fn measured_room(&self, ceiling: f64) -> Option<usize> {
        if self.busy_readings < MEASURED {
            return None;
        }
        self.room(ceiling)
    }

    /// The learned cost of one heavy call, for metrics (0: not yet).
    pub(super) fn per_call_bytes(&self) -> u64 {
        self.per_call.unwrap_or(0.0) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MB: u64 = 1_000_000;
    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn one_at_a_time_until_a_call_has_been_measured() {
        let mut f = Footprint::default();
        assert_eq!(f.room(1e9), Some(1));
        f.observe(64 * MB, 2, SECOND);
        assert_eq!(f.room(1e9), Some(1), "no reading at rest yet");
        f.observe(64 * MB, 0, SECOND);
        assert_eq!(f.room(1e9), Some(1), "no call measured yet");
        // A reading as a call ended shows nothing; the next ones show the call.
        f.observe(64 * MB, 1, SECOND);
        f.observe(94 * MB, 1, SECOND);
        assert_eq!(f.per_call_bytes(), 30 * MB);
        assert_eq!(f.room(1e9), Some(1), "two readings are not yet enough");
        f.observe(94 * MB, 1, SECOND);
        assert_eq!(f.room(125e6), Some(2));
        assert_eq!(f.measured_room(125e6), Some(2));
        assert_eq!(Footprint::default().measured_room(125e6), None);
    }

    #[test]
    fn the_room_is_what_fits_under_the_ceiling_above_rest() {
        let mut f = Footprint::default();
        f.observe(64 * MB, 0, SECOND);
        for _ in 0..MEASURED {
            f.observe(124 * MB, 2, SECOND);
        }
        // 30 MB a call, 64 MB at rest: two fit under 125 MB, three do not.
        assert_eq!(f.room(125e6), Some(2));
        assert_eq!(f.room(150e6), Some(2));
        assert_eq!(f.room(155e6), Some(3));
        // Even at rest near the ceiling one call runs: shedding is the threshold's job.
        assert_eq!(f.room(70e6), Some(1));
        // Calls of a few bytes: memory holds nothing back.
        let mut tiny = Footprint::default();
        tiny.observe(64 * MB, 0, SECOND);
        for _ in 0..MEASURED {
            tiny.observe(64 * MB + 1000, 1, SECOND);
        }
        assert_eq!(tiny.room(125e6), None);
    }

    #[test]
    fn a_heavier_call_is_believed_at_once_and_a_lighter_one_slowly() {
        let mut f = Footprint::default();
        f.observe(64 * MB, 0, SECOND);
        for _ in 0..MEASURED {
            f.observe(74 * MB, 1, SECOND);
        }
        assert_eq!(f.room(125e6), Some(6));
        f.observe(124 * MB, 2, SECOND);
        assert_eq!(f.room(125e6), Some(2), "30 MB calls: at once");
        f.observe(74 * MB, 1, SECOND);
        assert_eq!(f.room(125e6), Some(2), "one light reading is not enough");
        for _ in 0..40 {
            f.observe(74 * MB, 1, SECOND);
        }
        assert_eq!(f.room(125e6), Some(6));
    }
}
