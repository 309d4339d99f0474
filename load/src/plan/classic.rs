//! The first benchmark's scenarios (the `--quick` bench): the LCD storm, an explorer,
//! one abuser, the cache-hit ceiling and the overhead of a miss.

use std::time::Duration;

use super::{chain_node, load, secs, Scenario, ABUSER, ABUSER_RATE, STORM_MEMORY_LIMIT};
use crate::configs::{Front, Limits};
use crate::drive::{Load, Mode};
use crate::mix::{Form, Mix};
use crate::stack::Target;
use cometgate_sim::SimNodeConfig;

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

pub fn storm_load(duration: Duration) -> Load {
    load(
        Mix::Storm,
        Form::Post,
        Mode::Closed { clients: 64 },
        duration,
    )
}

/// The first benchmark's scenarios, the `--quick` bench.
pub(super) fn scenarios(quick: bool) -> Vec<Scenario> {
    let base = Scenario {
        name: "",
        targets: vec![Target::Direct, Target::Cometgate, Target::Nginx],
        node: chain_node(),
        front: Front::limits(Limits::UNBINDING),
        load: well_behaved(quick),
        background: None,
        rounds: 1,
        warmup: Duration::ZERO,
        poll_node: false,
        quick: true,
        cross_check: false,
    };
    let abuse_targets = vec![
        Target::Direct,
        Target::Cometgate,
        Target::Fcfs,
        Target::Nginx,
    ];
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
            targets: abuse_targets.clone(),
            front: Front::limits(ABUSE_LIMITS),
            poll_node: true,
            ..base.clone()
        },
        Scenario {
            name: "abuse",
            targets: abuse_targets,
            front: Front::limits(ABUSE_LIMITS),
            background: Some(abuser(quick)),
            poll_node: true,
            ..base.clone()
        },
    ]
    .into_iter()
    .chain(cache_hits(quick, &base))
    .chain([miss_overhead(quick, base)])
    .collect()
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

/// Cache hits, POST and GET, with logging off and with it on on both sides; each round
/// also measured by wrk. The ceiling stands beside the first only: it logs nothing. The
/// logged ones have cometgate unlogged beside them: the log's cost, side by side.
fn cache_hits(quick: bool, base: &Scenario) -> Vec<Scenario> {
    let hits = |name, form, access_log| Scenario {
        name,
        targets: vec![Target::Cometgate, Target::Nginx],
        front: Front {
            access_log,
            ..base.front
        },
        load: load(
            Mix::CacheHit,
            form,
            // As many connections as the wrk cross-check, on one thread as wrk -t1.
            Mode::Lean {
                connections: crate::wrk::CONNECTIONS,
            },
            secs(quick, 3, 8),
        ),
        rounds: if quick { 1 } else { 3 },
        warmup: Duration::from_secs(1),
        cross_check: true,
        ..base.clone()
    };
    let mut plain = hits("cache-hit", Form::Post, false);
    plain.targets.push(Target::Ceiling);
    let logged = |name, form| {
        let mut sc = hits(name, form, true);
        sc.targets.push(Target::Unlogged);
        sc
    };
    vec![
        plain,
        hits("cache-hit-get", Form::Get, false),
        logged("cache-hit-log", Form::Post),
        logged("cache-hit-log-get", Form::Get),
    ]
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
