use serde_json::{json, Value};

use super::*;
use crate::config::{ByteSize, MethodOverride};
use crate::methods::lookup;

fn policy(name: &str, o: Option<MethodOverride>) -> MethodPolicy {
    MethodPolicy::build(lookup(name).unwrap(), o.as_ref())
}

fn call(name: &str, params: Value) -> Canonical {
    let Value::Object(params) = params else {
        panic!("params must be an object")
    };
    Canonical {
        spec: lookup(name).unwrap(),
        params,
    }
}

fn cap_message(r: Result<(), Rejection>) -> String {
    match r {
        Err(Rejection::ParamCap(m)) => m,
        other => panic!("expected ParamCap, got {other:?}"),
    }
}

#[test]
fn per_page_is_clamped_like_the_node() {
    let p = policy(
        "tx_search",
        Some(MethodOverride {
            max_per_page: Some(20),
            ..Default::default()
        }),
    );
    let mut c = call(
        "tx_search",
        json!({"query": "tx.height=1", "per_page": "50"}),
    );
    check(&p, &mut c).unwrap();
    assert_eq!(c.int("per_page"), Some(20));
    // Absent means the node's 30, which is over a cap of 20.
    let mut c = call("tx_search", json!({"query": "tx.height=1"}));
    check(&p, &mut c).unwrap();
    assert_eq!(c.int("per_page"), Some(20));
    // Under the cap: untouched.
    let mut c = call("validators", json!({"per_page": "10"}));
    check(&policy("validators", None), &mut c).unwrap();
    assert_eq!(c.int("per_page"), Some(10));
}

#[test]
fn deep_pages_are_refused_naming_the_key() {
    let p = policy("tx_search", None);
    let mut c = call("tx_search", json!({"query": "tx.height=1", "page": "101"}));
    let m = cap_message(check(&p, &mut c));
    assert!(
        m.contains("page 101")
            && m.contains("cap of 100")
            && m.contains("(methods.tx_search.max_page)"),
        "{m}"
    );
    let mut ok = call("tx_search", json!({"query": "tx.height=1", "page": "100"}));
    check(&p, &mut ok).unwrap();
    let mut v = call("validators", json!({"page": "500"}));
    assert!(cap_message(check(&policy("validators", None), &mut v))
        .contains("methods.validators.max_page"));
}

#[test]
fn long_queries_are_refused() {
    let p = policy("block_search", None);
    let mut c = call("block_search", json!({"query": "a".repeat(513)}));
    let m = cap_message(check(&p, &mut c));
    assert!(
        m.contains("513 bytes") && m.contains("(methods.block_search.max_query_bytes)"),
        "{m}"
    );
}

#[test]
fn prove_follows_allow_prove() {
    let mut c = call("tx_search", json!({"query": "tx.height=1", "prove": true}));
    let m = cap_message(check(&policy("tx_search", None), &mut c));
    assert!(m.contains("methods.tx_search.allow_prove"), "{m}");
    let allow = MethodOverride {
        allow_prove: Some(true),
        ..Default::default()
    };
    check(&policy("tx_search", Some(allow)), &mut c).unwrap();
    let mut t = call("tx", json!({"hash": "AA==", "prove": true}));
    check(&policy("tx", None), &mut t).unwrap();
    let deny = MethodOverride {
        allow_prove: Some(false),
        ..Default::default()
    };
    assert!(
        cap_message(check(&policy("tx", Some(deny)), &mut t)).contains("methods.tx.allow_prove")
    );
}

#[test]
fn height_span_is_required_when_configured() {
    let span = |n| {
        Some(MethodOverride {
            max_height_span: Some(n),
            ..Default::default()
        })
    };
    let p = policy("tx_search", span(100));
    let mut ok = call(
        "tx_search",
        json!({"query": "tx.height >= 5 AND tx.height <= 105 AND a.b = 'x'"}),
    );
    check(&p, &mut ok).unwrap();
    for (q, needle) in [
        ("tx.height >= 5 AND tx.height <= 106", "5..=106"),
        ("tx.height >= 5", "both sides"),
        ("transfer.sender = 'abc'", "both sides"),
        ("tx.height >= 5 OR tx.height <= 6", "could not be checked"),
        ("block.height >= 5 AND block.height <= 6", "both sides"),
    ] {
        let mut c = call("tx_search", json!({ "query": q }));
        let m = cap_message(check(&p, &mut c));
        assert!(
            m.contains(needle) && m.contains("(methods.tx_search.max_height_span)"),
            "{q}: {m}"
        );
    }
    let b = policy("block_search", span(0));
    check(
        &b,
        &mut call("block_search", json!({"query": "block.height = 9"})),
    )
    .unwrap();
    let m = cap_message(check(
        &b,
        &mut call(
            "block_search",
            json!({"query": "block.height > 8 AND block.height < 11"}),
        ),
    ));
    assert!(m.contains("block.height 9..=10"), "{m}");
    // Without the cap any query goes.
    check(
        &policy("tx_search", None),
        &mut call("tx_search", json!({"query": "a.b EXISTS"})),
    )
    .unwrap();
}

#[test]
fn blockchain_range_keeps_its_top() {
    let narrow = policy(
        "blockchain",
        Some(MethodOverride {
            max_range: Some(5),
            ..Default::default()
        }),
    );
    let mut c = call("blockchain", json!({"minHeight": "1", "maxHeight": "100"}));
    check(&narrow, &mut c).unwrap();
    assert_eq!(
        (c.int("minHeight"), c.int("maxHeight")),
        (Some(96), Some(100))
    );
    let mut only_max = call("blockchain", json!({"maxHeight": "3"}));
    check(&narrow, &mut only_max).unwrap();
    assert_eq!(
        only_max.int("minHeight"),
        None,
        "1..=3 is already within the cap"
    );
    let mut only_max = call("blockchain", json!({"maxHeight": "50"}));
    check(&narrow, &mut only_max).unwrap();
    assert_eq!(only_max.int("minHeight"), Some(46));
    // The default cap is the node's own: left to the node.
    let mut c = call("blockchain", json!({"minHeight": "1", "maxHeight": "100"}));
    check(&policy("blockchain", None), &mut c).unwrap();
    assert_eq!(c.int("minHeight"), Some(1));
}

#[test]
fn unconfirmed_limit_is_clamped() {
    let mut c = call("unconfirmed_txs", json!({"limit": "1000"}));
    check(&policy("unconfirmed_txs", None), &mut c).unwrap();
    assert_eq!(c.int("limit"), Some(100));
    let small = policy(
        "unconfirmed_txs",
        Some(MethodOverride {
            max_limit: Some(10),
            ..Default::default()
        }),
    );
    let mut c = call("unconfirmed_txs", json!({}));
    check(&small, &mut c).unwrap();
    assert_eq!(c.int("limit"), Some(10));
}

#[test]
fn abci_paths_and_data() {
    let o = MethodOverride {
        path_allow: Some(vec!["/store/*".into(), "/app/version".into()]),
        path_deny: Some(vec!["/store/secret*".into()]),
        max_data_bytes: Some(ByteSize::bytes(4)),
        ..Default::default()
    };
    let p = policy("abci_query", Some(o));
    check(
        &p,
        &mut call(
            "abci_query",
            json!({"path": "/store/bank/key", "data": "01020304"}),
        ),
    )
    .unwrap();
    check(&p, &mut call("abci_query", json!({"path": "/app/version"}))).unwrap();
    let m = cap_message(check(
        &p,
        &mut call("abci_query", json!({"path": "/p2p/filter/id"})),
    ));
    assert!(m.contains("(methods.abci_query.path_allow)"), "{m}");
    let m = cap_message(check(
        &p,
        &mut call("abci_query", json!({"path": "/store/secrets"})),
    ));
    assert!(
        m.contains("(methods.abci_query.path_deny)") && m.contains("/store/secret*"),
        "{m}"
    );
    let m = cap_message(check(
        &p,
        &mut call(
            "abci_query",
            json!({"path": "/store/x", "data": "0102030405"}),
        ),
    ));
    assert!(
        m.contains("5 bytes") && m.contains("(methods.abci_query.max_data_bytes)"),
        "{m}"
    );
    let long = "/".repeat(10_000);
    let m = cap_message(check(&p, &mut call("abci_query", json!({ "path": long }))));
    assert!(m.len() < 300, "the path is excerpted: {m}");
    // Default: 64 KiB of data, no path lists.
    let d = policy("abci_query", None);
    check(
        &d,
        &mut call(
            "abci_query",
            json!({"path": "/p2p/x", "data": "AB".repeat(65536)}),
        ),
    )
    .unwrap();
    assert!(check(
        &d,
        &mut call("abci_query", json!({"data": "AB".repeat(65537)}))
    )
    .is_err());
}

#[test]
fn routes_without_caps_pass_untouched() {
    let mut c = call("block", json!({"height": "5"}));
    let before = c.clone();
    check(&policy("block", None), &mut c).unwrap();
    assert_eq!(c.params, before.params);
}
