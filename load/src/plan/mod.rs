//! The bench's scenarios: what each one runs, against which targets, on what simulated
//! node, with which limits, for how long (`--quick` or full). `classic` holds the first
//! benchmark's six; `fairness` the crowd and the LCD's own shape; `node` the node's speed
//! and memory (the adaptive lane's sweep, the memory squeeze).

mod classic;
mod fairness;
mod node;

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use crate::configs::Front;
use crate::drive::{Load, Mode};
use crate::mix::{Form, Mix};
use crate::stack::Target;
use cometgate_sim::SimNodeConfig;

pub use classic::{storm_load, storm_node};
pub use fairness::LCD_KEY;
pub use node::{lookup_node, SQUEEZE_LIMIT, SWEEP};

/// The well-behaved clients' address; the abuser comes from `ABUSER`.
pub const ABUSER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

/// The node's memory limit in the storm: a direct storm passes it, four heavy answers at a
/// time (cometgate's heavy lane) stay far below it.
pub const STORM_MEMORY_LIMIT: u64 = 192 << 20;

/// The abuser's arrival rate, requests per second.
pub const ABUSER_RATE: f64 = 2000.0;

#[derive(Clone, Debug)]
pub struct Scenario {
    pub name: &'static str,
    pub targets: Vec<Target>,
    pub node: SimNodeConfig,
    /// Per-client limits on every proxy alike, and the guard and API key where set.
    pub front: Front,
    /// The measured load; latency and errors in the report are this load's.
    pub load: Load,
    /// A second, unmeasured load running alongside (the abuser, the crowd).
    pub background: Option<Load>,
    /// Alternating rounds over the targets; ratios are taken per round, then the median.
    pub rounds: usize,
    /// Load sent and discarded before the counters are reset (fills caches, warms pools).
    pub warmup: Duration,
    /// Poll the node's memory during the run (the storm's chart); otherwise once at the end.
    pub poll_node: bool,
    /// Part of `--quick` (the first benchmark's scenarios); the others run in the full
    /// bench or when named with `--only`.
    pub quick: bool,
    /// After the harness, the same call from `wrk` against the same running target.
    pub cross_check: bool,
}

fn secs(quick: bool, q: u64, full: u64) -> Duration {
    Duration::from_secs(if quick { q } else { full })
}

/// A chain that advances every second with 50 txs of 10 events per block: 140 KB
/// `block_results` and `tx_search` pages.
fn chain_node() -> SimNodeConfig {
    SimNodeConfig {
        block_interval: Duration::from_secs(1),
        start_height: 200,
        txs_per_block: 50,
        events_per_tx: 10,
        ..SimNodeConfig::default()
    }
}

fn load(mix: Mix, form: Form, mode: Mode, duration: Duration) -> Load {
    Load {
        mix,
        form,
        mode,
        duration,
        seed: 7,
        local: None,
        addresses: 1,
        api_key: None,
    }
}

/// Every scenario, in the order the bench runs and reports them.
pub fn scenarios(quick: bool) -> Vec<Scenario> {
    let mut all = classic::scenarios(quick);
    all.extend(fairness::scenarios(quick));
    all.extend(node::scenarios(quick));
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_required_scenario_and_target_is_planned() {
        let plan = scenarios(false);
        let names: Vec<_> = plan.iter().map(|s| s.name).collect();
        for n in [
            "lcd-storm",
            "explorer",
            "abuse",
            "cache-hit",
            "cache-hit-get",
            "cache-hit-log",
            "cache-hit-log-get",
            "miss-overhead",
            "crowd-baseline",
            "crowd",
            "lcd-shape",
            "lcd-storm-slow",
            "lcd-storm-fast",
            "memory-squeeze-baseline",
            "memory-squeeze",
        ] {
            assert!(names.contains(&n), "{n}");
        }
        let hit = plan.iter().find(|s| s.name == "cache-hit").unwrap();
        assert!(hit.targets.contains(&Target::Ceiling));
        for sc in plan.iter().filter(|s| s.name.starts_with("cache-hit")) {
            assert!(
                sc.cross_check,
                "{}: every hit figure is checked by wrk",
                sc.name
            );
            assert_eq!(sc.front.access_log, sc.name.contains("-log"), "{}", sc.name);
            assert_eq!(sc.load.form == Form::Get, sc.name.ends_with("-get"));
        }
        let abuse = plan.iter().find(|s| s.name == "abuse").unwrap();
        assert_eq!(abuse.background.as_ref().unwrap().local, Some(ABUSER));
        assert_eq!(abuse.load.local, None);
        // Every new row stands beside nginx and beside cometgate first come, first served.
        for sc in plan.iter().filter(|s| !s.quick) {
            for t in [Target::Cometgate, Target::Fcfs, Target::Nginx] {
                assert!(sc.targets.contains(&t), "{} lacks {}", sc.name, t.name());
            }
        }
        let slow = plan.iter().find(|s| s.name == "lcd-storm-slow").unwrap();
        for n in SWEEP {
            assert!(slow.targets.contains(&Target::Static(n)));
        }
    }

    #[test]
    fn quick_fits_in_five_minutes() {
        let total: Duration = scenarios(true)
            .iter()
            .filter(|s| s.quick)
            .map(|s| {
                let wrk = if s.cross_check {
                    s.load.duration
                } else {
                    Duration::ZERO
                };
                (s.load.duration + wrk + s.warmup + Duration::from_secs(2))
                    * (s.targets.len() * s.rounds) as u32
            })
            .sum();
        assert!(total < Duration::from_secs(240), "{total:?}");
    }
}
