//! Choosing among nodes, on heads set by hand.

use std::sync::Arc;

use super::*;

fn pool(heads: &[(u64, u32)]) -> (Pool, Vec<Head>) {
    let config = Config::default();
    let budget = Upstream::budget(&config.upstream, Default::default());
    let pool = Pool::empty(&config, budget);
    let mut made = Vec::new();
    let nodes = heads
        .iter()
        .enumerate()
        .map(|(i, (height, weight))| {
            let node = NodeConfig {
                weight: *weight,
                ..NodeConfig::new(format!("http://10.0.0.{}:26657/", i + 1).parse().unwrap())
            };
            let head = Head::manual();
            head.set(*height);
            made.push(head.clone());
            let tls = tls::client_config(None);
            let upstream = Upstream::new(
                &pool.upstream,
                node.url.clone(),
                pool.budget.clone(),
                tls.clone(),
            );
            Arc::new(Node::new(node, upstream, head, tls))
        })
        .collect();
    pool.nodes.store(Arc::new(nodes));
    (pool, made)
}

const LATEST: Need = Need {
    latest: true,
    heights: None,
};

fn at(h: u64) -> Need {
    Need {
        latest: false,
        heights: Some((h, h)),
    }
}

#[test]
fn latest_skips_a_lagging_node_and_the_head_is_the_lowest_eligible_one() {
    let (pool, _) = pool(&[(20, 1), (19, 1), (10, 1)]);
    for _ in 0..50 {
        let node = pool.choose(&LATEST, None).unwrap();
        assert_ne!(node.head.height(), Some(10));
    }
    let derived = Head::derived(std::time::Duration::from_secs(30));
    pool.settle(&derived);
    assert_eq!(derived.height(), Some(19), "what every eligible node holds");
    assert_eq!(derived.rpc_failure(), None);
    // A height only the lagging node cannot serve, and one above every head.
    for _ in 0..50 {
        assert_ne!(pool.choose(&at(15), None).unwrap().head.height(), Some(10));
    }
    let above = pool.choose(&at(25), None).unwrap();
    assert_eq!(
        above.head.height(),
        Some(20),
        "the node furthest on is asked"
    );
}

#[test]
fn the_second_try_goes_elsewhere_and_weights_share_the_calls() {
    let (pool, _) = pool(&[(20, 3), (20, 1)]);
    let first = pool.choose(&LATEST, None).unwrap();
    for _ in 0..20 {
        let second = pool.choose(&LATEST, Some(&first)).unwrap();
        assert!(!Arc::ptr_eq(&first, &second));
    }
    // Equally fast: the heavier node takes calls until it holds three times as many.
    let heavy = pool.nodes()[0].clone();
    assert_eq!(pool.choose(&LATEST, None).unwrap().config.weight, 3);
    let held: Vec<_> = (0..5).map(|_| heavy.start()).collect();
    assert_eq!(pool.choose(&LATEST, None).unwrap().config.weight, 1);
    drop(held);
}

#[test]
fn a_node_that_cannot_be_asked_is_said_why() {
    let (pool, heads) = pool(&[(20, 1)]);
    let view = pool.view();
    let node = pool.nodes()[0].clone();
    assert_eq!(node.check(&at(21), &view), Err(Why::Behind(20)));
    heads[0].set_failure(Some("status answered HTTP 500".into()));
    assert_eq!(
        node.check(&LATEST, &view),
        Err(Why::Down("status answered HTTP 500".into()))
    );
    // A down node is still asked when it is the only one: it may answer.
    assert!(pool.choose(&LATEST, None).is_ok());
    for _ in 0..5 {
        node.breaker.record(
            Lane::Light,
            &Err::<(), _>(Rejection::UpstreamUnavailable("refused".into())),
        );
    }
    assert!(matches!(
        pool.choose(&LATEST, None),
        Err(Rejection::CircuitOpen { .. })
    ));
    assert!(pool.admit().is_err(), "refused before a lane slot is taken");
}

#[test]
fn the_head_steps_back_only_when_no_eligible_node_holds_it() {
    let (pool, heads) = pool(&[(20, 1), (20, 1)]);
    let derived = Head::derived(std::time::Duration::from_secs(30));
    pool.settle(&derived);
    assert_eq!(derived.height(), Some(20));
    // One node falls a block behind: the other still holds 20.
    heads[1].set(19);
    pool.settle(&derived);
    assert_eq!(derived.height(), Some(20), "the head does not go down");
    // The node ahead is lost: nobody eligible holds 20 any more.
    heads[0].set_failure(Some("status answered HTTP 500".into()));
    pool.settle(&derived);
    assert_eq!(derived.height(), Some(19), "what the node left can serve");
}
