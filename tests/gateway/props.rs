//! Property tests for what a hostile client controls (issue #8): the request parser, the
//! key normaliser (canonical form) and the batch split, through the public API. Whatever
//! the input: no panic, and every refusal is a well-formed JSON-RPC error in CometBFT's
//! shape. The canonical form is a fixed point: re-reading what is sent upstream gives
//! the same key.
//!
//! `PROPTEST_CASES` sets the case count of the ordinary properties (256 by default);
//! `many_hostile_inputs_in_a_bounded_budget` always runs 20 000 mixed cases, for CI.

use std::time::Instant;

use cometgate::admission::Admission;
use cometgate::config::Config;
use cometgate::error::Rejection;
use cometgate::jsonrpc::{
    batch_len, error_body, parse_body, parse_uri, Call, Envelope, Form, Id, Params,
};
use cometgate::methods::{canonicalize, lookup, ROUTES};
use cometgate::reply::{entry, Outcome};
use proptest::prelude::*;
use proptest::test_runner::{Config as RunnerConfig, TestRunner};
use serde_json::Value;

use crate::faults::assert_rpc_error;

/// Route names, their oddly cased and padded cousins, and junk.
pub fn method() -> impl Strategy<Value = String> {
    let names: Vec<&'static str> = ROUTES.iter().map(|r| r.name).collect();
    prop_oneof![
        4 => proptest::sample::select(names.clone()).prop_map(str::to_owned),
        1 => proptest::sample::select(names.clone()).prop_map(|n| n.to_uppercase()),
        1 => proptest::sample::select(names).prop_map(|n| format!(" {n}\u{0}")),
        1 => "unsafe_[a-z_]{0,12}",
        1 => any::<String>(),
    ]
}

/// JSON values with the awkward corners: huge and fractional numbers, escapes, nesting.
fn json_value() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just("null".to_owned()),
        any::<bool>().prop_map(|b| b.to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<u64>().prop_map(|n| format!("{n}{n}{n}")),
        Just("1e400".to_owned()),
        Just("-0.0".to_owned()),
        any::<f64>().prop_map(|f| serde_json::to_string(&f).unwrap_or_default()),
        any::<String>().prop_map(|s| serde_json::to_string(&s).unwrap_or_default()),
        "[0-9a-fA-Fx\"\\\\%+ =&]{0,24}".prop_map(|s| serde_json::to_string(&s).unwrap_or_default()),
        Just(r#""\ud800""#.to_owned()),
        Just(r#""3q2+7w==""#.to_owned()),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6)
                .prop_map(|v| format!("[{}]", v.join(","))),
            proptest::collection::vec(
                (
                    prop_oneof![
                        Just("height".to_owned()),
                        Just("hash".to_owned()),
                        Just("query".to_owned()),
                        Just("per_page".to_owned()),
                        Just("page".to_owned()),
                        Just("prove".to_owned()),
                        Just("data".to_owned()),
                        Just("path".to_owned()),
                        Just("minHeight".to_owned()),
                        Just("maxHeight".to_owned()),
                        "[a-z_]{1,8}",
                    ],
                    inner
                ),
                0..6
            )
            .prop_map(|kv| {
                let members: Vec<String> = kv
                    .into_iter()
                    .map(|(k, v)| format!("{}:{v}", serde_json::to_string(&k).unwrap()))
                    .collect();
                format!("{{{}}}", members.join(","))
            }),
        ]
    })
}

fn id() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        Just(None),
        Just(Some("null".to_owned())),
        any::<i64>().prop_map(|n| Some(n.to_string())),
        Just(Some("123456789012345678901234567890123456789".to_owned())),
        Just(Some("1.5e300".to_owned())),
        Just(Some("1e99999".to_owned())),
        Just(Some("-0.0000001e-400".to_owned())),
        any::<String>().prop_map(|s| Some(serde_json::to_string(&s).unwrap())),
        Just(Some("{}".to_owned())),
        Just(Some("[1]".to_owned())),
        Just(Some("true".to_owned())),
    ]
}

/// One call object, sometimes with duplicate or missing members.
fn call_text() -> impl Strategy<Value = String> {
    (id(), method(), proptest::option::of(json_value()), 0u8..8).prop_map(
        |(id, method, params, quirk)| {
            let mut members = vec![r#""jsonrpc":"2.0""#.to_owned()];
            if let Some(id) = &id {
                members.push(format!(r#""id":{id}"#));
            }
            members.push(format!(
                r#""method":{}"#,
                serde_json::to_string(&method).unwrap()
            ));
            if let Some(p) = &params {
                members.push(format!(r#""params":{p}"#));
            }
            match quirk {
                0 => members.push(r#""id":7"#.to_owned()),
                1 => members.push(r#""method":"status""#.to_owned()),
                2 => members.push(r#""params":{"height":"1"}"#.to_owned()),
                3 => members.push(r#""method":5"#.to_owned()),
                _ => {}
            }
            format!("{{{}}}", members.join(","))
        },
    )
}

/// Whole POST bodies: single calls, batches from empty to huge, deep nesting, raw bytes.
pub fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => call_text().prop_map(String::into_bytes),
        3 => proptest::collection::vec(call_text(), 0..40)
            .prop_map(|calls| format!("[{}]", calls.join(",")).into_bytes()),
        1 => (1usize..4000, any::<bool>()).prop_map(|(depth, objects)| {
            let (open, close) = if objects { (r#"{"a":"#, "}") } else { ("[", "]") };
            format!(
                r#"{{"id":1,"method":"block","params":{}1{}}}"#,
                open.repeat(depth),
                close.repeat(depth)
            )
            .into_bytes()
        }),
        1 => (1usize..3000).prop_map(|n| format!("{}{}", "[".repeat(n), "]".repeat(n)).into_bytes()),
        2 => any::<Vec<u8>>(),
        1 => any::<Vec<u8>>().prop_map(|mut v| {
            // Invalid UTF-8 inside an otherwise fine call.
            let mut body = br#"{"id":1,"method":"tx_search","params":{"query":""#.to_vec();
            v.push(0xff);
            body.extend(v);
            body.extend_from_slice(br#""}}"#);
            body
        }),
    ]
}

/// URI query strings with quotes, escapes, repeats and broken percent-encoding.
pub fn query() -> impl Strategy<Value = String> {
    let arg = prop_oneof![
        Just("height"),
        Just("hash"),
        Just("query"),
        Just("per_page"),
        Just("prove"),
        Just("data"),
        Just("path"),
        Just("tx"),
        Just("minHeight"),
        Just("chunk"),
    ];
    let value = prop_oneof![
        "-?[0-9]{0,25}",
        "0[xX][0-9a-fA-F]{0,9}",
        "%22[^&]{0,20}%22",
        "\"[^&]{0,20}\"",
        "[%+=;\"\\\\a-z0-9]{0,20}",
        any::<String>().prop_map(|s| s.replace('&', "")),
        Just("%E2%82%AC".to_owned()),
        Just("%ff%fe".to_owned()),
        Just("%".to_owned()),
        Just("%2".to_owned()),
    ];
    proptest::collection::vec((arg, value, any::<bool>()), 0..8).prop_map(|pairs| {
        let mut parts = Vec::new();
        for (k, v, repeat) in pairs {
            parts.push(format!("{k}={v}"));
            if repeat {
                parts.push(format!("{k}={v}{v}"));
            }
        }
        parts.join(if parts.len() % 2 == 0 { "&" } else { ";" })
    })
}

/// Every error the gateway could build from an input is JSON-RPC in CometBFT's shape.
fn check_rejection(id: Option<&Id>, r: &Rejection, form: Form) {
    let mut parts = Vec::new();
    entry(&mut parts, id, &Outcome::Rejected(r.clone()), form);
    let body = parts.concat();
    let v: Value = serde_json::from_slice(&body)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&body)));
    assert_rpc_error(&v);
}

/// What the gateway does with one call up to the cache: look it up, canonicalise, cap.
/// Returns whether it would reach the cache (or node).
fn check_call(admission: &Admission, call: &Call) -> bool {
    if let Some(id) = &call.id {
        // An id is kept as the caller wrote it, and goes back as valid JSON.
        let v: Value = serde_json::from_slice(id.as_bytes()).expect("an id is JSON");
        assert!(v.is_string() || v.is_number(), "{v}");
    }
    let Some(spec) = lookup(&call.method) else {
        check_rejection(call.id.as_ref(), &Rejection::MethodNotFound, call.form);
        return false;
    };
    let mut canonical = match canonicalize(spec, &call.params, call.form) {
        Ok(c) => c,
        Err(why) => {
            check_rejection(call.id.as_ref(), &Rejection::InvalidParams(why), call.form);
            return false;
        }
    };
    let policy = admission.policy(spec);
    if let Err(r) = admission.check_params(&policy, &mut canonical) {
        check_rejection(call.id.as_ref(), &r, call.form);
        return false;
    }
    // The key normaliser is a fixed point: what goes upstream reads back to the same key.
    let key = canonical.key();
    let sent = canonical.upstream_body(1);
    let Ok(Envelope::Single(again)) = parse_body(&sent) else {
        panic!(
            "the upstream body does not parse: {}",
            String::from_utf8_lossy(&sent)
        );
    };
    let again = canonicalize(spec, &again.params, Form::JsonRpc)
        .unwrap_or_else(|e| panic!("{key}: re-reading the upstream body fails: {e}"));
    assert_eq!(again.key(), key, "the canonical form moved");
    true
}

fn check_body(admission: &Admission, body: &[u8]) {
    let parsed = parse_body(body);
    // The batch cap is checked on a count taken before the calls are built: it must be
    // the count of exactly the calls `parse_body` would build.
    let built = match &parsed {
        Ok(Envelope::Batch(calls)) => Some(calls.len()),
        _ => None,
    };
    assert_eq!(batch_len(body), built, "{}", String::from_utf8_lossy(body));
    match parsed {
        Err(e) => check_rejection(None, &Rejection::Parse(e.0), Form::JsonRpc),
        Ok(Envelope::Single(call)) => {
            check_call(admission, &call);
        }
        Ok(Envelope::Batch(calls)) => {
            if calls.is_empty() || calls.len() > 10 {
                check_rejection(
                    None,
                    &Rejection::BatchTooLarge {
                        got: calls.len(),
                        max: 10,
                    },
                    Form::JsonRpc,
                );
            }
            for call in &calls {
                check_call(admission, call);
            }
        }
    }
}

fn check_uri(admission: &Admission, path: &str, query: &str) {
    let call = parse_uri(path, Some(query));
    assert_eq!(call.form, Form::Uri);
    if let Params::Query(pairs) = &call.params {
        // Go's Query().Get: the first of repeated keys, once.
        let mut names: Vec<&str> = pairs.iter().map(|(k, _)| k.as_str()).collect();
        names.sort_unstable();
        let before = names.len();
        names.dedup();
        assert_eq!(before, names.len(), "a repeated key survived: {pairs:?}");
    }
    check_call(admission, &call);
}

fn admission() -> Admission {
    Admission::new(&Config::default())
}

proptest! {
    #[test]
    fn any_body_is_parsed_or_refused_in_shape(body in body()) {
        check_body(&admission(), &body);
    }

    #[test]
    fn any_uri_call_is_canonical_or_refused_in_shape(
        method in method(),
        query in query(),
    ) {
        check_uri(&admission(), &format!("/{method}"), &query);
    }

    #[test]
    fn error_bodies_are_json_whatever_their_text(
        data in any::<String>(),
        message in any::<String>(),
        code in any::<i32>(),
        id in prop_oneof![Just(None), any::<u64>().prop_map(|n| Some(Id::number(n)))],
    ) {
        let body = error_body(id.as_ref(), code, &message, &data);
        let v: Value = serde_json::from_slice(&body).expect("JSON");
        prop_assert_eq!(v["error"]["code"].as_i64(), Some(code as i64));
    }
}

#[test]
fn a_multibyte_first_character_in_a_uri_argument_is_no_panic() {
    // Found by `any_uri_call_is_canonical_or_refused_in_shape`: `raw[..2]` on "€".
    let a = admission();
    for q in [
        "height=%E2%82%AC",
        "hash=%E2%82%AC",
        "hash=%C3%A9x",
        "query=%E2%82%AC",
    ] {
        for m in ["block", "tx", "tx_search", "abci_query"] {
            check_uri(&a, &format!("/{m}"), q);
        }
    }
}

/// CI's bounded high-count run: 20 000 mixed hostile inputs (more with COMETGATE_PROPTEST_MANY).
#[test]
fn many_hostile_inputs_in_a_bounded_budget() {
    let cases: u32 = std::env::var("COMETGATE_PROPTEST_MANY")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let started = Instant::now();
    let a = admission();
    let mut runner = TestRunner::new(RunnerConfig {
        cases,
        failure_persistence: None,
        ..RunnerConfig::default()
    });
    let input = prop_oneof![
        3 => body().prop_map(|b| (b, None)),
        1 => (method(), query()).prop_map(|(m, q)| (Vec::new(), Some((m, q)))),
    ];
    runner
        .run(&input, |(body, uri)| {
            match uri {
                Some((m, q)) => check_uri(&a, &format!("/{m}"), &q),
                None => check_body(&a, &body),
            }
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{e}"));
    // The budget is the case count; the time is reported, not asserted, on a shared machine.
    eprintln!("props: {cases} hostile inputs in {:?}", started.elapsed());
}
