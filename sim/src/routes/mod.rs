//! CometBFT v0.38's route table (`rpc/core/routes.go`): names, argument names and types,
//! cacheability, and dispatch to the handlers.

mod blocks;
mod info;
mod txs;

use serde_json::Value;

use crate::node::Node;
use crate::params::{self, Arg, ArgType, ArgVal};
use crate::wire::Answer;

pub(crate) struct Route {
    pub(crate) name: &'static str,
    pub(crate) args: &'static [(&'static str, ArgType)],
    /// `rpc.Cacheable(...)`.
    pub(crate) cacheable: bool,
    /// Arguments that, absent or zero, make the answer uncacheable.
    pub(crate) no_cache_default: &'static [&'static str],
    /// Websocket-only (`NewWSRPCFunc`).
    pub(crate) ws_only: bool,
}

const fn route(name: &'static str, args: &'static [(&'static str, ArgType)]) -> Route {
    Route {
        name,
        args,
        cacheable: false,
        no_cache_default: &[],
        ws_only: false,
    }
}

const fn cached(
    name: &'static str,
    args: &'static [(&'static str, ArgType)],
    no_default: &'static [&'static str],
) -> Route {
    Route {
        name,
        args,
        cacheable: true,
        no_cache_default: no_default,
        ws_only: false,
    }
}

const fn ws(name: &'static str, args: &'static [(&'static str, ArgType)]) -> Route {
    Route {
        name,
        args,
        cacheable: false,
        no_cache_default: &[],
        ws_only: true,
    }
}

use ArgType::*;

const HEIGHT: &[(&str, ArgType)] = &[("height", I64Ptr)];
const HEIGHT_ONLY: &[&str] = &["height"];
const TX: &[(&str, ArgType)] = &[("tx", Bytes)];

pub(crate) static ROUTES: &[Route] = &[
    ws("subscribe", &[("query", Str)]),
    ws("unsubscribe", &[("query", Str)]),
    ws("unsubscribe_all", &[]),
    route("health", &[]),
    route("status", &[]),
    route("net_info", &[]),
    cached("blockchain", &[("minHeight", I64), ("maxHeight", I64)], &[]),
    cached("genesis", &[], &[]),
    cached("genesis_chunked", &[("chunk", Uint)], &[]),
    cached("block", HEIGHT, HEIGHT_ONLY),
    cached("block_by_hash", &[("hash", Bytes)], &[]),
    cached("block_results", HEIGHT, HEIGHT_ONLY),
    cached("commit", HEIGHT, HEIGHT_ONLY),
    cached("header", HEIGHT, HEIGHT_ONLY),
    cached("header_by_hash", &[("hash", Bytes)], &[]),
    route("check_tx", TX),
    cached("tx", &[("hash", Bytes), ("prove", Bool)], &[]),
    route(
        "tx_search",
        &[
            ("query", Str),
            ("prove", Bool),
            ("page", IntPtr),
            ("per_page", IntPtr),
            ("order_by", Str),
        ],
    ),
    route(
        "block_search",
        &[
            ("query", Str),
            ("page", IntPtr),
            ("per_page", IntPtr),
            ("order_by", Str),
        ],
    ),
    cached(
        "validators",
        &[("height", I64Ptr), ("page", IntPtr), ("per_page", IntPtr)],
        HEIGHT_ONLY,
    ),
    route("dump_consensus_state", &[]),
    route("consensus_state", &[]),
    cached("consensus_params", HEIGHT, HEIGHT_ONLY),
    route("unconfirmed_txs", &[("limit", IntPtr)]),
    route("num_unconfirmed_txs", &[]),
    route("broadcast_tx_commit", TX),
    route("broadcast_tx_sync", TX),
    route("broadcast_tx_async", TX),
    route(
        "abci_query",
        &[
            ("path", Str),
            ("data", HexBytes),
            ("height", I64),
            ("prove", Bool),
        ],
    ),
    cached("abci_info", &[], &[]),
    route("broadcast_evidence", &[("evidence", Evidence)]),
];

pub(crate) fn lookup(name: &str) -> Option<&'static Route> {
    ROUTES.iter().find(|r| r.name == name)
}

/// Decoded arguments, aligned with `Route::args`.
pub(crate) struct Args {
    pub(crate) values: Vec<Arg>,
    /// Whether the call carried params at all (JSON-RPC without `params` passes none,
    /// which matters to `cacheableWithArgs`).
    pub(crate) supplied: bool,
}

impl Args {
    pub(crate) fn int(&self, i: usize) -> Option<i64> {
        match self.values.get(i) {
            Some(Some(ArgVal::Int(v))) => Some(*v),
            _ => None,
        }
    }
    pub(crate) fn bool(&self, i: usize) -> bool {
        matches!(self.values.get(i), Some(Some(ArgVal::Bool(true))))
    }
    pub(crate) fn str(&self, i: usize) -> &str {
        match self.values.get(i) {
            Some(Some(ArgVal::Str(s))) => s,
            _ => "",
        }
    }
    pub(crate) fn bytes(&self, i: usize) -> &[u8] {
        match self.values.get(i) {
            Some(Some(ArgVal::Bytes(b))) => b,
            _ => &[],
        }
    }
    pub(crate) fn present(&self, i: usize) -> bool {
        matches!(self.values.get(i), Some(Some(_)))
    }
}

impl Route {
    /// `jsonParamsToArgs`: by name (missing ones default) or by position (count must match).
    pub(crate) fn decode_json(&self, params: Option<&Value>) -> Result<Args, String> {
        let Some(raw) = params else {
            return Ok(Args {
                values: vec![None; self.args.len()],
                supplied: false,
            });
        };
        let values = match raw {
            Value::Null => vec![None; self.args.len()],
            Value::Object(m) => self
                .args
                .iter()
                .map(|(name, ty)| m.get(*name).map_or(Ok(None), |v| params::decode_json(*ty, v)))
                .collect::<Result<_, _>>()?,
            Value::Array(a) => {
                if a.len() != self.args.len() {
                    let names: Vec<&str> = self.args.iter().map(|(n, _)| *n).collect();
                    let raws: Vec<String> = a
                        .iter()
                        .map(|v| format!("{:?}", v.to_string().into_bytes()).replace(',', ""))
                        .collect();
                    return Err(format!(
                        "expected {} parameters ([{}]), got {} ([{}])",
                        self.args.len(),
                        names.join(" "),
                        a.len(),
                        raws.join(" ")
                    ));
                }
                self.args
                    .iter()
                    .zip(a)
                    .map(|((_, ty), v)| params::decode_json(*ty, v))
                    .collect::<Result<_, _>>()?
            }
            other => {
                return Err(format!(
                    "unknown type for JSON params: json: cannot unmarshal {} into Go value of type []json.RawMessage. Expected map or array",
                    crate::wire::go_kind(other)
                ))
            }
        };
        Ok(Args {
            values,
            supplied: true,
        })
    }

    /// `httpParamsToArgs`: every argument read from the query string; empty means default.
    pub(crate) fn decode_uri(&self, query: &[(String, String)]) -> Result<Args, String> {
        let mut values = Vec::with_capacity(self.args.len());
        for (name, ty) in self.args {
            let arg = query
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
                .unwrap_or("");
            values.push(if arg.is_empty() {
                None
            } else {
                params::decode_uri(*ty, arg)?
            });
        }
        Ok(Args {
            values,
            supplied: true,
        })
    }

    /// `cacheableWithArgs`.
    pub(crate) fn cacheable_with(&self, args: &Args) -> bool {
        if !self.cacheable {
            return false;
        }
        self.args.iter().enumerate().all(|(i, (name, _))| {
            !self.no_cache_default.contains(name) || (args.supplied && args.present(i))
        })
    }

    /// `method(name=value,...)` with only the arguments that were given.
    pub(crate) fn request_key(&self, args: &Args) -> String {
        let parts: Vec<String> = self
            .args
            .iter()
            .zip(&args.values)
            .filter_map(|((name, _), v)| {
                v.as_ref()
                    .map(|v| format!("{name}={}", params::canonical(v)))
            })
            .collect();
        format!("{}({})", self.name, parts.join(","))
    }
}

/// Runs a (non-websocket) route; `Err` becomes an Internal error.
/// A route's answer. Over HTTP a search page is joined from each transaction's kept
/// encoding; the websocket indents its answers, so it gets the tree.
pub(crate) async fn answer(
    node: &Node,
    route: &Route,
    args: &Args,
    indented: bool,
) -> Result<Answer, String> {
    if route.name == "tx_search" && !indented {
        return txs::tx_search_encoded(node, args).map(Answer::Encoded);
    }
    exec(node, route, args).await.map(Answer::Tree)
}

async fn exec(node: &Node, route: &Route, args: &Args) -> Result<Value, String> {
    match route.name {
        "health" => Ok(serde_json::json!({})),
        "status" => Ok(info::status(node)),
        "net_info" => Ok(info::net_info()),
        "genesis" => node.genesis.whole(),
        "genesis_chunked" => node.genesis.chunk(args.int(0).unwrap_or(0)),
        "dump_consensus_state" => Ok(info::dump_consensus_state(node)),
        "consensus_state" => Ok(info::consensus_state(node)),
        "consensus_params" => info::consensus_params(node, args),
        "validators" => info::validators(node, args),
        "abci_info" => Ok(info::abci_info(node)),
        "abci_query" => Ok(info::abci_query(node, args)),
        "broadcast_evidence" => info::broadcast_evidence(args),
        "blockchain" => blocks::blockchain(node, args),
        "block" => blocks::block(node, args),
        "block_by_hash" => Ok(blocks::block_by_hash(node, args)),
        "block_results" => blocks::block_results(node, args),
        "commit" => blocks::commit(node, args),
        "header" => blocks::header(node, args),
        "header_by_hash" => Ok(blocks::header_by_hash(node, args)),
        "block_search" => blocks::block_search(node, args),
        "check_tx" => Ok(txs::check_tx()),
        "tx" => txs::tx(node, args),
        "tx_search" => txs::tx_search(node, args),
        "unconfirmed_txs" => Ok(txs::unconfirmed_txs(node, args)),
        "num_unconfirmed_txs" => Ok(txs::num_unconfirmed_txs(node)),
        "broadcast_tx_sync" | "broadcast_tx_async" => txs::broadcast_tx(node, args),
        "broadcast_tx_commit" => txs::broadcast_tx_commit(node, args).await,
        _ => Err(format!("route {} is websocket-only", route.name)),
    }
}

/// `getHeight`: explicit heights must be in `[base, latest]` (`base` is the block
/// store's lowest height, above 1 on a pruned node); absent means latest.
pub(crate) fn get_height(latest: u64, base: u64, args: &Args, i: usize) -> Result<u64, String> {
    let Some(h) = args.int(i) else {
        return Ok(latest);
    };
    if h <= 0 {
        return Err(format!("height must be greater than 0, but got {h}"));
    }
    if h as u64 > latest {
        return Err(format!(
            "height {h} must be less than or equal to the current blockchain height {latest}"
        ));
    }
    if (h as u64) < base {
        return Err(format!(
            "height {h} is not available, lowest height is {base}"
        ));
    }
    Ok(h as u64)
}

pub(crate) const DEFAULT_PER_PAGE: usize = 30;
pub(crate) const MAX_PER_PAGE: usize = 100;

/// `validatePerPage`: absent or < 1 is the default, above the max is clamped.
pub(crate) fn per_page(args: &Args, i: usize) -> usize {
    match args.int(i) {
        Some(p) if p >= 1 => (p as usize).min(MAX_PER_PAGE),
        _ => DEFAULT_PER_PAGE,
    }
}

/// `validatePage`: absent is page 1; otherwise within `[1, pages]`.
pub(crate) fn page(args: &Args, i: usize, per_page: usize, total: usize) -> Result<usize, String> {
    let Some(p) = args.int(i) else { return Ok(1) };
    let pages = (total.max(1) - 1) / per_page + 1;
    if p <= 0 || p as usize > pages {
        return Err(format!(
            "page should be within [1, {pages}] range, given {p}"
        ));
    }
    Ok(p as usize)
}

/// The `order_by` check shared by `tx_search` and `block_search`.
pub(crate) fn descending(order_by: &str) -> Result<bool, String> {
    match order_by {
        "" | "asc" => Ok(false),
        "desc" => Ok(true),
        _ => Err("expected order_by to be either `asc` or `desc` or empty".to_string()),
    }
}
