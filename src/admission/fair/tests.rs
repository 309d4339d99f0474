//! The fair queue's order, proved on a paused clock.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use proptest::prelude::*;

use super::*;

/// What `FairQueue::enter` gives: a slot now, or a place in the queue.
pub(super) enum Entry {
    Now(Slot),
    Queued(Ticket),
}

impl FairQueue {
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

fn ip(last: u8) -> ClientKey {
    ClientKey::Ip(IpAddr::V4(Ipv4Addr::new(10, 0, 0, last)))
}

fn settings() -> Settings {
    Settings {
        fair: true,
        max_queue: 64,
        max_clients: 1024,
    }
}

fn now(entry: Result<Entry, Full>) -> Slot {
    match entry {
        Ok(Entry::Now(slot)) => slot,
        _ => panic!("expected a slot at once"),
    }
}

fn queued(entry: Result<Entry, Full>) -> Ticket {
    match entry {
        Ok(Entry::Queued(ticket)) => ticket,
        Ok(Entry::Now(_)) => panic!("expected to wait"),
        Err(e) => panic!("refused: {e:?}"),
    }
}

impl Ticket {
    /// The slot, if it has been granted by now.
    fn ready(&mut self) -> Option<Slot> {
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
    // 300 ms of 200 ms calls, as much node time as each crowd client gets. Without the
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
    for call in 0..6 {
        let mut ordinary = queued(q.enter(&ip(5), "tx_search"));
        // The next slot to free is the ordinary client's.
        run_for(running.remove(0), Duration::from_millis(100)).await;
        let slot = ordinary
            .ready()
            .unwrap_or_else(|| panic!("call {call} waited"));
        running.push(slot);
        // Another 200 ms: its call ends, the crowd takes both slots meanwhile.
        run_for(running.remove(0), Duration::from_millis(100)).await;
        let next = crowd.iter_mut().find_map(Ticket::ready).expect("the crowd");
        running.push(next);
        run_for(running.remove(0), Duration::from_millis(100)).await;
        let next = crowd.iter_mut().find_map(Ticket::ready).expect("the crowd");
        running.push(next);
    }
}

#[tokio::test(start_paused = true)]
async fn an_idle_client_banks_no_credit() {
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
    // Both now queue: they take turns, client 2 does not get twenty calls first.
    let mut one: Vec<Ticket> = (0..3)
        .map(|_| queued(q.enter(&ip(1), "tx_search")))
        .collect();
    let mut two: Vec<Ticket> = (0..3)
        .map(|_| queued(q.enter(&ip(2), "tx_search")))
        .collect();
    let mut order = Vec::new();
    let mut slot = first;
    for _ in 0..6 {
        run_for(slot, Duration::from_millis(200)).await;
        slot = match (
            one.iter_mut().find_map(Ticket::ready),
            two.iter_mut().find_map(Ticket::ready),
        ) {
            (Some(s), None) => {
                order.push(1);
                s
            }
            (None, Some(s)) => {
                order.push(2);
                s
            }
            _ => panic!("one call at a time"),
        };
    }
    assert!(
        order.windows(2).all(|w| w[0] != w[1]),
        "they take turns: {order:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_call_is_charged_what_it_really_held() {
    let q = FairQueue::new(1, settings());
    // The first guess is small; the call holds its slot for four seconds.
    let running = now(q.enter(&ip(1), "tx_search"));
    let _other = queued(q.enter(&ip(2), "tx_search"));
    run_for(running, Duration::from_secs(4)).await;
    let lead = q.lead(&ip(1));
    assert!((lead - 4.0).abs() < 0.05, "owes what it held: {lead}");
}

#[tokio::test(start_paused = true)]
async fn a_full_queue_refuses_and_a_dropped_wait_gives_its_place_back() {
    let q = FairQueue::new(
        1,
        Settings {
            max_queue: 2,
            ..settings()
        },
    );
    let running = now(q.enter(&ip(1), "tx_search"));
    let first = queued(q.enter(&ip(2), "tx_search"));
    let mut second = queued(q.enter(&ip(3), "tx_search"));
    assert_eq!(q.enter(&ip(4), "tx_search").err(), Some(Full::Queue));
    drop(first);
    assert_eq!(q.snapshot().queued, 1);
    drop(running);
    assert!(
        second.ready().is_some(),
        "the slot skips the call that left"
    );
    assert_eq!(q.snapshot().queued, 0);
}

#[tokio::test(start_paused = true)]
async fn a_slot_granted_to_a_wait_that_left_is_given_back() {
    let q = FairQueue::new(1, settings());
    let running = now(q.enter(&ip(1), "tx_search"));
    let ticket = queued(q.enter(&ip(2), "tx_search"));
    drop(running); // granted to the ticket, which nobody reads
    assert_eq!(q.snapshot().running, 1);
    drop(ticket);
    assert_eq!(q.snapshot().running, 0);
}

#[tokio::test(start_paused = true)]
async fn paused_nothing_new_starts_and_resuming_starts_the_waiting() {
    let q = FairQueue::new(4, settings());
    q.set_hold(Some(0));
    let mut waiting = queued(q.enter(&ip(1), "tx_search"));
    assert!(waiting.ready().is_none());
    q.set_hold(None);
    assert!(waiting.ready().is_some());
}

#[tokio::test(start_paused = true)]
async fn a_raised_limit_starts_the_waiting_and_a_lowered_one_lets_running_calls_end() {
    let q = FairQueue::new(1, settings());
    let a = now(q.enter(&ip(1), "tx_search"));
    let mut b = queued(q.enter(&ip(2), "tx_search"));
    q.set_limit(2);
    let b = b.ready().expect("started by the new slot");
    q.set_limit(1);
    let mut c = queued(q.enter(&ip(3), "tx_search"));
    drop(a);
    assert!(
        c.ready().is_none(),
        "two running, one allowed: nothing starts"
    );
    drop(b);
    assert!(c.ready().is_some());
}

#[tokio::test(start_paused = true)]
async fn idle_clients_age_out_of_a_bounded_table() {
    let q = FairQueue::new(
        8,
        Settings {
            max_clients: 16,
            ..settings()
        },
    );
    for last in 0..200u8 {
        run_for(now(q.enter(&ip(last), "status")), Duration::from_millis(1)).await;
        assert!(q.snapshot().clients <= 16);
    }
    // A busy client is never what makes room.
    let busy = now(q.enter(&ip(250), "status"));
    for last in 0..100u8 {
        run_for(now(q.enter(&ip(last), "status")), Duration::from_millis(1)).await;
    }
    assert!(q.lock().clients.contains_key(&ip(250)));
    drop(busy);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Whatever the arrivals, a call waiting is passed over only a bounded number of
    /// times. While it waits, only calls with a start tag no later than its own start
    /// (no call starts at once while any waits). Another client's calls are tagged at
    /// least 5 ms apart: each adds its estimate (10 ms at first, then the 20-25 ms the
    /// calls hold) and a call that ends is corrected to what it held, which takes back
    /// at most 5 ms. So a call that starts `lead` after the virtual time is passed over
    /// at most by the others' calls already waiting, and by (clients - 1) *
    /// (lead / 5 ms + 2) more, plus the running ones. First come, first served fails
    /// this.
    #[test]
    fn no_waiting_client_is_skipped_without_bound(
        arrivals in prop::collection::vec(prop::collection::vec((0u8..5, 20u64..=25), 0..12), 1..60),
        limit in 1usize..4,
    ) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        rt.block_on(skips_are_bounded(arrivals, limit));
    }
}

/// A waiting call in the simulation.
struct Waiting {
    client: u8,
    hold: Duration,
    ticket: Ticket,
    /// Calls of other clients served before it queued.
    others_then: u64,
    /// The bound on calls of others served while it waits.
    bound: u64,
}

/// Bursts of arrivals; between two bursts the call nearest its end ends.
async fn skips_are_bounded(bursts: Vec<Vec<(u8, u64)>>, limit: usize) {
    const CLIENTS: u64 = 5;
    let q = FairQueue::new(
        limit,
        Settings {
            fair: true,
            max_queue: 1000,
            max_clients: 100,
        },
    );
    let mut running: Vec<(Slot, Duration)> = Vec::new();
    let mut waiting: Vec<Waiting> = Vec::new();
    let mut served = [0u64; CLIENTS as usize];
    let others =
        |served: &[u64; CLIENTS as usize], c: u8| served.iter().sum::<u64>() - served[c as usize];
    let mut bursts = bursts.into_iter();
    loop {
        let burst = bursts.next();
        if burst.is_none() && running.is_empty() && waiting.is_empty() {
            break;
        }
        for (client, hold) in burst.unwrap_or_default() {
            let hold = Duration::from_millis(hold);
            match q.enter(&ip(client), "tx_search") {
                Ok(Entry::Now(slot)) => {
                    served[client as usize] += 1;
                    running.push((slot, hold));
                }
                Ok(Entry::Queued(ticket)) => {
                    let lead_ms = (q.lead(&ip(client)) * 1000.0).ceil() as u64;
                    let others_waiting =
                        waiting.iter().filter(|w| w.client != client).count() as u64;
                    waiting.push(Waiting {
                        client,
                        hold,
                        ticket,
                        others_then: others(&served, client),
                        bound: others_waiting + (CLIENTS - 1) * (lead_ms / 5 + 2) + limit as u64,
                    });
                }
                Err(e) => panic!("refused: {e:?}"),
            }
        }
        // The call nearest its end ends.
        if let Some(i) = (0..running.len()).min_by_key(|i| running[*i].1) {
            let (slot, hold) = running.swap_remove(i);
            tokio::time::advance(hold).await;
            for r in &mut running {
                r.1 = r.1.saturating_sub(hold);
            }
            drop(slot);
        }
        // One at a time, so that the count of others served is exact.
        if let Some(i) = waiting.iter_mut().position(|w| w.ticket.ready_peek()) {
            let mut w = waiting.remove(i);
            let slot = w.ticket.ready().expect("peeked");
            let skipped = others(&served, w.client) - w.others_then;
            assert!(
                skipped <= w.bound,
                "passed over {skipped} times (bound {})",
                w.bound
            );
            served[w.client as usize] += 1;
            running.push((slot, w.hold));
        }
    }
    assert_eq!(q.snapshot().queued, 0);
    assert_eq!(q.snapshot().running, 0);
}
