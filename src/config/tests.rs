//! Whole-file behaviour: the shipped example, round trips, and that every
//! problem is reported with its key path.

use std::time::Duration;

use super::*;

const EXAMPLE: &str = include_str!("../../config/cometgate.toml");

fn errors(text: &str) -> ConfigErrors {
    Config::from_toml_str(text).expect_err("config should be rejected")
}

/// Asserts one error at `path` whose message contains `needle`.
fn assert_error(text: &str, path: &str, needle: &str) {
    let errs = errors(text);
    assert!(
        errs.0
            .iter()
            .any(|e| e.path == path && e.message.contains(needle)),
        "expected `{path}: ..{needle}..` in:\n{errs}"
    );
}

#[test]
fn example_file_is_the_defaults() {
    assert_eq!(Config::from_toml_str(EXAMPLE).unwrap(), Config::default());
}

#[test]
fn empty_file_is_the_defaults() {
    assert_eq!(Config::from_toml_str("").unwrap(), Config::default());
}

#[test]
fn defaults_are_what_the_brief_says() {
    let c = Config::default();
    assert_eq!(c.server.listen.to_string(), "127.0.0.1:26658");
    assert_eq!(c.server.max_body_bytes.as_u64(), 1_000_000);
    assert_eq!(c.server.max_header_bytes.as_u64(), 16 * 1024);
    assert_eq!(c.upstream.url.to_string(), "http://127.0.0.1:26657/");
    assert_eq!(c.upstream.max_response_bytes.as_u64(), 32 * 1024 * 1024);
    assert_eq!(c.cache.max_bytes.as_u64(), 256 * 1024 * 1024);
    assert_eq!(c.cache.code_error_ttl, Duration::ZERO);
    assert_eq!(c.metrics.listen.unwrap().to_string(), "127.0.0.1:9464");
    // The heavy lane adapts to the node below a ceiling (#12); the light one is fixed.
    assert_eq!(c.lanes.heavy.max_concurrency, 16);
    assert!(c.lanes.heavy.adaptive && !c.lanes.light.adaptive);
}

#[test]
fn defaults_round_trip_through_toml() {
    let text = Config::default().to_toml_string();
    assert_eq!(
        Config::from_toml_str(&text).unwrap(),
        Config::default(),
        "{text}"
    );
    assert!(text.contains("max_entry_bytes = \"16 MiB\""), "{text}");
    assert!(text.contains("max_body_bytes = 1000000"), "{text}");
    assert!(text.contains("timeout = \"10s\""), "{text}");
}

#[test]
fn customised_config_round_trips() {
    let text = r#"
        [server]
        listen = "0.0.0.0:26657"
        write_timeout = "1m30s"
        max_body_bytes = "2 MB"
        [upstream]
        url = "tcp://10.0.0.2:26657"
        [rate_limit]
        trusted_proxies = ["10.0.0.1", "192.168.0.0/16"]
        api_key_header = "X-Api-Key"
        [[rate_limit.api_keys]]
        key = "k1"
        requests_per_second = 500
        burst = 2000
        [[rate_limit.api_keys]]
        key = "k2"
        requests_per_second = 5
        burst = 20
        [metrics]
        listen = "off"
        [log]
        format = "json"
        [methods.tx_search]
        max_per_page = 50
        allow_prove = false
        cache_ttl = "250ms"
        lane = "heavy"
        [methods.abci_query]
        path_deny = ["/cosmos.tx.v1beta1.Service/Simulate*"]
        max_data_bytes = "64 KiB"
        [methods.dial_peers]
        allow = false
    "#;
    let c = Config::from_toml_str(text).unwrap();
    assert_eq!(c.server.write_timeout, Duration::from_secs(90));
    assert_eq!(c.server.max_body_bytes.as_u64(), 2_000_000);
    assert_eq!(c.upstream.url.to_string(), "http://10.0.0.2:26657/");
    assert_eq!(
        c.rate_limit.api_key_header.as_ref().unwrap().as_str(),
        "x-api-key"
    );
    assert_eq!(c.rate_limit.api_keys.len(), 2);
    assert_eq!(c.metrics.listen, None);
    assert_eq!(c.log.format, LogFormat::Json);
    assert_eq!(c.methods["tx_search"].lane, Some(Lane::Heavy));
    assert_eq!(
        c.methods["tx_search"].cache_ttl,
        Some(Duration::from_millis(250))
    );
    assert_eq!(
        c.methods["abci_query"].max_data_bytes,
        Some(ByteSize::kib(64))
    );

    let rendered = c.to_toml_string();
    assert_eq!(Config::from_toml_str(&rendered).unwrap(), c, "{rendered}");
}

#[test]
fn unknown_key_bad_duration_and_bad_url_are_all_reported() {
    let errs = errors(
        r#"
        [server]
        lisen = "127.0.0.1:1"
        [upstream]
        url = "ftp://node"
        timeout = "10 parsecs"
    "#,
    );
    assert_eq!(errs.0.len(), 3, "{errs}");
    let text = errs.to_string();
    assert!(
        text.contains("server.lisen: unknown key (expected one of: listen, max_body_bytes, "),
        "{text}"
    );
    assert!(text.contains("did you mean \"listen\""), "{text}");
    assert!(
        text.contains(
            r#"upstream.timeout: invalid duration "10 parsecs": expected e.g. "10s", "250ms""#
        ),
        "{text}"
    );
    assert!(
        text.contains("upstream.url: invalid URL \"ftp://node\""),
        "{text}"
    );
}

#[test]
fn unknown_keys_are_named_at_every_level() {
    assert_error("colour = 1", "colour", "unknown key");
    assert_error(
        "[serve]\nlisten = \"127.0.0.1:1\"",
        "serve",
        "did you mean \"server\"",
    );
    assert_error(
        "[lanes.light]\nmax_queu = 1",
        "lanes.light.max_queu",
        "unknown key",
    );
    assert_error("[lanes.medium]", "lanes.medium", "unknown key");
    assert_error(
        "[methods.tx]\ncots = 2",
        "methods.tx.cots",
        "did you mean \"cost\"",
    );
    assert_error(
        "[rate_limit]\napi_key_header = \"x-api-key\"\n[[rate_limit.api_keys]]\nkey = \"a\"\nrequests_per_second = 1\nburst = 1\nquota = 3",
        "rate_limit.api_keys[0].quota",
        "unknown key",
    );
}

#[test]
fn bad_values_name_their_key() {
    assert_error(
        "[rate_limit]\nclient_ip_header = \"forwarded\"",
        "rate_limit.client_ip_header",
        "x-real-ip",
    );
    assert_error(
        "[server]\nlisten = \"localhost:80\"",
        "server.listen",
        "host names",
    );
    assert_error(
        "[server]\nmax_body_bytes = -1",
        "server.max_body_bytes",
        "negative",
    );
    assert_error(
        "[server]\nmax_body_bytes = \"1.5 MB\"",
        "server.max_body_bytes",
        "fractions",
    );
    assert_error(
        "[server]\nheader_read_timeout = 10",
        "server.header_read_timeout",
        "\"10s\"",
    );
    assert_error(
        "[server]\nmax_connections = \"many\"",
        "server.max_connections",
        "integer",
    );
    assert_error(
        "[upstream]\nurl = \"https://node\"\nca_file = \"/nonexistent/ca.pem\"",
        "upstream.ca_file",
        "cannot read",
    );
    assert_error(
        "[upstream]\nurl = \"http://node/rpc\"",
        "upstream.url",
        "path",
    );
    assert_error(
        "[rate_limit]\nenabled = \"yes\"",
        "rate_limit.enabled",
        "true or false",
    );
    assert_error(
        "[rate_limit]\ntrusted_proxies = [\"nope\"]",
        "rate_limit.trusted_proxies",
        "item 0",
    );
    assert_error(
        "[rate_limit]\napi_key_header = \"bad header\"",
        "rate_limit.api_key_header",
        "header",
    );
    assert_error(
        "[metrics]\nlisten = \"nowhere\"",
        "metrics.listen",
        "\"off\"",
    );
    assert_error("[log]\nformat = \"xml\"", "log.format", "\"json\"");
    assert_error("server = 3", "server", "expected a table");
    assert_error(
        "[methods.tx]\nlane = \"medium\"",
        "methods.tx.lane",
        "\"light\"",
    );
    assert_error("[methods.tx]\ncost = 0", "methods.tx.cost", "at least 1");
    assert_error(
        "[methods.abci_query]\npath_deny = [\"\"]",
        "methods.abci_query.path_deny",
        "empty",
    );
}

#[test]
fn api_key_entries_are_checked() {
    let head = "[rate_limit]\napi_key_header = \"x-api-key\"\n";
    let entry = |k: &str| {
        format!("[[rate_limit.api_keys]]\nkey = \"{k}\"\nrequests_per_second = 1\nburst = 1\n")
    };
    assert_error(
        &format!("{head}{}", entry("")),
        "rate_limit.api_keys[0].key",
        "empty",
    );
    assert_error(
        &format!("{head}{}{}", entry("a"), entry("a")),
        "rate_limit.api_keys[1].key",
        "duplicate",
    );
    assert_error(
        &format!("{head}[[rate_limit.api_keys]]\nkey = \"a\"\nburst = 1\n"),
        "rate_limit.api_keys[0].requests_per_second",
        "missing",
    );
    assert_error(
        &format!("[rate_limit]\napi_key_header = \"\"\n{}", entry("a")),
        "rate_limit.api_keys",
        "api_key_header",
    );
}

#[test]
fn methods_are_checked_against_known_routes_and_cap_scopes() {
    assert_error(
        "[methods.tx_serch]\nallow = false",
        "methods.tx_serch",
        "did you mean \"tx_search\"",
    );
    assert_error(
        "[methods.status]\nmax_per_page = 10",
        "methods.status.max_per_page",
        "tx_search",
    );
    assert_error(
        "[methods.tx]\nmax_range = 10",
        "methods.tx.max_range",
        "blockchain",
    );
    assert_error(
        "[methods.block]\npath_allow = [\"/a\"]",
        "methods.block.path_allow",
        "abci_query",
    );
    assert_error(
        "[methods.tx_search]\nmax_limit = 5",
        "methods.tx_search.max_limit",
        "unconfirmed_txs",
    );
    assert_error("methods = 1", "methods", "expected a table");
    // Every cap field is known on every method: a misplaced cap is a scope
    // error, not an unknown key.
    for (field, value) in [
        ("max_per_page", "1"),
        ("max_page", "1"),
        ("max_query_bytes", "1"),
        ("allow_prove", "true"),
        ("max_height_span", "1"),
        ("max_range", "1"),
        ("max_limit", "1"),
        ("path_allow", "[\"/a\"]"),
        ("path_deny", "[\"/a\"]"),
        ("max_data_bytes", "1"),
    ] {
        let errs = errors(&format!("[methods.health]\n{field} = {value}"));
        assert_eq!(errs.paths(), [format!("methods.health.{field}")], "{errs}");
    }
    let ok = Config::from_toml_str("[methods.validators]\nmax_per_page = 30\nmax_page = 5\n[methods.blockchain]\nmax_range = 20\n[methods.tx]\nallow_prove = false");
    assert!(ok.is_ok(), "{:?}", ok.err());
}

#[test]
fn cross_field_checks() {
    assert_error(
        "[lanes.heavy]\nmax_concurrency = 0",
        "lanes.heavy.max_concurrency",
        "at least 1",
    );
    assert_error(
        "[upstream]\nmax_concurrency = 64\n[lanes.light]\nmax_concurrency = 65",
        "lanes.light.max_concurrency",
        "upstream.max_concurrency",
    );
    assert!(Config::from_toml_str(
        "[lanes.light]\nmax_concurrency = 64\n[lanes.heavy]\nmax_concurrency = 64"
    )
    .is_ok());
    assert_error(
        "[cache]\nmax_bytes = \"1 MiB\"\nmax_entry_bytes = \"2 MiB\"",
        "cache.max_entry_bytes",
        "cache.max_bytes",
    );
    assert_error(
        "[server]\nmax_body_bytes = 100",
        "server.max_body_bytes",
        "at least 1 KiB",
    );
    assert_error(
        "[server]\nmax_batch_size = 0",
        "server.max_batch_size",
        "at least 1",
    );
    assert_error(
        "[server]\nheader_read_timeout = \"0s\"",
        "server.header_read_timeout",
        "at least 1ms",
    );
    assert_error(
        "[upstream]\ntimeout = \"0s\"",
        "upstream.timeout",
        "at least 1ms",
    );
    assert_error(
        "[upstream]\nconnect_timeout = \"0s\"",
        "upstream.connect_timeout",
        "at least 1ms",
    );
    assert_error(
        "[lanes.heavy]\nqueue_timeout = \"500us\"",
        "lanes.heavy.queue_timeout",
        "at least 1ms",
    );
    assert_error(
        "[server]\nshutdown_grace = \"9000h\"",
        "server.shutdown_grace",
        "at most 365 days",
    );
    assert_error(
        "[server]\nmax_connections = 5000000\nmax_pending_connections = 10",
        "server.max_connections",
        "at most 1000000",
    );
    assert_error(
        "[upstream]\ntimeout = \"10s\"\nconnect_timeout = \"20s\"",
        "upstream.connect_timeout",
        "upstream.timeout",
    );
    assert_error(
        "[metrics]\nlisten = \"127.0.0.1:26658\"",
        "metrics.listen",
        "server.listen",
    );
    assert_error(
        "[server]\nlisten = \"0.0.0.0:26657\"",
        "upstream.url",
        "own server.listen",
    );
    assert_error(
        "[head]\npoll_interval = \"1s\"\nstall_after = \"1s\"",
        "head.stall_after",
        "poll_interval",
    );
    assert_error(
        "[server]\nmax_header_bytes = \"16 KiB\"\nmax_uri_bytes = \"32 KiB\"",
        "server.max_uri_bytes",
        "max_header_bytes",
    );
}

#[test]
fn a_bad_value_does_not_cause_a_second_cross_field_error() {
    // The lane limit cannot be compared with an upstream cap that failed.
    let errs =
        errors("[upstream]\nmax_concurrency = \"lots\"\n[lanes.light]\nmax_concurrency = 100");
    assert_eq!(errs.paths(), ["upstream.max_concurrency"], "{errs}");
}

#[test]
fn syntax_and_io_errors_have_empty_paths() {
    let errs = errors("[server\nlisten = 1");
    assert_eq!(errs.paths(), [""]);
    assert!(
        errs.to_string().starts_with("TOML syntax error at line 1"),
        "{errs}"
    );
    let errs = Config::load(std::path::Path::new("/nonexistent/cometgate.toml")).unwrap_err();
    assert_eq!(errs.paths(), [""]);
    assert!(errs
        .to_string()
        .starts_with("cannot read /nonexistent/cometgate.toml"));
}

#[test]
fn api_keys_are_redacted_in_debug_output() {
    let q = ApiKeyQuota {
        key: "sekrit".into(),
        requests_per_second: 1,
        burst: 1,
        max_concurrent_per_client: None,
        max_websocket_connections: None,
    };
    assert!(!format!("{q:?}").contains("sekrit"));
}

#[test]
fn the_node_guard_reads_its_keys_and_checks_them_together() {
    let c = Config::from_toml_str(
        "[node_guard]\nmetrics_url = \"http://127.0.0.1:26660/metrics\"\n\
         memory_limit = \"8 GiB\"\nshed_above = 0.9\nresume_below = 0.8\n",
    )
    .unwrap();
    assert_eq!(c.node_guard.memory_limit, Some(ByteSize::gib(8)));
    assert_eq!(
        c.node_guard.metrics_url.unwrap().path(),
        "/metrics",
        "the path is kept"
    );
    assert_error(
        "[node_guard]\nmetrics_url = \"http://127.0.0.1:26660/metrics\"\n",
        "node_guard.memory_limit",
        "node_guard.metrics_url",
    );
    // Both set and in conflict; a shed_above set alone moves the default resume_below.
    assert_error(
        "[node_guard]\nshed_above = 0.7\nresume_below = 0.8\n",
        "node_guard.resume_below",
        "node_guard.shed_above",
    );
    assert_error(
        "[node_guard]\nshed_above = 1.5\n",
        "node_guard.shed_above",
        "fraction",
    );
    assert_error(
        "[node_guard]\nmetrics_url = \"https://n:26660/metrics\"\n",
        "node_guard.metrics_url",
        "http://",
    );
}

#[test]
fn a_lanes_floor_may_not_pass_its_ceiling() {
    assert_error(
        "[lanes.heavy]\nmin_concurrency = 8\nmax_concurrency = 4\n",
        "lanes.heavy.min_concurrency",
        "lanes.heavy.max_concurrency",
    );
    assert_error(
        "[lanes.heavy]\nmin_concurrency = 0\n",
        "lanes.heavy.min_concurrency",
        "at least 1",
    );
    // A ceiling set below the default floor of 1 is its own error, not the floor's.
    let c =
        Config::from_toml_str("[lanes.heavy]\nmax_concurrency = 2\nadaptive = false\n").unwrap();
    assert_eq!(
        (c.lanes.heavy.max_concurrency, c.lanes.heavy.adaptive),
        (2, false)
    );
}

#[test]
fn an_api_key_may_carry_its_own_caps() {
    let c = Config::from_toml_str(
        "[rate_limit]\napi_key_header = \"x-api-key\"\n[[rate_limit.api_keys]]\nkey = \"lcd\"\n\
         requests_per_second = 1000\nburst = 4000\nmax_concurrent_per_client = 128\n\
         max_websocket_connections = 50\n",
    )
    .unwrap();
    let q = &c.rate_limit.api_keys[0];
    assert_eq!(
        (q.max_concurrent_per_client, q.max_websocket_connections),
        (Some(128), Some(50))
    );
    assert_error(
        "[rate_limit]\napi_key_header = \"x-api-key\"\n[[rate_limit.api_keys]]\nkey = \"lcd\"\n\
         requests_per_second = 1\nburst = 100\nmax_concurrent_per_client = 0\n",
        "rate_limit.api_keys[0].max_concurrent_per_client",
        "at least 1",
    );
}

#[test]
fn a_ca_file_must_hold_pem_certificates() {
    let dir = std::env::temp_dir();
    let empty = dir.join(format!("cometgate-empty-ca-{}.pem", std::process::id()));
    std::fs::write(&empty, "not a certificate\n").unwrap();
    let text = format!(
        "[upstream]\nurl = \"https://node\"\nca_file = {:?}",
        empty.display().to_string()
    );
    assert_error(&text, "upstream.ca_file", "no certificate");
    let _ = std::fs::remove_file(&empty);
}
