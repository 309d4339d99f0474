//! Windows and sparkline points from the sampler's ring: sized by their types, and
//! right about what happened when.

use super::*;

fn cache(hits: u64, misses: u64) -> CacheCounts {
    CacheCounts {
        hits,
        misses,
        ..CacheCounts::default()
    }
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

#[test]
fn the_rings_hold_a_minute_of_ticks_and_five_minutes_of_points() {
    assert_eq!(TICK * (SAMPLES - 1) as u32, secs(60));
    assert_eq!(TICK * (POINT_TICKS * POINTS) as u32, secs(300));
}

#[test]
fn the_minute_counts_only_what_happened_within_it() {
    let t0 = Instant::now();
    let recent = Recent::new(t0);
    for _ in 0..7 {
        recent.request();
    }
    recent.node_call(Duration::from_millis(3));
    recent.refused(Scope::Heavy, "lane");
    // Two minutes of quiet ticks push all of that out of the window.
    for s in 1..=120 {
        recent.tick(cache(10, 2), t0 + secs(s));
    }
    recent.request();
    recent.refused(Scope::Heavy, "lane");
    recent.refused(Scope::Heavy, "rate");
    recent.lane_waited(Scope::Light, Duration::from_millis(40));

    let w = recent.minute(cache(13, 3), t0 + secs(120) + Duration::from_millis(500));
    assert_eq!(w.span, Duration::from_millis(60_500));
    assert_eq!((w.totals.requests, w.totals.node_calls), (1, 0));
    assert_eq!(
        w.totals.refusals(Scope::Heavy),
        &vec![("lane", 1), ("rate", 1)]
    );
    assert!(w.totals.refusals(Scope::Light).is_empty());
    assert_eq!(w.totals.hit_ratio(), Some(0.75));
    let wait = w.totals.lane_wait(Scope::Light).unwrap();
    assert_eq!(wait.total(), 1);
    assert!(wait.quantile(0.5).unwrap() >= 0.04);
    assert_eq!(w.totals.node_latency.quantile(0.99), None);
}

#[test]
fn before_the_first_tick_the_window_starts_at_start() {
    let t0 = Instant::now();
    let recent = Recent::new(t0);
    recent.request();
    let w = recent.minute(CacheCounts::default(), t0 + secs(2));
    assert_eq!((w.span, w.totals.requests), (secs(2), 1));
    assert_eq!(w.totals.hit_ratio(), None, "no lookups: no ratio, not zero");
}

#[test]
fn a_point_every_five_ticks_and_never_more_than_sixty() {
    let t0 = Instant::now();
    let recent = Recent::new(t0);
    for s in 1..=1_000u64 {
        // Ten requests a second, half of them hits, one slow node call a second.
        for _ in 0..10 {
            recent.request();
        }
        recent.node_call(Duration::from_millis(200));
        recent.tick(cache(5 * s, 5 * s), t0 + secs(s));
        if s == 14 {
            assert_eq!(recent.points().len(), 2);
        }
    }
    let points = recent.points();
    assert_eq!(points.len(), POINTS);
    assert_eq!(points.last().unwrap().end, t0 + secs(1_000));
    assert_eq!(points[0].end, t0 + secs(1_000 - 5 * 59));
    let p = points.last().unwrap();
    assert!((p.requests_per_second - 10.0).abs() < 1e-9);
    assert!((p.node_calls_per_second - 1.0).abs() < 1e-9);
    assert_eq!(p.hit_ratio, Some(0.5));
    assert!(p.p99_seconds.unwrap() >= 0.2);
}
