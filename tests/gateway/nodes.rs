//! Issue #16: several nodes behind one gateway. Three simulated nodes; what each node
//! was asked is read from its own counters.

use std::time::Duration;

use cometgate::config::{Config, HedgeAfter, NodeConfig};
use cometgate_sim::{Fault, SimNode, SimNodeConfig};
use futures_util::future::join_all;
use http::Method;
use serde_json::Value;

use crate::support::*;

/// Node `a` is the harness's own; `b` and `c` are beside it.
pub(crate) struct Three {
    pub(crate) h: Harness,
    pub(crate) b: SimNode,
    pub(crate) c: SimNode,
}

impl Three {
    pub(crate) async fn start(
        a: SimNodeConfig,
        b: SimNodeConfig,
        c: SimNodeConfig,
        tweak: impl FnOnce(&mut Config),
    ) -> Three {
        let b = frozen_node(b).await;
        let c = frozen_node(c).await;
        let urls = [b.url(), c.url()];
        let h = spawn_gateway_with(a, |config| {
            let mut nodes = vec![NodeConfig::new(config.upstream.url.clone())];
            nodes.extend(urls.iter().map(|u| NodeConfig::new(u.parse().unwrap())));
            config.upstream.nodes = nodes;
            tweak(config);
        })
        .await;
        Three { h, b, c }
    }

    pub(crate) fn nodes(&self) -> [&SimNode; 3] {
        [&self.h.node, &self.b, &self.c]
    }

    pub(crate) fn reset(&self) {
        self.nodes().iter().for_each(|n| n.reset_counters());
    }

    /// `/admin/nodes`' entry for `node`.
    pub(crate) async fn state_of(&self, node: &SimNode) -> Value {
        let all = self.h.ops(Method::GET, "/admin/nodes", "").await.json();
        let url = format!("{}/", node.url());
        all["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["url"] == url.as_str())
            .unwrap_or_else(|| panic!("{url} not in {all}"))
            .clone()
    }

    /// `field` of `/admin/nodes`, summed over the nodes.
    async fn total(&self, field: &str) -> u64 {
        let all = self.h.ops(Method::GET, "/admin/nodes", "").await.json();
        let nodes = all["nodes"].as_array().unwrap().iter();
        nodes.map(|n| n[field].as_u64().unwrap()).sum()
    }

    /// Waits until every node's `status` has been read (heads and pruning bases known).
    pub(crate) async fn settled(&self) {
        for node in self.nodes() {
            eventually("every node's status is known", || async {
                self.state_of(node).await["earliest_height"].is_u64()
            })
            .await;
        }
    }

    async fn all_succeed(&self, calls: usize, body: impl Fn(usize) -> String) {
        all_succeed(&self.h, calls, body).await
    }
}

/// `calls` concurrent calls of `body(i)`, each answered with a result, never an error.
async fn all_succeed(h: &Harness, calls: usize, body: impl Fn(usize) -> String) {
    let replies = join_all((0..calls).map(|i| {
        let body = body(i);
        async move { h.post(&body).await.json() }
    }))
    .await;
    for (i, reply) in replies.iter().enumerate() {
        assert!(reply.get("result").is_some(), "call {i}: {reply}");
    }
}

pub(crate) fn frozen_at(height: u64) -> SimNodeConfig {
    SimNodeConfig {
        start_height: height,
        ..SimNodeConfig::default()
    }
}

fn block(height: u64) -> String {
    format!(r#"{{"jsonrpc":"2.0","id":1,"method":"block","params":{{"height":"{height}"}}}}"#)
}

fn call(method: &str) -> String {
    format!(r#"{{"jsonrpc":"2.0","id":1,"method":"{method}","params":{{}}}}"#)
}

#[tokio::test]
async fn a_lagging_node_is_never_asked_latest_or_above_its_head() {
    let t = Three::start(frozen_at(10), frozen_at(10), frozen_at(10), |c| {
        c.cache.enabled = false;
    })
    .await;
    for _ in 0..10 {
        t.h.node.advance_block();
        t.b.advance_block();
    }
    t.h.wait_for_head(20).await;
    eventually("c is seen 10 blocks behind", || async {
        t.state_of(&t.c).await["why_not"] == "10 blocks behind the best head"
    })
    .await;
    t.reset();
    for _ in 0..3 {
        t.all_succeed(10, |i| block(11 + i as u64)).await;
        for method in [
            "block",
            "block_results",
            "abci_info",
            "commit",
            "validators",
        ] {
            t.all_succeed(4, |_| call(method)).await;
        }
    }
    let served = |n: &SimNode| {
        [
            "block",
            "block_results",
            "abci_info",
            "commit",
            "validators",
        ]
        .iter()
        .map(|m| n.requests_for(m))
        .sum::<u64>()
    };
    assert_eq!(served(&t.c), 0, "the lagging node was asked");
    assert_eq!(served(&t.h.node) + served(&t.b), 90);
    assert_eq!(t.h.gateway.head().height(), Some(20));
}

#[tokio::test]
async fn a_pruned_node_is_never_asked_below_its_base_and_an_archive_node_answers() {
    let pruned = SimNodeConfig {
        earliest_height: 300,
        ..frozen_at(400)
    };
    let t = Three::start(frozen_at(400), pruned.clone(), pruned, |_| {}).await;
    t.settled().await;
    t.reset();
    t.all_succeed(20, |i| block(5 + i as u64)).await;
    assert_eq!(t.b.requests_for("block") + t.c.requests_for("block"), 0);
    assert_eq!(
        t.h.node.requests_for("block"),
        20,
        "the archive node answers"
    );
    // Heights every node holds are shared out.
    t.all_succeed(30, |i| block(350 + i as u64)).await;
    assert!(t.b.requests_for("block") + t.c.requests_for("block") > 0);

    // With the archive node gone, a pruned node answers what it says of a height it
    // does not have: the node's own error.
    t.h.node.set_fault(Fault::Down);
    eventually("the archive node is seen down", || async {
        t.state_of(&t.h.node).await["up"] == false
    })
    .await;
    let reply = t.h.post(&block(3)).await.json();
    assert_eq!(
        reply["error"]["data"], "height 3 is not available, lowest height is 300",
        "{reply}"
    );
}

#[tokio::test]
async fn killing_a_node_under_steady_reads_loses_no_call_and_it_comes_back() {
    let t = Three::start(frozen_at(50), frozen_at(50), frozen_at(50), |c| {
        c.cache.enabled = false;
    })
    .await;
    t.settled().await;
    let reads = |round: usize| {
        let t = &t;
        async move {
            t.all_succeed(60, |i| match i % 3 {
                0 => block(10 + ((i + round) % 40) as u64),
                1 => call("abci_info"),
                _ => call("block"),
            })
            .await
        }
    };
    reads(0).await;
    assert!(t.b.requests_for("block") > 0, "b is in rotation");
    // It dies mid-answer (on the keep-alive connections the gateway holds too, which
    // a closed listener alone would leave serving), then its port is closed.
    t.b.set_fault(Fault::ResetMidBody);
    reads(1).await;
    t.b.set_fault(Fault::Down);
    for round in 2..=5 {
        reads(round).await;
    }
    assert!(
        t.total("retries_taken").await > 0,
        "calls on b were retried elsewhere"
    );
    t.b.set_fault(Fault::None);
    eventually("b is eligible again", || async {
        t.state_of(&t.b).await["eligible"] == true
    })
    .await;
    t.reset();
    eventually("b takes calls again", || async {
        reads(9).await;
        t.b.requests_for("block") + t.b.requests_for("abci_info") > 0
    })
    .await;
}

#[tokio::test]
async fn a_slow_node_gets_measurably_less_traffic() {
    let t = Three::start(frozen_at(50), frozen_at(50), frozen_at(50), |c| {
        c.cache.enabled = false;
    })
    .await;
    t.settled().await;
    // Far slower than the others are even when busy with every call of a round.
    t.c.set_fault(Fault::Slow(Duration::from_millis(300)));
    // Until its first answers come back, the slow node looks like the others.
    t.all_succeed(20, |_| call("abci_info")).await;
    t.reset();
    for _ in 0..10 {
        t.all_succeed(20, |_| call("abci_info")).await;
    }
    let [a, b, c] = t.nodes().map(|n| n.requests_for("abci_info"));
    assert_eq!(a + b + c, 200);
    assert!(c * 3 < a.min(b), "slow c took {c}, a {a}, b {b}");
}

#[tokio::test]
async fn a_node_restarted_on_another_chain_is_ejected() {
    let t = Three::start(frozen_at(50), frozen_at(50), frozen_at(50), |c| {
        c.cache.enabled = false;
    })
    .await;
    t.settled().await;
    let addr = t.c.addr();
    let Three { h, b, c } = t;
    c.shutdown().await;
    let c = frozen_node(SimNodeConfig {
        listen: addr,
        chain_id: "otherchain".into(),
        ..frozen_at(50)
    })
    .await;
    let t = Three { h, b, c };
    eventually("c is ejected", || async {
        t.state_of(&t.c).await["why_not"] == r#"ejected: serves chain "otherchain""#
    })
    .await;
    let label = format!("node=\"{}/\"", t.c.url());
    assert_eq!(
        t.h.metric("cometgate_upstream_node_ejections_total", &[&label])
            .await,
        1.0
    );
    t.reset();
    t.all_succeed(30, |_| call("abci_info")).await;
    assert_eq!(t.c.requests_for("abci_info"), 0);
    let ready = t.h.ops(Method::GET, "/readyz", "").await;
    assert_eq!(ready.status, http::StatusCode::OK, "two nodes still serve");
}

#[tokio::test]
async fn a_broadcast_is_never_sent_twice_even_when_its_node_fails_mid_call() {
    let t = Three::start(frozen_at(50), frozen_at(50), frozen_at(50), |c| {
        c.cache.enabled = false;
    })
    .await;
    t.settled().await;
    // A node holds one fault at a time: broadcasts fail first, reads after.
    for node in t.nodes() {
        node.set_fault_for("broadcast_tx_sync", Fault::ResetMidBody);
    }
    t.reset();
    let total = |m: &str| t.nodes().iter().map(|n| n.requests_for(m)).sum::<u64>();
    let tx = r#"{"jsonrpc":"2.0","id":1,"method":"broadcast_tx_sync","params":{"tx":"dHgx"}}"#;
    for sent in 1..=5 {
        let reply = t.h.post(tx).await.json();
        assert!(reply.get("error").is_some(), "{reply}");
        assert_eq!(total("broadcast_tx_sync"), sent, "a broadcast went twice");
    }
    // A read failing the same way is retried once on another node, never more.
    for node in t.nodes() {
        node.set_fault_for("abci_info", Fault::ResetMidBody);
    }
    let reply = t.h.post(&call("abci_info")).await.json();
    assert!(reply.get("error").is_some(), "{reply}");
    assert_eq!(total("abci_info"), 2);
    // And a node answering HTTP 500.
    for node in t.nodes() {
        node.set_fault_for("abci_info", Fault::Http500);
    }
    let reply = t.h.post(&call("abci_info")).await.json();
    assert!(reply.get("error").is_some(), "{reply}");
    assert_eq!(total("abci_info"), 4);
}

#[test]
fn nodes_and_url_together_are_refused_naming_both() {
    let text = "[upstream]\nurl = \"http://127.0.0.1:1\"\n\n[[upstream.nodes]]\nurl = \"http://127.0.0.1:2\"\n";
    let errors = Config::from_toml_str(text).unwrap_err().to_string();
    assert!(errors.contains("upstream.nodes"), "{errors}");
    assert!(errors.contains("upstream.url"), "{errors}");
}

#[tokio::test]
async fn the_node_list_reloads_without_dropping_a_call() {
    let added = frozen_node(frozen_at(10)).await;
    let h = spawn_gateway_with(frozen_at(10), |c| c.cache.enabled = false).await;
    let first = h.gateway.config().upstream.url.clone();
    let mut both = (*h.gateway.config()).clone();
    both.upstream.nodes = vec![
        NodeConfig::new(first.clone()),
        NodeConfig::new(added.url().parse().unwrap()),
    ];
    let mut only_added = both.clone();
    only_added.upstream.nodes.remove(0);
    let traffic = async {
        for round in 0..30 {
            all_succeed(&h, 10, |i| block(1 + ((i + round) % 10) as u64)).await;
        }
    };
    let reloads = async {
        tokio::task::yield_now().await;
        assert!(
            h.gateway.reload(both).is_empty(),
            "nothing waits for a restart"
        );
        eventually("the added node takes calls", || async {
            added.requests_for("block") > 0
        })
        .await;
        h.gateway.reload(only_added);
    };
    tokio::join!(traffic, reloads);
    h.node.reset_counters();
    all_succeed(&h, 10, |i| block(1 + i as u64)).await;
    assert_eq!(
        h.node.requests_for("block"),
        0,
        "the removed node is asked no more"
    );
}

#[tokio::test]
async fn a_heavy_read_its_node_sits_on_is_hedged_to_another() {
    hedged(HedgeAfter::Fixed(Duration::from_millis(50)), 0).await;
}

#[tokio::test]
async fn hedging_at_a_quantile_waits_for_enough_heavy_calls_then_hedges_the_slow_ones() {
    hedged(HedgeAfter::Quantile(0.9), 25).await;
}

fn heavy(height: u64) -> String {
    format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"block_results","params":{{"height":"{height}"}}}}"#
    )
}

/// The heaviest node sits on heavy reads once `warmup` of them went well. It wins every
/// choice it is drawn for, so every read it takes must be hedged to another.
async fn hedged(after: HedgeAfter, warmup: u64) {
    let t = Three::start(frozen_at(50), frozen_at(50), frozen_at(50), |c| {
        c.cache.enabled = false;
        c.upstream.hedge_after = Some(after);
        c.upstream.nodes[0].weight = 1000;
    })
    .await;
    t.settled().await;
    for height in 1..=warmup {
        all_succeed(&t.h, 1, |_| heavy(height)).await;
    }
    // A quantile hedges the slowest tenth of healthy calls too: counted from here.
    let hedges = t.total("hedges_taken").await;
    let label = format!("node=\"{}/\"", t.b.url());
    let to_b = || async {
        t.h.metric("cometgate_upstream_node_hedges_total", &[&label])
            .await
    };
    let (to_b_before, b_before) = (
        to_b().await,
        t.state_of(&t.b).await["hedges_taken"].as_u64(),
    );
    t.reset();
    t.h.node.set_fault_for("block_results", Fault::Hang);
    for height in 1..=10 {
        all_succeed(&t.h, 1, |_| heavy(height)).await;
    }
    let sat_on = t.h.node.requests_for("block_results");
    assert!(sat_on >= 1, "the heaviest node was never drawn");
    // Each read the heaviest node sat on was hedged (it never answers). A healthy read
    // that a busy machine made slow enough may be hedged as well, to the other healthy
    // node, which then answers it too: at least one hedge per sat-on read, not exactly.
    let taken = t.total("hedges_taken").await - hedges;
    assert!(
        taken >= sat_on,
        "each was hedged: {taken} hedges for {sat_on}"
    );
    assert!(taken <= 10, "at most one hedge a read: {taken}");
    // A hedge of a merely slow read may lose its race before its node counts it.
    let answered = t.b.requests_for("block_results") + t.c.requests_for("block_results");
    assert!(
        (10..=10 + (taken - sat_on)).contains(&answered),
        "every read was answered by another node: {answered} answers, {taken} hedges for {sat_on}"
    );
    let b_after = t.state_of(&t.b).await["hedges_taken"].as_u64();
    assert_eq!(
        to_b().await - to_b_before,
        (b_after.unwrap() - b_before.unwrap()) as f64,
        "the metric counts what /admin/nodes does"
    );
}
