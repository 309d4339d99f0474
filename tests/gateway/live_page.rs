//! The operator's live view: `/admin/state` says who costs the node, the page at `/`
//! shows it in a real browser, and both are kept to the admin rule.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cometgate_sim::{Fault, SimNodeConfig};
use http::{Method, StatusCode};
use http_body_util::Full;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::task::JoinHandle;

use crate::support::*;

type Http = Client<HttpConnector, Full<Bytes>>;

/// The address every flood in these tests comes from.
const FLOODER: &str = "127.0.0.66";
const FLOOD_CALLS: u64 = 24;

/// A client of its own loopback address, so that the gateway tells it apart.
fn client_at(ip: &str) -> Http {
    let mut connector = HttpConnector::new();
    connector.set_local_address(Some(ip.parse().expect("an address")));
    Client::builder(TokioExecutor::new()).build(connector)
}

fn call(id: u64, method: &str, params: Value) -> Bytes {
    Bytes::from(json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}).to_string())
}

/// Each call a different `tx_search`, so none is answered from the cache.
fn search(i: u64) -> Bytes {
    call(
        i,
        "tx_search",
        json!({"query": format!("tx.height>={}", i + 1), "per_page": "5"}),
    )
}

async fn state(h: &Harness) -> Value {
    let r = h.ops(Method::GET, "/admin/state", "").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.headers["content-type"], "application/json");
    r.json()
}

#[tokio::test]
async fn admin_state_names_the_client_that_costs_the_node() {
    let h = spawn_gateway_with(SimNodeConfig::default(), |_| {}).await;
    // The flooder's five searches take at least 250 ms of node time; the quiet client's
    // one `block` a millisecond or so, and under 25 ms even on a loaded CI host (at 20 ms
    // a search, a busy host once stretched that one call past a tenth of the total).
    h.node
        .set_fault_for("tx_search", Fault::Slow(Duration::from_millis(50)));
    let (url, quiet, heavy) = (h.url(), client_at("127.0.0.2"), client_at(FLOODER));
    for i in 0..3 {
        let r = send(
            &quiet,
            Method::POST,
            &url,
            call(i, "block", json!({"height": "2"})),
            &[],
        )
        .await;
        assert_eq!(r.status, StatusCode::OK);
    }
    let denied = call(9, "dump_consensus_state", json!({}));
    send(&quiet, Method::POST, &url, denied, &[]).await;
    for i in 0..5 {
        send(&heavy, Method::POST, &url, search(i), &[]).await;
    }

    let top = tokio::process::Command::new(env!("CARGO_BIN_EXE_cometgate"))
        .args(["top", "--once", "--url", &format!("http://{}", h.ops_addr)])
        .output()
        .await
        .expect("cometgate top runs");
    let screen = String::from_utf8_lossy(&top.stdout);
    assert!(
        top.status.success(),
        "{}",
        String::from_utf8_lossy(&top.stderr)
    );
    let first_client = screen
        .lines()
        .skip_while(|l| !l.starts_with("client"))
        .nth(1);
    assert!(first_client.unwrap_or("").starts_with(FLOODER), "{screen}");

    let s = state(&h).await;
    let node = &s["nodes"][0];
    assert_eq!(node["up"], true, "{node}");
    assert_eq!(node["head_height"], h.node.height());
    assert_eq!(
        (&node["breaker"], &node["guard"]["state"]),
        (&json!("closed"), &json!("off"))
    );
    assert!(node["latency_p99_seconds"].as_f64().unwrap() >= 0.02);

    let top = &s["clients"]["top"];
    assert_eq!(top[0]["client"], FLOODER, "{top}");
    assert_eq!(top[0]["node_calls"], 5);
    assert!(top[0]["node_seconds"].as_f64().unwrap() >= 0.25);
    assert!(top[0]["share"].as_f64().unwrap() > 0.9);
    assert_eq!(
        (&top[1]["client"], &top[1]["refusals"]),
        (&json!("127.0.0.2"), &json!(1))
    );

    let lanes = s["lanes"].as_array().unwrap();
    let names: Vec<_> = lanes.iter().map(|l| l["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["light", "heavy"]);
    assert!(lanes.iter().all(|l| l["limit"].as_u64().unwrap() > 0));
    let denials: u64 = lanes
        .iter()
        .filter_map(|l| l["refusals"]["denied"].as_u64())
        .sum();
    assert_eq!(denials, 1);
    assert!(lanes[1]["waits"].as_u64().unwrap() >= 5);

    let cache = &s["cache"];
    let count = |k: &str| cache[k].as_u64().unwrap() as f64;
    assert_eq!(count("hits"), 2.0, "{cache}");
    let ratio = count("hits") / (count("hits") + count("misses") + count("coalesced"));
    assert_eq!(cache["hit_ratio"].as_f64(), Some(ratio));
    assert_eq!(
        cache["max_bytes"],
        h.gateway.config().cache.max_bytes.as_u64()
    );
    assert_eq!(s["history"]["step_seconds"], 5.0);
    h.shutdown().await;
}

#[tokio::test]
async fn the_page_is_served_from_the_binary_and_locked_like_admin() {
    let h = spawn_gateway().await;
    let page = h.ops(Method::GET, "/", "").await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(page.headers["content-type"], "text/html; charset=utf-8");
    assert!(page.headers["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("default-src 'none'"));
    let html = String::from_utf8_lossy(&page.body);
    assert!(html.contains("Top clients by node time"));
    for asset in ["/assets/live.js", "/assets/live.css"] {
        assert!(html.contains(asset));
        assert_eq!(h.ops(Method::GET, asset, "").await.status, StatusCode::OK);
    }
    // Off loopback with no token set, the page is shut as the admin routes are.
    let port = spawn_wide_ops(&h).await;
    let http = Client::builder(TokioExecutor::new()).build_http();
    for path in ["/", "/assets/live.js", "/admin/state"] {
        let url = format!("http://127.0.0.1:{port}{path}");
        let r = send(&http, Method::GET, &url, Bytes::new(), &[]).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{path}");
    }
    h.shutdown().await;

    let h = spawn_gateway_with(SimNodeConfig::default(), |c| {
        c.metrics.admin_token = Some("s3cret".into());
    })
    .await;
    let url = |path: &str| format!("http://{}{path}", h.ops_addr);
    let http = Client::builder(TokioExecutor::new()).build_http();
    let get = |path: &'static str, auth: &'static str| {
        let (http, url) = (http.clone(), url(path));
        async move {
            let headers: &[(&str, &str)] = if auth.is_empty() {
                &[]
            } else {
                &[("authorization", auth)]
            };
            send(&http, Method::GET, &url, Bytes::new(), headers).await
        }
    };
    let refused = get("/", "").await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    assert!(refused.headers["www-authenticate"]
        .to_str()
        .unwrap()
        .starts_with("Basic"));
    assert_eq!(
        get("/admin/state", "").await.status,
        StatusCode::UNAUTHORIZED
    );
    // A browser's Basic password ("operator:s3cret"), and a script's bearer token.
    assert_eq!(
        get("/", "Basic b3BlcmF0b3I6czNjcmV0").await.status,
        StatusCode::OK
    );
    assert_eq!(
        get("/admin/state", "Basic b3BlcmF0b3I6czNjcmV0")
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        get("/admin/state", "Bearer s3cret").await.status,
        StatusCode::OK
    );
    assert_eq!(
        get("/", "Basic b3BlcmF0b3I6d3Jvbmc=").await.status,
        StatusCode::UNAUTHORIZED
    );
    h.shutdown().await;
}

/// Three ordinary clients, each a few cheap calls and the odd search a second.
fn ordinary_load(h: &Harness, stop: &Arc<AtomicBool>) -> Vec<JoinHandle<()>> {
    (2..5u8)
        .map(|last| {
            let (url, stop) = (h.url(), stop.clone());
            let http = client_at(&Ipv4Addr::new(127, 0, 0, last).to_string());
            tokio::spawn(async move {
                let mut i = u64::from(last) * 1_000_000;
                while !stop.load(Ordering::Relaxed) {
                    let body = match i % 10 {
                        0 => search(i),
                        n if n % 2 == 0 => call(i, "status", json!({})),
                        n => call(i, "block", json!({"height": (n % 3 + 1).to_string()})),
                    };
                    send(&http, Method::POST, &url, body, &[]).await;
                    i += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            })
        })
        .collect()
}

/// More searches at a time from one address than the heavy lane runs (16), as fast as
/// they are answered.
fn flood(h: &Harness, stop: &Arc<AtomicBool>) -> Vec<JoinHandle<()>> {
    (0..FLOOD_CALLS)
        .map(|lane| {
            let (url, stop, http) = (h.url(), stop.clone(), client_at(FLOODER));
            tokio::spawn(async move {
                let mut i = 500_000_000 + lane;
                while !stop.load(Ordering::Relaxed) {
                    send(&http, Method::POST, &url, search(i), &[]).await;
                    i += FLOOD_CALLS;
                }
            })
        })
        .collect()
}

/// What the browser test needs from the machine; `.ci/run` installs all of it.
fn browser_tools() -> (PathBuf, PathBuf) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    let chromium = PathBuf::from(
        std::env::var("CHROMIUM_PATH").unwrap_or_else(|_| "/usr/bin/chromium".into()),
    );
    assert!(
        chromium.exists(),
        "the live page's browser test needs Chromium at {} (apt-get install -y chromium, \
         or set CHROMIUM_PATH); .ci/run installs it",
        chromium.display()
    );
    assert!(
        dir.join("node_modules/playwright-core").exists(),
        "the live page's browser test needs playwright-core: (cd tests/browser && npm ci); \
         .ci/run does this"
    );
    (dir.join("live.mjs"), chromium)
}

#[tokio::test]
async fn the_live_page_in_a_browser_fills_in_updates_and_shows_a_flood_on_top() {
    let (script, chromium) = browser_tools();
    let h = spawn_gateway_with(SimNodeConfig::default(), |_| {}).await;
    h.node
        .set_fault_for("tx_search", Fault::Slow(Duration::from_millis(30)));
    let stop = Arc::new(AtomicBool::new(false));
    let mut load = ordinary_load(&h, &stop);
    let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("live-page.png");
    let mut child = tokio::process::Command::new("node")
        .arg(&script)
        .arg(format!("http://{}/", h.ops_addr))
        .arg(FLOODER)
        .arg(&shot)
        .env("CHROMIUM_PATH", &chromium)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| {
            panic!("the live page's browser test needs Node.js (`node`) on PATH: {e}")
        });
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut stderr = child.stderr.take().expect("stderr");
    let mut blocks = tokio::time::interval(Duration::from_millis(500));
    let deadline = tokio::time::sleep(Duration::from_secs(90));
    tokio::pin!(deadline);
    let mut said = Vec::new();
    let status = loop {
        tokio::select! {
            line = lines.next_line() => match line.expect("the script's output") {
                Some(line) => {
                    if line == "filled" {
                        load.extend(flood(&h, &stop));
                    }
                    said.push(line);
                }
                None => break child.wait().await.expect("the script ends"),
            },
            _ = blocks.tick() => h.node.advance_block(),
            _ = &mut deadline => panic!("the browser script took over 90 s; it said {said:?}"),
        }
    };
    stop.store(true, Ordering::Relaxed);
    let mut why = String::new();
    let _ = stderr.read_to_string(&mut why).await;
    assert!(
        status.success(),
        "the browser checks failed: {why}\nit said: {said:?}"
    );
    assert!(
        said.iter().any(|l| l.starts_with("flooder on top")),
        "{said:?}"
    );
    println!("screenshot of the live page: {}", shot.display());
    for task in load {
        let _ = tokio::time::timeout(DEADLINE, task).await;
    }
    h.shutdown().await;
}
