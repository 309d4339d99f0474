//! The one sequence every call goes through, whether it came alone, in a batch, in the
//! URI form or over a websocket. A single call is a batch of one.
//!
//! ```text
//! admit     methods::lookup -> admission.policy -> methods::canonicalize
//!           -> admission.check_params -> admission.check_rate       (dry run: no charge)
//! lookup    cache.plan (pin "latest" to the head) -> cache.begin:
//!           Hit | Wait (an identical call in flight) | Lead | Bypass
//! fetch     the leads and bypasses, detached: a lead whose answer never changes looks
//!           in the shared tier first; the rest make one node call, a lone one as a
//!           single call and several as one upstream batch (see `fetch`)
//! finish    followers wait; a failure may fall back to a stale "latest" answer; each
//!           refusal is counted and logged once, each call counted
//! ```
//!
//! What comes back is one `Served` per call that has an id, in the request's order; the
//! caller shapes it for its transport (`respond`, or a websocket message).

use std::sync::Arc;

use super::access_log::AccessLog;
use super::{fetch, refuse, Gateway};
use crate::admission::{ClientKey, MethodPolicy};
use crate::cache::{Begin, CacheStatus, Follower, Leader, Plan};
use crate::error::Rejection;
use crate::jsonrpc::{Call, Id};
use crate::methods::{self, canonicalize, Canonical};
use crate::reply::Outcome;
use crate::upstream::Answer;

/// One call's result, ready to be written back.
pub(super) struct Served {
    pub id: Id,
    pub outcome: Outcome,
    pub cache: CacheStatus,
}

/// A call that passed admission: its effective policy and canonical form.
pub(crate) struct Admitted {
    pub policy: MethodPolicy,
    pub canonical: Canonical,
}

/// Whom admission charges: `/admin/explain` asks what would happen without spending
/// anyone's rate.
#[derive(Clone, Copy)]
pub(crate) enum Charge<'a> {
    Client(&'a ClientKey),
    DryRun,
}

/// A call after the lookup stage.
enum Looked {
    Done(Result<Answer, Rejection>, CacheStatus),
    /// Another caller's fetch; the plan lets a failure fall back to a stale answer.
    Wait(Follower, Plan),
    /// Index into the misses sent to the node.
    Fetch(usize),
}

/// Runs `calls` through every stage. Notifications are neither run nor answered.
pub(super) async fn run(
    gw: &Arc<Gateway>,
    client: &ClientKey,
    calls: &[Call],
    log: &mut AccessLog,
) -> Vec<Served> {
    let mut looked = Vec::with_capacity(calls.len());
    let mut misses = Vec::new();
    for call in calls {
        log.method(&call.method);
        let Some(id) = call.id.clone() else { continue };
        let step = match admit(gw, call, Charge::Client(client)) {
            Ok(admitted) => lookup(gw, admitted, &mut misses).await,
            Err(r) => Looked::Done(Err(r), CacheStatus::Bypass),
        };
        looked.push((id, call.method.as_str(), step));
    }
    let fetched = fetch::misses(gw, client, misses, log).await;
    let mut fetched = fetched.into_iter().map(Some).collect::<Vec<_>>();
    let mut served = Vec::with_capacity(looked.len());
    for (id, method, step) in looked {
        let (result, cache) = match step {
            Looked::Done(result, cache) => (result, cache),
            Looked::Wait(follower, plan) => {
                let result = follower.wait().await;
                gw.cache.settle(&plan, result, CacheStatus::Coalesced).await
            }
            Looked::Fetch(n) => fetched
                .get_mut(n)
                .and_then(Option::take)
                .unwrap_or_else(fetch::lost),
        };
        served.push(finish(gw, client, log, id, method, result, cache));
    }
    served
}

/// The stages before the cache, in order. Each refusal names its reason.
pub(crate) fn admit(gw: &Gateway, call: &Call, charge: Charge) -> Result<Admitted, Rejection> {
    let spec = methods::lookup(&call.method).ok_or(Rejection::MethodNotFound)?;
    if spec.websocket_only {
        return Err(Rejection::MethodNotFound);
    }
    let policy = gw.admission.policy(spec);
    if !policy.allowed {
        return Err(Rejection::MethodDenied(spec.name.to_owned()));
    }
    let mut canonical =
        canonicalize(spec, &call.params, call.form).map_err(Rejection::InvalidParams)?;
    gw.admission.check_params(&policy, &mut canonical)?;
    if let Charge::Client(client) = charge {
        // The shared tier's two steps, only where there is one to ask.
        let shared = gw.shared.is_on() && gw.admission.rate_limited(client);
        gw.shared.check(shared)?;
        gw.admission.check_rate(client, policy.cost)?;
        if shared {
            gw.shared.admitted(client, policy.cost);
        }
    }
    Ok(Admitted { policy, canonical })
}

/// Plans the call's cache entry and looks it up; a lead or a bypass joins the misses.
async fn lookup(gw: &Gateway, admitted: Admitted, misses: &mut Vec<fetch::Miss>) -> Looked {
    let Admitted {
        policy,
        mut canonical,
    } = admitted;
    let plan = gw.cache.plan(&mut canonical, policy.cache_ttl);
    if let Plan::Cached {
        key,
        latest: Some(latest),
        ..
    } = &plan
    {
        gw.demand.note(latest, key, &canonical);
    }
    let leader: Option<Leader> = match gw.cache.begin(plan.clone()).await {
        Begin::Hit(answer) => return Looked::Done(Ok(answer), CacheStatus::Hit),
        Begin::Wait(follower) => return Looked::Wait(follower, plan),
        Begin::Previous(answer) => {
            gw.metrics.previous_served();
            return Looked::Done(Ok(answer), CacheStatus::Stale);
        }
        Begin::Lead(leader) => Some(leader),
        Begin::Bypass => None,
    };
    misses.push(fetch::Miss {
        canonical,
        lane: policy.lane,
        leader,
        plan,
    });
    Looked::Fetch(misses.len() - 1)
}

/// A refresh-ahead fetch of `call` at the new head: admission's checks (its rate is the
/// gateway's own, never charged), the plan, and, if nobody has it yet, the fetch through
/// the lanes as the refresher's client. Not counted as a request, and never noted as
/// demand. Returns what happened, for `cometgate_cache_refreshes_total`.
pub(super) async fn refresh(gw: &Arc<Gateway>, call: &Call) -> &'static str {
    let Ok(Admitted {
        policy,
        mut canonical,
    }) = admit(gw, call, Charge::DryRun)
    else {
        return "refused";
    };
    let plan = gw.cache.plan(&mut canonical, policy.cache_ttl);
    let leader = match gw.cache.begin(plan.clone()).await {
        Begin::Lead(leader) => leader,
        Begin::Hit(_) => return "cached",
        Begin::Wait(_) | Begin::Previous(_) => return "joined",
        Begin::Bypass => return "refused",
    };
    let miss = fetch::Miss {
        canonical,
        lane: policy.lane,
        leader: Some(leader),
        plan,
    };
    let client = super::refresh::refresher();
    let fetched = fetch::misses(gw, &client, vec![miss], &mut AccessLog::default()).await;
    match fetched.first() {
        Some((Ok(_), CacheStatus::Miss)) => "fetched",
        _ => "failed",
    }
}

/// The last stage of one call: counted by method and cache status, and, if refused,
/// counted and logged by reason.
fn finish(
    gw: &Gateway,
    client: &ClientKey,
    log: &mut AccessLog,
    id: Id,
    method: &str,
    result: Result<Answer, Rejection>,
    cache: CacheStatus,
) -> Served {
    let outcome = match result {
        Ok(answer) => Outcome::Answer(answer),
        Err(r) => {
            let lane = methods::lookup(method).map(|spec| gw.admission.policy(spec).lane);
            refuse::count(gw, log, &r, lane);
            gw.admission.refused(client);
            Outcome::Rejected(r)
        }
    };
    gw.metrics.request(method, outcome.is_error(), cache);
    gw.recent.request();
    Served { id, outcome, cache }
}
