//! State shared by every connection: the chain, counters, memory, the current fault, and
//! the RPC listener's lifetime.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, RwLock};

use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::chain::{Chain, ChainParams};
use crate::config::SimNodeConfig;
use crate::cost::MemoryModel;
use crate::cpu::Cpu;
use crate::faults::{Fault, MetricsFault};
use crate::genesis::Genesis;
use crate::stats::{Counters, Stats, WsGauges};

/// Serves one accepted RPC connection until `dead` fires. The node holds it because a
/// request served this way may bring the listener back up (restart, a cleared `Down`):
/// the listener reaches the HTTP layer through the node rather than by name.
pub(crate) type ServeConn =
    fn(Arc<Node>, TcpStream, watch::Receiver<bool>) -> Pin<Box<dyn Future<Output = ()> + Send>>;

pub(crate) struct Node {
    pub(crate) cfg: SimNodeConfig,
    pub(crate) chain: Arc<Chain>,
    pub(crate) counters: Counters,
    /// What `/websocket` holds now (connections, subscriptions), for `/_simnode/stats`.
    pub(crate) ws: WsGauges,
    pub(crate) mem: MemoryModel,
    pub(crate) genesis: Genesis,
    pub(crate) rt: tokio::runtime::Handle,
    fault: RwLock<(Fault, Option<String>)>,
    /// Tendermint 0.34's `abci_query` lock (`legacy_abci_lock`).
    pub(crate) abci_lock: tokio::sync::Mutex<()>,
    /// Each transaction's `ResultTx`, encoded once.
    pub(crate) tx_json: crate::tx_json::TxJson,
    pub(crate) life: Mutex<Life>,
    pub(crate) serve: ServeConn,
    pub(crate) cpu: Cpu,
    /// The `--metrics-listen` port's lifetime; it dies with the node.
    pub(crate) metrics: Mutex<MetricsLife>,
    metrics_fault: RwLock<MetricsFault>,
    /// Unix seconds at start (`process_start_time_seconds`).
    pub(crate) started_unix: f64,
}

/// The metrics listener: `addr` is where it listens (or will again), `kill` ends it.
pub(crate) struct MetricsLife {
    pub(crate) addr: Option<SocketAddr>,
    pub(crate) kill: Option<watch::Sender<bool>>,
}

/// The RPC listener's lifetime: `kill` ends the accept loop and every open connection.
pub(crate) struct Life {
    pub(crate) addr: SocketAddr,
    pub(crate) kill: Option<watch::Sender<bool>>,
    /// The accept loop, which owns the listener: the port is free once it has ended.
    pub(crate) accepting: Option<tokio::task::JoinHandle<()>>,
}

impl Node {
    pub(crate) fn new(
        cfg: SimNodeConfig,
        addr: SocketAddr,
        rt: tokio::runtime::Handle,
        serve: ServeConn,
    ) -> Node {
        let chain = Chain::new(
            ChainParams {
                seed: cfg.seed,
                chain_id: cfg.chain_id.clone(),
                txs_per_block: cfg.txs_per_block,
                events_per_tx: cfg.events_per_tx,
                tx_bytes: cfg.tx_bytes,
                validators: cfg.validators.max(1),
                base: cfg.earliest_height.max(1),
            },
            cfg.start_height.max(1),
        );
        let genesis = Genesis::build(&chain, cfg.genesis_bytes);
        let started_unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        Node {
            cpu: Cpu::new(cfg.cpu_slots, cfg.speed, &rt),
            metrics: Mutex::new(MetricsLife {
                addr: cfg.metrics_listen,
                kill: None,
            }),
            metrics_fault: RwLock::new(MetricsFault::None),
            started_unix,
            mem: MemoryModel::new(cfg.memory_limit_bytes, cfg.amplification),
            counters: Counters::default(),
            ws: WsGauges::default(),
            chain,
            genesis,
            rt,
            fault: RwLock::new((Fault::None, None)),
            abci_lock: tokio::sync::Mutex::new(()),
            tx_json: crate::tx_json::TxJson::default(),
            life: Mutex::new(Life {
                addr,
                kill: None,
                accepting: None,
            }),
            serve,
            cfg,
        }
    }

    pub(crate) fn set_fault(&self, fault: Fault, method: Option<String>) {
        *self.fault.write().unwrap_or_else(|p| p.into_inner()) = (fault, method);
    }

    pub(crate) fn fault(&self) -> (Fault, Option<String>) {
        self.fault.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The fault acting on a call that involves `methods` (scoped faults need a match).
    pub(crate) fn fault_for<'a>(&self, mut methods: impl Iterator<Item = &'a str>) -> Fault {
        let (fault, scope) = self.fault();
        match scope {
            Some(m) if !methods.any(|x| x == m) => Fault::None,
            _ => fault,
        }
    }

    pub(crate) fn set_metrics_fault(&self, fault: MetricsFault) {
        *self
            .metrics_fault
            .write()
            .unwrap_or_else(|p| p.into_inner()) = fault;
    }

    pub(crate) fn metrics_fault(&self) -> MetricsFault {
        *self.metrics_fault.read().unwrap_or_else(|p| p.into_inner())
    }

    /// What `/metrics` reports as `process_resident_memory_bytes`.
    pub(crate) fn resident_bytes(&self) -> u64 {
        self.cfg.resident_baseline_bytes + self.mem.ballast() + self.mem.live()
    }

    pub(crate) fn stats(&self) -> Stats {
        let mut s = Stats::default();
        self.counters.fill(&mut s);
        self.ws.fill(&mut s);
        s.resident_bytes = self.resident_bytes();
        s.ballast_bytes = self.mem.ballast();
        s.live_bytes = self.mem.live();
        s.peak_bytes = self.mem.peak();
        s.oom = self.mem.is_oom();
        s.oom_count = self.mem.oom_count();
        s.down = self.fault().0 == Fault::Down;
        s.height = self.chain.head();
        s
    }

    /// Counts a call that never reaches a route (unknown method, parse error...).
    pub(crate) fn count_only(&self, method: &str, key: &str) {
        drop(self.counters.begin(method, key));
    }

    /// The process is gone: close the listeners (RPC and metrics) and drop every
    /// connection.
    pub(crate) fn die(&self) {
        let kill = self
            .life
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .kill
            .take();
        if let Some(k) = kill {
            let _ = k.send(true);
        }
        self.close_metrics();
    }

    /// Closes the metrics listener alone (its `down` fault, or with the node).
    pub(crate) fn close_metrics(&self) {
        let kill = self
            .metrics
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .kill
            .take();
        if let Some(k) = kill {
            let _ = k.send(true);
        }
    }

    /// Dies, and resolves once the listener is closed: its port may be bound again.
    pub(crate) async fn die_and_close(&self) {
        self.die();
        let accepting = self
            .life
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .accepting
            .take();
        if let Some(task) = accepting {
            let _ = task.await;
        }
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        self.life.lock().unwrap_or_else(|p| p.into_inner()).addr
    }
}
