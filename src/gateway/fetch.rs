//! The fetch stage: a request's cache misses go to the node as one node call, in a task
//! of its own so that a client that hangs up does not cancel a fetch other callers are
//! waiting on. A lone miss goes as a single call; several go as one upstream batch, which
//! the node runs one entry after another, so it takes one slot in the heaviest lane.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::access_log::AccessLog;
use super::Gateway;
use crate::admission::ClientKey;
use crate::cache::{CacheStatus, Leader, Plan};
use crate::error::Rejection;
use crate::methods::{Canonical, Lane};
use crate::upstream::Answer;

/// A call the cache could not answer. A leader's answer is also stored and handed to
/// the callers that joined it; a bypass is the caller's alone.
pub(super) struct Miss {
    pub canonical: Canonical,
    pub lane: Lane,
    pub leader: Option<Leader>,
    pub plan: Plan,
}

pub(super) type Fetched = (Result<Answer, Rejection>, CacheStatus);

/// Fetches every miss; the answers come back in the misses' order, each already stored
/// (a lead) and settled (a failure may have become a stale answer). The node's latency
/// goes to the access log.
pub(super) async fn misses(
    gw: &Arc<Gateway>,
    client: &ClientKey,
    misses: Vec<Miss>,
    log: &mut AccessLog,
) -> Vec<Fetched> {
    if misses.is_empty() {
        return Vec::new();
    }
    let count = misses.len();
    let (gw, client) = (gw.clone(), client.clone());
    let task = tokio::spawn(async move {
        let lane = heaviest(&misses);
        let calls: Vec<&Canonical> = misses.iter().map(|m| &m.canonical).collect();
        let (results, latency) = gw.node_call(&client, lane, &calls).await;
        drop(calls);
        let mut out = Vec::with_capacity(misses.len());
        for (miss, result) in misses.into_iter().zip(results) {
            let status = match miss.leader {
                Some(leader) => {
                    leader.finish(&result).await;
                    CacheStatus::Miss
                }
                None => CacheStatus::Bypass,
            };
            out.push(gw.cache.settle(&miss.plan, result, status).await);
        }
        (out, latency)
    });
    match task.await {
        Ok((fetched, latency)) => {
            log.node_latency = latency;
            fetched
        }
        // A panic dropped the leaders, which told their followers; tell this caller.
        Err(_) => (0..count).map(|_| lost()).collect(),
    }
}

/// What a caller gets for a miss whose fetch died without an answer.
pub(super) fn lost() -> Fetched {
    (
        Err(Rejection::UpstreamUnavailable(
            "the node call for this request was abandoned".into(),
        )),
        CacheStatus::Miss,
    )
}

fn heaviest(misses: &[Miss]) -> Lane {
    if misses.iter().any(|m| m.lane == Lane::Heavy) {
        Lane::Heavy
    } else {
        Lane::Light
    }
}

impl Gateway {
    /// One node call for `calls`: breaker, a lane slot held only while the node works
    /// (charged to `client`, the caller that leads the fetch), then the upstream. One
    /// result per call, in order, and the node's latency if it was asked.
    async fn node_call(
        &self,
        client: &ClientKey,
        lane: Lane,
        calls: &[&Canonical],
    ) -> (Vec<Result<Answer, Rejection>>, Option<Duration>) {
        let every = |r: Rejection| vec![Err(r); calls.len()];
        let _probe = match self.breaker.admit() {
            Ok(probe) => probe,
            Err(r) => return (every(r), None),
        };
        let queued = Instant::now();
        // A batch is charged as what it is to the node: one call of its own.
        let method = match calls {
            [one] => one.spec.name,
            _ => "batch",
        };
        let _slot = match self.admission.lane_slot(lane, client, method).await {
            Ok(slot) => slot,
            Err(r) => return (every(r), None),
        };
        let waited = queued.elapsed();
        self.metrics.lane_waited(lane, waited);
        self.recent.lane_waited(super::refuse::scope(lane), waited);
        let started = Instant::now();
        let result = match calls {
            [one] => self.upstream.call(one).await.map(|a| vec![a]),
            many => self.upstream.call_batch(many).await,
        };
        let elapsed = started.elapsed();
        self.breaker.record(lane, &result);
        self.metrics.node_call(method, elapsed, result.is_ok());
        self.recent.node_call(elapsed);
        let results = match result {
            Ok(answers) => answers.into_iter().map(Ok).collect(),
            Err(r) => every(r),
        };
        (results, Some(elapsed))
    }
}
