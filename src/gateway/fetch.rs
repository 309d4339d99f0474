//! The fetch stage: a request's cache misses go to the node as one node call, in a task
//! of its own so that a client that hangs up does not cancel a fetch other callers are
//! waiting on. A lone miss goes as a single call; several go as one upstream batch, which
//! the node runs one entry after another, so it takes one slot in the heaviest lane.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::join_all;

use super::access_log::AccessLog;
use super::Gateway;
use crate::admission::ClientKey;
use crate::cache::{CacheStatus, Kept, Leader, Plan};
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
/// (a lead) and settled (a failure may have become a stale answer). A lead for an
/// answer that never changes looks in the shared tier first, and shares what the node
/// gave it. The node's latency goes to the access log.
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
        // Without a shared tier a miss reads no chain id and looks nowhere first.
        let chain = gw.shared.is_on().then(|| gw.head.chain_id()).flatten();
        let mut out: Vec<Option<Fetched>> = (0..misses.len()).map(|_| None).collect();
        let mut to_node = Vec::with_capacity(misses.len());
        // All at once: a batch waits on Redis for one `shared.timeout`, not one a call.
        let found = match &chain {
            Some(chain) => join_all(misses.iter().map(|m| shared(&gw, chain, m))).await,
            None => (0..misses.len()).map(|_| None).collect(),
        };
        for (i, (miss, found)) in misses.into_iter().zip(found).enumerate() {
            match found {
                Some(answer) => out[i] = Some(served_shared(&gw, miss, answer).await),
                None => to_node.push((i, miss)),
            }
        }
        let mut latency = None;
        if !to_node.is_empty() {
            let lane = heaviest(to_node.iter().map(|(_, m)| m));
            let calls: Vec<&Canonical> = to_node.iter().map(|(_, m)| &m.canonical).collect();
            let results;
            (results, latency) = gw.node_call(&client, lane, &calls).await;
            drop(calls);
            for ((i, miss), result) in to_node.into_iter().zip(results) {
                out[i] = Some(fetched(&gw, chain.as_deref(), miss, result).await);
            }
        }
        let out: Vec<Fetched> = out.into_iter().map(|f| f.unwrap_or_else(lost)).collect();
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

/// The shared tier's answer to a lead whose answer never changes, if it has one that
/// this replica would itself keep: Redis is another program's memory, and what it holds
/// is judged as a node's answer is before anyone is served it.
async fn shared(gw: &Gateway, chain: &str, miss: &Miss) -> Option<Answer> {
    let leader = miss.leader.as_ref().filter(|l| l.is_immutable())?;
    let found = Answer::Result(gw.shared.get(chain, leader.key()).await?);
    leader.would_keep(&found).then_some(found)
}

async fn served_shared(gw: &Gateway, miss: Miss, answer: Answer) -> Fetched {
    let result = Ok(answer);
    if let Some(leader) = miss.leader {
        leader.finish(&result).await;
    }
    gw.cache
        .settle(&miss.plan, result, CacheStatus::Shared)
        .await
}

/// A node answer: stored (a lead), shared where it never changes, settled.
async fn fetched(
    gw: &Gateway,
    chain: Option<&str>,
    miss: Miss,
    result: Result<Answer, Rejection>,
) -> Fetched {
    let status = match miss.leader {
        Some(leader) => {
            let key = leader.key().clone();
            let kept = leader.finish(&result).await;
            if let (Kept::Immutable, Some(chain), Ok(Answer::Result(bytes))) =
                (kept, chain, &result)
            {
                gw.shared.put(chain, &key, bytes);
            }
            CacheStatus::Miss
        }
        None => CacheStatus::Bypass,
    };
    gw.cache.settle(&miss.plan, result, status).await
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

fn heaviest<'a>(mut misses: impl Iterator<Item = &'a Miss>) -> Lane {
    if misses.any(|m| m.lane == Lane::Heavy) {
        Lane::Heavy
    } else {
        Lane::Light
    }
}

impl Gateway {
    /// One node call for `calls`: the breakers, a lane slot held only while the node works
    /// (charged to `client`, the caller that leads the fetch), then the pool. One
    /// result per call, in order, and the node's latency if it was asked.
    async fn node_call(
        &self,
        client: &ClientKey,
        lane: Lane,
        calls: &[&Canonical],
    ) -> (Vec<Result<Answer, Rejection>>, Option<Duration>) {
        let every = |r: Rejection| vec![Err(r); calls.len()];
        if let Err(r) = self.pool.admit() {
            return (every(r), None);
        }
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
        let result = self.pool.call(lane, calls).await;
        let elapsed = started.elapsed();
        self.metrics.node_call(method, elapsed, result.is_ok());
        self.recent.node_call(elapsed);
        let results = match result {
            Ok(answers) => answers.into_iter().map(Ok).collect(),
            Err(r) => every(r),
        };
        (results, Some(elapsed))
    }
}
