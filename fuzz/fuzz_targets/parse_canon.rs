//! The request parser and the canonicaliser on arbitrary bytes: a POST body, or (when the
//! first byte is odd) a URI-form call whose path and query are the rest split at `?`.
//! Never a panic; every refusal renders as JSON-RPC; the canonical form is a fixed point;
//! a batch's pre-count agrees with what the parser builds.
#![no_main]

use cometgate::admission::Admission;
use cometgate::config::Config;
use cometgate::error::Rejection;
use cometgate::jsonrpc::{batch_len, parse_body, parse_uri, Call, Envelope, Form};
use cometgate::methods::{canonicalize, lookup};
use cometgate::reply::{entry, Outcome};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fn admission() -> &'static Admission {
    static A: OnceLock<Admission> = OnceLock::new();
    A.get_or_init(|| Admission::new(&Config::default()))
}

fn refused(call: Option<&Call>, r: Rejection, form: Form) {
    let mut parts = Vec::new();
    entry(
        &mut parts,
        call.and_then(|c| c.id.as_ref()),
        &Outcome::Rejected(r),
        form,
    );
    let body = parts.concat();
    let v: serde_json::Value = serde_json::from_slice(&body).expect("error bodies are JSON");
    assert!(v["error"]["code"].is_i64());
}

fn call(c: &Call) {
    let Some(spec) = lookup(&c.method) else {
        return refused(Some(c), Rejection::MethodNotFound, c.form);
    };
    let mut canonical = match canonicalize(spec, &c.params, c.form) {
        Ok(x) => x,
        Err(e) => return refused(Some(c), Rejection::InvalidParams(e), c.form),
    };
    let policy = admission().policy(spec);
    if let Err(r) = admission().check_params(&policy, &mut canonical) {
        return refused(Some(c), r, c.form);
    }
    let key = canonical.key();
    let Ok(Envelope::Single(again)) = parse_body(&canonical.upstream_body(7)) else {
        panic!("upstream body does not parse");
    };
    let again = canonicalize(spec, &again.params, Form::JsonRpc).expect("re-reads");
    assert_eq!(again.key(), key);
}

fuzz_target!(|data: &[u8]| {
    match data.split_first() {
        Some((first, rest)) if first % 2 == 1 => {
            let text = String::from_utf8_lossy(rest);
            let (path, query) = text.split_once('?').unwrap_or((&text, ""));
            call(&parse_uri(&format!("/{path}"), Some(query)));
        }
        _ => {
            let parsed = parse_body(data);
            // The batch cap is checked on this count, taken before any call is built.
            let built = match &parsed {
                Ok(Envelope::Batch(cs)) => Some(cs.len()),
                _ => None,
            };
            assert_eq!(batch_len(data), built);
            match parsed {
                Err(e) => refused(None, Rejection::Parse(e.0), Form::JsonRpc),
                Ok(Envelope::Single(c)) => call(&c),
                Ok(Envelope::Batch(cs)) => cs.iter().for_each(call),
            }
        }
    }
});
