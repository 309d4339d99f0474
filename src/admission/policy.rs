//! A route's effective policy: the built-in `MethodSpec` with `[methods.<name>]` applied.
//! Built once per config load for every route, so the per-request lookup is a hash probe
//! and a few reference-count bumps, never a merge.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use super::glob::Glob;
use crate::config::{Lane, MethodOverride};
use crate::methods::{MethodSpec, ROUTES};

/// Effective parameter caps. `None` means "no cap of this kind on this route".
/// Cheap to clone: the glob lists are shared.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Caps {
    pub max_per_page: Option<u32>,
    pub max_page: Option<u32>,
    pub max_query_bytes: Option<usize>,
    /// `None`: the route has no cap on `prove` (e.g. abci_query).
    pub allow_prove: Option<bool>,
    pub max_height_span: Option<u64>,
    pub max_range: Option<u64>,
    pub max_limit: Option<u32>,
    pub path_allow: Option<Arc<[Glob]>>,
    pub path_deny: Option<Arc<[Glob]>>,
    pub max_data_bytes: Option<u64>,
}

#[derive(Clone, Debug)]
pub struct MethodPolicy {
    pub spec: &'static MethodSpec,
    pub allowed: bool,
    pub cost: u32,
    pub lane: Lane,
    /// An operator's `cache_ttl`; `None` leaves the route's `CacheRule` in charge.
    pub cache_ttl: Option<Duration>,
    pub caps: Caps,
}

impl MethodPolicy {
    pub fn build(spec: &'static MethodSpec, o: Option<&MethodOverride>) -> MethodPolicy {
        let d = spec.caps;
        let o = o.cloned().unwrap_or_default();
        let globs = |list: Option<Vec<String>>| -> Option<Arc<[Glob]>> {
            list.map(|l| l.iter().map(|p| Glob::new(p)).collect::<Vec<_>>().into())
        };
        let caps = Caps {
            max_per_page: o.max_per_page.or(d.max_per_page),
            max_page: o.max_page.or(d.max_page),
            max_query_bytes: o.max_query_bytes.or(d.max_query_bytes),
            allow_prove: o.allow_prove.or(d.allow_prove),
            max_height_span: o.max_height_span,
            max_range: o.max_range.or(d.max_range),
            max_limit: o.max_limit.or(d.max_limit),
            path_allow: globs(o.path_allow),
            path_deny: globs(o.path_deny),
            max_data_bytes: o.max_data_bytes.map(|b| b.as_u64()).or(d.max_data_bytes),
        };
        MethodPolicy {
            spec,
            allowed: o.allow.unwrap_or(spec.allowed),
            // A zero cost would let a route bypass the rate limit entirely.
            cost: o.cost.unwrap_or(spec.cost).max(1),
            lane: o.lane.unwrap_or(spec.lane),
            cache_ttl: o.cache_ttl,
            caps,
        }
    }
}

/// Every route's policy under one config.
pub(super) struct Policies {
    by_name: HashMap<&'static str, MethodPolicy>,
    overrides: BTreeMap<String, MethodOverride>,
}

impl Policies {
    pub(super) fn new(overrides: &BTreeMap<String, MethodOverride>) -> Policies {
        let by_name = ROUTES
            .iter()
            .map(|spec| {
                (
                    spec.name,
                    MethodPolicy::build(spec, overrides.get(spec.name)),
                )
            })
            .collect();
        Policies {
            by_name,
            overrides: overrides.clone(),
        }
    }

    pub(super) fn get(&self, spec: &'static MethodSpec) -> MethodPolicy {
        match self.by_name.get(spec.name) {
            // The table's own spec: the prebuilt policy is exactly right.
            Some(p) if std::ptr::eq(p.spec, spec) => p.clone(),
            // A spec from elsewhere (tests, a future table) still gets its overrides.
            _ => MethodPolicy::build(spec, self.overrides.get(spec.name)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::methods::lookup;

    #[test]
    fn built_in_policy_without_overrides() {
        let p = Policies::new(&BTreeMap::new());
        let search = p.get(lookup("tx_search").unwrap());
        assert!(search.allowed);
        assert_eq!((search.cost, search.lane), (10, Lane::Heavy));
        assert_eq!(search.caps.max_per_page, Some(100));
        assert_eq!(search.caps.allow_prove, Some(false));
        assert_eq!(search.caps.max_height_span, None);
        assert_eq!(p.get(lookup("tx").unwrap()).caps.allow_prove, Some(true));
        assert_eq!(
            p.get(lookup("abci_query").unwrap()).caps.max_data_bytes,
            Some(64 * 1024)
        );
        assert!(!p.get(lookup("dial_seeds").unwrap()).allowed);
    }

    #[test]
    fn overrides_replace_what_they_name_only() {
        let mut o = BTreeMap::new();
        o.insert(
            "dial_seeds".to_owned(),
            MethodOverride {
                allow: Some(true),
                ..Default::default()
            },
        );
        o.insert(
            "tx_search".to_owned(),
            MethodOverride {
                cost: Some(25),
                lane: Some(Lane::Light),
                max_per_page: Some(20),
                max_height_span: Some(1000),
                cache_ttl: Some(Duration::from_secs(3)),
                ..Default::default()
            },
        );
        o.insert(
            "abci_query".to_owned(),
            MethodOverride {
                path_deny: Some(vec!["/p2p/*".into()]),
                ..Default::default()
            },
        );
        let p = Policies::new(&o);
        assert!(p.get(lookup("dial_seeds").unwrap()).allowed);
        let s = p.get(lookup("tx_search").unwrap());
        assert_eq!(
            (s.cost, s.lane, s.cache_ttl),
            (25, Lane::Light, Some(Duration::from_secs(3)))
        );
        assert_eq!(
            (s.caps.max_per_page, s.caps.max_page, s.caps.max_height_span),
            (Some(20), Some(100), Some(1000))
        );
        let a = p.get(lookup("abci_query").unwrap());
        assert_eq!(
            a.caps.path_deny.as_deref().map(|g| g[0].as_str()),
            Some("/p2p/*")
        );
        assert!(a.caps.path_allow.is_none());
    }
}
