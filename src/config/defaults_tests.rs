use std::time::Duration;

use crate::config::{ByteSize, Config};

fn parse(text: &str) -> Config {
    Config::from_toml_str(text).unwrap_or_else(|e| panic!("{text:?} refused:\n{e}"))
}

/// Both keys named: two values the user set that conflict are still refused.
fn refused(text: &str, path: &str, other: &str) {
    let errs = Config::from_toml_str(text).expect_err(text);
    assert!(
        errs.0
            .iter()
            .any(|e| e.path == path && e.message.contains(other)),
        "expected {path} naming {other} in:\n{errs}"
    );
}

#[test]
fn a_short_timeout_alone_takes_the_connect_timeout_down_with_it() {
    let c = parse("[upstream]\ntimeout = \"300ms\"");
    assert_eq!(c.upstream.timeout, Duration::from_millis(300));
    assert_eq!(c.upstream.connect_timeout, Duration::from_millis(300));
    // A long one leaves the 2 s default alone.
    let c = parse("[upstream]\ntimeout = \"60s\"");
    assert_eq!(c.upstream.connect_timeout, Duration::from_secs(2));
    // A long connect timeout alone takes the whole request's up with it.
    let c = parse("[upstream]\nconnect_timeout = \"20s\"");
    assert_eq!(c.upstream.timeout, Duration::from_secs(20));
    refused(
        "[upstream]\ntimeout = \"300ms\"\nconnect_timeout = \"2s\"",
        "upstream.connect_timeout",
        "upstream.timeout",
    );
}

#[test]
fn lanes_follow_a_smaller_node_cap_and_the_cap_follows_a_bigger_lane() {
    let c = parse("[upstream]\nmax_concurrency = 8");
    assert_eq!(
        (c.lanes.light.max_concurrency, c.lanes.heavy.max_concurrency),
        (8, 8)
    );
    let c = parse("[lanes.light]\nmax_concurrency = 100");
    assert_eq!(c.upstream.max_concurrency, 100);
    // A floor above the default ceiling lifts the ceiling, and the node cap with it.
    let c = parse("[lanes.heavy]\nmin_concurrency = 80");
    assert_eq!(c.lanes.heavy.max_concurrency, 80);
    assert_eq!(c.upstream.max_concurrency, 80);
    let c = parse("[lanes.heavy]\nmax_concurrency = 1");
    assert_eq!(c.lanes.heavy.min_concurrency, 1);
    refused(
        "[upstream]\nmax_concurrency = 8\n[lanes.light]\nmax_concurrency = 9",
        "lanes.light.max_concurrency",
        "upstream.max_concurrency",
    );
    refused(
        "[lanes.heavy]\nmin_concurrency = 5\nmax_concurrency = 4",
        "lanes.heavy.min_concurrency",
        "lanes.heavy.max_concurrency",
    );
}

#[test]
fn server_sizes_and_connection_counts_give_way() {
    let c = parse("[server]\nmax_uri_bytes = \"32 KiB\"");
    assert_eq!(c.server.max_header_bytes, ByteSize::kib(32));
    let c = parse("[server]\nmax_connections = 100");
    assert_eq!(c.server.max_pending_connections, 100);
    let c = parse("[server]\nmax_pending_connections = 5000");
    assert_eq!(c.server.max_connections, 5000);
    refused(
        "[server]\nmax_uri_bytes = \"32 KiB\"\nmax_header_bytes = \"16 KiB\"",
        "server.max_uri_bytes",
        "server.max_header_bytes",
    );
    refused(
        "[server]\nmax_connections = 100\nmax_pending_connections = 200",
        "server.max_pending_connections",
        "server.max_connections",
    );
}

#[test]
fn cache_head_and_guard_pairs_give_way() {
    let c = parse("[cache]\nmax_bytes = \"8 MiB\"");
    assert_eq!(c.cache.max_entry_bytes, ByteSize::mib(8));
    let c = parse("[cache]\nmax_entry_bytes = \"1 GiB\"");
    assert_eq!(c.cache.max_bytes, ByteSize::gib(1));
    refused(
        "[cache]\nmax_bytes = \"8 MiB\"\nmax_entry_bytes = \"16 MiB\"",
        "cache.max_entry_bytes",
        "cache.max_bytes",
    );

    let c = parse("[head]\npoll_interval = \"60s\"");
    assert_eq!(c.head.stall_after, Duration::from_secs(120));
    let c = parse("[head]\nstall_after = \"1s\"");
    assert_eq!(c.head.poll_interval, Duration::from_millis(500));
    refused(
        "[head]\nstall_after = \"1s\"\npoll_interval = \"1s\"",
        "head.stall_after",
        "head.poll_interval",
    );

    let c = parse("[node_guard]\nshed_above = 0.7");
    assert!((c.node_guard.resume_below - 0.6).abs() < 1e-9);
    let c = parse("[node_guard]\nresume_below = 0.9");
    assert!((c.node_guard.shed_above - 1.0).abs() < 1e-9);
    refused(
        "[node_guard]\nshed_above = 0.7\nresume_below = 0.8",
        "node_guard.resume_below",
        "node_guard.shed_above",
    );
}

#[test]
fn api_keys_without_a_header_read_the_conventional_one() {
    let keys = "[[rate_limit.api_keys]]\nkey = \"k\"\nrequests_per_second = 1\nburst = 50\n";
    let c = parse(&format!("[rate_limit]\n{keys}"));
    assert_eq!(
        c.rate_limit.api_key_header.as_ref().map(|h| h.as_str()),
        Some("x-api-key")
    );
    // "" says keys are off: with keys listed, that is the user's own conflict.
    refused(
        &format!("[rate_limit]\napi_key_header = \"\"\n{keys}"),
        "rate_limit.api_keys",
        "rate_limit.api_key_header",
    );
}
