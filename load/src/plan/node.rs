//! The node's own resources: the LCD storm on a node four times slower and four times
//! faster than the default (the adaptive heavy lane against a sweep of static sizes), and
//! a node squeezed for memory (the guard).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use super::fairness::crowd_node;
use super::{load, secs, Scenario};
use crate::configs::{Front, Limits};
use crate::drive::{Load, Mode};
use crate::mix::{Form, Mix};
use crate::stack::Target;
use cometgate_sim::SimNodeConfig;

/// Static heavy lane sizes the adaptive lane is compared with.
pub const SWEEP: [usize; 5] = [1, 2, 4, 8, 16];

/// The sweep's node gets a CPU of this many slots.
const SWEEP_CPU_SLOTS: usize = 4;

/// CPU one lookup costs the sweep's node at speed 1, on top of its encode time.
const LOOKUP_MS: u64 = 100;

/// The sweep's node memory: sixteen lookups at once (the heavy lane's ceiling) fit in
/// it, a direct storm of sixty-four does not.
pub const LOOKUP_MEMORY_LIMIT: u64 = 48_000_000;

/// The LCD's connections in the sweep.
const LOOKUP_CLIENTS: usize = 64;

/// The squeezed node's memory: one `tx_search` page held about 29 MB (147 KB ×
/// amplification 200), so two fit and three concurrent ones pass the limit.
pub const SQUEEZE_LIMIT: u64 = 75_000_000;
pub const SQUEEZE_AMPLIFICATION: f64 = 200.0;

/// The heavy clients' first address in the squeeze.
const HEAVY_FROM: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 40));

/// The node the sweep runs on: a long chain whose every lookup costs CPU, so that
/// throughput is the node's to give and the lane's size is what shares it out.
pub fn lookup_node(speed: f64) -> SimNodeConfig {
    SimNodeConfig {
        cpu_slots: SWEEP_CPU_SLOTS,
        speed,
        service_ms_per_method: BTreeMap::from([
            ("block_results".to_string(), LOOKUP_MS),
            ("tx_search".to_string(), LOOKUP_MS),
        ]),
        memory_limit_bytes: Some(LOOKUP_MEMORY_LIMIT),
        ..crowd_node()
    }
}

fn sweep_targets() -> Vec<Target> {
    let mut t = vec![Target::Direct, Target::Cometgate, Target::Fcfs];
    t.extend(SWEEP.map(Target::Static));
    t.push(Target::Nginx);
    t
}

/// The squeezed node: the crowd's node (200 ms `tx_search` on four CPU slots) whose
/// answers weigh 200 times their size, with room for two heavy answers at once.
pub fn squeeze_node(limit: Option<u64>) -> SimNodeConfig {
    SimNodeConfig {
        amplification: SQUEEZE_AMPLIFICATION,
        memory_limit_bytes: limit,
        ..crowd_node()
    }
}

/// What the guard is told: the node process's whole limit, its idle memory included.
fn told(node: &SimNodeConfig, limit: u64) -> u64 {
    node.resident_baseline_bytes + limit
}

/// One side of the sweep: 64 LCD connections' lookups on the lookup node at `speed`.
/// The storm's questions at the head are one node call a block whatever the lane's
/// size (the cache and its coalescing answer the rest), so the sweep asks the lookups
/// that do reach the node.
fn sweep(name: &'static str, speed: f64, duration: Duration) -> Scenario {
    Scenario {
        name,
        targets: sweep_targets(),
        node: lookup_node(speed),
        front: Front::limits(Limits::UNBINDING),
        load: load(
            Mix::Lookups,
            Form::Post,
            Mode::Closed {
                clients: LOOKUP_CLIENTS,
            },
            duration,
        ),
        background: None,
        rounds: 1,
        warmup: Duration::ZERO,
        poll_node: true,
        quick: false,
        cross_check: false,
    }
}

/// Light calls beside heavy clients on a node squeezed for memory, the guard told its
/// limit.
fn squeeze(quick: bool) -> Scenario {
    let squeezed = squeeze_node(Some(SQUEEZE_LIMIT));
    Scenario {
        name: "memory-squeeze",
        // Static lanes of 4 (the old default) and of 2 (the most that fits), no guard.
        targets: vec![
            Target::Direct,
            Target::Cometgate,
            Target::Fcfs,
            Target::Static(4),
            Target::Static(2),
            Target::Nginx,
        ],
        front: Front {
            guard: Some(told(&squeezed, SQUEEZE_LIMIT)),
            ..Front::limits(Limits {
                per_second: 50,
                burst: 200,
                concurrent: 16,
            })
        },
        node: squeezed,
        // 20 light calls a second: about 38 of the address's 50 cost units.
        load: load(
            Mix::Light,
            Form::Post,
            Mode::Open { rate: 20.0 },
            secs(quick, 8, 15),
        ),
        background: Some(heavy_clients(quick)),
        ..sweep("", 1.0, Duration::ZERO)
    }
}

pub(super) fn scenarios(quick: bool) -> Vec<Scenario> {
    let squeeze = squeeze(quick);
    let roomy = squeeze_node(None);
    vec![
        sweep("lcd-storm-slow", 0.25, secs(quick, 8, 15)),
        sweep("lcd-storm-fast", 4.0, secs(quick, 6, 10)),
        Scenario {
            name: "memory-squeeze-baseline",
            front: Front {
                // Room to spare: 64 GiB, the guard reads but never sheds.
                guard: Some(told(&roomy, 64 << 30)),
                ..squeeze.front
            },
            node: roomy,
            ..squeeze.clone()
        },
        squeeze,
    ]
}

/// Four clients' `tx_search` calls, 8 a second together, arriving as independent
/// clients' calls do (Poisson): sometimes three land within one answer's time.
fn heavy_clients(quick: bool) -> Load {
    Load {
        local: Some(HEAVY_FROM),
        addresses: 4,
        seed: 13,
        ..load(
            Mix::Abuser,
            Form::Post,
            Mode::Poisson { rate: 8.0 },
            secs(quick, 8, 15),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sweep's premise, checked against the node itself: the heavy lane's ceiling
    /// of lookups fits in the node's memory, a direct storm's sixty-four do not.
    #[tokio::test]
    async fn the_lane_ceiling_of_lookups_fits_the_sweep_node_and_a_direct_storm_does_not() {
        let cfg = SimNodeConfig {
            block_interval: Duration::ZERO,
            service_ms_per_method: BTreeMap::new(),
            memory_limit_bytes: None,
            ..lookup_node(1.0)
        };
        let amplification = cfg.amplification;
        let node = cometgate_sim::SimNode::start(cfg).await.unwrap();
        let client = crate::client::Client::new(&node.url(), None).unwrap();
        let mut picker = crate::mix::Picker::new(Mix::Lookups, Form::Post, 1);
        let (mut least, mut most) = (u64::MAX, 0);
        for _ in 0..40 {
            let (status, body) = client.fetch(&picker.next(node.height())).await.unwrap();
            assert_eq!(status, 200);
            let held = (body.len() as f64 * amplification) as u64;
            (least, most) = (least.min(held), most.max(held));
        }
        let ceiling = *SWEEP.iter().max().unwrap() as u64;
        assert!(ceiling * most < LOOKUP_MEMORY_LIMIT, "{most}");
        assert!(
            LOOKUP_CLIENTS as u64 * least > LOOKUP_MEMORY_LIMIT,
            "{least}"
        );
    }

    /// The squeeze's premise, checked against the node itself: two heavy answers fit,
    /// three concurrent ones pass the limit.
    #[tokio::test]
    async fn three_heavy_answers_pass_the_squeezed_limit_and_two_do_not() {
        let node = cometgate_sim::SimNode::start(SimNodeConfig {
            block_interval: Duration::ZERO,
            service_ms_per_method: BTreeMap::new(),
            ..squeeze_node(None)
        })
        .await
        .unwrap();
        let client = crate::client::Client::new(&node.url(), None).unwrap();
        let mut picker = crate::mix::Picker::new(Mix::Abuser, Form::Post, 1);
        for _ in 0..20 {
            node.reset_counters();
            let call = picker.next(node.height());
            let (status, body) = client.fetch(&call).await.unwrap();
            assert_eq!(status, 200);
            let held = (body.len() as f64 * SQUEEZE_AMPLIFICATION) as u64;
            assert!(2 * held < SQUEEZE_LIMIT, "{held}");
            assert!(3 * held > SQUEEZE_LIMIT, "{held}");
        }
    }
}
