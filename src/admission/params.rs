//! Parameter caps, applied to the canonical form before anything reaches the node.
//!
//! Where the node itself clamps a parameter, the gateway clamps too (the client gets
//! the same kind of answer it would get from the node, only smaller); where the node
//! would do the expensive work, the gateway refuses with `ParamCap`, naming the cap and
//! its config key.
//!
//! | route | parameter | cap (default) | action |
//! |---|---|---|---|
//! | tx_search, block_search, validators | `per_page` | `max_per_page` (100) | clamp (node: `validatePerPage`) |
//! | tx_search, block_search, validators | `page` | `max_page` (100) | refuse (a deep page makes the node load every match first, cometbft#517) |
//! | tx_search, block_search | `query` length | `max_query_bytes` (512) | refuse |
//! | tx_search | `prove=true` | `allow_prove` (false) | refuse |
//! | tx | `prove=true` | `allow_prove` (true) | refuse when set to false |
//! | tx_search, block_search | `tx.height` / `block.height` bounds | `max_height_span` (unset) | refuse unless bounded on both sides within the span |
//! | blockchain | `minHeight..maxHeight` | `max_range` (20) | clamp (node: `filterMinMax` keeps the top 20) |
//! | unconfirmed_txs | `limit` | `max_limit` (100) | clamp (node: `validatePerPage`) |
//! | abci_query | `path` | `path_allow`, then `path_deny` globs | refuse |
//! | abci_query | decoded `data` | `max_data_bytes` (64 KiB) | refuse |
//!
//! Values the node rejects anyway (negative pages, `minHeight > maxHeight`) are left for
//! the node to word its own error.

use super::policy::{Caps, MethodPolicy};
use super::query::height_bounds;
use crate::error::Rejection;
use crate::methods::Canonical;

/// The node's `per_page` / `limit` when absent or below 1.
const NODE_DEFAULT_PAGE_SIZE: i64 = 30;
/// `blockchain`'s own range limit in the node; a cap at or above it changes nothing.
const NODE_BLOCKCHAIN_RANGE: u64 = 20;

fn refuse(what: impl std::fmt::Display, policy: &MethodPolicy, key: &str) -> Rejection {
    Rejection::ParamCap(format!("{what} (methods.{}.{key})", policy.spec.name))
}

/// What a client sent, cut short and quoted, so an error never echoes a megabyte back.
struct Excerpt<'a>(&'a str);

impl std::fmt::Display for Excerpt<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let cut = self
            .0
            .char_indices()
            .nth(64)
            .map_or(self.0.len(), |(i, _)| i);
        let more = if cut < self.0.len() { "…" } else { "" };
        write!(f, "{:?}{more}", &self.0[..cut])
    }
}

pub(super) fn check(policy: &MethodPolicy, call: &mut Canonical) -> Result<(), Rejection> {
    let caps = &policy.caps;
    let spec = policy.spec;
    if let Some(max) = caps.max_per_page {
        if spec.arg("per_page").is_some() {
            clamp_page_size(call, "per_page", max);
        }
    }
    if let Some(max) = caps.max_limit {
        if spec.arg("limit").is_some() {
            clamp_page_size(call, "limit", max);
        }
    }
    if let (Some(max), Some(page)) = (caps.max_page, call.int("page")) {
        if page > i64::from(max) {
            let why = format!(
                "page {page} is over this gateway's cap of {max}; narrow the query instead"
            );
            return Err(refuse(why, policy, "max_page"));
        }
    }
    if caps.allow_prove == Some(false) && call.flag("prove") {
        return Err(refuse(
            "prove=true is disabled on this gateway",
            policy,
            "allow_prove",
        ));
    }
    if spec.arg("query").is_some() {
        check_query(policy, caps, call)?;
    }
    if let Some(max) = caps.max_range {
        if spec.arg("minHeight").is_some() {
            clamp_range(call, max);
        }
    }
    if spec.arg("path").is_some() {
        check_path(policy, caps, call.str("path").unwrap_or(""))?;
    }
    if let (Some(max), Some(data)) = (caps.max_data_bytes, call.str("data")) {
        // Canonical `data` is hex: two characters per byte.
        let bytes = (data.len() / 2) as u64;
        if bytes > max {
            let why = format!("data of {bytes} bytes is over this gateway's cap of {max} bytes");
            return Err(refuse(why, policy, "max_data_bytes"));
        }
    }
    Ok(())
}

/// `per_page` and `limit`: absent or < 1 is the node's 30, anything above the cap becomes
/// the cap, exactly as `validatePerPage` does with its own 100.
fn clamp_page_size(call: &mut Canonical, name: &str, max: u32) {
    let asked = call
        .int(name)
        .filter(|n| *n >= 1)
        .unwrap_or(NODE_DEFAULT_PAGE_SIZE);
    if asked > i64::from(max) {
        call.set_int(name, i64::from(max));
    }
}

/// The node answers the top `NODE_BLOCKCHAIN_RANGE` heights of the range, so a narrower
/// cap keeps the top too: `minHeight` is raised, `maxHeight` kept. Without `maxHeight`
/// (the head) the range's top is unknown here and the node's own limit applies.
fn clamp_range(call: &mut Canonical, max: u64) {
    if max >= NODE_BLOCKCHAIN_RANGE {
        return;
    }
    let Some(top) = call.int("maxHeight").filter(|h| *h > 0) else {
        return;
    };
    let floor = top.saturating_sub(max as i64 - 1).max(1);
    // The node reads an absent or zero minHeight as 1.
    let min = call.int("minHeight").filter(|m| *m != 0).unwrap_or(1);
    if min < floor {
        call.set_int("minHeight", floor);
    }
}

fn check_query(policy: &MethodPolicy, caps: &Caps, call: &Canonical) -> Result<(), Rejection> {
    let query = call.str("query").unwrap_or("");
    if let Some(max) = caps.max_query_bytes {
        if query.len() > max {
            let why = format!(
                "query of {} bytes is over this gateway's cap of {max} bytes",
                query.len()
            );
            return Err(refuse(why, policy, "max_query_bytes"));
        }
    }
    let Some(span) = caps.max_height_span else {
        return Ok(());
    };
    let field = if policy.spec.name == "block_search" {
        "block.height"
    } else {
        "tx.height"
    };
    let bounds = height_bounds(query, field).map_err(|e| {
        let why = format!(
            "query could not be checked for a {field} range ({e}); this gateway requires one"
        );
        refuse(why, policy, "max_height_span")
    })?;
    let (Some(lower), Some(upper)) = (bounds.lower, bounds.upper) else {
        let why = format!(
            "query must bound {field} on both sides \
             (e.g. {field} >= 100 AND {field} <= {}), at most {span} apart",
            100 + span
        );
        return Err(refuse(why, policy, "max_height_span"));
    };
    if upper - lower > i128::from(span) {
        let why = format!(
            "query spans {field} {lower}..={upper}, more than this gateway's cap of {span} heights"
        );
        return Err(refuse(why, policy, "max_height_span"));
    }
    Ok(())
}

fn check_path(policy: &MethodPolicy, caps: &Caps, path: &str) -> Result<(), Rejection> {
    if let Some(allow) = &caps.path_allow {
        if !allow.iter().any(|g| g.matches(path)) {
            let why = format!("path {} is not in this gateway's allow list", Excerpt(path));
            return Err(refuse(why, policy, "path_allow"));
        }
    }
    if let Some(deny) = &caps.path_deny {
        if let Some(g) = deny.iter().find(|g| g.matches(path)) {
            let why = format!(
                "path {} is denied by this gateway (pattern {:?})",
                Excerpt(path),
                g.as_str()
            );
            return Err(refuse(why, policy, "path_deny"));
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "params_tests.rs"]
mod tests;
