//! `[methods.<name>]` overrides: which methods exist, and which caps make
//! sense on which method.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;
use toml::Value;

use super::render::ser_opt_duration;
use super::units::ByteSize;
use super::walk::{self, closest, Problems, Section};
use crate::methods::{lookup, Lane, ROUTES};

/// Every field is optional; `None` leaves the built-in policy alone.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct MethodOverride {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow: Option<bool>,
    /// At least 1.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lane: Option<Lane>,
    /// Zero = never cache.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "ser_opt_duration"
    )]
    pub cache_ttl: Option<Duration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_per_page: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_page: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_query_bytes: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow_prove: Option<bool>,
    /// The query must bound the height on both sides within this span.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_height_span: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_range: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_limit: Option<u32>,
    /// Globs: '*' matches any run of characters, '?' exactly one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path_allow: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path_deny: Option<Vec<String>>,
    /// Decoded bytes of abci_query's `data`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_data_bytes: Option<ByteSize>,
}

/// Cap fields and the methods whose parameters they constrain. Setting one
/// elsewhere would silently do nothing, so it is an error.
const CAP_SCOPES: &[(&str, &[&str])] = &[
    ("max_per_page", &["tx_search", "block_search", "validators"]),
    ("max_page", &["tx_search", "block_search", "validators"]),
    ("max_query_bytes", &["tx_search", "block_search"]),
    ("allow_prove", &["tx_search", "tx"]),
    ("max_height_span", &["tx_search", "block_search"]),
    ("max_range", &["blockchain"]),
    ("max_limit", &["unconfirmed_txs"]),
    ("path_allow", &["abci_query"]),
    ("path_deny", &["abci_query"]),
    ("max_data_bytes", &["abci_query"]),
];

fn some<T>(parse: fn(&Value) -> Result<T, String>) -> impl Fn(&Value) -> Result<Option<T>, String> {
    move |v| parse(v).map(Some)
}

fn at_least_one<T: TryFrom<i64> + PartialEq + From<u8>>(v: &Value) -> Result<Option<T>, String> {
    let n: T = walk::unsigned(v)?;
    if n == T::from(0u8) {
        return Err("must be at least 1".to_string());
    }
    Ok(Some(n))
}

fn globs(v: &Value) -> Result<Option<Vec<String>>, String> {
    let patterns = walk::string_list(v)?;
    if let Some(i) = patterns.iter().position(|p| p.trim().is_empty()) {
        return Err(format!("item {i}: empty pattern"));
    }
    Ok(Some(patterns))
}

fn lane(v: &Value) -> Result<Option<Lane>, String> {
    walk::string(v)?.parse().map(Some)
}

/// Names every route the method table knows, with the closest one first when the
/// name looks like a typo of it.
fn unknown_method(name: &str) -> String {
    let known: Vec<&str> = ROUTES.iter().map(|spec| spec.name).collect();
    let hint = closest(name, &known)
        .map(|m| format!("did you mean \"{m}\"? "))
        .unwrap_or_default();
    format!("unknown method ({hint}known: {})", known.join(", "))
}

pub(crate) fn read_methods(
    p: &mut Problems,
    value: Option<&Value>,
    out: &mut BTreeMap<String, MethodOverride>,
) {
    let Some(value) = value else { return };
    let Value::Table(table) = value else {
        p.report(
            "methods",
            format!(
                "expected a table of [methods.<name>] sections, got {}",
                value.type_str()
            ),
        );
        return;
    };
    for (name, body) in table {
        let path = format!("methods.{name}");
        if lookup(name).is_none() {
            p.report(&path, unknown_method(name));
            continue;
        }
        let mut s = Section::of(p, path, Some(body));
        let o = read_override(&mut s, p);
        for (field, scope) in CAP_SCOPES {
            if s.contains(field) && !scope.contains(&name.as_str()) {
                p.report(
                    &s.path_of(field),
                    format!("does not apply to {name} (only to {})", scope.join(", ")),
                );
            }
        }
        s.finish(p);
        out.insert(name.clone(), o);
    }
}

fn read_override(s: &mut Section, p: &mut Problems) -> MethodOverride {
    let mut o = MethodOverride::default();
    s.read(p, "allow", &mut o.allow, some(walk::boolean));
    s.read(p, "cost", &mut o.cost, at_least_one);
    s.read(p, "lane", &mut o.lane, lane);
    s.read(p, "cache_ttl", &mut o.cache_ttl, some(walk::duration));
    s.read(p, "max_per_page", &mut o.max_per_page, at_least_one);
    s.read(p, "max_page", &mut o.max_page, at_least_one);
    s.read(p, "max_query_bytes", &mut o.max_query_bytes, at_least_one);
    s.read(p, "allow_prove", &mut o.allow_prove, some(walk::boolean));
    // A span of 0 is meaningful: a single height.
    s.read(
        p,
        "max_height_span",
        &mut o.max_height_span,
        some(walk::unsigned),
    );
    s.read(p, "max_range", &mut o.max_range, at_least_one);
    s.read(p, "max_limit", &mut o.max_limit, at_least_one);
    s.read(p, "path_allow", &mut o.path_allow, globs);
    s.read(p, "path_deny", &mut o.path_deny, globs);
    s.read(p, "max_data_bytes", &mut o.max_data_bytes, some(walk::size));
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cap_scopes_name_known_methods_and_fields() {
        for (field, scope) in CAP_SCOPES {
            for m in *scope {
                assert!(lookup(m).is_some(), "{field}: {m}");
            }
        }
        let o = MethodOverride::default();
        let mut s = Section::new("methods.x", None);
        let mut p = Problems::default();
        assert_eq!(read_override(&mut s, &mut p), o);
    }

    #[test]
    fn an_unknown_method_names_the_closest_route_and_every_one() {
        let message = unknown_method("tx_serch");
        assert!(message.contains("did you mean \"tx_search\"?"), "{message}");
        assert!(message.contains("health, status, net_info,"), "{message}");
        assert!(
            message.ends_with("dial_peers, unsafe_flush_mempool)"),
            "{message}"
        );
    }
}
