//! The budget's rules, driven by hand: reads wait for room and never fail for it, an
//! answer larger than the budget is read alone, and reads growing together all finish.

use std::time::Duration;

use futures_util::FutureExt;
use prometheus_client::metrics::gauge::Gauge;

use super::*;

fn budget(total: u64) -> (Arc<Budget>, Gauge) {
    let gauge = Gauge::default();
    (Budget::new(total, gauge.clone()), gauge)
}

#[tokio::test]
async fn a_read_waits_for_room_then_takes_it() {
    let (b, gauge) = budget(1000);
    let mut first = b.open(600);
    first.grow_to(600, 600).await;
    assert_eq!((b.reserved(), gauge.get()), (600, 600));
    let mut second = b.open(600);
    let mut wait = Box::pin(second.grow_to(600, 600));
    assert!((&mut wait).now_or_never().is_none(), "no room yet");
    drop(first);
    assert!((&mut wait).now_or_never().is_some(), "room was given back");
    drop(wait);
    assert_eq!(second.held(), 600);
    drop(second);
    assert_eq!((b.reserved(), gauge.get()), (0, 0));
}

#[tokio::test]
async fn an_answer_larger_than_the_budget_takes_all_of_it_alone() {
    let (b, _) = budget(1000);
    let mut small = b.open(100);
    small.grow_to(100, 100).await;
    let mut big = b.open(5000);
    let mut big_wait = Box::pin(big.grow_to(5000, 5000));
    assert!((&mut big_wait).now_or_never().is_none());
    // Later reads do not start ahead of it, however small.
    let mut later = b.open(10);
    let mut later_wait = Box::pin(later.grow_to(10, 10));
    assert!((&mut later_wait).now_or_never().is_none());
    drop(small);
    assert!((&mut big_wait).now_or_never().is_some());
    drop(big_wait);
    assert_eq!((big.held(), b.reserved()), (1000, 1000));
    assert!((&mut later_wait).now_or_never().is_none(), "read alone");
    drop(big);
    assert!((&mut later_wait).now_or_never().is_some());
}

/// Three chunked reads, each claiming half the budget and growing in steps, would wait
/// on each other for ever if each took what was free; under the rules all finish.
#[tokio::test]
async fn chunked_reads_growing_together_all_finish() {
    let (b, gauge) = budget(1000);
    let reads: Vec<_> = (0..3)
        .map(|_| {
            let b = Arc::clone(&b);
            tokio::spawn(async move {
                let mut r = b.open(500);
                for step in 1..=4 {
                    r.grow_to(step * 100, step * 100).await;
                    assert!(b.reserved() <= 1000);
                    tokio::task::yield_now().await;
                }
                r.held()
            })
        })
        .collect();
    for read in reads {
        let held = tokio::time::timeout(Duration::from_secs(10), read)
            .await
            .expect("every read finishes")
            .unwrap();
        assert_eq!(held, 400);
    }
    assert_eq!((b.reserved(), gauge.get()), (0, 0));
}

#[tokio::test]
async fn a_read_given_up_leaves_nothing_reserved() {
    let (b, _) = budget(1000);
    let mut first = b.open(1000);
    first.grow_to(1000, 1000).await;
    let mut second = b.open(10);
    // The caller's deadline passes while it waits.
    assert!((Box::pin(second.grow_to(10, 10))).now_or_never().is_none());
    drop(second);
    drop(first);
    let mut third = b.open(1000);
    assert!((Box::pin(third.grow_to(1000, 1000)))
        .now_or_never()
        .is_some());
}
