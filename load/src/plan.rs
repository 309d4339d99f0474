//! The bench's scenarios: what each one runs, against which targets, on what simulated
//! node, with which limits, for how long (`--quick` or full).

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use crate::configs::Limits;
use crate::drive::{Load, Mode};
use crate::mix::{Form, Mix};
use crate::stack::Target;
use cometgate_sim::SimNodeConfig;

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
    pub limits: Limits,
    /// The measured load; latency and errors in the report are this load's.
    pub load: Load,
    /// A second, unmeasured load running alongside (the abuser).
    pub background: Option<Load>,
    /// Alternating rounds over the targets; ratios are taken per round, then the median.
    pub rounds: usize,
    /// Load sent and discarded before the counters are reset (fills caches, warms pools).
    pub warmup: Duration,
    /// Poll the node's memory during the run (the storm's chart); otherwise once at the end.
    pub poll_node: bool,
}

fn secs(quick: bool, q: u64, full: u64) -> Duration {
    Duration::from_secs(if quick { q } else { full })
}

fn chain_node() -> SimNodeConfig {
    SimNodeConfig {
        block_interval: Duration::from_secs(1),
        start_height: 200,
        txs_per_block: 50,
        events_per_tx: 10,
        ..SimNodeConfig::default()
    }
}

pub fn storm_node() -> SimNodeConfig {
    let mut slow = std::collections::BTreeMap::new();
    // 1 MB block_results hold 8 MB for 50 ms: about 25 concurrent ones exceed the limit.
    slow.insert("block_results".to_string(), 20_000_000);
    slow.insert("tx_search".to_string(), 20_000_000);
    SimNodeConfig {
        block_interval: Duration::from_secs(1),
        start_height: 10,
        txs_per_block: 200,
        events_per_tx: 20,
        amplification: 8.0,
        encode_bytes_per_sec_per_method: slow,
        memory_limit_bytes: Some(STORM_MEMORY_LIMIT),
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
    }
}

pub fn storm_load(duration: Duration) -> Load {
    load(
        Mix::Storm,
        Form::Post,
        Mode::Closed { clients: 64 },
        duration,
    )
}

/// Every scenario, in the order the bench runs and reports them.
pub fn scenarios(quick: bool) -> Vec<Scenario> {
    let base = Scenario {
        name: "",
        targets: vec![Target::Direct, Target::Cometgate, Target::Nginx],
        node: chain_node(),
        limits: Limits::UNBINDING,
        load: well_behaved(quick),
        background: None,
        rounds: 1,
        warmup: Duration::ZERO,
        poll_node: false,
    };
    vec![
        Scenario {
            name: "lcd-storm",
            node: storm_node(),
            load: storm_load(secs(quick, 8, 20)),
            poll_node: true,
            ..base.clone()
        },
        Scenario {
            name: "explorer",
            load: load(
                Mix::Explorer,
                Form::Get,
                Mode::Open { rate: 300.0 },
                secs(quick, 6, 20),
            ),
            poll_node: true,
            ..base.clone()
        },
        Scenario {
            name: "abuse-baseline",
            limits: ABUSE_LIMITS,
            poll_node: true,
            ..base.clone()
        },
        Scenario {
            name: "abuse",
            limits: ABUSE_LIMITS,
            background: Some(abuser(quick)),
            poll_node: true,
            ..base.clone()
        },
        cache_hit(quick, &base),
        miss_overhead(quick, base),
    ]
}

/// cometgate's default per-client concurrency (16); a rate that lets the well-behaved
/// clients' 100 req/s (about 330 cost units/s) through on both sides.
const ABUSE_LIMITS: Limits = Limits {
    per_second: 600,
    burst: 1200,
    concurrent: 16,
};

fn well_behaved(quick: bool) -> Load {
    load(
        Mix::Explorer,
        Form::Post,
        Mode::Open { rate: 100.0 },
        secs(quick, 6, 15),
    )
}

/// An open-loop flood at 20× the well-behaved rate. A closed-loop abuser answered with
/// instant 429s would spin as fast as this 2-core machine allows and measure only CPU
/// starvation of everything on it, the load generator included.
fn abuser(quick: bool) -> Load {
    Load {
        local: Some(ABUSER),
        ..load(
            Mix::Abuser,
            Form::Post,
            Mode::Open { rate: ABUSER_RATE },
            secs(quick, 6, 15),
        )
    }
}

fn cache_hit(quick: bool, base: &Scenario) -> Scenario {
    Scenario {
        name: "cache-hit",
        targets: vec![Target::Cometgate, Target::Nginx, Target::Ceiling],
        load: load(
            Mix::CacheHit,
            Form::Post,
            Mode::Closed { clients: 64 },
            secs(quick, 4, 8),
        ),
        rounds: if quick { 1 } else { 3 },
        warmup: Duration::from_secs(1),
        ..base.clone()
    }
}

fn miss_overhead(quick: bool, base: Scenario) -> Scenario {
    Scenario {
        name: "miss-overhead",
        // One client, one request at a time: no queueing, so the difference between
        // targets is what each hop adds.
        load: load(
            Mix::MissOverhead,
            Form::Post,
            Mode::Closed { clients: 1 },
            secs(quick, 4, 8),
        ),
        rounds: if quick { 1 } else { 3 },
        warmup: Duration::from_secs(1),
        ..base
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_required_scenario_and_target_is_planned() {
        let plan = scenarios(true);
        let names: Vec<_> = plan.iter().map(|s| s.name).collect();
        for n in [
            "lcd-storm",
            "explorer",
            "abuse",
            "cache-hit",
            "miss-overhead",
        ] {
            assert!(names.contains(&n), "{n}");
        }
        let hit = plan.iter().find(|s| s.name == "cache-hit").unwrap();
        assert!(hit.targets.contains(&Target::Ceiling));
        let abuse = plan.iter().find(|s| s.name == "abuse").unwrap();
        assert_eq!(abuse.background.as_ref().unwrap().local, Some(ABUSER));
        assert_eq!(abuse.load.local, None);
    }

    #[test]
    fn quick_fits_in_five_minutes() {
        let total: Duration = scenarios(true)
            .iter()
            .map(|s| {
                (s.load.duration + s.warmup + Duration::from_secs(2))
                    * (s.targets.len() * s.rounds) as u32
            })
            .sum();
        assert!(total < Duration::from_secs(240), "{total:?}");
    }
}
