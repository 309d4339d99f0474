//! What refresh-ahead picks at a new block, from what the block before asked.

use serde_json::{json, Value};

use super::refresh::Demand;
use crate::cache::Latest;
use crate::methods::{lookup, CacheKey, Canonical};

fn search(height: u64) -> Canonical {
    let Value::Object(params) = json!({"query": format!("tx.height={height}")}) else {
        unreachable!()
    };
    Canonical {
        spec: lookup("tx_search").unwrap(),
        params,
    }
}

fn status() -> Canonical {
    Canonical {
        spec: lookup("status").unwrap(),
        params: Default::default(),
    }
}

fn ask(demand: &Demand, head: u64, call: &Canonical, times: u32) {
    let latest = Latest {
        height: head,
        pinned: false,
        previous: None,
    };
    for _ in 0..times {
        demand.note(&latest, &call.key(), call);
    }
}

fn names(keys: &[CacheKey]) -> Vec<String> {
    keys.iter()
        .map(|k| String::from_utf8_lossy(k.as_bytes()).into_owned())
        .collect()
}

#[test]
fn the_most_asked_go_first_within_the_limit_and_once_asked_never() {
    let demand = Demand::new(2);
    ask(&demand, 10, &status(), 9);
    ask(&demand, 10, &search(10), 5);
    ask(&demand, 10, &search(9), 3);
    ask(&demand, 10, &search(8), 1);
    let picked = demand.take(10);
    assert_eq!(picked, vec![status().key(), search(10).key()]);
    assert!(
        demand.take(10).is_empty(),
        "a block's questions are taken once"
    );
    assert!(Demand::new(0).take(10).is_empty());
}

/// `tx.height=10` is asked all through block 10, then in block 11 only by the clients
/// that read 10 from `status` just before 11 landed: refreshing it at 12 would be a node
/// call nobody waits for. `status`, asked alike in both blocks, is refreshed each time.
#[test]
fn a_fading_question_is_not_refreshed() {
    let demand = Demand::new(16);
    ask(&demand, 10, &status(), 40);
    ask(&demand, 10, &search(10), 40);
    assert_eq!(
        names(&demand.take(10)).len(),
        2,
        "nothing to compare with yet"
    );
    ask(&demand, 11, &status(), 35);
    ask(&demand, 11, &search(10), 6);
    ask(&demand, 11, &search(11), 30);
    let picked = demand.take(11);
    assert!(picked.contains(&status().key()), "{:?}", names(&picked));
    assert!(
        picked.contains(&search(11).key()),
        "new in 11: {:?}",
        names(&picked)
    );
    assert!(
        !picked.contains(&search(10).key()),
        "fading: {:?}",
        names(&picked)
    );
    // Asked as often as in the block before: steady, refreshed.
    ask(&demand, 12, &search(10), 6);
    assert_eq!(demand.take(12), vec![search(10).key()]);
}
