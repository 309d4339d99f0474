//! State shared by every connection, and the one path every call takes: counting, faults
//! that act per call, execution, and the memory cost of the answer.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::sync::watch;

use crate::chain::{Chain, ChainParams};
use crate::config::SimNodeConfig;
use crate::cost::MemoryModel;
use crate::faults::Fault;
use crate::routes::{self, Args, Genesis, Route};
use crate::stats::{Counters, Stats};
use crate::wire::{RpcError, RpcId, RpcResponse};

pub struct Node {
    pub cfg: SimNodeConfig,
    pub chain: Arc<Chain>,
    pub counters: Counters,
    pub mem: MemoryModel,
    pub genesis: Genesis,
    pub rt: tokio::runtime::Handle,
    fault: RwLock<(Fault, Option<String>)>,
    abci_lock: tokio::sync::Mutex<()>,
    pub(crate) life: Mutex<Life>,
}

/// The RPC listener's lifetime: `kill` ends the accept loop and every open connection.
pub(crate) struct Life {
    pub addr: SocketAddr,
    pub kill: Option<watch::Sender<bool>>,
    /// The accept loop, which owns the listener: the port is free once it has ended.
    pub accepting: Option<tokio::task::JoinHandle<()>>,
}

/// How one call is made and how the current fault bends it.
#[derive(Clone, Default)]
pub struct CallCtx {
    pub uri: bool,
    pub ws: bool,
    pub wrong_id: bool,
    pub delay: Duration,
    pub hang: bool,
}

/// One encoded answer.
pub struct Element {
    pub bytes: Vec<u8>,
    pub ok: bool,
    pub cacheable: bool,
}

impl Node {
    pub fn new(cfg: SimNodeConfig, addr: SocketAddr, rt: tokio::runtime::Handle) -> Node {
        let chain = Chain::new(
            ChainParams {
                seed: cfg.seed,
                chain_id: cfg.chain_id.clone(),
                txs_per_block: cfg.txs_per_block,
                events_per_tx: cfg.events_per_tx,
                tx_bytes: cfg.tx_bytes,
                validators: cfg.validators.max(1),
            },
            cfg.start_height.max(1),
        );
        let genesis = Genesis::build(&chain, cfg.genesis_bytes);
        Node {
            mem: MemoryModel::new(cfg.memory_limit_bytes, cfg.amplification),
            counters: Counters::default(),
            chain,
            genesis,
            rt,
            fault: RwLock::new((Fault::None, None)),
            abci_lock: tokio::sync::Mutex::new(()),
            life: Mutex::new(Life {
                addr,
                kill: None,
                accepting: None,
            }),
            cfg,
        }
    }

    pub fn set_fault(&self, fault: Fault, method: Option<String>) {
        *self.fault.write().unwrap_or_else(|p| p.into_inner()) = (fault, method);
    }

    pub fn fault(&self) -> (Fault, Option<String>) {
        self.fault.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The fault acting on a call that involves `methods` (scoped faults need a match).
    pub fn fault_for<'a>(&self, mut methods: impl Iterator<Item = &'a str>) -> Fault {
        let (fault, scope) = self.fault();
        match scope {
            Some(m) if !methods.any(|x| x == m) => Fault::None,
            _ => fault,
        }
    }

    pub fn ctx_for(&self, fault: &Fault, uri: bool, ws: bool) -> CallCtx {
        CallCtx {
            uri,
            ws,
            wrong_id: *fault == Fault::WrongId,
            delay: match fault {
                Fault::Slow(d) => *d,
                _ => Duration::ZERO,
            },
            hang: *fault == Fault::Hang,
        }
    }

    pub fn stats(&self) -> Stats {
        let mut s = Stats::default();
        self.counters.fill(&mut s);
        s.live_bytes = self.mem.live();
        s.peak_bytes = self.mem.peak();
        s.oom = self.mem.is_oom();
        s.oom_count = self.mem.oom_count();
        s.down = self.fault().0 == Fault::Down;
        s.height = self.chain.head();
        s
    }

    /// Counts a call that never reaches a route (unknown method, parse error...).
    pub fn count_only(&self, method: &str, key: &str) {
        drop(self.counters.begin(method, key));
    }

    /// Runs one call. `None` means the node died (OOM) while answering: no answer goes out.
    pub async fn run_call(
        self: &Arc<Self>,
        id: RpcId,
        route: &'static Route,
        decoded: Result<Args, String>,
        ctx: &CallCtx,
    ) -> Option<Element> {
        let key = match &decoded {
            Ok(args) => route.request_key(args),
            Err(_) => format!("{}(<invalid params>)", route.name),
        };
        let _inflight = self.counters.begin(route.name, &key);
        if ctx.hang {
            std::future::pending::<()>().await;
        }
        if !ctx.delay.is_zero() {
            tokio::time::sleep(ctx.delay).await;
        }
        let _abci = if self.cfg.legacy_abci_lock && route.name == "abci_query" {
            Some(self.abci_lock.lock().await)
        } else {
            None
        };
        let mut cacheable = false;
        let outcome = match decoded {
            Err(e) => {
                let how = if ctx.uri { "http" } else { "json" };
                Err(RpcError::invalid_params(format!(
                    "error converting {how} params to arguments: {e}"
                )))
            }
            Ok(args) => {
                cacheable = route.cacheable_with(&args);
                routes::exec(self, route, &args)
                    .await
                    .map_err(RpcError::internal)
            }
        };
        let ok = outcome.is_ok();
        let id = if ctx.wrong_id { id.wrong() } else { id };
        let bytes = RpcResponse {
            id: Some(id),
            outcome,
        }
        .encode(ctx.ws);
        let (charge, died) = self.mem.charge(bytes.len());
        if died {
            self.die();
            return None;
        }
        let hold = MemoryModel::hold_time(bytes.len(), self.cfg.encode_rate_for(route.name));
        // Sub-millisecond holds would only add timer overhead; they are still accounted.
        if hold >= Duration::from_millis(1) {
            tokio::time::sleep(hold).await;
        }
        drop(charge);
        if self.mem.is_oom() {
            return None;
        }
        Some(Element {
            bytes,
            ok,
            cacheable: ok && cacheable,
        })
    }

    /// The process is gone: close the listener and drop every connection.
    pub fn die(&self) {
        let kill = self
            .life
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .kill
            .take();
        if let Some(k) = kill {
            let _ = k.send(true);
        }
    }

    /// Dies, and resolves once the listener is closed: its port may be bound again.
    pub async fn die_and_close(&self) {
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

    pub fn addr(&self) -> SocketAddr {
        self.life.lock().unwrap_or_else(|p| p.into_inner()).addr
    }
}
