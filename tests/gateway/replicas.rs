//! Replicas as operators run them: separate `cometgate` processes in front of one
//! simulated node, sharing one real `redis-server`. An answer that never changes costs
//! the node one call whichever replicas are asked, and a client spread over the
//! replicas is held to its rate once, not once per replica.

use std::time::{Duration, Instant};

use bytes::Bytes;
use cometgate_sim::{SimNode, SimNodeConfig};
use http::{Method, StatusCode};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::cli::{free_port, start_gateway, temp_config, tempfile_path::TempPath, Running};
use crate::shared::Redis;
use crate::support::*;

type Http = Client<HttpConnector, http_body_util::Full<Bytes>>;

/// One `cometgate` process in front of `node`, sharing through `redis`.
struct Replica {
    _process: Running,
    _config: TempPath,
    port: u16,
    ops: u16,
}

impl Replica {
    async fn start(node: &SimNode, redis: &Redis, extra: &str) -> Replica {
        let (port, ops) = (free_port(), free_port());
        let config = temp_config(&format!(
            "[metrics]\nlisten = \"127.0.0.1:{ops}\"\n[log]\naccess_log = false\n\
             [shared]\nredis_url = \"{}\"\n\
             # A loaded CI host can take longer than the 20 ms default; the outcome is\n\
             # what is tested here, not Redis's speed.\n\
             timeout = \"500ms\"\n{extra}",
            redis.url()
        ));
        let process = start_gateway(&config, port, &node.url()).await;
        Replica {
            _process: process,
            _config: config,
            port,
            ops,
        }
    }

    async fn get(&self, http: &Http, path: &str) -> Reply {
        let url = format!("http://127.0.0.1:{}{path}", self.port);
        send(http, Method::GET, &url, Bytes::new(), &[]).await
    }

    async fn metric(&self, http: &Http, name: &str, labels: &[&str]) -> f64 {
        let url = format!("http://127.0.0.1:{}/metrics", self.ops);
        let reply = send(http, Method::GET, &url, Bytes::new(), &[]).await;
        metric_value(&String::from_utf8_lossy(&reply.body), name, labels).unwrap_or(0.0)
    }

    /// At least one answer went from this replica to Redis.
    async fn has_shared(&self, http: &Http) -> bool {
        let stored = ["op=\"set\"", "outcome=\"stored\""];
        self.metric(http, "cometgate_shared_operations_total", &stored)
            .await
            >= 1.0
    }

    async fn reaches_redis(&self, http: &Http) {
        eventually("the replica reaches Redis", || async {
            self.metric(http, "cometgate_shared_up", &[]).await == 1.0
        })
        .await;
    }
}

fn http() -> Http {
    Client::builder(TokioExecutor::new()).build_http()
}

/// One frozen node, one Redis, and two replicas in front of the node that reach it.
async fn two_replicas() -> (SimNode, Redis, Http, Replica, Replica) {
    let (node, redis, http) = (
        frozen_node(SimNodeConfig::default()).await,
        Redis::start().await,
        http(),
    );
    let a = Replica::start(&node, &redis, "").await;
    let b = Replica::start(&node, &redis, "").await;
    a.reaches_redis(&http).await;
    b.reaches_redis(&http).await;
    (node, redis, http, a, b)
}

#[tokio::test]
async fn a_second_replica_serves_what_the_first_fetched_and_the_node_is_asked_once() {
    let (node, _redis, http, a, b) = two_replicas().await;
    let first = a.get(&http, "/block?height=3").await;
    assert_eq!((first.status, first.cache()), (StatusCode::OK, "miss"));
    eventually("the answer is shared", || a.has_shared(&http)).await;
    let second = b.get(&http, "/block?height=3").await;
    assert_eq!((second.status, second.cache()), (StatusCode::OK, "shared"));
    assert_eq!(rpc_view(&second.json()), rpc_view(&first.json()));
    assert_eq!(
        b.get(&http, "/block?height=3").await.cache(),
        "hit",
        "kept locally too"
    );
    assert_eq!(
        node.stats().per_request.get("block(height=3)"),
        Some(&1),
        "one node call for the question, through two replicas"
    );
    // "Latest" answers are never shared: replicas see blocks at different moments.
    assert_eq!(a.get(&http, "/status").await.cache(), "miss");
    assert_eq!(b.get(&http, "/status").await.cache(), "miss");
}

/// Each replica charges the client's bucket with what the others admitted for it.
#[tokio::test]
async fn a_client_spread_over_three_replicas_gets_its_rate_once_not_three_times() {
    const RATE: u32 = 50;
    const BURST: u32 = 10;
    let (node, redis, http) = (
        frozen_node(SimNodeConfig::default()).await,
        Redis::start().await,
        http(),
    );
    let limits = format!(
        "[rate_limit]\nlocal_clients = \"limited\"\nrequests_per_second = {RATE}\nburst = {BURST}\n"
    );
    let mut replicas = Vec::new();
    for _ in 0..3 {
        let r = Replica::start(&node, &redis, &limits).await;
        r.reaches_redis(&http).await;
        replicas.push(r);
    }
    let started = Instant::now();
    let mut admitted = 0u32;
    // Round robin, as a load balancer spreads one client, far faster than its rate.
    while started.elapsed() < Duration::from_secs(3) {
        for r in &replicas {
            let reply = r.get(&http, "/status").await;
            match reply.status {
                StatusCode::OK => admitted += 1,
                StatusCode::TOO_MANY_REQUESTS => {}
                other => panic!("{other}: {}", String::from_utf8_lossy(&reply.body)),
            }
        }
    }
    let allowed = f64::from(BURST) + f64::from(RATE) * started.elapsed().as_secs_f64();
    let ratio = f64::from(admitted) / allowed;
    eprintln!("admitted {admitted} where one replica allows {allowed:.0}: {ratio:.2}x");
    // Each replica starts with a full bucket of its own, and they hear of each other
    // every 100 ms: some overshoot is the design (1.14-1.20 measured here). Three
    // times is what sharing removes.
    assert!(
        ratio <= 1.5,
        "{admitted} admitted where the rate allows {allowed:.0}"
    );
    assert!(
        ratio >= 0.7,
        "the client still gets its rate: {admitted} of {allowed:.0}"
    );
}

/// Redis killed under load: no client of either replica sees an error, and none waits
/// longer than `shared.timeout` beyond its usual latency; Redis back: the replicas share
/// again, without a restart.
#[tokio::test]
async fn redis_killed_under_load_costs_no_errors_and_back_it_shares_again() {
    let (_node, mut redis, http, a, b) = two_replicas().await;
    redis.kill();
    // Questions that never change, none asked before (the frozen node's head is 10).
    let mut fresh = ["block", "block_results", "header", "validators"]
        .into_iter()
        .flat_map(|m| (2..10).map(move |h| format!("/{m}?height={h}")));
    for (i, path) in fresh.by_ref().take(16).enumerate() {
        let replica = if i % 2 == 0 { &a } else { &b };
        let started = Instant::now();
        let reply = replica.get(&http, &path).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}");
        // shared.timeout is 500 ms here; the usual latency is a few ms. Loose on purpose:
        // what it rules out is a request held for a reconnect or a TCP timeout.
        assert!(started.elapsed() < Duration::from_secs(2), "{path}");
    }
    redis.restart().await;
    // A lookup that failed makes the next ones skip Redis until something succeeds: a
    // PING answered after the restart, on both, is that success.
    let pinged = ["op=\"ping\"", "outcome=\"ok\""];
    let before = (
        a.metric(&http, "cometgate_shared_operations_total", &pinged)
            .await,
        b.metric(&http, "cometgate_shared_operations_total", &pinged)
            .await,
    );
    eventually("both replicas have a PING answered", || async {
        a.metric(&http, "cometgate_shared_operations_total", &pinged)
            .await
            > before.0
            && b.metric(&http, "cometgate_shared_operations_total", &pinged)
                .await
                > before.1
    })
    .await;
    let path = fresh.next().expect("a question left");
    assert_eq!(a.get(&http, &path).await.cache(), "miss");
    eventually("the answer is shared again", || a.has_shared(&http)).await;
    assert_eq!(b.get(&http, &path).await.cache(), "shared", "{path}");
}
