//! The limiter against a model of the node: `slots` calls run at full speed and more
//! share them (processor sharing), so with `l` running each call takes `l / slots` of its
//! unloaded time. Time is passed in, so minutes of traffic take microseconds.

use super::*;
use std::time::Instant;

struct Node {
    slots: usize,
    /// Unloaded seconds per method, at the node's current speed.
    methods: Vec<(&'static str, f64)>,
    /// How far one call's cost may be from its method's: 0.4 is ±40% (a page of 5 txs
    /// and one of 100 are both `tx_search`).
    spread: f64,
}

impl Node {
    /// The unloaded cost of the `n`th call of a method, spread evenly over its range.
    fn cost(&self, base: f64, n: usize) -> f64 {
        let u = ((n * 7919) % 101) as f64 / 50.0 - 1.0;
        base * (1.0 + self.spread * u)
    }
}

/// Calls of each method a lane that has just opened sees alone.
const QUIET_CALLS: usize = 8;

struct Run {
    a: Adaptive,
    now: Instant,
    next: usize,
}

impl Run {
    /// A lane that has just opened: each method's first call finds it empty.
    fn new(min: usize, max: usize, node: &Node) -> Run {
        let mut run = Run {
            a: Adaptive::new(min, max),
            now: Instant::now(),
            next: 0,
        };
        for n in 0..QUIET_CALLS {
            for &(method, base) in &node.methods {
                let sample = Sample {
                    method,
                    took: Duration::from_secs_f64(node.cost(base, n)),
                    running_at_start: 1,
                    running: 1,
                };
                run.now += sample.took;
                run.a.record(sample);
            }
        }
        run
    }

    /// A full lane for `seconds`: every finished call is replaced at once, so `limit`
    /// calls always run and each is stretched by how far that exceeds the node's slots.
    fn overload(&mut self, node: &Node, seconds: f64) {
        let end = self.now + Duration::from_secs_f64(seconds);
        while self.now < end {
            let running = self.a.limit();
            let (method, base) = node.methods[self.next % node.methods.len()];
            self.next += 1;
            let stretch = (running as f64 / node.slots as f64).max(1.0);
            let took = node.cost(base, self.next) * stretch;
            // `running` calls finish per `took`, spread evenly.
            self.now += Duration::from_secs_f64(took / running as f64);
            let sample = Sample {
                method,
                took: Duration::from_secs_f64(took),
                running_at_start: running,
                running,
            };
            self.a.record(sample);
        }
    }

    /// The limit's range over `seconds` more of the same.
    fn range(&mut self, node: &Node, seconds: f64) -> (usize, usize) {
        let (mut lo, mut hi) = (usize::MAX, 0);
        let end = self.now + Duration::from_secs_f64(seconds);
        while self.now < end {
            self.overload(node, 0.5);
            lo = lo.min(self.a.limit());
            hi = hi.max(self.a.limit());
        }
        (lo, hi)
    }
}

fn mixed(slots: usize, speed: f64) -> Node {
    Node {
        slots,
        methods: vec![
            ("tx_search", 0.2 / speed),
            ("block_results", 0.01 / speed),
            ("abci_query", 0.05 / speed),
        ],
        spread: 0.0,
    }
}

#[test]
fn a_full_lane_settles_at_the_nodes_slots_whatever_the_mix() {
    for slots in [2, 4, 12] {
        let node = mixed(slots, 1.0);
        let mut run = Run::new(1, 32, &node);
        run.overload(&node, 60.0);
        let (lo, hi) = run.range(&node, 60.0);
        assert!(
            lo >= slots && hi <= slots + 2,
            "{slots} slots: the limit ranged {lo}..={hi}"
        );
    }
}

#[test]
fn calls_that_vary_in_cost_do_not_hold_the_limit_below_the_slots() {
    // The reference is what a method usually takes alone, not the fastest it ever took:
    // every ordinary call would otherwise look queued.
    for spread in [0.2, 0.4] {
        let node = Node {
            spread,
            ..mixed(4, 1.0)
        };
        let mut run = Run::new(1, 32, &node);
        run.overload(&node, 600.0);
        let (lo, hi) = run.range(&node, 60.0);
        assert!(
            lo >= 4 && hi <= 7,
            "±{spread}: the limit ranged {lo}..={hi}"
        );
    }
}

#[test]
fn a_long_overload_does_not_teach_it_that_slow_is_normal() {
    // Gradient2 drifted to its ceiling here: an hour at the limit, every call stretched.
    let node = mixed(4, 1.0);
    let mut run = Run::new(1, 32, &node);
    run.overload(&node, 30.0);
    let early = run.range(&node, 30.0);
    run.overload(&node, 3600.0);
    let late = run.range(&node, 30.0);
    assert!(late.1 <= 6, "after an hour: {late:?}, at first {early:?}");
}

#[test]
fn a_slower_node_first_gets_fewer_calls_and_then_is_relearned() {
    let mut run = Run::new(1, 32, &mixed(8, 1.0));
    run.overload(&mixed(8, 1.0), 60.0);
    let fast = run.a.limit();
    // Four times slower: every call looks queued at first.
    let slow = mixed(8, 0.25);
    run.overload(&slow, 2.0);
    let shrunk = run.a.limit();
    assert!(shrunk < fast / 2, "{fast} -> {shrunk}");
    // Calls that run alone measure the slower node; then its slots are used again.
    run.overload(&slow, 60.0);
    let (lo, hi) = run.range(&slow, 30.0);
    assert!(lo >= 8 && hi <= 10, "relearned: {lo}..={hi}, was {fast}");
}

#[test]
fn the_limit_stays_within_its_floor_and_ceiling() {
    let mut run = Run::new(3, 6, &mixed(32, 1.0));
    assert_eq!(run.a.limit(), 4, "it starts where a static lane was");
    run.overload(&mixed(32, 1.0), 30.0);
    assert_eq!(run.a.limit(), 6);
    run.overload(&mixed(1, 0.1), 30.0);
    assert_eq!(run.a.limit(), 3);
}

#[test]
fn jitter_below_a_tenth_does_not_hold_the_limit_back() {
    // A node whose calls vary by up to 8% on their own grows the lane to its slots.
    let mut a = Adaptive::new(1, 32);
    let mut now = Instant::now();
    for i in 0..400 {
        // The first call finds the lane empty; then it is kept full.
        let running = if i == 0 { 1 } else { a.limit() };
        let jitter = 1.0 + (i % 5) as f64 * 0.02;
        let took = 0.1 * jitter * (running as f64 / 10.0).max(1.0);
        now += Duration::from_millis(10);
        let sample = Sample {
            method: "tx_search",
            took: Duration::from_secs_f64(took),
            running_at_start: running,
            running,
        };
        a.record(sample);
    }
    assert!((10..=12).contains(&a.limit()), "{}", a.limit());
}

#[test]
fn a_method_first_seen_on_a_full_lane_does_not_move_the_limit() {
    // Its times are all loaded ones: read as unloaded, they would say "no queue, grow".
    let known = mixed(4, 1.0);
    let mut run = Run::new(1, 32, &known);
    run.overload(&known, 30.0);
    let settled = run.a.limit();
    let newcomer = Node {
        slots: 4,
        methods: vec![("genesis_chunked", 0.3)],
        spread: 0.0,
    };
    run.overload(&newcomer, 30.0);
    assert_eq!(run.a.limit(), settled);
}

#[test]
fn a_first_call_that_paid_for_a_connection_is_not_kept_as_the_reference() {
    // Ten times its usual time, alone; then only loaded calls. Kept as the reference,
    // it would read every call as unqueued and grow the lane to its ceiling.
    let node = Node {
        slots: 4,
        methods: vec![("tx_search", 0.2)],
        spread: 0.0,
    };
    let mut run = Run {
        a: Adaptive::new(1, 32),
        now: Instant::now(),
        next: 0,
    };
    run.a.record(Sample {
        method: "tx_search",
        took: Duration::from_secs(2),
        running_at_start: 1,
        running: 1,
    });
    run.overload(&node, 120.0);
    let (lo, hi) = run.range(&node, 60.0);
    assert!(hi <= 10, "the limit ranged {lo}..={hi}");
}

/// A full lane in front of a node that shares `slots` between the calls it runs: each
/// call is started as the limit allows and ends when its `work` is done, so what it
/// reports was decided by the limits that held while it ran, a call's time earlier.
/// Returns the share of time the node ran more calls than its slots, and fewer.
fn shared_node(a: &mut Adaptive, slots: usize, work: f64, seconds: f64) -> (f64, f64) {
    // Each running call: when it started, its work left, the calls running then.
    let mut running: Vec<(f64, f64, usize)> = Vec::new();
    let (mut t, mut over, mut under) = (0.0, 0.0, 0.0);
    while t < seconds {
        while running.len() < a.limit() {
            running.push((t, work, running.len() + 1));
        }
        let n = running.len();
        let rate = (slots as f64 / n as f64).min(1.0);
        let (next, left) = running
            .iter()
            .enumerate()
            .map(|(i, c)| (i, c.1))
            .min_by(|x, y| x.1.total_cmp(&y.1))
            .expect("a full lane");
        let dt = left / rate;
        match n.cmp(&slots) {
            std::cmp::Ordering::Greater => over += dt,
            std::cmp::Ordering::Less => under += dt,
            std::cmp::Ordering::Equal => {}
        }
        t += dt;
        for c in &mut running {
            c.1 -= dt * rate;
        }
        let (started, _, at_start) = running.swap_remove(next);
        a.record(Sample {
            method: "tx_search",
            took: Duration::from_secs_f64(t - started),
            running_at_start: at_start,
            running: n,
        });
    }
    (over / t, under / t)
}

#[test]
fn a_full_lane_rarely_crowds_the_node_past_its_slots() {
    // Every call past the slots stretches all of them, an ordinary client's too: a
    // limit that spends half its time one above the slots costs that client a quarter
    // more on half its heavy calls (the limiter before this test did, 0.50 of the time).
    // Probing one more must be brief, and rarer, without leaving slots idle.
    for (slots, work) in [(4, 0.2), (4, 0.025), (8, 0.1)] {
        let mut a = Adaptive::new(1, 16);
        shared_node(&mut a, slots, work, 30.0);
        let (over, under) = shared_node(&mut a, slots, work, 120.0);
        assert!(
            over <= 0.33 && under <= 0.05,
            "{slots} slots, {work} s calls: past the slots {over:.2} of the time, below {under:.2}"
        );
    }
}

#[test]
fn new_bounds_keep_what_was_learned_so_the_limit_still_moves_under_load() {
    // Under steady load no call runs alone: forgetting each method's unloaded time, a
    // reloaded limiter would stay where it starts (4) until the load eased.
    let node = mixed(8, 1.0);
    let mut run = Run::new(1, 32, &node);
    run.overload(&node, 60.0);
    run.a = std::mem::replace(&mut run.a, Adaptive::new(1, 1)).rebound(2, 16);
    assert_eq!(run.a.bounds(), (2, 16));
    run.overload(&node, 60.0);
    let (lo, hi) = run.range(&node, 30.0);
    assert!(lo >= 8 && hi <= 10, "after the reload: {lo}..={hi}");
}
