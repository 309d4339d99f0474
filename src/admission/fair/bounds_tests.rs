//! The fair queue's bounds: its size, the client table, the guard's hold, limits that
//! change, and how long a waiting call can be passed over.

use std::time::Duration;

use proptest::prelude::*;

use super::*;

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
    // Each other client may go ahead by its credit, in calls of at least 20 ms.
    const CREDIT_CALLS: u64 = (MAX_CREDIT * 1000.0 / 20.0) as u64;
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
                        bound: others_waiting
                            + (CLIENTS - 1) * (lead_ms / 5 + CREDIT_CALLS + 2)
                            + limit as u64,
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
