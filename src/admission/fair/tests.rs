//! The fair queue's order, proved on a paused clock.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use super::state::MAX_CREDIT;
use super::*;

/// What `FairQueue::enter` gives: a slot now, or a place in the queue.
pub(super) enum Entry {
    Now(Slot),
    Queued(Ticket),
}

impl FairQueue {
    /// How far a client's next call would start after the lane's virtual time, in node
    /// seconds: what it is owed to the others.
    pub(super) fn lead(&self, client: &ClientKey) -> f64 {
        let state = self.lock();
        state
            .clients
            .get(client)
            .map_or(0.0, |c| (c.finish - state.virtual_time).max(0.0))
    }

    /// A slot at once if one is free and nobody waits; otherwise a place in the queue.
    pub(super) fn enter(
        self: &Arc<Self>,
        client: &ClientKey,
        method: &'static str,
    ) -> Result<Entry, Full> {
        match self.try_now(client, method) {
            Some(slot) => Ok(Entry::Now(slot)),
            None => {
                let asked = self.ask(client, method);
                self.queue_asked(client, asked).map(Entry::Queued)
            }
        }
    }
}

pub(super) fn ip(last: u8) -> ClientKey {
    ClientKey::Ip(IpAddr::V4(Ipv4Addr::new(10, 0, 0, last)))
}

pub(super) fn settings() -> Settings {
    Settings {
        fair: true,
        max_queue: 64,
        max_clients: 1024,
    }
}

pub(super) fn now(entry: Result<Entry, Full>) -> Slot {
    match entry {
        Ok(Entry::Now(slot)) => slot,
        _ => panic!("expected a slot at once"),
    }
}

pub(super) fn queued(entry: Result<Entry, Full>) -> Ticket {
    match entry {
        Ok(Entry::Queued(ticket)) => ticket,
        Ok(Entry::Now(_)) => panic!("expected to wait"),
        Err(e) => panic!("refused: {e:?}"),
    }
}

impl Ticket {
    /// The slot, if it has been granted by now.
    pub(super) fn ready(&mut self) -> Option<Slot> {
        self.grant.try_recv().ok()
    }

    fn ready_peek(&mut self) -> bool {
        !self.grant.is_empty()
    }
}

/// Holds a slot for `d` of node time, then gives it back.
async fn run_for(slot: Slot, d: Duration) {
    tokio::time::advance(d).await;
    drop(slot);
}

#[tokio::test(start_paused = true)]
async fn a_free_slot_is_taken_at_once_by_whoever_asks() {
    let q = FairQueue::new(2, settings());
    let a = now(q.enter(&ip(1), "tx_search"));
    let b = now(q.enter(&ip(1), "tx_search"));
    let s = q.snapshot();
    assert_eq!((s.running, s.queued), (2, 0));
    drop((a, b));
    assert_eq!(q.snapshot().running, 0);
}

#[tokio::test(start_paused = true)]
async fn a_freed_slot_goes_to_the_client_that_used_the_node_least() {
    let q = FairQueue::new(1, settings());
    // The flooder has used the node for a while.
    for _ in 0..5 {
        run_for(
            now(q.enter(&ip(1), "tx_search")),
            Duration::from_millis(200),
        )
        .await;
    }
    let running = now(q.enter(&ip(1), "tx_search"));
    let mut flood: Vec<Ticket> = (0..3)
        .map(|_| queued(q.enter(&ip(1), "tx_search")))
        .collect();
    // An ordinary client arrives after the flood's calls, and goes first.
    let mut ordinary = queued(q.enter(&ip(2), "tx_search"));
    run_for(running, Duration::from_millis(200)).await;
    let slot = ordinary
        .ready()
        .expect("the ordinary client's call starts next");
    assert!(flood.iter_mut().all(|t| t.ready().is_none()));
    drop(slot);
    let next = flood[0].ready();
    assert!(next.is_some(), "then the flood, in its own order");
    assert!(flood[1].ready().is_none());
}

#[tokio::test(start_paused = true)]
async fn clients_that_used_the_same_take_turns() {
    let q = FairQueue::new(1, settings());
    let running = now(q.enter(&ip(9), "block_results"));
    let mut a: Vec<Ticket> = (0..3)
        .map(|_| queued(q.enter(&ip(1), "block_results")))
        .collect();
    let mut b: Vec<Ticket> = (0..3)
        .map(|_| queued(q.enter(&ip(2), "block_results")))
        .collect();
    drop(running);
    let mut order = Vec::new();
    for _ in 0..6 {
        let (who, slot) = match (
            a.iter_mut().find_map(Ticket::ready),
            b.iter_mut().find_map(Ticket::ready),
        ) {
            (Some(slot), None) => ("a", slot),
            (None, Some(slot)) => ("b", slot),
            other => panic!(
                "exactly one call runs at a time: {:?}",
                (other.0.is_some(), other.1.is_some())
            ),
        };
        order.push(who);
        run_for(slot, Duration::from_millis(50)).await;
    }
    assert_eq!(order, ["a", "b", "a", "b", "a", "b"]);
}

#[tokio::test(start_paused = true)]
async fn an_unfair_lane_serves_in_arrival_order() {
    let q = FairQueue::new(
        1,
        Settings {
            fair: false,
            ..settings()
        },
    );
    run_for(now(q.enter(&ip(1), "tx_search")), Duration::from_secs(1)).await;
    let running = now(q.enter(&ip(1), "tx_search"));
    let mut flood = queued(q.enter(&ip(1), "tx_search"));
    let mut ordinary = queued(q.enter(&ip(2), "tx_search"));
    drop(running);
    let first = flood.ready();
    assert!(
        first.is_some(),
        "the flood's call came first, so it goes first"
    );
    assert!(ordinary.ready().is_none());
}

#[tokio::test(start_paused = true)]
async fn a_client_with_nothing_waiting_goes_ahead_of_a_crowd_that_got_as_much() {
    // Four crowd clients and an ordinary one, each served in turn so far: by node time
    // used they are all alike. The crowd keep queues; the ordinary client sends one call.
    let q = FairQueue::new(1, settings());
    let running = now(q.enter(&ip(9), "tx_search"));
    let mut crowd: Vec<Ticket> = (0..4)
        .flat_map(|_| (1..=4).map(|c| queued(q.enter(&ip(c), "tx_search"))))
        .collect();
    let mut freed = running;
    for _ in 0..4 {
        run_for(freed, Duration::from_millis(200)).await;
        freed = crowd
            .iter_mut()
            .find_map(Ticket::ready)
            .expect("the crowd is served");
    }
    let mut ordinary = queued(q.enter(&ip(5), "tx_search"));
    run_for(freed, Duration::from_millis(200)).await;
    assert!(
        ordinary.ready().is_some(),
        "its one call goes before the crowd's queues"
    );
}

#[tokio::test(start_paused = true)]
async fn an_ordinary_client_near_its_share_waits_for_a_slot_not_for_the_crowd() {
    // Two slots; three crowd clients keep queues; the ordinary client sends a call every
    // 500 ms of 200 ms calls, a little less than a fair quarter of the node. Without
    // credit its every call would start a whole call behind the virtual time.
    let q = FairQueue::new(2, settings());
    for _ in 0..10 {
        run_for(
            now(q.enter(&ip(9), "tx_search")),
            Duration::from_millis(200),
        )
        .await;
    }
    let mut running: Vec<Slot> = (0..2).map(|_| now(q.enter(&ip(9), "tx_search"))).collect();
    let mut crowd: Vec<Ticket> = (0..20)
        .flat_map(|_| (1..=3).map(|c| queued(q.enter(&ip(c), "tx_search"))))
        .collect();
    // A round of the crowd first: its queues are then all ahead of the virtual time.
    for _ in 0..4 {
        run_for(running.remove(0), Duration::from_millis(100)).await;
        let next = crowd.iter_mut().find_map(Ticket::ready).expect("the crowd");
        running.push(next);
    }
    for call in 0..10 {
        let mut ordinary = queued(q.enter(&ip(5), "tx_search"));
        // The next slot to free is the ordinary client's.
        run_for(running.remove(0), Duration::from_millis(100)).await;
        let slot = ordinary
            .ready()
            .unwrap_or_else(|| panic!("call {call} waited"));
        running.push(slot);
        // 400 ms more: its call ends, the crowd takes both slots meanwhile.
        run_for(running.remove(0), Duration::from_millis(100)).await;
        let next = crowd.iter_mut().find_map(Ticket::ready).expect("the crowd");
        running.push(next);
        for _ in 0..3 {
            run_for(running.remove(0), Duration::from_millis(100)).await;
            let next = crowd.iter_mut().find_map(Ticket::ready).expect("the crowd");
            running.push(next);
        }
    }
}

#[tokio::test(start_paused = true)]
async fn an_ordinary_clients_burst_goes_ahead_of_a_crowd_within_its_credit() {
    // Two slots; three crowd clients keep long queues of 200 ms calls. The ordinary
    // client, quiet so far, asks three calls at once (a page's heavy calls): each goes
    // to the next freed slot, though only the first came with nothing waiting.
    let q = FairQueue::new(2, settings());
    for _ in 0..10 {
        let alone = now(q.enter(&ip(9), "tx_search"));
        run_for(alone, Duration::from_millis(200)).await;
    }
    let mut running: Vec<Slot> = (0..2).map(|_| now(q.enter(&ip(9), "tx_search"))).collect();
    let mut crowd: Vec<Ticket> = (0..20)
        .flat_map(|_| (1..=3).map(|c| queued(q.enter(&ip(c), "tx_search"))))
        .collect();
    for _ in 0..12 {
        run_for(running.remove(0), Duration::from_millis(100)).await;
        let next = crowd.iter_mut().find_map(Ticket::ready).expect("the crowd");
        running.push(next);
    }
    let calls = 3;
    assert!(
        0.2 * calls as f64 <= MAX_CREDIT,
        "the burst fits the credit"
    );
    let mut burst: Vec<Ticket> = (0..calls)
        .map(|_| queued(q.enter(&ip(5), "tx_search")))
        .collect();
    for call in 0..calls {
        run_for(running.remove(0), Duration::from_millis(100)).await;
        assert!(
            crowd.iter_mut().find_map(Ticket::ready).is_none(),
            "the crowd went before call {call} of the burst"
        );
        let slot = burst
            .iter_mut()
            .find_map(Ticket::ready)
            .unwrap_or_else(|| panic!("call {call} of the burst waited"));
        running.push(slot);
    }
}

#[tokio::test(start_paused = true)]
async fn a_client_with_seconds_asked_for_waits_behind_one_asking_for_a_call() {
    // One slot, running the ordinary client's call; it has used its credit before, so
    // its next tag is a call ahead of the virtual time. The crowd client then asks
    // twenty 200 ms calls at once, four seconds, and the ordinary client one more: that
    // call goes next all the same.
    let q = FairQueue::new(1, settings());
    for client in [9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 5, 5, 5, 5, 5, 5] {
        run_for(
            now(q.enter(&ip(client), "tx_search")),
            Duration::from_millis(200),
        )
        .await;
    }
    let running = now(q.enter(&ip(5), "tx_search"));
    let mut crowd: Vec<Ticket> = (0..20)
        .map(|_| queued(q.enter(&ip(1), "tx_search")))
        .collect();
    let mut ordinary = queued(q.enter(&ip(5), "tx_search"));
    run_for(running, Duration::from_millis(200)).await;
    assert!(
        crowd.iter_mut().all(|t| t.ready().is_none()),
        "the crowd went first"
    );
    assert!(
        ordinary.ready().is_some(),
        "the ordinary client's call waits"
    );
}

#[tokio::test(start_paused = true)]
async fn an_idle_client_banks_at_most_the_credit() {
    let q = FairQueue::new(1, settings());
    // Client 1 uses the node for a long while; client 2 was away all that time.
    let mut first = now(q.enter(&ip(1), "tx_search"));
    for _ in 0..20 {
        let next = queued(q.enter(&ip(1), "tx_search"));
        run_for(first, Duration::from_millis(200)).await;
        first = next.granted().await.expect("granted");
    }
    assert!(
        q.lead(&ip(1)) < 0.3,
        "alone, it owes nobody: {}",
        q.lead(&ip(1))
    );
    // Both now keep two calls waiting, each asking again as one of its calls starts:
    // client 2 goes ahead for its credit, not for the twenty calls it missed, and then
    // they take turns.
    let mut one: Vec<Ticket> = (0..2)
        .map(|_| queued(q.enter(&ip(1), "tx_search")))
        .collect();
    let mut two: Vec<Ticket> = (0..2)
        .map(|_| queued(q.enter(&ip(2), "tx_search")))
        .collect();
    let mut order = Vec::new();
    let mut slot = first;
    for _ in 0..14 {
        run_for(slot, Duration::from_millis(200)).await;
        slot = match (
            one.iter_mut().find_map(Ticket::ready),
            two.iter_mut().find_map(Ticket::ready),
        ) {
            (Some(s), None) => {
                order.push(1);
                one.push(queued(q.enter(&ip(1), "tx_search")));
                s
            }
            (None, Some(s)) => {
                order.push(2);
                two.push(queued(q.enter(&ip(2), "tx_search")));
                s
            }
            _ => panic!("one call at a time"),
        };
    }
    let ahead = order.iter().take_while(|&&c| c == 2).count();
    let credit_calls = (MAX_CREDIT / 0.2).ceil() as usize;
    assert!(
        (1..=credit_calls + 1).contains(&ahead),
        "client 2 goes first for its credit alone: {order:?}"
    );
    assert!(
        order[ahead..]
            .windows(3)
            .all(|w| w.contains(&1) && w.contains(&2)),
        "then they take turns: {order:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_call_is_charged_what_it_really_held() {
    let q = FairQueue::new(1, settings());
    // The first guess is small; the call holds its slot for four seconds.
    let running = now(q.enter(&ip(1), "tx_search"));
    let _other = queued(q.enter(&ip(2), "tx_search"));
    run_for(running, Duration::from_secs(4)).await;
    // A new client starts with the whole credit.
    let lead = q.lead(&ip(1));
    let owed = 4.0 - MAX_CREDIT;
    assert!((lead - owed).abs() < 0.05, "owes what it held: {lead}");
}

// The queue's limits, its reconfiguration and the bound on waiting.
#[path = "bounds_tests.rs"]
mod bounds;
