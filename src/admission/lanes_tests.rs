use super::*;
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

fn config(heavy: usize, heavy_queue: usize, total: usize) -> Config {
    let mut c = Config::default();
    c.upstream.max_concurrency = total;
    c.lanes.heavy = LaneConfig {
        max_concurrency: heavy,
        min_concurrency: 1,
        adaptive: false,
        fair: true,
        max_queue: heavy_queue,
        queue_timeout: Duration::from_secs(2),
        max_per_client: 0,
    };
    c.lanes.light = LaneConfig {
        max_concurrency: 8,
        min_concurrency: 1,
        adaptive: false,
        fair: true,
        max_queue: 8,
        queue_timeout: Duration::from_secs(1),
        max_per_client: 0,
    };
    c
}

/// Slots of a lane no call holds.
fn free(lanes: &Lanes, lane: Lane) -> usize {
    let s = lanes.snapshot(lane);
    s.capacity - s.in_flight
}

/// Polls once: a queued acquire must be pending, not refused.
fn poll_once<F: Future>(f: std::pin::Pin<&mut F>) -> Poll<F::Output> {
    f.poll(&mut Context::from_waker(Waker::noop()))
}

#[tokio::test(start_paused = true)]
async fn a_third_heavy_call_waits_then_times_out() {
    let lanes = Lanes::new(&config(2, 4, 3));
    let _h1 = lanes
        .acquire(Lane::Heavy, &ANYONE, "tx_search")
        .await
        .unwrap();
    let _h2 = lanes
        .acquire(Lane::Heavy, &ANYONE, "tx_search")
        .await
        .unwrap();
    let started = tokio::time::Instant::now();
    let err = lanes
        .acquire(Lane::Heavy, &ANYONE, "tx_search")
        .await
        .unwrap_err();
    assert_eq!(
        err,
        Rejection::Overloaded {
            lane: Lane::Heavy,
            retry_after: Duration::from_secs(2)
        }
    );
    assert_eq!(started.elapsed(), Duration::from_secs(2));
    assert_eq!(lanes.snapshot(Lane::Heavy).queued, 0);
}

#[tokio::test(start_paused = true)]
async fn light_flows_while_heavy_is_saturated() {
    let lanes = Lanes::new(&config(2, 4, 3));
    let _h1 = lanes
        .acquire(Lane::Heavy, &ANYONE, "tx_search")
        .await
        .unwrap();
    let _h2 = lanes
        .acquire(Lane::Heavy, &ANYONE, "tx_search")
        .await
        .unwrap();
    // A queued heavy call holds nothing of the total...
    let mut waiting = pin!(lanes.acquire(Lane::Heavy, &ANYONE, "tx_search"));
    assert!(poll_once(waiting.as_mut()).is_pending());
    // ...so the last total slot goes to light.
    let light = lanes
        .acquire(Lane::Light, &ANYONE, "tx_search")
        .await
        .unwrap();
    assert_eq!(light.lane(), Lane::Light);
    let s = lanes.snapshot(Lane::Heavy);
    assert_eq!((s.in_flight, s.queued, s.capacity), (2, 1, 2));
    assert_eq!(lanes.snapshot(Lane::Light).in_flight, 1);
}

#[tokio::test(start_paused = true)]
async fn a_full_queue_refuses_at_once() {
    let lanes = Lanes::new(&config(1, 1, 3));
    let _h1 = lanes
        .acquire(Lane::Heavy, &ANYONE, "tx_search")
        .await
        .unwrap();
    let mut queued = pin!(lanes.acquire(Lane::Heavy, &ANYONE, "tx_search"));
    assert!(poll_once(queued.as_mut()).is_pending());
    let started = tokio::time::Instant::now();
    assert!(matches!(
        lanes.acquire(Lane::Heavy, &ANYONE, "tx_search").await,
        Err(Rejection::Overloaded {
            lane: Lane::Heavy,
            ..
        })
    ));
    assert_eq!(started.elapsed(), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn a_zero_queue_never_waits() {
    let lanes = Lanes::new(&config(1, 0, 3));
    let _h1 = lanes
        .acquire(Lane::Heavy, &ANYONE, "tx_search")
        .await
        .unwrap();
    assert!(lanes
        .acquire(Lane::Heavy, &ANYONE, "tx_search")
        .await
        .is_err());
}

#[tokio::test(start_paused = true)]
async fn dropping_a_queued_waiter_gives_back_its_place() {
    let lanes = Lanes::new(&config(1, 1, 3));
    let h1 = lanes
        .acquire(Lane::Heavy, &ANYONE, "tx_search")
        .await
        .unwrap();
    {
        let mut queued = pin!(lanes.acquire(Lane::Heavy, &ANYONE, "tx_search"));
        assert!(poll_once(queued.as_mut()).is_pending());
        assert_eq!(lanes.snapshot(Lane::Heavy).queued, 1);
    }
    assert_eq!(lanes.snapshot(Lane::Heavy).queued, 0);
    // The place is free again: this one queues rather than being refused, and gets in.
    let next = tokio::spawn({
        let lanes = Lanes {
            inner: lanes.inner.clone(),
        };
        async move {
            lanes
                .acquire(Lane::Heavy, &ANYONE, "tx_search")
                .await
                .map(|p| p.lane())
        }
    });
    tokio::task::yield_now().await;
    drop(h1);
    assert_eq!(next.await.unwrap(), Ok(Lane::Heavy));
}

#[tokio::test(start_paused = true)]
async fn a_waiter_holding_its_lane_releases_it_when_dropped() {
    // Lane free, total full: the waiter holds a lane permit while it queues for the total.
    let lanes = Lanes::new(&config(2, 4, 1));
    let light = lanes
        .acquire(Lane::Light, &ANYONE, "tx_search")
        .await
        .unwrap();
    {
        let mut queued = pin!(lanes.acquire(Lane::Heavy, &ANYONE, "tx_search"));
        assert!(poll_once(queued.as_mut()).is_pending());
    }
    assert_eq!(
        free(&lanes, Lane::Heavy),
        2,
        "the dropped waiter's lane permit came back"
    );
    assert_eq!(lanes.snapshot(Lane::Heavy).queued, 0);
    drop(light);
    drop(
        lanes
            .acquire(Lane::Heavy, &ANYONE, "tx_search")
            .await
            .unwrap(),
    );
}

#[tokio::test(start_paused = true)]
async fn permits_are_released_on_drop() {
    let lanes = Lanes::new(&config(2, 4, 3));
    for _ in 0..10 {
        let a = lanes
            .acquire(Lane::Heavy, &ANYONE, "tx_search")
            .await
            .unwrap();
        let b = lanes
            .acquire(Lane::Heavy, &ANYONE, "tx_search")
            .await
            .unwrap();
        let c = lanes
            .acquire(Lane::Light, &ANYONE, "tx_search")
            .await
            .unwrap();
        drop((a, b, c));
    }
    let s = lanes.snapshot(Lane::Heavy);
    assert_eq!((s.in_flight, s.queued), (0, 0));
    assert_eq!(lanes.inner.total.available(), 3);
}

#[tokio::test(start_paused = true)]
async fn raising_a_lane_lets_a_waiter_through() {
    let lanes = Lanes::new(&config(1, 4, 3));
    let _h1 = lanes
        .acquire(Lane::Heavy, &ANYONE, "tx_search")
        .await
        .unwrap();
    let waiter = tokio::spawn({
        let lanes = Lanes {
            inner: lanes.inner.clone(),
        };
        async move {
            lanes
                .acquire(Lane::Heavy, &ANYONE, "tx_search")
                .await
                .map(|p| p.lane())
        }
    });
    tokio::task::yield_now().await;
    assert_eq!(lanes.snapshot(Lane::Heavy).queued, 1);
    lanes.reconfigure(&config(2, 4, 3));
    assert_eq!(waiter.await.unwrap(), Ok(Lane::Heavy));
}

#[tokio::test(start_paused = true)]
async fn lowering_a_lane_keeps_held_permits_valid() {
    let lanes = Lanes::new(&config(3, 4, 3));
    let held: Vec<LanePermit> = vec![
        lanes
            .acquire(Lane::Heavy, &ANYONE, "tx_search")
            .await
            .unwrap(),
        lanes
            .acquire(Lane::Heavy, &ANYONE, "tx_search")
            .await
            .unwrap(),
        lanes
            .acquire(Lane::Heavy, &ANYONE, "tx_search")
            .await
            .unwrap(),
    ];
    lanes.reconfigure(&config(1, 0, 3));
    assert_eq!(lanes.snapshot(Lane::Heavy).in_flight, 3);
    let mut held = held;
    let last = held.pop().unwrap();
    drop(held);
    // Two released into a lane of one: still full while the third is held.
    assert!(lanes
        .acquire(Lane::Heavy, &ANYONE, "tx_search")
        .await
        .is_err());
    assert_eq!(lanes.snapshot(Lane::Heavy).capacity, 1);
    drop(last);
    let again = lanes
        .acquire(Lane::Heavy, &ANYONE, "tx_search")
        .await
        .unwrap();
    assert!(lanes
        .acquire(Lane::Heavy, &ANYONE, "tx_search")
        .await
        .is_err());
    drop(again);
    assert_eq!(free(&lanes, Lane::Heavy), 1);
}

static ANYONE: ClientKey = ClientKey::Ip(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST));

#[tokio::test(start_paused = true)]
async fn a_clients_next_call_waits_behind_other_clients_first_ones() {
    let mut c = config(1, 8, 4);
    c.lanes.heavy.max_per_client = 1;
    let lanes = Lanes::new(&c);
    let (a, b) = (
        ClientKey::Ip(std::net::IpAddr::from([10, 0, 0, 1])),
        ClientKey::Ip(std::net::IpAddr::from([10, 0, 0, 2])),
    );
    // A free slot is A's whatever its share: the node is not left idle.
    let a1 = lanes.acquire(Lane::Heavy, &a, "tx_search").await.unwrap();
    // A's second call queues (its one place), its third waits for that place, then
    // B's first queues, ahead of A's second: A has had its turn.
    let mut a2 = pin!(lanes.acquire(Lane::Heavy, &a, "tx_search"));
    assert!(poll_once(a2.as_mut()).is_pending());
    let mut a3 = pin!(lanes.acquire(Lane::Heavy, &a, "tx_search"));
    assert!(poll_once(a3.as_mut()).is_pending());
    let mut b1 = pin!(lanes.acquire(Lane::Heavy, &b, "tx_search"));
    assert!(poll_once(b1.as_mut()).is_pending());
    let s = lanes.snapshot(Lane::Heavy);
    assert_eq!((s.queued, s.waiting_for_share), (2, 1));

    // A's first call holds the node a while.
    tokio::time::advance(Duration::from_millis(200)).await;
    drop(a1);
    let b1 = b1.await.unwrap();
    assert!(
        poll_once(a2.as_mut()).is_pending(),
        "B's first call went ahead of A's second"
    );
    drop(b1);
    let a2 = a2.await.unwrap();
    // A's second left the queue: its third takes the place.
    assert!(poll_once(a3.as_mut()).is_pending());
    drop(a2);
    drop(a3.await.unwrap());
    let s = lanes.snapshot(Lane::Heavy);
    assert_eq!((s.in_flight, s.queued, s.busy_clients), (0, 0, 0));
}

#[tokio::test(start_paused = true)]
async fn a_call_goes_before_a_flood_asked_for_earlier() {
    // One place each: B's flood waits mostly outside the queue, one call in it at a time.
    let mut c = config(1, 8, 4);
    c.lanes.heavy.max_per_client = 1;
    let lanes = Lanes::new(&c);
    let ip = |last: u8| ClientKey::Ip(std::net::IpAddr::from([10, 0, 0, last]));
    let (a, b, other) = (ip(1), ip(2), ip(9));
    let running = lanes
        .acquire(Lane::Heavy, &other, "tx_search")
        .await
        .unwrap();
    let mut flood: Vec<_> = (0..6)
        .map(|_| Box::pin(lanes.acquire(Lane::Heavy, &b, "tx_search")))
        .collect();
    for f in &mut flood {
        assert!(poll_once(f.as_mut()).is_pending());
    }
    // A's one call comes after all of B's were asked for.
    let mut ordinary = pin!(lanes.acquire(Lane::Heavy, &a, "tx_search"));
    assert!(poll_once(ordinary.as_mut()).is_pending());
    drop(running);
    // A asked for less than B, which asked for all of its flood before A came.
    let Poll::Ready(Ok(_held)) = poll_once(ordinary.as_mut()) else {
        panic!("A's call goes before B's flood");
    };
    for f in &mut flood {
        assert!(poll_once(f.as_mut()).is_pending());
    }
}
