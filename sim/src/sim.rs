//! The handle tests and benchmarks hold: start, observe, misbehave, restart, shut down.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::SimNodeConfig;
use crate::faults::{Fault, MetricsFault};
use crate::lifecycle::{apply_fault, reset_counters, restart, set_ballast};
use crate::listener;
use crate::metrics_port;
use crate::node::Node;
use crate::server;
use crate::stats::Stats;

/// A running simulated CometBFT node.
pub struct SimNode {
    node: Arc<Node>,
    control_addr: Option<SocketAddr>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl SimNode {
    /// Binds `config.listen` (port 0 picks one) and starts producing blocks.
    pub async fn start(config: SimNodeConfig) -> io::Result<SimNode> {
        let listen = config.listen;
        let control = config.control_listen;
        let interval = config.block_interval;
        let node = Arc::new(Node::new(
            config,
            listen,
            tokio::runtime::Handle::current(),
            server::serve_rpc,
        ));
        listener::bring_up(&node)?;
        metrics_port::bring_up(&node)?;
        let (stop, stopped) = watch::channel(false);
        let mut tasks = Vec::new();
        let mut control_addr = None;
        if let Some(addr) = control {
            let (bound, task) =
                server::control_listener(node.clone(), addr, stopped.clone()).await?;
            control_addr = Some(bound);
            tasks.push(task);
        }
        if !interval.is_zero() {
            let chain = node.chain.clone();
            let mut stopped = stopped.clone();
            tasks.push(tokio::spawn(async move {
                let mut tick = tokio::time::interval(interval);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                tick.tick().await;
                loop {
                    tokio::select! {
                        _ = stopped.changed() => return,
                        _ = tick.tick() => { chain.advance(); }
                    }
                }
            }));
        }
        Ok(SimNode {
            node,
            control_addr,
            stop,
            tasks,
        })
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr())
    }

    pub fn addr(&self) -> SocketAddr {
        self.node.addr()
    }

    /// `ws://127.0.0.1:PORT/websocket`
    pub fn ws_url(&self) -> String {
        format!("ws://{}/websocket", self.addr())
    }

    /// Address of the `--control-listen` port, when configured.
    pub fn control_addr(&self) -> Option<SocketAddr> {
        self.control_addr
    }

    /// Where the node's Prometheus page is: the `metrics_listen` port's `/metrics`, else
    /// the control port's `/metrics`, else `/_simnode/metrics` on the RPC port.
    pub fn metrics_url(&self) -> String {
        if let Some(addr) = self.metrics_addr() {
            return format!("http://{addr}/metrics");
        }
        match self.control_addr {
            Some(addr) => format!("http://{addr}/metrics"),
            None => format!("{}/_simnode/metrics", self.url()),
        }
    }

    /// Address of the `metrics_listen` port, when configured.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.node
            .metrics
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .addr
    }

    /// Makes the metrics endpoint misbehave; `MetricsFault::None` clears.
    pub fn set_metrics_fault(&self, fault: MetricsFault) {
        let _ = metrics_port::apply(&self.node, fault);
    }

    /// Every service time is divided by `speed` from now on, calls in service included.
    pub fn set_speed(&self, speed: f64) {
        self.node.cpu.set_speed(speed);
    }

    pub fn speed(&self) -> f64 {
        self.node.cpu.speed()
    }

    /// Memory the node holds besides its answers (a squeeze): in `/metrics` and counted
    /// towards `memory_limit_bytes` (crossing it kills the node).
    pub fn set_ballast(&self, bytes: u64) {
        set_ballast(&self.node, bytes);
    }

    pub fn height(&self) -> u64 {
        self.node.chain.head()
    }

    /// Produces one block now: commits the mempool, emits NewBlock and Tx events.
    pub fn advance_block(&self) {
        self.node.chain.advance();
    }

    /// Changes behaviour for every method; `Fault::None` clears.
    pub fn set_fault(&self, fault: Fault) {
        let _ = apply_fault(&self.node, fault, None);
    }

    /// Changes behaviour only for calls naming `method` (`Down` always acts on the port).
    pub fn set_fault_for(&self, method: &str, fault: Fault) {
        let _ = apply_fault(&self.node, fault, Some(method.to_string()));
    }

    pub fn stats(&self) -> Stats {
        self.node.stats()
    }

    pub fn requests_for(&self, method: &str) -> u64 {
        self.node.counters.requests_for(method)
    }

    /// Zeroes request counts and peaks (in-flight requests stay tracked).
    pub fn reset_counters(&self) {
        reset_counters(&self.node);
    }

    /// Brings the node back after OOM (or restarts a live one): empty memory, same port.
    pub fn restart(&self) {
        let _ = restart(&self.node);
    }

    /// Stops the node; its port is free to bind again once this returns.
    pub async fn shutdown(mut self) {
        self.node.die_and_close().await;
        let _ = self.stop.send(true);
        for t in std::mem::take(&mut self.tasks) {
            let _ = t.await;
        }
    }
}

impl Drop for SimNode {
    fn drop(&mut self) {
        self.node.die();
        let _ = self.stop.send(true);
    }
}
