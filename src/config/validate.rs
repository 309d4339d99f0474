//! Checks that span fields, or that make a single value meaningless
//! (a zero timeout, a limit below what any request needs).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use super::units::ByteSize;
use super::walk::Problems;
use super::Config;

/// Reports `message` at `path` unless `ok`, or unless one of the `involved`
/// values failed to read (its default would make the complaint misleading).
pub(super) fn check(
    p: &mut Problems,
    ok: bool,
    path: &str,
    involved: &[&str],
    message: impl FnOnce() -> String,
) {
    if ok || p.failed(path) || involved.iter().any(|i| p.failed(i)) {
        return;
    }
    p.report(path, message());
}

/// Every check, in the order its problems are reported.
pub(crate) fn cross_check(c: &Config, p: &mut Problems) {
    durations_are_usable(c, p);
    counts_are_bounded(c, p);
    counts_are_nonzero(c, p);
    sizes_meet_minimums(c, p);
    limits_fit_each_other(c, p);
    settings_depend_on_each_other(c, p);
    addresses_do_not_loop(c, p);
    super::lanes::check(c, p);
    super::node_guard::check(&c.node_guard, p);
    super::shared::check(&c.shared, p);
    super::websocket::check(&c.websocket, p);
}

fn durations_are_usable(c: &Config, p: &mut Problems) {
    let s = &c.server;
    let u = &c.upstream;
    // Zero would mean "expire at once" or "never wait", not "no timeout".
    let positive: &[(&str, Duration)] = &[
        ("server.header_read_timeout", s.header_read_timeout),
        ("server.body_read_timeout", s.body_read_timeout),
        ("server.write_timeout", s.write_timeout),
        ("upstream.timeout", u.timeout),
        ("upstream.connect_timeout", u.connect_timeout),
        ("upstream.pool_idle_timeout", u.pool_idle_timeout),
        ("lanes.light.queue_timeout", c.lanes.light.queue_timeout),
        ("lanes.heavy.queue_timeout", c.lanes.heavy.queue_timeout),
        ("rate_limit.gc_interval", c.rate_limit.gc_interval),
        ("head.poll_interval", c.head.poll_interval),
        ("websocket.ping_interval", c.websocket.ping_interval),
    ];
    // Timers count in whole milliseconds: less would silently be zero.
    for (path, d) in positive {
        check(p, *d >= Duration::from_millis(1), path, &[], || {
            "must be at least 1ms".into()
        });
    }

    // Past this a duration means "never" and overflows the clock arithmetic it feeds
    // (deadlines are now + duration).
    const LONGEST: Duration = Duration::from_secs(365 * 24 * 3600);
    let bounded: &[(&str, Duration)] = &[
        ("server.shutdown_grace", s.shutdown_grace),
        ("cache.stale_if_error", c.cache.stale_if_error),
        ("cache.latest_max_ttl", c.cache.latest_max_ttl),
        ("cache.code_error_ttl", c.cache.code_error_ttl),
        ("head.stall_after", c.head.stall_after),
    ];
    for (path, d) in positive.iter().chain(bounded) {
        check(p, *d <= LONGEST, path, &[], || {
            "must be at most 365 days".into()
        });
    }
    for (name, m) in &c.methods {
        if let Some(d) = m.cache_ttl {
            let path = format!("methods.{name}.cache_ttl");
            check(p, d <= LONGEST, &path, &[], || {
                "must be at most 365 days".into()
            });
        }
    }
}

fn counts_are_bounded(c: &Config, p: &mut Problems) {
    let s = &c.server;
    let u = &c.upstream;
    // Counts that size semaphores and connection tables: far past any real machine.
    const MOST: u64 = 1_000_000;
    let bounded_counts: &[(&str, u64)] = &[
        ("server.max_connections", s.max_connections as u64),
        (
            "server.max_pending_connections",
            s.max_pending_connections as u64,
        ),
        ("upstream.max_concurrency", u.max_concurrency as u64),
        (
            "websocket.max_connections",
            c.websocket.max_connections as u64,
        ),
    ];
    for (path, n) in bounded_counts {
        check(p, *n <= MOST, path, &[], || {
            format!("must be at most {MOST}")
        });
    }
}

fn counts_are_nonzero(c: &Config, p: &mut Problems) {
    let s = &c.server;
    let u = &c.upstream;
    // A zero count would reject or stall every request.
    let w = &c.websocket;
    let at_least_one: &[(&str, u64)] = &[
        ("server.max_batch_size", s.max_batch_size as u64),
        ("server.max_connections", s.max_connections as u64),
        (
            "server.max_pending_connections",
            s.max_pending_connections as u64,
        ),
        (
            "server.max_connections_per_client",
            s.max_connections_per_client as u64,
        ),
        ("upstream.max_concurrency", u.max_concurrency as u64),
        (
            "lanes.light.max_concurrency",
            c.lanes.light.max_concurrency as u64,
        ),
        (
            "lanes.heavy.max_concurrency",
            c.lanes.heavy.max_concurrency as u64,
        ),
        (
            "rate_limit.requests_per_second",
            c.rate_limit.requests_per_second.into(),
        ),
        ("rate_limit.burst", c.rate_limit.burst.into()),
        (
            "rate_limit.max_concurrent_per_client",
            c.rate_limit.max_concurrent_per_client as u64,
        ),
        (
            "websocket.max_connections_per_client",
            w.max_connections_per_client as u64,
        ),
        ("websocket.max_connections", w.max_connections as u64),
        (
            "websocket.max_subscriptions_per_connection",
            w.max_subscriptions_per_connection as u64,
        ),
        (
            "websocket.messages_per_second",
            w.messages_per_second.into(),
        ),
        ("websocket.message_burst", w.message_burst.into()),
    ];
    for (path, n) in at_least_one {
        check(p, *n >= 1, path, &[], || "must be at least 1".into());
    }
}

fn sizes_meet_minimums(c: &Config, p: &mut Problems) {
    let s = &c.server;
    let u = &c.upstream;
    let w = &c.websocket;
    let minimums: &[(&str, ByteSize, ByteSize, &str)] = &[
        (
            "server.max_body_bytes",
            s.max_body_bytes,
            ByteSize::kib(1),
            "no useful JSON-RPC request is smaller",
        ),
        (
            "server.max_header_bytes",
            s.max_header_bytes,
            ByteSize::kib(8),
            "hyper's HTTP/1 buffer cannot be smaller",
        ),
        (
            "upstream.max_response_bytes",
            u.max_response_bytes,
            ByteSize::kib(1),
            "even /health answers would be cut",
        ),
        (
            "upstream.max_inflight_bytes",
            u.max_inflight_bytes,
            ByteSize::kib(1),
            "every read would wait for the whole budget",
        ),
        (
            "websocket.max_message_bytes",
            w.max_message_bytes,
            ByteSize::kib(1),
            "a subscribe request would not fit",
        ),
    ];
    for (path, value, min, why) in minimums {
        check(p, value >= min, path, &[], || {
            format!("must be at least {min} ({why}), got {value}")
        });
    }
}

/// Limits that only make sense against another one: a part larger than its whole, a
/// wait longer than its deadline.
fn limits_fit_each_other(c: &Config, p: &mut Problems) {
    let s = &c.server;
    let u = &c.upstream;
    check(
        p,
        s.max_uri_bytes <= s.max_header_bytes,
        "server.max_uri_bytes",
        &["server.max_header_bytes"],
        || {
            format!(
                "must not exceed server.max_header_bytes ({}): the URI is part of the head",
                s.max_header_bytes
            )
        },
    );
    check(
        p,
        s.max_pending_connections <= s.max_connections,
        "server.max_pending_connections",
        &["server.max_connections"],
        || {
            format!(
                "must not exceed server.max_connections ({})",
                s.max_connections
            )
        },
    );
    check(
        p,
        u.connect_timeout <= u.timeout,
        "upstream.connect_timeout",
        &["upstream.timeout"],
        || {
            format!(
                "must not exceed upstream.timeout ({}), which already includes connecting",
                super::format_duration(u.timeout)
            )
        },
    );
    for (path, lane) in [
        ("lanes.light.max_concurrency", &c.lanes.light),
        ("lanes.heavy.max_concurrency", &c.lanes.heavy),
    ] {
        check(
            p,
            lane.max_concurrency <= u.max_concurrency,
            path,
            &["upstream.max_concurrency"],
            || {
                format!(
                    "{} exceeds upstream.max_concurrency ({}), which caps all node requests",
                    lane.max_concurrency, u.max_concurrency
                )
            },
        );
    }
}

/// Settings that need another one set, or bounded, to mean anything.
fn settings_depend_on_each_other(c: &Config, p: &mut Problems) {
    check(
        p,
        c.rate_limit.api_keys.is_empty() || c.rate_limit.api_key_header.is_some(),
        "rate_limit.api_keys",
        &["rate_limit.api_key_header"],
        || "set rate_limit.api_key_header to say which header carries the key".into(),
    );
    check(
        p,
        c.cache.max_entry_bytes <= c.cache.max_bytes,
        "cache.max_entry_bytes",
        &["cache.max_bytes"],
        || format!("must not exceed cache.max_bytes ({})", c.cache.max_bytes),
    );
    check(
        p,
        c.head.stall_after > c.head.poll_interval,
        "head.stall_after",
        &["head.poll_interval"],
        || {
            format!(
            "must be longer than head.poll_interval ({}), or readiness would flap between polls",
            super::format_duration(c.head.poll_interval)
        )
        },
    );
}

/// Listeners that would collide, or a node URL that would send requests back in.
fn addresses_do_not_loop(c: &Config, p: &mut Problems) {
    let s = &c.server;
    let u = &c.upstream;
    if let Some(m) = c.metrics.listen {
        check(
            p,
            !same_socket(m, s.listen),
            "metrics.listen",
            &["server.listen"],
            || format!("conflicts with server.listen ({})", s.listen),
        );
    }
    let urls = match u.nodes.is_empty() {
        true => vec![("upstream.url".to_owned(), &u.url)],
        false => (u.nodes.iter().enumerate())
            .map(|(i, n)| (format!("upstream.nodes[{i}].url"), &n.url))
            .collect(),
    };
    for (path, url) in urls {
        check(
            p,
            !points_at(url, s.listen),
            &path,
            &["server.listen"],
            || {
                format!(
            "points at cometgate's own server.listen ({}); move the node to another address or port",
            s.listen
        )
            },
        );
    }
    if let Some(super::HedgeAfter::Fixed(hedge)) = u.hedge_after {
        check(
            p,
            hedge >= Duration::from_millis(1) && hedge < u.timeout,
            "upstream.hedge_after",
            &["upstream.timeout"],
            || {
                format!(
                    "must be at least 1ms and below upstream.timeout ({}); leave it unset to never hedge",
                    super::format_duration(u.timeout)
                )
            },
        );
    }
}

/// Whether binding both would collide: same port, and the same address or
/// a wildcard on either side.
fn same_socket(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() != 0
        && a.port() == b.port()
        && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

/// Whether the upstream URL would send requests back into this proxy. Host
/// names other than "localhost" are not resolved, so they never match.
/// Deliberately narrow: a false alarm would block a working deployment.
fn points_at(url: &http::Uri, listen: SocketAddr) -> bool {
    let Some(host) = url.host() else { return false };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let ip = match host {
        "localhost" => IpAddr::from([127, 0, 0, 1]),
        other => match other.parse::<IpAddr>() {
            Ok(ip) => ip,
            Err(_) => return false,
        },
    };
    // A wildcard listen only captures the upstream's loopback address: any
    // other IP may be another host (a Docker network, a private address).
    let local = listen.ip().is_loopback() || listen.ip().is_unspecified();
    url.port_u16().unwrap_or(80) == listen.port()
        && (ip == listen.ip() || (ip.is_loopback() && local))
}

#[cfg(test)]
#[path = "validate_tests.rs"]
mod tests;
