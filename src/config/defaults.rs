//! Defaults give way to what the user set. Every cross-key bound in `validate`, `lanes`
//! and `node_guard` that holds between two values with defaults is listed here: when the
//! file sets one side and leaves the other to its default, the default moves just far
//! enough to hold the bound, so `timeout = "300ms"` alone starts with a 300ms
//! `connect_timeout` instead of being refused over a 2s default nobody wrote. Two values
//! the user set that conflict are left alone, and the check refuses them naming both.
//!
//! Not here, on purpose: `metrics.listen` against `server.listen`, and `upstream.url`
//! against `server.listen`. No other address follows from the one the user wrote, and
//! a listener moved to a guessed port is one its clients or scrapers never find.

use std::time::Duration;

use super::walk::Problems;
use super::Config;

/// Moves the unset side of each bound the set side would otherwise break. Runs after
/// reading and before `validate::cross_check`.
pub(super) fn give_way(c: &mut Config, p: &Problems) {
    server(c, p);
    upstream_and_lanes(c, p);
    if !c.rate_limit.api_keys.is_empty() && !p.is_set("rate_limit.api_key_header") {
        // Keys listed, no header named: the conventional one, shown by --check-config.
        c.rate_limit.api_key_header = Some(http::HeaderName::from_static("x-api-key"));
    }
    let cache = &mut c.cache;
    at_most(
        (
            p.is_set("cache.max_entry_bytes"),
            &mut cache.max_entry_bytes,
        ),
        (p.is_set("cache.max_bytes"), &mut cache.max_bytes),
    );
    head(c, p);
    node_guard(c, p);
}

/// Keeps `low <= high`, each side given with whether the user set it: the unset side
/// moves to the set one; both set or both unset, nothing moves (the defaults agree with
/// each other, and two values the user wrote are theirs to reconcile).
fn at_most<T: PartialOrd + Copy>(low: (bool, &mut T), high: (bool, &mut T)) {
    let ((low_set, low), (high_set, high)) = (low, high);
    if *low <= *high {
        return;
    }
    match (low_set, high_set) {
        (true, false) => *high = *low,
        (false, true) => *low = *high,
        _ => {}
    }
}

fn server(c: &mut Config, p: &Problems) {
    let s = &mut c.server;
    at_most(
        (p.is_set("server.max_uri_bytes"), &mut s.max_uri_bytes),
        (p.is_set("server.max_header_bytes"), &mut s.max_header_bytes),
    );
    at_most(
        (
            p.is_set("server.max_pending_connections"),
            &mut s.max_pending_connections,
        ),
        (p.is_set("server.max_connections"), &mut s.max_connections),
    );
}

/// The connect timeout within the whole request's, a lane's floor under its ceiling,
/// and each ceiling under the node-wide cap.
fn upstream_and_lanes(c: &mut Config, p: &Problems) {
    let u = &mut c.upstream;
    at_most(
        (p.is_set("upstream.connect_timeout"), &mut u.connect_timeout),
        (p.is_set("upstream.timeout"), &mut u.timeout),
    );
    let upstream_set = p.is_set("upstream.max_concurrency");
    for (name, lane) in [("light", &mut c.lanes.light), ("heavy", &mut c.lanes.heavy)] {
        let min_set = p.is_set(&format!("lanes.{name}.min_concurrency"));
        let max_set = p.is_set(&format!("lanes.{name}.max_concurrency"));
        at_most(
            (min_set, &mut lane.min_concurrency),
            (max_set, &mut lane.max_concurrency),
        );
        // A ceiling raised to the user's floor is the user's too.
        at_most(
            (max_set || min_set, &mut lane.max_concurrency),
            (upstream_set, &mut u.max_concurrency),
        );
    }
}

/// `stall_after` must exceed `poll_interval`; the side that moves keeps two polls
/// within a stall, so one late poll does not read as a stalled chain.
fn head(c: &mut Config, p: &Problems) {
    let h = &mut c.head;
    if h.stall_after > h.poll_interval {
        return;
    }
    match (p.is_set("head.stall_after"), p.is_set("head.poll_interval")) {
        (false, true) => h.stall_after = h.poll_interval.saturating_mul(2),
        (true, false) => h.poll_interval = (h.stall_after / 2).max(Duration::from_millis(1)),
        _ => {}
    }
}

/// `resume_below` must stay under `shed_above`: the moved side keeps the defaults'
/// gap of 0.10 where the fraction allows.
fn node_guard(c: &mut Config, p: &Problems) {
    let g = &mut c.node_guard;
    if g.resume_below < g.shed_above {
        return;
    }
    match (
        p.is_set("node_guard.resume_below"),
        p.is_set("node_guard.shed_above"),
    ) {
        (false, true) => g.resume_below = (g.shed_above - 0.10).max(g.shed_above / 2.0),
        (true, false) => g.shed_above = (g.resume_below + 0.10).min(1.0),
        _ => {}
    }
}

#[cfg(test)]
#[path = "defaults_tests.rs"]
mod tests;
