//! The handle tests and benchmarks hold: start, observe, misbehave, restart, shut down.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::SimNodeConfig;
use crate::faults::Fault;
use crate::lifecycle::{apply_fault, reset_counters, restart};
use crate::listener;
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
