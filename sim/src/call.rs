//! The one path every call takes, whichever form it came in: counting, the faults that act
//! per call, execution, and the memory cost of the answer.

use std::time::Duration;

use crate::faults::Fault;
use crate::node::Node;
use crate::routes::{self, Args, Route};
use crate::wire::{RpcError, RpcId, RpcResponse};

/// How one call is made and how the current fault bends it.
#[derive(Clone, Default)]
pub(crate) struct CallCtx {
    pub(crate) uri: bool,
    pub(crate) ws: bool,
    pub(crate) wrong_id: bool,
    pub(crate) delay: Duration,
    pub(crate) hang: bool,
    /// The caller's User-Agent: counted apart from anonymous callers' same questions.
    pub(crate) agent: Option<String>,
}

/// One encoded answer.
pub(crate) struct Element {
    pub(crate) bytes: Vec<u8>,
    pub(crate) ok: bool,
    pub(crate) cacheable: bool,
}

impl CallCtx {
    pub(crate) fn new(fault: &Fault, uri: bool, ws: bool) -> CallCtx {
        CallCtx {
            uri,
            ws,
            wrong_id: *fault == Fault::WrongId,
            delay: match fault {
                Fault::Slow(d) => *d,
                _ => Duration::ZERO,
            },
            hang: *fault == Fault::Hang,
            agent: None,
        }
    }
}

/// Runs one call. `None` means the node died (OOM) while answering: no answer goes out.
pub(crate) async fn run(
    node: &Node,
    id: RpcId,
    route: &'static Route,
    decoded: Result<Args, String>,
    ctx: &CallCtx,
) -> Option<Element> {
    let mut key = match &decoded {
        Ok(args) => route.request_key(args),
        Err(_) => format!("{}(<invalid params>)", route.name),
    };
    if let Some(agent) = &ctx.agent {
        key = format!("{key} by {agent}");
    }
    let _inflight = node.counters.begin(route.name, &key);
    if ctx.hang {
        std::future::pending::<()>().await;
    }
    if !ctx.delay.is_zero() {
        tokio::time::sleep(ctx.delay).await;
    }
    let _abci = if node.cfg.legacy_abci_lock && route.name == "abci_query" {
        Some(node.abci_lock.lock().await)
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
            routes::answer(node, route, &args, ctx.ws)
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
    let (charge, died) = node.mem.charge(bytes.len());
    if died {
        node.die();
        return None;
    }
    // The answer's memory is held while the CPU serves it (encode time plus the method's
    // own cost, stretched by the speed and by sharing); sub-millisecond ones are not slept.
    node.cpu
        .serve(node.cfg.service_for(route.name, bytes.len()))
        .await;
    drop(charge);
    if node.mem.is_oom() {
        return None;
    }
    Some(Element {
        bytes,
        ok,
        cacheable: ok && cacheable,
    })
}
