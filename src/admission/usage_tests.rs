//! The live view's client table: ranked by node time, windowed, and bounded whatever
//! the number of clients.

use std::net::{IpAddr, Ipv4Addr};

use super::*;

fn ip(n: u32) -> ClientKey {
    ClientKey::Ip(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + n)))
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[test]
fn the_window_is_a_minute_of_ten_second_buckets() {
    assert_eq!(BUCKET * BUCKETS as u32, Duration::from_secs(60));
    assert_eq!(Board::default().top(1, Instant::now()).window, ms(60_000));
}

#[test]
fn clients_are_ranked_by_node_time_not_by_calls() {
    let t0 = Instant::now();
    let board = Board::new(t0);
    for _ in 0..100 {
        board.charge(&ip(1), ms(1), t0);
    }
    board.charge(&ip(2), ms(900), t0);
    board.refused(&ip(3), t0);

    let view = board.top(10, t0);
    let order: Vec<_> = view.top.iter().map(|c| c.client.clone()).collect();
    assert_eq!(order, [ip(2), ip(1), ip(3)]);
    assert_eq!(view.top[1].node_calls, 100);
    assert!((view.top[1].node_seconds - 0.1).abs() < 1e-9);
    assert_eq!(view.top[2].refusals, 1);
    assert!((view.node_seconds - 1.0).abs() < 1e-9);
    assert_eq!((view.node_calls, view.refusals), (101, 1));
    assert_eq!(board.top(1, t0).top.len(), 1, "only the n asked for");
}

#[test]
fn use_leaves_the_view_once_it_is_a_minute_old() {
    let t0 = Instant::now();
    let board = Board::new(t0);
    board.charge(&ip(1), ms(500), t0);
    board.charge(&ip(2), ms(100), t0 + Duration::from_secs(30));

    let at_50s = board.top(10, t0 + Duration::from_secs(50));
    assert_eq!(at_50s.top.len(), 2);
    let at_65s = board.top(10, t0 + Duration::from_secs(65));
    assert_eq!(at_65s.top.len(), 1, "the first call's bucket has left");
    assert_eq!(at_65s.top[0].client, ip(2));
    assert!((at_65s.node_seconds - 0.1).abs() < 1e-9);
}

#[test]
fn a_bucket_reused_after_the_ring_wraps_starts_from_zero() {
    let t0 = Instant::now();
    let board = Board::new(t0);
    board.charge(&ip(1), ms(500), t0);
    // Same slot of the ring, six buckets later.
    let later = t0 + BUCKET * BUCKETS as u32;
    board.charge(&ip(1), ms(10), later);
    let view = board.top(1, later);
    assert!((view.top[0].node_seconds - 0.01).abs() < 1e-9);
}

#[test]
fn the_table_never_holds_more_than_tracked_clients_and_keeps_the_heavy_ones() {
    let t0 = Instant::now();
    let board = Board::new(t0);
    for heavy in 0..10 {
        board.charge(&ip(heavy), ms(1_000), t0);
    }
    // A crowd of one-off addresses, each refused once: ties everywhere.
    for n in 10..10_000 {
        board.refused(&ip(n), t0);
        assert!(board.top(0, t0).tracked <= TRACKED);
    }
    let view = board.top(10, t0);
    let mut kept: Vec<_> = view.top.iter().map(|c| c.client.clone()).collect();
    kept.sort_by_key(|k| format!("{k:?}"));
    let mut heavy: Vec<_> = (0..10).map(ip).collect();
    heavy.sort_by_key(|k| format!("{k:?}"));
    assert_eq!(kept, heavy);
    assert_eq!(view.refusals, 9_990, "the totals still count everyone");
}
