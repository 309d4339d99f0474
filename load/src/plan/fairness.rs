//! Fairness between clients: an ordinary client beside a polite crowd that asks far more
//! of the node than it can give, and an LCD whose operator raised its own limits.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use super::{chain_node, load, secs, Scenario};
use crate::configs::{ApiKey, Front, Limits};
use crate::drive::{Load, Mode};
use crate::mix::{Form, Mix};
use crate::stack::Target;
use cometgate_sim::SimNodeConfig;

/// The crowd's first address; its clients take `CROWD_SIZE` consecutive ones.
pub const CROWD_FROM: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 10));
pub const CROWD_SIZE: usize = 20;

/// Each crowd client's `tx_search` calls a second: 45 of its 50 cost units a second.
pub const CROWD_RATE_EACH: f64 = 4.5;

/// The node's CPU slots in the crowd; `tx_search` costs 200 ms of one, so the node
/// serves 20 a second and the crowd asks for 4.5 times that.
pub const CROWD_CPU_SLOTS: usize = 4;
pub const CROWD_SEARCH_MS: u64 = 200;

/// cometgate's shipped per-client limits, on both proxies.
const SHIPPED: Limits = Limits {
    per_second: 50,
    burst: 200,
    concurrent: 16,
};

fn targets() -> Vec<Target> {
    vec![
        Target::Direct,
        Target::Cometgate,
        Target::Fcfs,
        Target::Nginx,
    ]
}

/// The crowd also runs against a fair static lane of four (the node's CPU slots): what
/// fairness alone does, without the adaptive limit.
fn crowd_targets() -> Vec<Target> {
    let mut t = targets();
    t.insert(3, Target::Static(CROWD_CPU_SLOTS));
    t
}

/// A node whose `tx_search` is an index scan of 200 ms on one of four CPU slots.
pub fn crowd_node() -> SimNodeConfig {
    SimNodeConfig {
        start_height: 2000,
        cpu_slots: CROWD_CPU_SLOTS,
        service_ms_per_method: BTreeMap::from([("tx_search".to_string(), CROWD_SEARCH_MS)]),
        ..chain_node()
    }
}

/// The ordinary client: eight explorer calls a second, a quarter of them heavy.
fn ordinary(quick: bool) -> Load {
    load(
        Mix::Explorer,
        Form::Post,
        Mode::Open { rate: 8.0 },
        secs(quick, 8, 30),
    )
}

/// Twenty polite clients, each within its rate limit, asking `tx_search` at random heights.
fn crowd(quick: bool) -> Load {
    Load {
        local: Some(CROWD_FROM),
        addresses: CROWD_SIZE,
        seed: 11,
        ..load(
            Mix::Abuser,
            Form::Post,
            Mode::Open {
                rate: CROWD_RATE_EACH * CROWD_SIZE as f64,
            },
            secs(quick, 8, 30),
        )
    }
}

/// The LCD (a Cosmos REST server) fronted by cometgate: one address, its key's limits
/// raised by its operator. The rate is out of the closed loop's reach: on a quiet host
/// its 64 connections sent 65,000 calls a second, at a cost of several units each for
/// the heavy ones, and a limit of 100,000 units a second refused 8% of them with 429
/// once the burst was spent. That measured the limit the bench set, not the scheduler.
pub const LCD_KEY: ApiKey = ApiKey {
    header: "x-api-key",
    key: "lcd-rest-server",
    limits: Limits {
        per_second: 10_000_000,
        burst: 20_000_000,
        concurrent: 128,
    },
};

pub(super) fn scenarios(quick: bool) -> Vec<Scenario> {
    let base = Scenario {
        name: "crowd-baseline",
        targets: crowd_targets(),
        node: crowd_node(),
        front: Front::limits(SHIPPED),
        load: ordinary(quick),
        background: None,
        rounds: 1,
        warmup: Duration::ZERO,
        poll_node: false,
        quick: false,
        cross_check: false,
    };
    let shape = Scenario {
        name: "lcd-shape",
        // Capacity to spare: no CPU model, every call at full speed.
        node: chain_node(),
        front: Front {
            api_key: Some(LCD_KEY),
            ..Front::limits(SHIPPED)
        },
        load: Load {
            api_key: Some((LCD_KEY.header, LCD_KEY.key)),
            ..load(
                Mix::Explorer,
                Form::Post,
                Mode::Closed { clients: 64 },
                secs(quick, 5, 10),
            )
        },
        targets: targets(),
        rounds: if quick { 1 } else { 3 },
        warmup: Duration::from_secs(1),
        ..base.clone()
    };
    vec![
        base.clone(),
        Scenario {
            name: "crowd",
            background: Some(crowd(quick)),
            ..base
        },
        shape,
    ]
}
