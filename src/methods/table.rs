//! CometBFT v0.38's routes with the gateway's defaults. Lanes and costs follow what a
//! call makes the node do: `block_results`, searches, `abci_query` and `genesis` build
//! and encode answers of many MB (the go-amino OOMs), the rest are small lookups.

use super::{Arg, ArgKind, CacheRule, DefaultCaps, Lane, MethodSpec};

const fn arg(name: &'static str, kind: ArgKind) -> Arg {
    Arg {
        name,
        kind,
        same_as_absent: None,
    }
}

const fn arg_default(name: &'static str, kind: ArgKind, default: &'static str) -> Arg {
    Arg {
        name,
        kind,
        same_as_absent: Some(default),
    }
}

const NO_ARGS: &[Arg] = &[];
const HEIGHT: &[Arg] = &[arg("height", ArgKind::Int)];
const HASH: &[Arg] = &[arg("hash", ArgKind::Bytes)];
const TX: &[Arg] = &[arg("tx", ArgKind::Bytes)];
const PAGE: Arg = arg_default("page", ArgKind::Int, "1");
const PER_PAGE: Arg = arg_default("per_page", ArgKind::Int, "30");
const ORDER_BY: Arg = arg_default("order_by", ArgKind::Str, "asc");
const PROVE: Arg = arg_default("prove", ArgKind::Bool, "false");

const SEARCH_CAPS: DefaultCaps = DefaultCaps {
    max_per_page: Some(100),
    max_page: Some(100),
    max_query_bytes: Some(512),
    allow_prove: Some(false),
    max_range: None,
    max_limit: None,
    max_data_bytes: None,
};
const NO_CAPS: DefaultCaps = DefaultCaps {
    max_per_page: None,
    max_page: None,
    max_query_bytes: None,
    allow_prove: None,
    max_range: None,
    max_limit: None,
    max_data_bytes: None,
};

const fn route(
    name: &'static str,
    args: &'static [Arg],
    lane: Lane,
    cost: u32,
    cache: CacheRule,
) -> MethodSpec {
    MethodSpec {
        name,
        args,
        lane,
        cost,
        allowed: true,
        websocket_only: false,
        cache,
        caps: NO_CAPS,
    }
}

const fn denied(mut spec: MethodSpec) -> MethodSpec {
    spec.allowed = false;
    spec
}

const fn ws_only(mut spec: MethodSpec) -> MethodSpec {
    spec.websocket_only = true;
    spec
}

const fn caps(mut spec: MethodSpec, caps: DefaultCaps) -> MethodSpec {
    spec.caps = caps;
    spec
}

use CacheRule::*;
use Lane::{Heavy, Light};

/// Every route a v0.38 node may serve, unsafe ones included so that they can be named
/// (and are denied by default).
pub static ROUTES: &[MethodSpec] = &[
    route("health", NO_ARGS, Light, 1, Never),
    route("status", NO_ARGS, Light, 1, UntilNextBlock),
    route("net_info", NO_ARGS, Light, 1, UntilNextBlock),
    caps(
        route(
            "blockchain",
            &[
                arg("minHeight", ArgKind::Int),
                arg("maxHeight", ArgKind::Int),
            ],
            Light,
            2,
            // The block metas of a past range never change, but the answer also carries
            // `last_height`, the head when it was built: kept whole, it is only true
            // until the next block.
            UntilNextBlock,
        ),
        DefaultCaps {
            max_range: Some(20),
            ..NO_CAPS
        },
    ),
    route("genesis", NO_ARGS, Heavy, 20, Forever),
    route(
        "genesis_chunked",
        &[arg_default("chunk", ArgKind::Uint, "0")],
        Heavy,
        10,
        Forever,
    ),
    route("block", HEIGHT, Light, 3, Height),
    route("block_by_hash", HASH, Light, 3, Hash),
    route("block_results", HEIGHT, Heavy, 5, Height),
    route("commit", HEIGHT, Light, 1, Commit),
    route("header", HEIGHT, Light, 1, Height),
    route("header_by_hash", HASH, Light, 1, Hash),
    route("check_tx", TX, Light, 2, Never),
    caps(
        route("tx", &[arg("hash", ArgKind::Bytes), PROVE], Light, 2, Hash),
        DefaultCaps {
            allow_prove: Some(true),
            ..NO_CAPS
        },
    ),
    caps(
        route(
            "tx_search",
            &[arg("query", ArgKind::Str), PROVE, PAGE, PER_PAGE, ORDER_BY],
            Heavy,
            10,
            UntilNextBlock,
        ),
        SEARCH_CAPS,
    ),
    caps(
        route(
            "block_search",
            &[arg("query", ArgKind::Str), PAGE, PER_PAGE, ORDER_BY],
            Heavy,
            10,
            UntilNextBlock,
        ),
        DefaultCaps {
            allow_prove: None,
            ..SEARCH_CAPS
        },
    ),
    caps(
        route(
            "validators",
            &[arg("height", ArgKind::Int), PAGE, PER_PAGE],
            Light,
            2,
            NextHeight,
        ),
        DefaultCaps {
            max_per_page: Some(100),
            max_page: Some(100),
            ..NO_CAPS
        },
    ),
    denied(route("dump_consensus_state", NO_ARGS, Heavy, 20, Never)),
    route("consensus_state", NO_ARGS, Light, 2, Never),
    route("consensus_params", HEIGHT, Light, 1, NextHeight),
    caps(
        route(
            "unconfirmed_txs",
            &[arg_default("limit", ArgKind::Int, "30")],
            Heavy,
            5,
            Never,
        ),
        DefaultCaps {
            max_limit: Some(100),
            ..NO_CAPS
        },
    ),
    // The mempool changes with every tx it admits, not once per block.
    route("num_unconfirmed_txs", NO_ARGS, Light, 1, Never),
    route("broadcast_tx_sync", TX, Light, 2, Never),
    route("broadcast_tx_async", TX, Light, 2, Never),
    route("broadcast_tx_commit", TX, Heavy, 10, Never),
    caps(
        route(
            "abci_query",
            &[
                arg("path", ArgKind::Str),
                arg("data", ArgKind::HexBytes),
                arg_default("height", ArgKind::Int, "0"),
                PROVE,
            ],
            Heavy,
            5,
            AbciQuery,
        ),
        DefaultCaps {
            max_data_bytes: Some(64 * 1024),
            ..NO_CAPS
        },
    ),
    route("abci_info", NO_ARGS, Light, 1, UntilNextBlock),
    denied(route(
        "broadcast_evidence",
        &[arg("evidence", ArgKind::Raw)],
        Light,
        5,
        Never,
    )),
    ws_only(route(
        "subscribe",
        &[arg("query", ArgKind::Str)],
        Light,
        1,
        Never,
    )),
    ws_only(route(
        "unsubscribe",
        &[arg("query", ArgKind::Str)],
        Light,
        1,
        Never,
    )),
    ws_only(route("unsubscribe_all", NO_ARGS, Light, 1, Never)),
    denied(route(
        "dial_seeds",
        &[arg("seeds", ArgKind::Raw)],
        Light,
        5,
        Never,
    )),
    denied(route(
        "dial_peers",
        &[
            arg("peers", ArgKind::Raw),
            arg("persistent", ArgKind::Bool),
            arg("unconditional", ArgKind::Bool),
            arg("private", ArgKind::Bool),
        ],
        Light,
        5,
        Never,
    )),
    denied(route("unsafe_flush_mempool", NO_ARGS, Light, 5, Never)),
];

/// Exact, case-sensitive lookup, as the node's route map. Any other `unsafe_*` name is
/// unknown here, and unknown methods never reach the node.
pub fn lookup(method: &str) -> Option<&'static MethodSpec> {
    ROUTES.iter().find(|m| m.name == method)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_v038_route_is_named_once() {
        let mut names: Vec<&str> = ROUTES.iter().map(|spec| spec.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ROUTES.len());
        assert_eq!(ROUTES.len(), 34);
    }

    #[test]
    fn dangerous_routes_are_denied_by_default() {
        for name in [
            "dial_seeds",
            "dial_peers",
            "unsafe_flush_mempool",
            "broadcast_evidence",
            "dump_consensus_state",
        ] {
            assert!(!lookup(name).unwrap().allowed, "{name}");
        }
        assert!(ROUTES
            .iter()
            .filter(|m| m.name.starts_with("unsafe_"))
            .all(|m| !m.allowed));
    }

    #[test]
    fn lookups_are_case_sensitive_like_the_node() {
        assert!(lookup("Status").is_none());
        assert!(lookup("status").is_some());
    }

    #[test]
    fn writes_and_mempool_views_are_never_cached() {
        for name in [
            "broadcast_tx_sync",
            "broadcast_tx_async",
            "broadcast_tx_commit",
            "check_tx",
            "unconfirmed_txs",
        ] {
            assert_eq!(lookup(name).unwrap().cache, CacheRule::Never, "{name}");
        }
    }

    #[test]
    fn heavy_routes_are_in_the_heavy_lane() {
        for name in [
            "block_results",
            "tx_search",
            "block_search",
            "abci_query",
            "genesis",
        ] {
            assert_eq!(lookup(name).unwrap().lane, Lane::Heavy, "{name}");
        }
    }
}
