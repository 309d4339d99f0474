//! One replica and a real `redis-server`: Redis going away costs no client an error,
//! coming back shares again, and `on_error = "deny"` refuses only while it is away.
//! (Several replicas, as processes: `replicas.rs`.) `.ci/test` installs redis-server;
//! without it these tests fail, loudly.

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use cometgate_sim::SimNodeConfig;
use http::StatusCode;

use crate::cli::free_port;
use crate::support::*;

/// A `redis-server` on a port of its own, without persistence; killed on drop.
pub(crate) struct Redis {
    port: u16,
    child: Option<Child>,
}

impl Redis {
    pub(crate) async fn start() -> Redis {
        let mut redis = Redis {
            port: free_port(),
            child: None,
        };
        redis.restart().await;
        redis
    }

    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub(crate) fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port, and waits until it answers.
    pub(crate) async fn restart(&mut self) {
        self.kill();
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect(
                "redis-server is not installed: .ci/run installs it (apt-get install redis-server)",
            );
        self.child = Some(child);
        let port = self.port;
        eventually("redis-server accepts connections", || {
            std::future::ready(TcpStream::connect(("127.0.0.1", port)).is_ok())
        })
        .await;
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

async fn replica(redis_url: &str) -> Harness {
    let url = redis_url.to_owned();
    spawn_gateway_with(SimNodeConfig::default(), move |c| {
        c.shared.redis_url = Some(url);
        // A loaded CI host can take longer than the 20 ms default to answer; what is
        // tested here is the outcome, not Redis's speed.
        c.shared.timeout = Duration::from_millis(500);
    })
    .await
}

/// At least one answer went to Redis.
async fn shared_one(h: &Harness) -> bool {
    let stored = ["op=\"set\"", "outcome=\"stored\""];
    h.metric("cometgate_shared_operations_total", &stored).await >= 1.0
}

async fn shared_up(h: &Harness) -> bool {
    h.metric("cometgate_shared_up", &[]).await == 1.0
}

/// Redis killed: no client sees an error, nothing waits on it for long and the replica
/// stays ready (`on_error = "local"`, the default); Redis back:
/// answers are shared again, without a restart.
#[tokio::test]
async fn redis_going_away_costs_no_errors_and_coming_back_shares_again() {
    let mut redis = Redis::start().await;
    let h = replica(&redis.url()).await;
    eventually("the replica reaches Redis", || shared_up(&h)).await;
    redis.kill();
    // Questions that never change and that no replica has asked yet (the frozen node's
    // head is 10).
    let mut fresh = ["block", "block_results", "header", "validators"]
        .into_iter()
        .flat_map(|m| (2..10).map(move |height| format!("/{m}?height={height}")));
    for path in fresh.by_ref().take(12) {
        let started = std::time::Instant::now();
        let reply = h.get(&path).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}");
        // The bound is loose on purpose (a shared CI host); what it rules out is a
        // request held for a reconnect or a TCP timeout.
        assert!(started.elapsed() < Duration::from_secs(3), "{path}");
    }
    eventually("the gauge says Redis is down", || async {
        !shared_up(&h).await
    })
    .await;
    let ready = h.ops(http::Method::GET, "/readyz", "").await;
    assert_eq!(
        ready.status,
        StatusCode::OK,
        "under \"local\" readiness ignores Redis"
    );
    redis.restart().await;
    eventually("Redis answers again", || shared_up(&h)).await;
    let path = fresh.next().expect("a question left to ask");
    assert_eq!(h.get(&path).await.cache(), "miss");
    eventually("answers are shared again", || shared_one(&h)).await;
}

/// Redis not there at start: the gateway serves on its own, and shares once it comes.
#[tokio::test]
async fn a_gateway_started_before_redis_shares_once_it_answers() {
    let mut redis = Redis {
        port: free_port(),
        child: None,
    };
    let h = replica(&redis.url()).await;
    assert_eq!(h.get("/block?height=2").await.status, StatusCode::OK);
    assert!(!shared_up(&h).await);
    redis.restart().await;
    eventually("the replica reaches Redis", || shared_up(&h)).await;
}

/// `on_error = "deny"`: while Redis does not answer, a rate-limited client gets 503 with
/// Retry-After and the replica reports itself not ready; once Redis answers, both end.
#[tokio::test]
async fn under_deny_a_limited_client_is_refused_only_while_redis_is_away() {
    let mut redis = Redis::start().await;
    let url = redis.url();
    let h = spawn_gateway_with(SimNodeConfig::default(), move |c| {
        c.shared.redis_url = Some(url);
        c.shared.timeout = Duration::from_millis(500);
        c.shared.on_error = cometgate::config::OnError::Deny;
    })
    .await;
    eventually("the replica reaches Redis", || shared_up(&h)).await;
    assert_eq!(h.get("/status").await.status, StatusCode::OK);
    redis.kill();
    eventually("the replica sees Redis gone", || async {
        !shared_up(&h).await
    })
    .await;
    let refused = h.get("/status").await;
    assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(refused.headers["retry-after"], "1");
    assert_eq!(refused.json()["error"]["code"], -32000);
    let ready = h.ops(http::Method::GET, "/readyz", "").await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(String::from_utf8_lossy(&ready.body).contains("shared.on_error"));
    redis.restart().await;
    eventually("Redis answers again", || shared_up(&h)).await;
    assert_eq!(h.get("/status").await.status, StatusCode::OK);
    assert_eq!(
        h.ops(http::Method::GET, "/readyz", "").await.status,
        StatusCode::OK
    );
}
