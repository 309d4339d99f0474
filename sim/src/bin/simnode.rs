//! `simnode`: the simulated CometBFT node as a process.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use cometgate_sim::{parse_duration, SimNode, SimNodeConfig};

#[derive(Parser, Debug)]
#[command(name = "simnode", about = "Simulated CometBFT v0.38 RPC node")]
struct Cli {
    /// TOML or JSON file with any SimNodeConfig knob; flags given here override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// RPC listen address.
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Control-only listener that stays up while the node is down or OOM.
    #[arg(long)]
    control_listen: Option<SocketAddr>,
    /// Time between blocks (`1s`, `250ms`); `0` freezes the chain.
    #[arg(long, value_parser = parse_duration)]
    block_interval: Option<Duration>,
    /// Head height at start (default 10).
    #[arg(long)]
    start_height: Option<u64>,
    /// Memory limit in bytes above which the node OOMs.
    #[arg(long)]
    memory_limit: Option<u64>,
    /// Generated transactions per block.
    #[arg(long)]
    txs_per_block: Option<usize>,
    /// Seed of generated hashes and times.
    #[arg(long)]
    seed: Option<u64>,
    /// Prometheus `/metrics` on its own port, like a real node's :26660.
    #[arg(long)]
    metrics_listen: Option<SocketAddr>,
    /// Processor-sharing CPU with this many slots (0 = off).
    #[arg(long)]
    cpu_slots: Option<usize>,
    /// Node speed: service times are divided by it (0.25 = four times slower).
    #[arg(long)]
    speed: Option<f64>,
}

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let cli = Cli::parse();
    let mut cfg = match &cli.config {
        Some(path) => match SimNodeConfig::from_file(path) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("simnode: {e}");
                std::process::exit(2);
            }
        },
        None => SimNodeConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 26657)),
            block_interval: Duration::from_secs(1),
            ..SimNodeConfig::default()
        },
    };
    if let Some(v) = cli.listen {
        cfg.listen = v;
    }
    if cli.control_listen.is_some() {
        cfg.control_listen = cli.control_listen;
    }
    if let Some(v) = cli.block_interval {
        cfg.block_interval = v;
    }
    if let Some(v) = cli.start_height {
        cfg.start_height = v;
    }
    if cli.memory_limit.is_some() {
        cfg.memory_limit_bytes = cli.memory_limit;
    }
    if let Some(v) = cli.txs_per_block {
        cfg.txs_per_block = v;
    }
    if let Some(v) = cli.seed {
        cfg.seed = v;
    }
    if cli.metrics_listen.is_some() {
        cfg.metrics_listen = cli.metrics_listen;
    }
    if let Some(v) = cli.cpu_slots {
        cfg.cpu_slots = v;
    }
    if let Some(v) = cli.speed {
        cfg.speed = v;
    }
    let node = match SimNode::start(cfg).await {
        Ok(n) => n,
        Err(e) => {
            eprintln!("simnode: cannot listen: {e}");
            std::process::exit(1);
        }
    };
    println!(
        "simnode listening on {} (height {})",
        node.url(),
        node.height()
    );
    if let Some(c) = node.control_addr() {
        println!("simnode control on http://{c}/_simnode/stats");
    }
    if let Some(m) = node.metrics_addr() {
        println!("simnode metrics on http://{m}/metrics");
    }
    stop_signal().await;
    node.shutdown().await;
}

/// Ctrl-C, or SIGTERM from `docker stop`: as PID 1 in a container a signal without a
/// handler is ignored, and the stop would wait for SIGKILL.
async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
