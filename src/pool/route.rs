//! What a call needs of a node, and why a node cannot give it.

use std::fmt;

use crate::error::Rejection;
use crate::methods::{CacheRule, Canonical};

/// What the calls sent together need of the node that answers them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Need {
    /// Some call follows the head: only a node close to the best head, not catching up.
    pub(crate) latest: bool,
    /// The lowest and highest heights the calls are pinned to: a node must hold both.
    pub(crate) heights: Option<(u64, u64)>,
}

impl Need {
    pub(crate) fn of(calls: &[&Canonical]) -> Need {
        let mut need = Need::default();
        for call in calls {
            match pinned(call) {
                Some(h) => {
                    need.heights = Some(match need.heights {
                        None => (h, h),
                        Some((low, high)) => (low.min(h), high.max(h)),
                    })
                }
                None => need.latest = true,
            }
        }
        need
    }
}

/// The height a call is pinned to, where its answer comes from that block: the cache
/// pins "latest" questions to the pool's consensus height, so most arrive pinned.
fn pinned(call: &Canonical) -> Option<u64> {
    let height = call.int("height").filter(|h| *h > 0)?;
    let by_height = matches!(
        call.spec.cache,
        CacheRule::Height | CacheRule::Commit | CacheRule::NextHeight | CacheRule::AbciQuery
    );
    by_height.then_some(height as u64)
}

/// Whether the calls may be sent a second time: a transaction is never broadcast twice.
pub(crate) fn idempotent(calls: &[&Canonical]) -> bool {
    calls.iter().all(|c| !c.spec.name.starts_with("broadcast_"))
}

/// A failure that says the node, not the question, went wrong (refused, reset, timed
/// out, HTTP 5xx: `upstream` words each as unavailable): the call may go to another
/// node. A refusal from the pool itself (nothing was sent) is one too.
pub(crate) fn node_failed(r: &Rejection) -> bool {
    matches!(
        r,
        Rejection::UpstreamUnavailable(_)
            | Rejection::UpstreamTimeout(_)
            | Rejection::CircuitOpen { .. }
    )
}

/// Why a node may not take a call now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Why {
    /// Its last `status` poll failed.
    Down(String),
    /// No height seen from it yet.
    NoHead,
    /// It answers for this chain id, not the pool's.
    OtherChain(String),
    CircuitOpen,
    CatchingUp,
    /// Blocks behind the best head, more than `upstream.max_lag_blocks`.
    Lagging(u64),
    /// Its lowest block: the call asks below it.
    Pruned(u64),
    /// Its head: the call asks above it.
    Behind(u64),
}

impl fmt::Display for Why {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Why::Down(why) => write!(f, "down: {why}"),
            Why::NoHead => f.write_str("no head seen yet"),
            Why::OtherChain(chain) => write!(f, "ejected: serves chain {chain:?}"),
            Why::CircuitOpen => f.write_str("failing (circuit open)"),
            Why::CatchingUp => f.write_str("catching up"),
            Why::Lagging(n) => write!(f, "{n} blocks behind the best head"),
            Why::Pruned(earliest) => write!(f, "pruned below height {earliest}"),
            Why::Behind(latest) => write!(f, "its head is {latest}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jsonrpc::{Form, Params};
    use crate::methods::{canonicalize, lookup};

    fn call(method: &str, params: serde_json::Value) -> Canonical {
        let serde_json::Value::Object(map) = params else {
            unreachable!()
        };
        canonicalize(lookup(method).unwrap(), &Params::Named(map), Form::JsonRpc).unwrap()
    }

    #[test]
    fn heights_pin_and_everything_else_follows_the_head() {
        let block = call("block", serde_json::json!({"height": "5"}));
        let results = call("block_results", serde_json::json!({"height": 900}));
        let status = call("status", serde_json::json!({}));
        let latest_block = call("block", serde_json::json!({}));
        let query = call(
            "abci_query",
            serde_json::json!({"path": "/a", "height": "0"}),
        );
        assert_eq!(
            Need::of(&[&block, &results]),
            Need {
                latest: false,
                heights: Some((5, 900))
            }
        );
        for follows in [&status, &latest_block, &query] {
            assert_eq!(
                Need::of(&[follows]),
                Need {
                    latest: true,
                    heights: None
                }
            );
        }
        assert_eq!(
            Need::of(&[&status, &block]),
            Need {
                latest: true,
                heights: Some((5, 5))
            }
        );
    }

    #[test]
    fn a_broadcast_is_never_sent_twice_and_only_node_failures_move_a_call() {
        let tx = call("broadcast_tx_sync", serde_json::json!({"tx": "AAAA"}));
        let status = call("status", serde_json::json!({}));
        assert!(idempotent(&[&status]));
        assert!(!idempotent(&[&status, &tx]));
        assert!(node_failed(&Rejection::UpstreamUnavailable("reset".into())));
        assert!(node_failed(&Rejection::UpstreamUnavailable(
            "the node answered HTTP 502".into()
        )));
        assert!(!node_failed(&Rejection::UpstreamInvalid(
            "not JSON-RPC: eof".into()
        )));
        assert!(!node_failed(&Rejection::InvalidParams("bad".into())));
    }
}
