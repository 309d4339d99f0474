//! How long one canonical call's answer stays true, decided from the route's
//! `CacheRule` and the head at the moment of the call (CometBFT has instant finality:
//! whatever is pinned to a height at or below the head never changes).

use std::time::Duration;

use crate::methods::{CacheRule, Canonical};

/// How long a stored answer may be served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    /// Can never change: kept until evicted for space.
    Immutable,
    /// Follows the head: true while the head is still `height`.
    UntilNextBlock { height: u64 },
    /// True for this long after it was stored. Used where the head cannot vouch for an
    /// answer: a blind tracker, an operator's override, ABCI code errors.
    Ttl(Duration),
}

impl Policy {
    pub(crate) fn is_immutable(&self) -> bool {
        matches!(self, Policy::Immutable)
    }

    /// The height an in-flight fetch is tied to: a "latest" answer fetched at one head
    /// must not be handed to a caller that planned at the next.
    pub(crate) fn flight_tag(&self) -> u64 {
        match self {
            Policy::UntilNextBlock { height } => *height,
            _ => 0,
        }
    }

    pub(crate) fn describe(&self) -> String {
        match self {
            Policy::Immutable => "immutable".to_owned(),
            Policy::UntilNextBlock { height } => format!("until_next_block({height})"),
            Policy::Ttl(d) => format!("ttl({}ms)", d.as_millis()),
        }
    }
}

/// The head as one decision sees it, read once so that the rule and the pin agree.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct HeadView {
    pub height: Option<u64>,
    /// Known but not advancing within `stall_after`: the real head may be further on.
    pub blind: bool,
}

impl HeadView {
    /// The head a "latest" question may be pinned to: only one the tracker still follows.
    fn pinned(&self) -> Option<u64> {
        self.height.filter(|_| !self.blind)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Decision {
    Bypass,
    Cache(Policy),
}

/// Decides one call's policy; rewrites a "latest" call to the pinned head height where
/// the answer for "latest" is byte-for-byte the answer for that height.
pub(crate) fn decide(
    call: &mut Canonical,
    head: HeadView,
    latest_ttl: Duration,
    ttl_override: Option<Duration>,
) -> Decision {
    if ttl_override == Some(Duration::ZERO) {
        return Decision::Bypass;
    }
    let latest = match head.pinned() {
        Some(height) => Policy::UntilNextBlock { height },
        None => Policy::Ttl(latest_ttl),
    };
    let (policy, pin) = match call.spec.cache {
        CacheRule::Never => return Decision::Bypass,
        CacheRule::Forever | CacheRule::Hash => (Policy::Immutable, None),
        CacheRule::UntilNextBlock => (latest, None),
        CacheRule::Height => match call.int("height") {
            // The node refuses these; there is nothing to keep.
            Some(h) if h <= 0 => return Decision::Bypass,
            Some(h) if above(h, head) => return Decision::Bypass,
            // With no head known, the node itself refuses a future height, and errors are
            // never stored, so an answer that comes back is final.
            Some(_) => (Policy::Immutable, None),
            None => match head.pinned() {
                Some(top) => (Policy::Immutable, Some(top)),
                None => (Policy::Ttl(latest_ttl), None),
            },
        },
        // No height is the node's head + 1, which no explicit height at or below the head
        // shares; the node accepts head + 1 explicitly too, which is above our head.
        CacheRule::NextHeight => match call.int("height") {
            Some(h) if h <= 0 => return Decision::Bypass,
            Some(h) if above(h, head) => return Decision::Bypass,
            Some(_) => (Policy::Immutable, None),
            None => (latest, None),
        },
        // The commit for H is the node's "seen" commit (canonical: false) until block H+1
        // carries it; the verdict also insists on `"canonical":true` before keeping one.
        CacheRule::Commit => match call.int("height") {
            Some(h) if h <= 0 => return Decision::Bypass,
            Some(h) if above(h, head) => return Decision::Bypass,
            Some(h) if head.height == Some(h as u64) => (latest, None),
            Some(_) => (Policy::Immutable, None),
            None => match head.pinned() {
                Some(top) => (latest, Some(top)),
                None => (latest, None),
            },
        },
        CacheRule::AbciQuery => match (call.int("height"), head.height) {
            (Some(h), _) if h < 0 => return Decision::Bypass,
            (Some(h), Some(top)) if h > 0 && h as u64 > top => return Decision::Bypass,
            (Some(h), Some(_)) if h > 0 => (Policy::Immutable, None),
            // An application may ignore the height it is asked for; without a head to
            // check it against, the answer is treated as "latest".
            _ => (latest, None),
        },
    };
    let policy = match (ttl_override, policy.is_immutable()) {
        (Some(d), false) => Policy::Ttl(d),
        _ => policy,
    };
    // A pin only where the policy still follows the head or never changes: an overridden
    // TTL on the pinned key would outlive the block it was pinned to.
    if let (Some(top), Policy::Immutable | Policy::UntilNextBlock { .. }) = (pin, policy) {
        call.set_int("height", top as i64);
    }
    Decision::Cache(policy)
}

fn above(height: i64, head: HeadView) -> bool {
    head.height.is_some_and(|top| height as u64 > top)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::methods::lookup;
    use serde_json::{json, Map, Value};

    const TTL: Duration = Duration::from_secs(10);
    const AT_100: HeadView = HeadView {
        height: Some(100),
        blind: false,
    };
    const BLIND_100: HeadView = HeadView {
        height: Some(100),
        blind: true,
    };
    const UNKNOWN: HeadView = HeadView {
        height: None,
        blind: true,
    };

    fn call(method: &str, params: Value) -> Canonical {
        let Value::Object(params) = params else {
            panic!()
        };
        let params: Map<String, Value> = params;
        Canonical {
            spec: lookup(method).unwrap(),
            params,
        }
    }

    fn plan(method: &str, params: Value, head: HeadView) -> (Decision, Canonical) {
        let mut c = call(method, params);
        (decide(&mut c, head, TTL, None), c)
    }

    fn policy(method: &str, params: Value, head: HeadView) -> Decision {
        plan(method, params, head).0
    }

    use Decision::{Bypass, Cache};
    use Policy::{Immutable, Ttl, UntilNextBlock};

    #[test]
    fn height_rule_pins_latest_and_refuses_the_future() {
        for m in ["block", "block_results", "header"] {
            assert_eq!(
                policy(m, json!({"height": "99"}), AT_100),
                Cache(Immutable),
                "{m}"
            );
            assert_eq!(
                policy(m, json!({"height": "100"}), AT_100),
                Cache(Immutable),
                "{m}"
            );
            assert_eq!(policy(m, json!({"height": "101"}), AT_100), Bypass, "{m}");
            assert_eq!(policy(m, json!({"height": "0"}), AT_100), Bypass, "{m}");
            let (d, c) = plan(m, json!({}), AT_100);
            assert_eq!(d, Cache(Immutable), "{m}");
            assert_eq!(
                c.key(),
                call(m, json!({"height": "100"})).key(),
                "{m}: the pin shares the explicit key"
            );
            // Unknown or stalled head: "latest" is not pinned, only kept briefly.
            for head in [UNKNOWN, BLIND_100] {
                let (d, c) = plan(m, json!({}), head);
                assert_eq!((d, c.int("height")), (Cache(Ttl(TTL)), None), "{m}");
            }
            assert_eq!(
                policy(m, json!({"height": "5000"}), UNKNOWN),
                Cache(Immutable),
                "{m}"
            );
            assert_eq!(
                policy(m, json!({"height": "50"}), BLIND_100),
                Cache(Immutable),
                "{m}"
            );
        }
    }

    #[test]
    fn validators_and_params_follow_the_head_for_latest_because_it_is_head_plus_one() {
        for m in ["validators", "consensus_params"] {
            let (d, c) = plan(m, json!({}), AT_100);
            assert_eq!(d, Cache(UntilNextBlock { height: 100 }), "{m}");
            assert_eq!(
                c.int("height"),
                None,
                "{m}: latest is not pinned to the head"
            );
            assert_eq!(policy(m, json!({}), UNKNOWN), Cache(Ttl(TTL)), "{m}");
            assert_eq!(
                policy(m, json!({"height": "100"}), AT_100),
                Cache(Immutable),
                "{m}"
            );
            assert_eq!(policy(m, json!({"height": "101"}), AT_100), Bypass, "{m}");
            assert_eq!(policy(m, json!({"height": "0"}), AT_100), Bypass, "{m}");
        }
    }

    #[test]
    fn commit_is_final_only_below_the_head() {
        assert_eq!(
            policy("commit", json!({"height": "99"}), AT_100),
            Cache(Immutable)
        );
        assert_eq!(
            policy("commit", json!({"height": "100"}), AT_100),
            Cache(UntilNextBlock { height: 100 })
        );
        assert_eq!(policy("commit", json!({"height": "101"}), AT_100), Bypass);
        let (d, c) = plan("commit", json!({}), AT_100);
        assert_eq!(
            (d, c.int("height")),
            (Cache(UntilNextBlock { height: 100 }), Some(100))
        );
        assert_eq!(policy("commit", json!({}), UNKNOWN), Cache(Ttl(TTL)));
        assert_eq!(
            policy("commit", json!({"height": "100"}), BLIND_100),
            Cache(Ttl(TTL))
        );
        assert_eq!(
            policy("commit", json!({"height": "7"}), UNKNOWN),
            Cache(Immutable)
        );
    }

    #[test]
    fn hash_forever_never_and_following_rules() {
        assert_eq!(
            policy("tx", json!({"hash": "AA=="}), UNKNOWN),
            Cache(Immutable)
        );
        assert_eq!(
            policy("block_by_hash", json!({"hash": "AA=="}), AT_100),
            Cache(Immutable)
        );
        assert_eq!(policy("genesis", json!({}), UNKNOWN), Cache(Immutable));
        assert_eq!(
            policy("genesis_chunked", json!({"chunk": "2"}), AT_100),
            Cache(Immutable)
        );
        for m in [
            "broadcast_tx_sync",
            "broadcast_tx_commit",
            "check_tx",
            "unconfirmed_txs",
            "num_unconfirmed_txs",
            "health",
        ] {
            assert_eq!(policy(m, json!({}), AT_100), Bypass, "{m}");
        }
        for m in [
            "status",
            "abci_info",
            "net_info",
            "tx_search",
            "block_search",
        ] {
            assert_eq!(
                policy(m, json!({}), AT_100),
                Cache(UntilNextBlock { height: 100 }),
                "{m}"
            );
            assert_eq!(policy(m, json!({}), UNKNOWN), Cache(Ttl(TTL)), "{m}");
            assert_eq!(policy(m, json!({}), BLIND_100), Cache(Ttl(TTL)), "{m}");
        }
    }

    #[test]
    fn a_blockchain_range_follows_the_head_because_it_carries_last_height() {
        let both = |min: &str, max: &str| json!({"minHeight": min, "maxHeight": max});
        for range in [
            both("1", "20"),
            both("90", "101"),
            json!({"maxHeight": "20"}),
        ] {
            assert_eq!(
                policy("blockchain", range.clone(), AT_100),
                Cache(UntilNextBlock { height: 100 }),
                "{range}"
            );
        }
        assert_eq!(
            policy("blockchain", both("1", "20"), UNKNOWN),
            Cache(Ttl(TTL))
        );
    }

    #[test]
    fn abci_query_pins_only_on_an_explicit_known_height() {
        let q = |h: &str| json!({"path": "/store", "data": "6162", "height": h});
        assert_eq!(policy("abci_query", q("100"), AT_100), Cache(Immutable));
        assert_eq!(policy("abci_query", q("101"), AT_100), Bypass);
        assert_eq!(policy("abci_query", q("-1"), AT_100), Bypass);
        assert_eq!(
            policy("abci_query", json!({"path": "/store"}), AT_100),
            Cache(UntilNextBlock { height: 100 })
        );
        assert_eq!(policy("abci_query", q("50"), UNKNOWN), Cache(Ttl(TTL)));
        let (_, c) = plan("abci_query", json!({"path": "/store"}), AT_100);
        assert_eq!(
            c.int("height"),
            None,
            "latest abci_query is never rewritten"
        );
    }

    #[test]
    fn overrides_bypass_or_replace_only_what_follows_the_head() {
        let five = Some(Duration::from_secs(5));
        let mut c = call("status", json!({}));
        assert_eq!(decide(&mut c, AT_100, TTL, Some(Duration::ZERO)), Bypass);
        let mut c = call("block", json!({"height": "3"}));
        assert_eq!(decide(&mut c, AT_100, TTL, Some(Duration::ZERO)), Bypass);
        let mut c = call("status", json!({}));
        assert_eq!(
            decide(&mut c, AT_100, TTL, five),
            Cache(Ttl(Duration::from_secs(5)))
        );
        let mut c = call("block", json!({}));
        assert_eq!(decide(&mut c, AT_100, TTL, five), Cache(Immutable));
        assert_eq!(c.int("height"), Some(100));
        let mut c = call("commit", json!({}));
        assert_eq!(
            decide(&mut c, AT_100, TTL, five),
            Cache(Ttl(Duration::from_secs(5)))
        );
        assert_eq!(
            c.int("height"),
            None,
            "an overridden TTL must not sit on the pinned key"
        );
    }
}
