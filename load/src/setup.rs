//! The report's "How it was run" and "Configurations": the scenarios' loads and targets,
//! and the generated configurations of both proxies and of the simulated nodes.

use crate::drive::{Load, Mode};
use crate::markdown::Shown;
use crate::measure::Measured;
use crate::plan::{lookup_node, storm_node, Scenario};
use crate::stack::Target;

/// Configurations shown: the scenario whose run they come from, and what it stands for.
const SHOWN: [(&str, &str); 6] = [
    ("lcd-storm", "throughput scenarios (lcd-storm, explorer, cache-hit, miss-overhead): limits that bind on neither side"),
    ("abuse", "abuse and abuse-baseline: the same per-client limit on both sides"),
    ("crowd", "crowd and crowd-baseline: the shipped per-client limits on both sides"),
    ("lcd-shape", "lcd-shape: the LCD's key with raised limits (nginx: the same limits for its address)"),
    ("lcd-storm-slow", "the storm sweeps (lcd-storm-slow, lcd-storm-fast): a static heavy lane (here of 1)"),
    ("memory-squeeze", "memory-squeeze: the guard on the node's metrics port"),
];

pub fn shown(runs: &[Measured]) -> Shown {
    let mut shown = Vec::new();
    for (scenario, why) in SHOWN {
        let targets: &[Target] = match scenario {
            "lcd-storm-slow" => &[Target::Static(1)],
            "memory-squeeze" => &[Target::Cometgate],
            "abuse" | "crowd" => &[Target::Cometgate, Target::Fcfs, Target::Nginx],
            _ => &[Target::Cometgate, Target::Nginx],
        };
        for target in targets {
            if let Some(text) = runs
                .iter()
                .find(|m| m.scenario == scenario && m.target == *target)
                .and_then(|m| m.config_text.clone())
            {
                let (file, lang) = match target {
                    Target::Nginx => ("nginx.conf".to_string(), "nginx"),
                    t => (format!("{}.toml", t.name()), "toml"),
                };
                shown.push((format!("{file} for {why}"), lang, text));
            }
        }
    }
    let storm = serde_json::to_string_pretty(&storm_node()).unwrap_or_default();
    shown.push((
        "simnode config of lcd-storm (ports are picked per run)".into(),
        "json",
        storm,
    ));
    let sweep = serde_json::to_string_pretty(&lookup_node(0.25)).unwrap_or_default();
    shown.push((
        "simnode config of lcd-storm-slow (lcd-storm-fast: `speed` 4.0)".into(),
        "json",
        sweep,
    ));
    shown
}

fn mode(load: &Load) -> String {
    match load.mode {
        Mode::Closed { clients } => format!("closed loop, {clients} clients"),
        Mode::Open { rate } => {
            format!("open loop, {rate:.0} req/s (latency from intended send time)")
        }
        Mode::Poisson { rate } => format!("Poisson arrivals, {rate:.0} req/s"),
        Mode::Lean { connections } => {
            format!("closed loop on one thread, {connections} raw keep-alive connections")
        }
    }
}

fn from(load: &Load) -> String {
    match (load.local, load.addresses) {
        (None, _) => String::new(),
        (Some(ip), 1) => format!(" from {ip}"),
        (Some(ip), n) => format!(" from {n} addresses starting at {ip}"),
    }
}

pub fn setup(plan: &[Scenario]) -> String {
    let mut s = String::from(
        "Each measurement starts fresh processes: `simnode` (its own process, so its memory and OOM are its own; read through `--control-listen`), then the target in front of it: nothing (`direct`), the release `cometgate` binary (`TOKIO_WORKER_THREADS=2`) as shipped (`cometgate`), with `fair = false` in both lanes (`cometgate-fcfs`, first come, first served), or with a static heavy lane of N and no guard (`cometgate-static-N`), nginx from Debian (`worker_processes 2`, foreground, generated config below), or `ceiling` (a minimal hyper server answering the cache-hit body from memory, 2 worker threads). The load generator runs in the `cometgate-load` process on the same 2 cores. Node counters are reset after the warm-up; node memory is polled every 100 ms from the control port; the gateway's RSS is sampled from /proc every 100 ms (nginx: master plus workers summed; cometgate: also its VmHWM).\n\n| scenario | targets | load | duration | rounds |\n|---|---|---|--:|--:|\n",
    );
    for sc in plan {
        let bg = sc
            .background
            .as_ref()
            .map(|b| format!(" + {:?} {}{}", b.mix, mode(b), from(b)))
            .unwrap_or_default();
        let key = if sc.load.api_key.is_some() {
            " with an API key"
        } else {
            ""
        };
        let targets: Vec<String> = sc.targets.iter().map(|t| t.name()).collect();
        let log = if sc.front.access_log {
            ", access logs on"
        } else {
            ""
        };
        let wrk = if sc.cross_check {
            format!(
                "; then `wrk -t{} -c{} --latency` for as long",
                crate::wrk::THREADS,
                crate::wrk::CONNECTIONS
            )
        } else {
            String::new()
        };
        s.push_str(&format!(
            "| {} | {} | {:?} {:?}, {}{}{key}{bg}{log}{wrk} | {:.0} s | {} |\n",
            sc.name,
            targets.join(", "),
            sc.load.mix,
            sc.load.form,
            mode(&sc.load),
            from(&sc.load),
            sc.load.duration.as_secs_f64(),
            sc.rounds
        ));
    }
    s.push_str(MIXES);
    s
}

const MIXES: &str = "\nMixes: `Storm` = `block_results` (latest), `tx_search tx.height=<head>` (100 per page) and `abci_query /store` (latest), each client numbering its JSON-RPC ids as real clients do. `Explorer` = `block`, `commit`, `header`, `validators`, `block_results`, `tx_search` at heights drawn Zipf(s=1.1) over the last 100 blocks, plus `block`/`status`/`abci_info` at the head. `Light` = the explorer's light calls alone (`block`, `commit`, `header`, `validators`, `status`, `abci_info`). `Abuser` = `tx_search tx.height=<random height>` with 100 per page, ascending or descending (spread so caches help little); the crowd and the squeeze's heavy clients ask the same questions. `Lookups` = `block_results` and `tx_search tx.height=<h>` (100 per page) at heights drawn uniformly over the whole chain, as an LCD relays its users' lookups: the cache seldom answers, so each call costs the node. `CacheHit` = `block` at height 5 with a fixed id (the best case for nginx, whose cache key is the whole body). `MissOverhead` = `check_tx` of a unique tx each time (never cached anywhere, always reaches the node).\n\nNodes: `lcd-storm` below. `lcd-storm-slow`/`-fast` run `Lookups` on the crowd's chain (50 txs × 10 events per block from height 2000) with a 4-slot CPU where `block_results` and `tx_search` each cost 100 ms of CPU at speed 1, at speed 0.25 / 4.0 (the node serves about 10 / 160 lookups a second), and a 48 MB memory limit (the heavy lane's ceiling of 16 fits, a direct storm of 64 does not). `crowd`: 50 txs × 10 events per block from height 2000, a 4-slot CPU, `tx_search` 200 ms of CPU (the node serves 20 a second). `memory-squeeze`: the crowd's node with `amplification = 200` (a `tx_search` page holds about 29 MB) and a 75 MB limit (two fit, three pass it); the guard is told 64 MiB (the node's idle memory) + 75 MB; `memory-squeeze-baseline` has no limit and tells the guard 64 GiB. `lcd-shape`: 50 txs × 10 events, no CPU model (capacity to spare).\n";
