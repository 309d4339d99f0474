//! `[lanes.light]` and `[lanes.heavy]`: how many node calls of each kind run at once,
//! how long and how many may wait, and whether the limit follows the node.

use std::time::Duration;

use serde::Serialize;

use super::render::ser_duration;
use super::walk::{boolean, duration, unsigned, Problems, Section};
use super::{secs, Config};

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LanesConfig {
    pub light: LaneConfig,
    pub heavy: LaneConfig,
}

impl Default for LanesConfig {
    fn default() -> Self {
        Self {
            light: LaneConfig {
                max_concurrency: 48,
                min_concurrency: 1,
                adaptive: false,
                fair: true,
                max_queue: 1024,
                queue_timeout: secs(2),
                max_per_client: 0,
            },
            heavy: LaneConfig {
                max_concurrency: 16,
                min_concurrency: 1,
                adaptive: true,
                fair: true,
                max_queue: 256,
                queue_timeout: secs(5),
                max_per_client: 1,
            },
        }
    }
}

/// Each lane's concurrency is at most `upstream.max_concurrency`; the two
/// may add up to more, the upstream cap still binding the total.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LaneConfig {
    /// Node calls of this lane at once; with `adaptive`, the most the limit may reach.
    pub max_concurrency: usize,
    /// With `adaptive`, the least the limit may fall to.
    pub min_concurrency: usize,
    /// The limit follows how much the node stretches its calls (Vegas) between the two bounds.
    pub adaptive: bool,
    /// A freed slot goes to the waiting client that used the node least lately; off,
    /// first come, first served.
    pub fair: bool,
    /// 0 = reject at once when all slots are busy.
    pub max_queue: usize,
    #[serde(serialize_with = "ser_duration")]
    pub queue_timeout: Duration,
    /// Calls of one client that may wait in this lane's queue at once; its others wait
    /// behind them, so that one client cannot fill the queue. A free slot is taken by
    /// whoever asks. 0 = first come, first served.
    pub max_per_client: usize,
}

pub(super) fn read(s: &mut Section, p: &mut Problems, c: &mut LaneConfig) {
    s.read(p, "max_concurrency", &mut c.max_concurrency, unsigned);
    s.read(p, "min_concurrency", &mut c.min_concurrency, unsigned);
    s.read(p, "adaptive", &mut c.adaptive, boolean);
    s.read(p, "fair", &mut c.fair, boolean);
    s.read(p, "max_queue", &mut c.max_queue, unsigned);
    s.read(p, "queue_timeout", &mut c.queue_timeout, duration);
    s.read(p, "max_per_client", &mut c.max_per_client, unsigned);
}

/// A lane's bounds must hold each other; each problem names both keys.
pub(super) fn check(c: &Config, p: &mut Problems) {
    for (name, lane) in [("light", &c.lanes.light), ("heavy", &c.lanes.heavy)] {
        let (min, max) = (
            format!("lanes.{name}.min_concurrency"),
            format!("lanes.{name}.max_concurrency"),
        );
        super::validate::check(p, lane.min_concurrency >= 1, &min, &[], || {
            "must be at least 1: a lane that may run nothing serves nothing".into()
        });
        super::validate::check(
            p,
            lane.min_concurrency <= lane.max_concurrency,
            &min,
            &[&max],
            || {
                format!(
                    "{} exceeds {max} ({}): the adaptive limit moves between the two",
                    lane.min_concurrency, lane.max_concurrency
                )
            },
        );
    }
}
