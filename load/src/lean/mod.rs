//! `cometgate-load lean`: the memory budget and refresh-ahead benches (issue #12's items
//! 3 and 4), each on fresh processes, beside the main bench rather than inside it: their
//! questions are about cometgate alone (which allocator, which `while_refreshing`), not
//! about cometgate against nginx.
//!
//! - `memory`: distinct 2 MB `block_results` answers through a 32 MiB cache, 4 and 8 at a
//!   time, under glibc's malloc, jemalloc and mimalloc (each preloaded from Debian's
//!   packages into the same binary); the peak RSS (VmHWM) against `cache.max_bytes +
//!   64 MiB`, and cache-hit throughput under each allocator.
//! - `refresh`: 200 clients polling `status` and `abci_query` at the head of a chain with
//!   1 s blocks, the node taking 50 ms for both; p99 in the 200 ms after each block against
//!   the p99 between blocks, and node calls per question per block, with refresh-ahead
//!   off, under "wait" and under "previous".
//! - `connections`: cometgate and nginx each holding 0 to 10,000 idle keep-alive
//!   connections: RSS, KiB per idle connection, and hit throughput beside them.
//! - `entries`: cometgate's RSS and hit throughput with 1,000 to 100,000 answers cached.
//! - `replicas`: three replicas sharing one Redis in front of one node: the rate one
//!   client spread over them is admitted at, node calls per immutable question, hit
//!   throughput beside a lone replica without Redis, and p99 while Redis is killed.
//! - `ws-fanout`: 1,000 to 10,000 websocket clients subscribed through one gateway:
//!   delivery latency against a subscriber on the node, every block in order, what the
//!   node holds (connections, subscriptions) and the gateway's RSS per client; also
//!   written on its own as `WS-FANOUT.md`, `ws-fanout.json` and a chart.
//! - `failover`: three nodes behind one gateway under the explorer's load, one killed
//!   for a third of the run and started again: client success, p99 around the kill, and
//!   each node's share of node calls per second (a chart).

mod connections;
mod entries;
mod failover;
mod memory;
mod refresh;
mod replicas;
mod ws_fanout;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use cometgate_sim::SimNodeConfig;

use crate::procs::{free_addr, wait_listening, Proc};
use crate::stack::{start_node, Bins, Node};

pub struct Options {
    pub quick: bool,
    pub out: PathBuf,
    /// `memory`, `connections`, `entries`, `refresh`, `replicas`, `ws-fanout`, `failover`, or all
    /// when empty.
    pub only: Vec<String>,
}

/// Runs the benches asked for; writes `lean.json` and `LEAN.md` into `out`.
pub async fn lean(opts: Options) -> Result<(), String> {
    let bins = crate::bench::bins()?;
    let work = std::env::temp_dir().join(format!("cometgate-lean-{}", std::process::id()));
    let wants = |name: &str| opts.only.is_empty() || opts.only.iter().any(|o| o == name);
    let mut md = String::from(
        "# cometgate: memory budget and refresh-ahead\n\n\
         Written by `cometgate-load lean`. One machine shared by the load, the simulated \
         node and cometgate (2 cores, shared with other work): figures are indicative.\n",
    );
    let mut json = serde_json::Map::new();
    if wants("memory") {
        let (text, value) = memory::run(&bins, opts.quick, &work.join("memory")).await?;
        md.push_str(&text);
        json.insert("memory".into(), value);
    }
    if wants("connections") {
        let (text, value) = connections::run(&bins, opts.quick, &work.join("conns")).await?;
        md.push_str(&text);
        json.insert("connections".into(), value);
    }
    if wants("entries") {
        let (text, value) = entries::run(&bins, opts.quick, &work.join("entries")).await?;
        md.push_str(&text);
        json.insert("entries".into(), value);
    }
    if wants("replicas") {
        let (text, value) = replicas::run(&bins, opts.quick, &work.join("replicas")).await?;
        md.push_str(&text);
        json.insert("replicas".into(), value);
    }
    if wants("refresh") {
        let (text, value) = refresh::run(&bins, opts.quick, &work.join("refresh")).await?;
        md.push_str(&text);
        json.insert("refresh".into(), value);
    }
    if wants("failover") {
        let dir = work.join("failover");
        let (text, value) = failover::run(&bins, opts.quick, &dir, &opts.out).await?;
        md.push_str(&text);
        json.insert("failover".into(), value);
    }
    if wants("ws-fanout") {
        let dir = work.join("ws-fanout");
        let (text, value) = ws_fanout::run(&bins, opts.quick, &dir, &opts.out).await?;
        md.push_str(&text);
        json.insert("ws-fanout".into(), value);
    }
    std::fs::create_dir_all(&opts.out).map_err(|e| format!("{}: {e}", opts.out.display()))?;
    let json = serde_json::to_string_pretty(&json).map_err(|e| e.to_string())?;
    std::fs::write(opts.out.join("lean.json"), json + "\n").map_err(|e| e.to_string())?;
    std::fs::write(opts.out.join("LEAN.md"), &md).map_err(|e| e.to_string())?;
    print!("{md}");
    let _ = std::fs::remove_dir_all(&work);
    Ok(())
}

/// A simulated node and cometgate in front of it, configured by `sections` (TOML after
/// the listen addresses) and run with `env` (an allocator preloaded).
pub(super) struct Pair {
    pub node: Node,
    pub gateway: Proc,
    pub url: String,
}

pub(super) async fn start(
    bins: &Bins,
    node: &SimNodeConfig,
    sections: &str,
    env: &[(&str, &str)],
    dir: &Path,
) -> Result<Pair, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let node = start_node(bins, node, false, dir).await?;
    let (gateway, url) = gateway(bins, node.rpc, sections, env, dir, "cometgate").await?;
    Ok(Pair { node, gateway, url })
}

/// One cometgate in front of the node at `rpc`, named `name` (its config and log files),
/// configured by `sections`; returns it and its URL.
pub(super) async fn gateway(
    bins: &Bins,
    rpc: std::net::SocketAddr,
    sections: &str,
    env: &[(&str, &str)],
    dir: &Path,
    name: &str,
) -> Result<(Proc, String), String> {
    let g = gateway_with(bins, rpc, "", sections, env, dir, name).await?;
    Ok((g.proc, g.url))
}

/// A cometgate started by `gateway_with`, and where it listens.
pub(super) struct Gateway {
    pub proc: Proc,
    pub url: String,
    pub listen: std::net::SocketAddr,
    pub metrics: std::net::SocketAddr,
}

/// `gateway`, with `server` (lines) added to its `[server]` section: TOML allows a
/// table once, and the listen address is written there.
pub(super) async fn gateway_with(
    bins: &Bins,
    rpc: std::net::SocketAddr,
    server: &str,
    sections: &str,
    env: &[(&str, &str)],
    dir: &Path,
    name: &str,
) -> Result<Gateway, String> {
    let upstream = format!("[upstream]\nurl = \"http://{rpc}/\"\n");
    gateway_for(bins, &upstream, server, sections, env, dir, name).await
}

/// `gateway_with`, its nodes given by `upstream` (an `[upstream]` table, or
/// `[[upstream.nodes]]` tables).
pub(super) async fn gateway_for(
    bins: &Bins,
    upstream: &str,
    server: &str,
    sections: &str,
    env: &[(&str, &str)],
    dir: &Path,
    name: &str,
) -> Result<Gateway, String> {
    let (listen, metrics) = (free_addr(), free_addr());
    let mut text = String::new();
    let _ = write!(
        text,
        "[server]\nlisten = \"{listen}\"\n{server}\n[metrics]\nlisten = \"{metrics}\"\n\n\
         {upstream}\n{sections}"
    );
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, &text).map_err(|e| e.to_string())?;
    let mut cmd = Command::new(&bins.cometgate);
    cmd.arg("--config")
        .arg(&path)
        .env("TOKIO_WORKER_THREADS", "2")
        .env_remove("RUST_LOG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut proc = Proc::spawn(cmd, name, dir, true)?;
    wait_listening(listen, &mut proc).await?;
    Ok(Gateway {
        proc,
        url: format!("http://{listen}"),
        listen,
        metrics,
    })
}

/// Milliseconds with two decimals, for the tables.
pub(super) fn ms(v: f64) -> String {
    format!("{v:.2}")
}

pub(super) fn mib(bytes: u64) -> String {
    format!("{:.1}", bytes as f64 / (1u64 << 20) as f64)
}
