//! Express starts, proved on a paused clock: who may start one past a full adaptive
//! lane, what it borrows, and where it never happens.

use std::time::Duration;

use super::tests::{ip, now, queued, settings};
use super::*;

const CALL: Duration = Duration::from_millis(200);

/// An adaptive lane (first limit 4) with a call that holds one slot throughout, so no
/// call of a test runs alone: the limiter then knows no method's unloaded time and
/// keeps its limit, which lets the tests count slots. Clients 5 to 9, the ordinary
/// ones, have each had a call end on the lane.
async fn adaptive_lane(floor: usize, ceiling: usize) -> (Arc<FairQueue>, Slot) {
    let q = FairQueue::new(4, settings());
    q.set_adaptive(floor, ceiling);
    let held = now(q.enter(&ip(200), "tx_search"));
    // What a `tx_search` costs, learned beside the held call.
    serve_once(&q, [201, 201, 201, 5, 6, 7, 8, 9]).await;
    (q, held)
}

/// One call of each client in turn, run for `CALL` and ended.
async fn serve_once(q: &Arc<FairQueue>, clients: impl IntoIterator<Item = u8>) {
    for client in clients {
        let slot = now(q.enter(&ip(client), "tx_search"));
        tokio::time::advance(CALL).await;
        drop(slot);
    }
}

/// Three crowd clients fill the lane's other three slots and each keep ten calls waiting.
fn crowd(q: &Arc<FairQueue>) -> (Vec<Slot>, Vec<Ticket>) {
    let running = (1..=3).map(|c| now(q.enter(&ip(c), "tx_search"))).collect();
    let waiting = (0..10)
        .flat_map(|_| (1..=3).map(|c| queued(q.enter(&ip(c), "tx_search"))))
        .collect();
    (running, waiting)
}

fn ready(crowd: &mut [Ticket]) -> Option<Slot> {
    crowd.iter_mut().find_map(Ticket::ready)
}

#[tokio::test(start_paused = true)]
async fn an_owed_client_starts_past_a_full_lane_and_borrows_the_next_freed_slot() {
    let (q, _held) = adaptive_lane(1, 16).await;
    let (mut running, mut waiting) = crowd(&q);
    assert_eq!(q.snapshot().running, 4);
    assert_eq!(q.snapshot().limit, 4);

    let mut ordinary = queued(q.enter(&ip(9), "tx_search"));
    let express = ordinary
        .ready()
        .expect("the ordinary client starts at once");
    assert_eq!(q.snapshot().running, 5);
    assert_eq!(q.snapshot().express_starts, 1);

    // The next call to end frees no slot: the express call had borrowed it.
    tokio::time::advance(CALL / 2).await;
    drop(running.remove(0));
    assert!(
        ready(&mut waiting).is_none(),
        "the crowd waits for the borrowed slot"
    );
    assert_eq!(q.snapshot().running, 4);
    // Once the express call ends, the crowd has its slot back.
    tokio::time::advance(CALL / 2).await;
    drop(express);
    let _crowd = ready(&mut waiting).expect("the crowd has its slot back");
    assert_eq!(q.snapshot().running, 4);
}

#[tokio::test(start_paused = true)]
async fn one_express_call_at_a_time_and_ending_first_it_frees_nothing() {
    let (q, _held) = adaptive_lane(1, 16).await;
    let (mut running, _waiting) = crowd(&q);
    let mut first = queued(q.enter(&ip(9), "tx_search"));
    let mut second = queued(q.enter(&ip(9), "tx_search"));
    let express = first
        .ready()
        .expect("the first call of the burst starts at once");
    assert!(second.ready().is_none(), "one express call at a time");
    let mut other = queued(q.enter(&ip(8), "tx_search"));
    assert!(other.ready().is_none(), "one for all clients");
    assert_eq!(q.snapshot().running, 5);

    // The express call ends first: it had borrowed the next freed slot, so nothing
    // starts, and the next call to end gives its slot to the first in fair order.
    tokio::time::advance(CALL / 2).await;
    drop(express);
    assert!(second.ready().is_none() && other.ready().is_none());
    assert_eq!(q.snapshot().running, 4);
    assert_eq!(q.snapshot().express_starts, 1, "not one after the other");
    // Then a call ends: the first in fair order takes its slot, and with the borrowed
    // one paid back the other may start past the limit.
    drop(running.remove(0));
    let next = [second.ready(), other.ready()];
    assert_eq!(next.iter().flatten().count(), 2);
    assert_eq!(q.snapshot().running, 5);
    assert_eq!(q.snapshot().express_starts, 2);
}

#[tokio::test(start_paused = true)]
async fn express_calls_pause_while_the_limiter_hears_too_few_calls() {
    let (q, _held) = adaptive_lane(1, 16).await;
    let mut owed = 20..60u8;
    serve_once(&q, owed.clone()).await;
    let (mut running, mut waiting) = crowd(&q);
    waiting.extend((0..10).flat_map(|_| (1..=3).map(|c| queued(q.enter(&ip(c), "tx_search")))));
    // Each round an owed client's express call overlaps the crowd's three calls: the
    // limiter hears none of the four.
    let mut rounds = 0;
    loop {
        let client = owed.next().expect("express calls pause within 40 rounds");
        let Some(express) = queued(q.enter(&ip(client), "tx_search")).ready() else {
            break;
        };
        rounds += 1;
        tokio::time::advance(CALL).await;
        drop(express);
        for _ in 0..3 {
            drop(running.remove(0));
            running.push(ready(&mut waiting).expect("the crowd's next"));
        }
    }
    // About a tenth of the calls heard: 0.95^(4 × 12) < 0.1 < 0.95^(4 × 11).
    assert_eq!(rounds, 12);
    assert_eq!(q.snapshot().express_starts, 12);
    // A call that ran without one is heard, and they resume.
    drop(running.remove(0));
    running.push(ready(&mut waiting).expect("the crowd's next"));
    let client = owed.next().expect("an owed client");
    let _express = queued(q.enter(&ip(client), "tx_search"))
        .ready()
        .expect("the limiter hears enough again");
}

#[tokio::test(start_paused = true)]
async fn a_crowd_with_queues_never_starts_past_the_limit() {
    let (q, _held) = adaptive_lane(1, 16).await;
    // Five clients share three slots, each with calls waiting: two of them have nothing
    // running at any time, but all they asked for puts them ahead of the virtual time,
    // and the first calls of new clients are owed nothing yet.
    let mut running: Vec<Slot> = (1..=3).map(|c| now(q.enter(&ip(c), "tx_search"))).collect();
    let mut waiting: Vec<Ticket> = (0..10)
        .flat_map(|_| (1..=5).map(|c| queued(q.enter(&ip(c), "tx_search"))))
        .collect();
    assert!(waiting.iter_mut().all(|t| t.ready().is_none()));
    for _ in 0..30 {
        tokio::time::advance(CALL / 3).await;
        drop(running.remove(0));
        running.push(ready(&mut waiting).expect("the next crowd call"));
        assert!(
            ready(&mut waiting).is_none(),
            "one call for each that ended"
        );
        assert_eq!(q.snapshot().running, 4);
    }
    assert_eq!(q.snapshot().express_starts, 0);
}

#[tokio::test(start_paused = true)]
async fn never_past_the_ceiling_nor_the_guards_hold_nor_at_the_floor_nor_on_a_static_lane() {
    // A ceiling of 4: the lane is at it.
    let (q, _held) = adaptive_lane(1, 4).await;
    let (_running, _waiting) = crowd(&q);
    let mut ordinary = queued(q.enter(&ip(9), "tx_search"));
    assert!(ordinary.ready().is_none(), "the ceiling is the operator's");

    // The guard holds the lane to the four running.
    let (q, _held) = adaptive_lane(1, 16).await;
    q.set_hold(Some(4));
    let (_running, _waiting) = crowd(&q);
    let mut ordinary = queued(q.enter(&ip(9), "tx_search"));
    assert!(ordinary.ready().is_none(), "the node's memory has no room");

    // At its floor (4 here) the limiter relearns the node from calls that run alone.
    let (q, _held) = adaptive_lane(4, 16).await;
    let (_running, _waiting) = crowd(&q);
    let mut ordinary = queued(q.enter(&ip(9), "tx_search"));
    assert!(ordinary.ready().is_none(), "the limit is at the floor");

    // A static lane's number is the operator's too.
    let q = FairQueue::new(4, settings());
    let _held = now(q.enter(&ip(200), "tx_search"));
    let (_running, _waiting) = crowd(&q);
    let mut ordinary = queued(q.enter(&ip(9), "tx_search"));
    assert!(ordinary.ready().is_none());
    assert_eq!(q.snapshot().express_starts, 0);
}

#[tokio::test(start_paused = true)]
async fn calls_beside_an_express_call_are_kept_from_the_limiter() {
    let (q, held) = adaptive_lane(1, 16).await;
    let (mut running, _waiting) = crowd(&q);
    let before = q.lock().seen(false);
    let mut ordinary = queued(q.enter(&ip(9), "tx_search"));
    let express = ordinary.ready().expect("express");
    {
        let state = q.lock();
        assert!(
            !state.undisturbed(before),
            "started before it, ends while it runs"
        );
        assert!(!state.undisturbed(express.seen), "the express call itself");
    }
    drop(running.remove(0));
    drop(express);
    let state = q.lock();
    assert!(
        !state.undisturbed(held.seen),
        "it ran beside the express call"
    );
    assert!(
        state.undisturbed(state.seen(false)),
        "a call started after it ended"
    );
}

#[tokio::test(start_paused = true)]
async fn the_limiter_does_not_read_a_borrowed_slot_as_a_queue() {
    let q = FairQueue::new(4, settings());
    q.set_adaptive(1, 16);
    // A `tx_search` takes 200 ms alone: the limiter's reference.
    for client in [201, 201, 201, 9] {
        let slot = now(q.enter(&ip(client), "tx_search"));
        tokio::time::advance(CALL).await;
        drop(slot);
    }
    let mut running: Vec<Slot> = (1..=4).map(|c| now(q.enter(&ip(c), "tx_search"))).collect();
    let _waiting: Vec<Ticket> = (0..10)
        .flat_map(|_| (1..=4).map(|c| queued(q.enter(&ip(c), "tx_search"))))
        .collect();
    let mut ordinary = queued(q.enter(&ip(9), "tx_search"));
    let express = ordinary.ready().expect("express");
    // Five calls on a node with four slots: each takes three times its time alone.
    tokio::time::advance(CALL * 3).await;
    drop(express);
    for _ in 0..4 {
        drop(running.remove(0));
    }
    assert_eq!(q.snapshot().limit, 4, "the five were the gateway's doing");
}
