//! The config files shipped in the repository, and configs a user writes naturally,
//! through the binary as an operator runs it.

use std::process::Stdio;

use cometgate::config::{Config, LocalClients};
use cometgate_sim::SimNodeConfig;
use http::{Method, StatusCode};

use crate::cli::{cometgate, free_port, listening, start_gateway, temp_config, Running};
use crate::support::*;

/// `--check-config` on a file: its exit status, the effective config it printed, and
/// what it said on stderr.
fn check_config(path: &str) -> (bool, String, String) {
    let out = cometgate()
        .args(["--check-config", "--config", path])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn every_shipped_config_passes_check_config_without_warnings() {
    let files = [
        "config/cometgate.toml",
        "config/docker.toml",
        "config/docker-replicas.toml",
        "config/examples/lcd-sidecar.toml",
        "config/examples/public-rpc.toml",
        "config/examples/sentry.toml",
    ];
    let mut effective = Vec::new();
    for file in files {
        let (ok, stdout, stderr) = check_config(file);
        assert!(ok, "{file} refused:\n{stderr}");
        assert_eq!(stderr, "", "{file} warns");
        let config = Config::from_toml_str(&stdout).expect("the printed config parses back");
        effective.push(config);
    }
    let [shipped, docker, replicas, lcd, public, sentry] = &effective[..] else {
        unreachable!()
    };
    // What each file is for.
    assert_eq!(shipped, &Config::default());
    assert_eq!(
        replicas.shared.redis_url.as_deref(),
        Some("redis://redis:6379"),
        "the replicas share through the compose file's Redis"
    );
    // The replicas' compose file runs one node, the single container's two.
    let one_node = |c: &Config| cometgate::config::UpstreamConfig {
        nodes: Vec::new(),
        url: c.upstream.node_list()[0].url.clone(),
        ..c.upstream.clone()
    };
    assert_eq!(
        (one_node(replicas), &replicas.rate_limit, &replicas.server),
        (one_node(docker), &docker.rate_limit, &docker.server),
        "a replica is the single container plus the shared Redis"
    );
    assert_eq!(docker.upstream.node_list().len(), 2);
    assert_eq!(shipped.rate_limit.local_clients, LocalClients::Unlimited);
    let key = &lcd.rate_limit.api_keys[0];
    assert_eq!(lcd.rate_limit.local_clients, LocalClients::Limited);
    assert!(key.max_concurrent_per_client >= Some(64), "{key:?}");
    assert!(key.burst > 20 * 64, "a page of searches fits: {key:?}");
    assert_eq!(public.rate_limit.local_clients, LocalClients::Limited);
    assert!(!public.rate_limit.trusted_proxies.is_empty());
    let allowed = |c: &Config, m: &str| c.methods.get(m).and_then(|o| o.allow) != Some(false);
    for denied in ["tx_search", "block_results", "genesis", "consensus_state"] {
        assert!(!allowed(sentry, denied), "the sentry serves {denied}");
    }
    for kept in ["status", "abci_query", "broadcast_tx_sync", "validators"] {
        assert!(allowed(sentry, kept), "the sentry refuses {kept}");
    }
}

#[tokio::test]
async fn a_short_upstream_timeout_alone_starts_and_serves() {
    let (ok, stdout, stderr) = {
        let file = temp_config("[upstream]\ntimeout = \"300ms\"\n");
        check_config(&file.0.to_string_lossy())
    };
    assert!(ok, "refused:\n{stderr}");
    assert!(stdout.contains("connect_timeout = \"300ms\""), "{stdout}");

    let node = frozen_node(SimNodeConfig::default()).await;
    let file = temp_config("[upstream]\ntimeout = \"300ms\"\n[metrics]\nlisten = \"off\"\n");
    let port = free_port();
    let _gateway = start_gateway(&file, port, &node.url()).await;
    let http = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http();
    let r = send(
        &http,
        Method::GET,
        &format!("http://127.0.0.1:{port}/block?height=3"),
        bytes::Bytes::new(),
        &[],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn a_burst_below_genesis_starts_with_a_warning_and_answers_genesis_with_a_clear_429() {
    let text = "[rate_limit]\nlocal_clients = \"limited\"\nrequests_per_second = 2\nburst = 4\n\
                [metrics]\nlisten = \"off\"\n";
    let file = temp_config(text);
    let (ok, stdout, stderr) = check_config(&file.0.to_string_lossy());
    assert!(ok, "a warning is no reason to refuse:\n{stderr}");
    assert!(stdout.contains("burst = 4"), "{stdout}");
    for needle in ["rate_limit.burst", "genesis (20)", "allow = false"] {
        assert!(stderr.contains(needle), "{needle} not in:\n{stderr}");
    }

    let node = frozen_node(SimNodeConfig::default()).await;
    let port = free_port();
    let log = std::env::temp_dir().join(format!("cometgate-burst-{}.log", std::process::id()));
    let _gateway = cometgate()
        .arg("--config")
        .arg(&file.0)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--upstream", &node.url()])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .spawn()
        .map(|c| Running(Some(c)))
        .expect("starts");
    listening(port).await;
    let logged = std::fs::read_to_string(&log).unwrap_or_default();
    let _ = std::fs::remove_file(&log);
    assert!(
        logged.contains("config warning") && logged.contains("genesis (20)"),
        "{logged}"
    );

    let http = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http();
    let url = format!("http://127.0.0.1:{port}/");
    let post = |method: &str| {
        let body = format!(r#"{{"jsonrpc":"2.0","id":7,"method":"{method}"}}"#);
        send(&http, Method::POST, &url, bytes::Bytes::from(body), &[])
    };
    let r = post("genesis").await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(
        !r.headers.contains_key("retry-after"),
        "no wait would ever admit it"
    );
    let v = r.json();
    assert_eq!(v["id"], 7);
    assert_eq!(v["error"]["code"], -32000);
    let data = v["error"]["data"].as_str().unwrap_or_default();
    assert!(data.contains("can never fit"), "{data}");
    assert!(data.contains("rate_limit.burst = 4"), "{data}");
    // What fits the burst is served.
    assert_eq!(post("status").await.status, StatusCode::OK);
    assert_eq!(node.requests_for("genesis"), 0);
}
