//! Whether an answer may be kept. The node's own Cache-Control is never consulted: it
//! marks errors and head-following answers cacheable for a day.
//!
//! Answers are inspected with a partial parse: only the few members that matter are
//! read, borrowed from the bytes, and everything else is skipped without building a tree.

use serde::Deserialize;
use serde_json::value::RawValue;

use super::Policy;
use crate::methods::{lookup, CacheRule};
use crate::upstream::Answer;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    Storable,
    /// `abci_query` answered with an ABCI code ≠ 0: kept only for `cache.code_error_ttl`.
    CodeError,
    /// Served, never kept: errors, empty or not-found answers, non-final commits.
    PassThrough,
    /// Not JSON: served (the upstream stage already vouched for the envelope), never kept.
    Invalid,
}

#[derive(Deserialize)]
struct Code {
    #[serde(default)]
    code: u64,
}

#[derive(Deserialize)]
struct AbciQuery {
    response: Option<Code>,
}

#[derive(Deserialize)]
struct Tx {
    tx_result: Option<Code>,
}

#[derive(Deserialize)]
struct Search<'a> {
    #[serde(borrow)]
    total_count: Option<&'a str>,
}

#[derive(Deserialize)]
struct Commit {
    canonical: Option<bool>,
}

/// `null` members read as `None`: an unknown hash comes back as `{"block_id":..,"block":null}`.
#[derive(Deserialize)]
struct Found<'a> {
    #[serde(borrow, default)]
    block: Option<&'a RawValue>,
    #[serde(borrow, default)]
    header: Option<&'a RawValue>,
}

/// Judges one answer to `method`, fetched under `policy`.
pub(crate) fn judge(method: &str, policy: Policy, answer: &Answer) -> Verdict {
    let Answer::Result(bytes) = answer else {
        return Verdict::PassThrough;
    };
    let Ok(raw) = serde_json::from_slice::<&RawValue>(bytes) else {
        return Verdict::Invalid;
    };
    let text = raw.get();
    if is_empty(text) {
        return Verdict::PassThrough;
    }
    let Some(spec) = lookup(method) else {
        return Verdict::PassThrough;
    };
    match (spec.cache, method) {
        (CacheRule::Never, _) => Verdict::PassThrough,
        (CacheRule::AbciQuery, _) => match serde_json::from_str::<AbciQuery>(text) {
            Ok(AbciQuery {
                response: Some(Code { code: 0 }),
            }) => Verdict::Storable,
            Ok(AbciQuery { response: Some(_) }) => Verdict::CodeError,
            _ => Verdict::PassThrough,
        },
        // A failed transaction is final too, but an operator reading a cached failure
        // could mistake it for a stuck cache; it is cheap to look up again.
        (CacheRule::Hash, "tx") => match serde_json::from_str::<Tx>(text) {
            Ok(Tx {
                tx_result: Some(Code { code: 0 }),
            }) => Verdict::Storable,
            _ => Verdict::PassThrough,
        },
        (CacheRule::Hash, _) => match serde_json::from_str::<Found>(text) {
            Ok(found) if method.starts_with("block") && found.block.is_some() => Verdict::Storable,
            Ok(found) if method.starts_with("header") && found.header.is_some() => {
                Verdict::Storable
            }
            _ => Verdict::PassThrough,
        },
        // The node indexes a block's txs after its events fire: a search run on NewBlock
        // can find nothing that is there a moment later. An empty page is not kept.
        (_, "tx_search" | "block_search") => match serde_json::from_str::<Search>(text) {
            Ok(Search {
                total_count: Some("0"),
            }) => Verdict::PassThrough,
            _ => Verdict::Storable,
        },
        // Only a commit that a later block carries is final; the head's own seen commit
        // may still be kept until the next block.
        (CacheRule::Commit, _) if policy.is_immutable() => {
            match serde_json::from_str::<Commit>(text) {
                Ok(Commit {
                    canonical: Some(true),
                }) => Verdict::Storable,
                _ => Verdict::PassThrough,
            }
        }
        _ => Verdict::Storable,
    }
}

#[derive(Deserialize)]
struct AbciHeight<'a> {
    #[serde(borrow)]
    response: Option<ResponseHeight<'a>>,
}

#[derive(Deserialize)]
struct ResponseHeight<'a> {
    #[serde(borrow)]
    height: Option<&'a str>,
}

/// Whether an answer to an explicit height is that height's. An application may ignore
/// the height of an `abci_query` (CometBFT's kvstore does) and answer from its latest
/// state, which must not be kept as the asked height's forever. Routes the node itself
/// resolves by height always answer for it.
pub(crate) fn answers_for(method: &str, asked_height: Option<u64>, answer: &Answer) -> bool {
    let (Some(asked), "abci_query", Answer::Result(bytes)) = (asked_height, method, answer) else {
        return true;
    };
    match serde_json::from_slice::<AbciHeight>(bytes) {
        Ok(AbciHeight {
            response: Some(ResponseHeight {
                height: Some(height),
            }),
        }) => height.parse::<u64>() == Ok(asked),
        _ => false,
    }
}

#[derive(Deserialize)]
struct SyncInfo<'a> {
    #[serde(borrow)]
    sync_info: Option<LatestHeight<'a>>,
}

#[derive(Deserialize)]
struct LatestHeight<'a> {
    #[serde(borrow)]
    latest_block_height: Option<&'a str>,
}

/// The head a "latest" answer reports itself to be at, where it says (`status`, and
/// `abci_query`'s application height). The node commits a block before its NewBlock
/// event reaches the tracker, so such an answer can be a block ahead of the head it was
/// planned at: kept under the old head it would be stale at once and fetched again, and
/// its callers would ask about a block the gateway does not know yet.
pub(crate) fn reported_head(method: &str, answer: &Answer) -> Option<u64> {
    let Answer::Result(bytes) = answer else {
        return None;
    };
    let height = match method {
        "status" => {
            serde_json::from_slice::<SyncInfo>(bytes)
                .ok()?
                .sync_info?
                .latest_block_height?
        }
        "abci_query" => {
            serde_json::from_slice::<AbciHeight>(bytes)
                .ok()?
                .response?
                .height?
        }
        _ => return None,
    };
    // Applications that do not track heights report 0.
    height.parse::<u64>().ok().filter(|h| *h > 0)
}

fn is_empty(text: &str) -> bool {
    if text.len() > 16 {
        return false;
    }
    let squeezed: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    matches!(squeezed.as_str(), "null" | "{}" | "[]" | "\"\"")
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn result(s: &'static str) -> Answer {
        Answer::Result(Bytes::from_static(s.as_bytes()))
    }

    const UNB: Policy = Policy::UntilNextBlock { height: 10 };

    #[test]
    fn errors_empties_and_garbage_are_never_kept() {
        let err = Answer::Error(Bytes::from_static(
            br#"{"code":-32603,"message":"Internal error"}"#,
        ));
        assert_eq!(
            judge("block", Policy::Immutable, &err),
            Verdict::PassThrough
        );
        for empty in ["null", "{}", "[]", "{ }", " [ ] ", "\"\""] {
            assert_eq!(
                judge("status", UNB, &result(empty)),
                Verdict::PassThrough,
                "{empty}"
            );
        }
        assert_eq!(
            judge("status", UNB, &result("{\"node_info\":")),
            Verdict::Invalid
        );
        assert_eq!(judge("status", UNB, &result("not json")), Verdict::Invalid);
        assert_eq!(
            judge("status", UNB, &result(r#"{"sync_info":{}}"#)),
            Verdict::Storable
        );
        assert_eq!(
            judge(
                "broadcast_tx_sync",
                UNB,
                &result(r#"{"code":0,"hash":"AA"}"#)
            ),
            Verdict::PassThrough
        );
        assert_eq!(
            judge("no_such_method", UNB, &result(r#"{"a":1}"#)),
            Verdict::PassThrough
        );
    }

    #[test]
    fn an_abci_answer_is_kept_for_a_height_only_if_it_reports_that_height() {
        let at = |h: &'static str| -> Answer {
            Answer::Result(Bytes::from(format!(
                r#"{{"response":{{"code":0,"height":"{h}","value":"AQ=="}}}}"#
            )))
        };
        assert!(answers_for("abci_query", Some(100), &at("100")));
        assert!(!answers_for("abci_query", Some(100), &at("150")));
        assert!(!answers_for(
            "abci_query",
            Some(100),
            &result(r#"{"response":{}}"#)
        ));
        assert!(answers_for("abci_query", None, &at("150")));
        assert!(answers_for("block", Some(100), &at("150")));
    }

    #[test]
    fn a_search_that_found_nothing_yet_is_not_kept() {
        assert_eq!(
            judge("tx_search", UNB, &result(r#"{"txs":[],"total_count":"0"}"#)),
            Verdict::PassThrough
        );
        assert_eq!(
            judge(
                "block_search",
                UNB,
                &result(r#"{"blocks":[],"total_count":"0"}"#)
            ),
            Verdict::PassThrough
        );
        assert_eq!(
            judge(
                "tx_search",
                UNB,
                &result(r#"{"txs":[{}],"total_count":"1"}"#)
            ),
            Verdict::Storable
        );
    }

    #[test]
    fn abci_codes_decide_abci_query() {
        // Trimmed from the v0.38 kvstore fixtures (tendermint-rs, Apache-2.0).
        let found = result(
            r#"{"response":{"code":0,"log":"exists","height":"200","key":"YQ==","value":"Yg=="}}"#,
        );
        let missing = result(
            r#"{"response":{"code":0,"log":"does not exist","height":"200","proofOps":null,"value":null}}"#,
        );
        let failed =
            result(r#"{"response":{"code":6,"codespace":"sdk","log":"unknown query path"}}"#);
        assert_eq!(
            judge("abci_query", Policy::Immutable, &found),
            Verdict::Storable
        );
        assert_eq!(
            judge("abci_query", Policy::Immutable, &missing),
            Verdict::Storable
        );
        assert_eq!(judge("abci_query", UNB, &failed), Verdict::CodeError);
        assert_eq!(
            judge("abci_query", UNB, &result(r#"{"other":1}"#)),
            Verdict::PassThrough
        );
    }

    #[test]
    fn tx_is_kept_only_when_it_succeeded() {
        let ok = result(
            r#"{"hash":"AB","height":"5","index":0,"tx_result":{"code":0,"data":null,"log":""},"tx":"YQ=="}"#,
        );
        let failed = result(
            r#"{"hash":"AB","height":"5","index":0,"tx_result":{"code":11,"log":"out of gas"},"tx":"YQ=="}"#,
        );
        assert_eq!(judge("tx", Policy::Immutable, &ok), Verdict::Storable);
        assert_eq!(
            judge("tx", Policy::Immutable, &failed),
            Verdict::PassThrough
        );
    }

    #[test]
    fn an_unknown_hash_is_not_kept() {
        let unknown =
            result(r#"{"block_id":{"hash":"","parts":{"total":0,"hash":""}},"block":null}"#);
        let known = result(r#"{"block_id":{"hash":"AA"},"block":{"header":{"height":"5"}}}"#);
        assert_eq!(
            judge("block_by_hash", Policy::Immutable, &unknown),
            Verdict::PassThrough
        );
        assert_eq!(
            judge("block_by_hash", Policy::Immutable, &known),
            Verdict::Storable
        );
        assert_eq!(
            judge(
                "header_by_hash",
                Policy::Immutable,
                &result(r#"{"header":null}"#)
            ),
            Verdict::PassThrough
        );
        assert_eq!(
            judge(
                "header_by_hash",
                Policy::Immutable,
                &result(r#"{"header":{"height":"5"}}"#)
            ),
            Verdict::Storable
        );
    }

    #[test]
    fn only_a_canonical_commit_is_final() {
        let seen = result(r#"{"signed_header":{"header":{"height":"10"}},"canonical":false}"#);
        let canonical = result(r#"{"signed_header":{"header":{"height":"10"}},"canonical":true}"#);
        assert_eq!(
            judge("commit", Policy::Immutable, &seen),
            Verdict::PassThrough
        );
        assert_eq!(
            judge("commit", Policy::Immutable, &canonical),
            Verdict::Storable
        );
        assert_eq!(
            judge("commit", UNB, &seen),
            Verdict::Storable,
            "the head's seen commit lives until the next block"
        );
    }

    #[test]
    fn status_and_abci_query_report_their_head() {
        let status = result(r#"{"node_info":{},"sync_info":{"latest_block_height":"11"}}"#);
        assert_eq!(reported_head("status", &status), Some(11));
        let abci = result(r#"{"response":{"code":0,"height":"12"}}"#);
        assert_eq!(reported_head("abci_query", &abci), Some(12));
        let untracked = result(r#"{"response":{"code":0,"height":"0"}}"#);
        assert_eq!(reported_head("abci_query", &untracked), None);
        assert_eq!(reported_head("block", &status), None, "pinned, never ahead");
        assert_eq!(reported_head("status", &result("{}")), None);
        let error = Answer::Error(Bytes::from_static(br#"{"code":-32603}"#));
        assert_eq!(reported_head("status", &error), None);
    }
}
