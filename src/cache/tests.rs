//! Coalescing as the gateway drives it, single and two-phase.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::{json, Value};
use tokio::sync::Semaphore;

use super::*;
use crate::config::{ByteSize, CacheConfig};
use crate::methods::lookup;

impl Cache {
    /// One call as the gateway's pipeline drives the cache: `begin`, a detached fetch
    /// led by `Leader::finish`, then `settle`.
    pub(super) async fn get_or_fetch<F, Fut>(
        &self,
        plan: Plan,
        fetch: F,
    ) -> (Result<Answer, Rejection>, CacheStatus)
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<Answer, Rejection>> + Send + 'static,
    {
        let (result, status) = match self.begin(plan.clone()).await {
            Begin::Bypass => (fetch().await, CacheStatus::Bypass),
            Begin::Hit(answer) => return (Ok(answer), CacheStatus::Hit),
            Begin::Wait(follower) => (follower.wait().await, CacheStatus::Coalesced),
            Begin::Previous(answer) => return (Ok(answer), CacheStatus::Stale),
            Begin::Lead(leader) => {
                let task = tokio::spawn(async move {
                    let result = fetch().await;
                    leader.finish(&result).await;
                    result
                });
                let result = task.await.unwrap_or_else(|_| Err(coalesce::abandoned()));
                (result, CacheStatus::Miss)
            }
        };
        self.settle(&plan, result, status).await
    }
}

pub(super) fn config() -> CacheConfig {
    CacheConfig {
        enabled: true,
        max_bytes: ByteSize::mib(8),
        max_entry_bytes: ByteSize::kib(64),
        stale_if_error: Duration::from_secs(30),
        latest_max_ttl: Duration::from_secs(10),
        code_error_ttl: Duration::ZERO,
        ..CacheConfig::default()
    }
}

fn call(method: &str, params: Value) -> Canonical {
    let Value::Object(params) = params else {
        panic!("params must be an object")
    };
    Canonical {
        spec: lookup(method).unwrap(),
        params,
    }
}

pub(super) fn plan(cache: &Cache, method: &str, params: Value) -> Plan {
    cache.plan(&mut call(method, params), None)
}

pub(super) fn result(text: impl Into<String>) -> Answer {
    Answer::Result(Bytes::from(text.into()))
}

/// A fetch that counts its calls and answers `answer`.
pub(super) fn counted(
    calls: &Arc<AtomicUsize>,
    answer: Answer,
) -> impl FnOnce() -> futures_util::future::BoxFuture<'static, Result<Answer, Rejection>> {
    let calls = Arc::clone(calls);
    move || {
        Box::pin(async move {
            calls.fetch_add(1, Ordering::SeqCst);
            tokio::task::yield_now().await;
            Ok(answer)
        })
    }
}

/// A fetch held until the gate gives it a permit.
fn gated(
    calls: &Arc<AtomicUsize>,
    gate: &Arc<Semaphore>,
    outcome: Result<Answer, Rejection>,
) -> impl FnOnce() -> futures_util::future::BoxFuture<'static, Result<Answer, Rejection>> {
    let (calls, gate) = (Arc::clone(calls), Arc::clone(gate));
    move || {
        Box::pin(async move {
            calls.fetch_add(1, Ordering::SeqCst);
            let _permit = gate.acquire().await.unwrap();
            outcome
        })
    }
}

/// Yields until `condition` holds, failing after a bounded number of rounds.
async fn until(what: &str, mut condition: impl FnMut() -> bool) {
    for _ in 0..100_000 {
        if condition() {
            return;
        }
        tokio::task::yield_now().await;
    }
    panic!("timed out waiting for {what}");
}

fn flight(plan: &Plan) -> FlightKey {
    let Plan::Cached { key, policy, .. } = plan else {
        panic!("not cached")
    };
    FlightKey {
        key: key.clone(),
        tag: policy.flight_tag(),
    }
}

pub(super) fn at(height: u64) -> Head {
    let head = Head::manual();
    head.set(height);
    head
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_identical_misses_make_one_call() {
    let cache = Cache::new(&config(), at(100));
    let calls = Arc::new(AtomicUsize::new(0));
    let p = plan(&cache, "block_results", json!({"height": "42"}));
    let tasks: Vec<_> = (0..500)
        .map(|_| {
            let (cache, p, fetch) = (
                cache.clone(),
                p.clone(),
                counted(&calls, result(r#"{"height":"42"}"#)),
            );
            tokio::spawn(async move { cache.get_or_fetch(p, fetch).await })
        })
        .collect();
    let mut misses = 0;
    for task in tasks {
        let (answer, status) = task.await.unwrap();
        assert_eq!(answer.unwrap(), result(r#"{"height":"42"}"#));
        misses += usize::from(status == CacheStatus::Miss);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(misses, 1);
    assert_eq!(cache.inner.flights.len(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_keys_fifty_callers_each_make_twenty_calls() {
    let cache = Cache::new(&config(), at(100));
    let calls = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for caller in 0..50 {
        for height in 1..=20 {
            let p = plan(&cache, "block", json!({"height": height.to_string()}));
            let fetch = counted(&calls, result(format!(r#"{{"h":{height}}}"#)));
            let cache = cache.clone();
            tasks.push(tokio::spawn(async move {
                (height, caller, cache.get_or_fetch(p, fetch).await)
            }));
        }
    }
    for task in tasks {
        let (height, _, (answer, _)) = task.await.unwrap();
        assert_eq!(answer.unwrap(), result(format!(r#"{{"h":{height}}}"#)));
    }
    assert_eq!(calls.load(Ordering::SeqCst), 20);
}

#[tokio::test]
async fn errors_reach_every_follower_and_are_not_stored() {
    let cache = Cache::new(&config(), at(100));
    let node_error = Answer::Error(Bytes::from_static(
        br#"{"code":-32603,"message":"Internal error","data":"boom"}"#,
    ));
    let outcomes = [
        Ok(node_error.clone()),
        Err(Rejection::UpstreamTimeout(Duration::from_secs(10))),
    ];
    for (round, outcome) in outcomes.into_iter().enumerate() {
        let (calls, gate) = (Arc::new(AtomicUsize::new(0)), Arc::new(Semaphore::new(0)));
        let p = plan(&cache, "block", json!({"height": "7"}));
        let tasks: Vec<_> = (0..50)
            .map(|_| {
                let (cache, p, fetch) = (
                    cache.clone(),
                    p.clone(),
                    gated(&calls, &gate, outcome.clone()),
                );
                tokio::spawn(async move { cache.get_or_fetch(p, fetch).await })
            })
            .collect();
        until("49 followers", || {
            cache.inner.flights.followers(&flight(&p)) == 49
        })
        .await;
        gate.add_permits(1);
        for task in tasks {
            let (got, status) = task.await.unwrap();
            assert_eq!(got, outcome, "round {round}");
            assert!(matches!(status, CacheStatus::Miss | CacheStatus::Coalesced));
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(cache.stats().stores, 0);
        assert_eq!(cache.inner.flights.len(), 0);
    }
    assert_eq!(
        cache.stats().rejected.pass_through,
        1,
        "the node's error was judged and passed through"
    );
}

#[tokio::test]
async fn an_abandoned_caller_does_not_cancel_its_fetch() {
    let cache = Cache::new(&config(), at(100));
    let (calls, gate) = (Arc::new(AtomicUsize::new(0)), Arc::new(Semaphore::new(0)));
    let p = plan(&cache, "block_results", json!({"height": "9"}));
    let answer = result(r#"{"height":"9","txs_results":[]}"#);
    let leader = {
        let (cache, p, fetch) = (
            cache.clone(),
            p.clone(),
            gated(&calls, &gate, Ok(answer.clone())),
        );
        tokio::spawn(async move { cache.get_or_fetch(p, fetch).await })
    };
    until("the leader's flight", || calls.load(Ordering::SeqCst) == 1).await;
    let follower = {
        let (cache, p) = (cache.clone(), p.clone());
        tokio::spawn(async move {
            cache
                .get_or_fetch(p, || async { panic!("a follower never fetches") })
                .await
        })
    };
    until("the follower", || {
        cache.inner.flights.followers(&flight(&p)) == 1
    })
    .await;
    leader.abort();
    assert!(leader.await.unwrap_err().is_cancelled());
    gate.add_permits(1);
    assert_eq!(
        follower.await.unwrap(),
        (Ok(answer.clone()), CacheStatus::Coalesced)
    );
    let (again, status) = cache.get_or_fetch(p, || async { panic!("stored") }).await;
    assert_eq!((again.unwrap(), status), (answer, CacheStatus::Hit));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_panicking_fetch_abandons_its_followers_and_leaves_no_flight() {
    let cache = Cache::new(&config(), at(100));
    let gate = Arc::new(Semaphore::new(0));
    let p = plan(&cache, "header", json!({"height": "3"}));
    let leader = {
        let (cache, p, gate) = (cache.clone(), p.clone(), Arc::clone(&gate));
        tokio::spawn(async move {
            cache
                .get_or_fetch(p, move || async move {
                    let _permit = gate.acquire().await.unwrap();
                    panic!("fetch failed hard")
                })
                .await
        })
    };
    until("the flight", || cache.inner.flights.len() == 1).await;
    let Begin::Wait(follower) = cache.begin(p.clone()).await else {
        panic!("should follow")
    };
    gate.add_permits(1);
    assert_eq!(follower.wait().await, Err(coalesce::abandoned()));
    assert_eq!(leader.await.unwrap().0, Err(coalesce::abandoned()));
    assert_eq!(cache.inner.flights.len(), 0);
}

#[tokio::test]
async fn the_two_phase_form_leads_follows_and_stores() {
    let cache = Cache::new(&config(), at(100));
    let p = plan(&cache, "validators", json!({"height": "50"}));
    let Begin::Lead(leader) = cache.begin(p.clone()).await else {
        panic!("first should lead")
    };
    let Begin::Wait(follower) = cache.begin(p.clone()).await else {
        panic!("second should follow")
    };
    let answer = result(r#"{"block_height":"50","validators":[{"address":"AA"}]}"#);
    leader.finish(&Ok(answer.clone())).await;
    assert_eq!(follower.wait().await, Ok(answer.clone()));
    // The flight stays open until `finish` has stored the entry.
    let mut stored = None;
    for _ in 0..10_000 {
        if let Begin::Hit(answer) = cache.begin(p.clone()).await {
            stored = Some(answer);
            break;
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(stored, Some(answer));
    assert_eq!(cache.inner.flights.len(), 0);

    // A leader dropped without finishing abandons its followers.
    let q = plan(&cache, "validators", json!({"height": "51"}));
    let Begin::Lead(leader) = cache.begin(q.clone()).await else {
        panic!()
    };
    let Begin::Wait(follower) = cache.begin(q.clone()).await else {
        panic!()
    };
    drop(leader);
    assert_eq!(follower.wait().await, Err(coalesce::abandoned()));
    assert_eq!(cache.inner.flights.len(), 0);
    assert!(matches!(cache.begin(Plan::Bypass).await, Begin::Bypass));
}

/// The upstream hands over answers that own their bytes (a batch's are copied out of
/// their shared body there; see `upstream::tests`), so the cache stores what it is given
/// as it is: a big answer is never copied a second time on its way in.
#[tokio::test]
async fn a_stored_answer_is_the_bytes_it_was_given_not_a_copy() {
    let cache = Cache::new(&config(), at(100));
    let answer = Bytes::from(format!(r#"{{"pad":"{}"}}"#, "x".repeat(32 << 10)));
    let p = plan(&cache, "header", json!({"height": "50"}));
    let calls = Arc::new(AtomicUsize::new(0));
    let (got, _) = cache
        .get_or_fetch(p.clone(), counted(&calls, Answer::Result(answer.clone())))
        .await;
    assert_eq!(got, Ok(Answer::Result(answer.clone())));
    let Begin::Hit(Answer::Result(stored)) = cache.begin(p).await else {
        panic!("the answer was stored")
    };
    assert_eq!(stored.as_ptr(), answer.as_ptr(), "stored without a copy");
}
