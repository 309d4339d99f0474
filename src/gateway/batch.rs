//! A JSON-RPC batch: every entry is admitted and looked up on its own, and only the
//! misses go to the node, together, as one upstream batch. The answer keeps the
//! request's order and carries per-entry errors; a one-element batch is answered with a
//! bare object, as CometBFT does.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::{Response, StatusCode};

use super::call::{outcome_of, prepare, AccessLog};
use super::Gateway;
use crate::admission::ClientKey;
use crate::cache::{Begin, CacheStatus, Follower, Leader, Plan};
use crate::config::Lane;
use crate::error::Rejection;
use crate::jsonrpc::{Call, Form, Id};
use crate::methods::Canonical;
use crate::reply::{self, Chunks, Outcome};
use crate::upstream::Answer;

enum Slot {
    Done(Outcome, CacheStatus),
    /// Another caller's fetch; the plan lets a failure fall back to a stale answer.
    Wait(Follower, Plan),
    /// Index into the list of calls sent upstream.
    Fetch(usize),
}

/// A miss to send upstream; a leader's answer is also stored and handed to followers.
struct Miss {
    canonical: Canonical,
    lane: Lane,
    leader: Option<(Leader, Plan)>,
}

pub(super) async fn serve(
    gw: &Arc<Gateway>,
    client: &ClientKey,
    calls: Vec<Call>,
    log: &mut AccessLog,
) -> Response<Chunks> {
    if calls.is_empty() {
        let r = Rejection::InvalidRequest("empty batch".into());
        log.rejected(r.reason());
        return reply::rejection(None, &r, Form::JsonRpc);
    }
    let mut ids: Vec<Id> = Vec::with_capacity(calls.len());
    let mut slots: Vec<Slot> = Vec::with_capacity(calls.len());
    let mut misses: Vec<Miss> = Vec::new();
    for call in &calls {
        // Notifications are neither run nor answered, inside a batch too.
        let Some(id) = call.id.clone() else { continue };
        log.method(&call.method);
        ids.push(id);
        let prepared = match prepare(gw, client, call) {
            Ok(p) => p,
            Err(r) => {
                super::call::refused(gw, &r);
                slots.push(Slot::Done(Outcome::Rejected(r), CacheStatus::Bypass));
                continue;
            }
        };
        let mut canonical = prepared.canonical;
        let plan = gw.cache.plan(&mut canonical, prepared.policy.cache_ttl);
        let lane = prepared.policy.lane;
        let slot = match gw.cache.begin(plan.clone()).await {
            Begin::Hit(answer) => Slot::Done(Outcome::Answer(answer), CacheStatus::Hit),
            Begin::Wait(follower) => Slot::Wait(follower, plan),
            Begin::Lead(leader) => {
                misses.push(Miss {
                    canonical,
                    lane,
                    leader: Some((leader, plan)),
                });
                Slot::Fetch(misses.len() - 1)
            }
            Begin::Bypass => {
                misses.push(Miss {
                    canonical,
                    lane,
                    leader: None,
                });
                Slot::Fetch(misses.len() - 1)
            }
        };
        slots.push(slot);
    }
    if ids.is_empty() {
        return reply::json(StatusCode::OK, Chunks::new());
    }

    let fetched = if misses.is_empty() {
        Vec::new()
    } else {
        fetch_detached(gw, client, misses).await
    };

    let mut entries: Vec<Bytes> = Vec::with_capacity(ids.len() * 3 + 2);
    let single = ids.len() == 1;
    if !single {
        entries.push(Bytes::from_static(b"["));
    }
    for (i, (id, slot)) in ids.iter().zip(slots).enumerate() {
        let (outcome, status) = match slot {
            Slot::Done(outcome, status) => (outcome, status),
            Slot::Wait(follower, plan) => match follower.wait().await {
                Ok(answer) => (Outcome::Answer(answer), CacheStatus::Coalesced),
                Err(e) => match gw.cache.stale(&plan, &e).await {
                    Some(answer) => (Outcome::Answer(answer), CacheStatus::Stale),
                    None => (outcome_of(gw, Err(e)), CacheStatus::Coalesced),
                },
            },
            Slot::Fetch(n) => {
                let (result, status) = fetched.get(n).cloned().unwrap_or((
                    Err(Rejection::UpstreamInvalid(
                        "the batch answer is missing an entry".into(),
                    )),
                    CacheStatus::Miss,
                ));
                (outcome_of(gw, result), status)
            }
        };
        gw.metrics
            .request(calls_method(&calls, id), outcome.is_error(), status);
        if i > 0 {
            entries.push(Bytes::from_static(b","));
        }
        reply::entry(&mut entries, Some(id), &outcome, Form::JsonRpc);
    }
    if !single {
        entries.push(Bytes::from_static(b"]"));
    }
    let mut body = Chunks::new();
    body.extend(entries);
    reply::json(StatusCode::OK, body)
}

fn calls_method<'a>(calls: &'a [Call], id: &Id) -> &'a str {
    calls
        .iter()
        .find(|c| c.id.as_ref() == Some(id))
        .map_or("other", |c| c.method.as_str())
}

/// Sends the misses as one upstream batch in a task of its own, so that a client that
/// hangs up does not cancel a fetch other callers are waiting on.
async fn fetch_detached(
    gw: &Arc<Gateway>,
    client: &ClientKey,
    misses: Vec<Miss>,
) -> Vec<(Result<Answer, Rejection>, CacheStatus)> {
    let (gw, client) = (gw.clone(), client.clone());
    let task = tokio::spawn(async move {
        // The node runs a batch's entries one after another: one slot, in the heaviest lane.
        let lane = if misses.iter().any(|m| m.lane == Lane::Heavy) {
            Lane::Heavy
        } else {
            Lane::Light
        };
        let calls: Vec<&Canonical> = misses.iter().map(|m| &m.canonical).collect();
        let results: Vec<Result<Answer, Rejection>> =
            match fetch_batch(&gw, &client, lane, &calls).await {
                Ok(answers) => answers.into_iter().map(Ok).collect(),
                Err(r) => vec![Err(r); calls.len()],
            };
        drop(calls);
        let mut out = Vec::with_capacity(misses.len());
        for (miss, result) in misses.into_iter().zip(results) {
            let Some((leader, plan)) = miss.leader else {
                out.push((result, CacheStatus::Bypass));
                continue;
            };
            leader.finish(&result);
            // A node failure may still be covered by a recent "latest" answer.
            let stale = match &result {
                Err(e) => gw.cache.stale(&plan, e).await,
                Ok(_) => None,
            };
            out.push(match stale {
                Some(answer) => (Ok(answer), CacheStatus::Stale),
                None => (result, CacheStatus::Miss),
            });
        }
        out
    });
    task.await.unwrap_or_default()
}

async fn fetch_batch(
    gw: &Gateway,
    client: &ClientKey,
    lane: Lane,
    calls: &[&Canonical],
) -> Result<Vec<Answer>, Rejection> {
    let _probe = gw.breaker.admit()?;
    let queued = Instant::now();
    let _slot = gw.admission.lane_slot(lane, client).await?;
    gw.metrics.lane_waited(lane, queued.elapsed());
    let started = Instant::now();
    let result = gw.upstream.call_batch(calls).await;
    gw.breaker.record(lane, &result);
    gw.metrics
        .node_call("batch", started.elapsed(), result.is_ok());
    result
}
