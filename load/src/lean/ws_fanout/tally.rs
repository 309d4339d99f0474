//! From what every client and the reference saw to one point's figures: delivery
//! latency over the measured blocks, blocks in order or not, frames as the node would
//! have sent them or not.

use std::collections::HashMap;
use std::time::Instant;

use serde::Serialize;

use super::clients::{Seen, Spec};
use super::frames::{order, percentile, Order};

/// Delivery and correctness over the measured blocks `start..=end`.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Delivery {
    pub start: u64,
    pub end: u64,
    /// (client, block) pairs with both the client's and the reference's instant.
    pub samples: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Per block, the latency of its last client; the median over blocks.
    pub last_client_p50_ms: f64,
    /// Clients with every block from their first to `end`, once each, rising.
    pub in_order: usize,
    pub gaps_or_disorder: usize,
    pub short: usize,
    pub nothing: usize,
    pub first_problem: Option<String>,
    pub bad_id_frames: u64,
    pub bad_query_frames: u64,
    pub frames_without_height: u64,
    pub first_bad_frame: Option<String>,
    pub closed_early: usize,
    pub first_close: Option<String>,
    /// Sampled clients' frames compared whole with the node's frame rewritten for them.
    pub frames_compared: usize,
    pub frames_identical: usize,
}

impl Delivery {
    pub fn blocks(&self) -> u64 {
        (self.end + 1).saturating_sub(self.start)
    }
}

/// `clients` pairs each client's spec with what it saw; `reference` is the node's side.
pub fn tally(clients: &[(Spec, Seen)], reference: &(Spec, Seen), start: u64, end: u64) -> Delivery {
    let sent: HashMap<u64, Instant> = reference.1.blocks.iter().copied().collect();
    let mut d = Delivery {
        start,
        end,
        ..Delivery::default()
    };
    let mut all = Vec::new();
    let mut last_per_block: HashMap<u64, f64> = HashMap::new();
    for (spec, seen) in clients {
        for &(h, at) in seen.blocks.iter().filter(|b| (start..=end).contains(&b.0)) {
            let Some(&t0) = sent.get(&h) else { continue };
            let ms = signed_ms(at, t0);
            all.push(ms);
            let last = last_per_block.entry(h).or_insert(f64::MIN);
            *last = last.max(ms);
        }
        count_order(&mut d, seen, end, spec);
        d.bad_id_frames += seen.bad_id;
        d.bad_query_frames += seen.bad_query;
        d.frames_without_height += seen.no_height;
        if d.first_bad_frame.is_none() {
            d.first_bad_frame.clone_from(&seen.first_bad);
        }
        if let Some(why) = &seen.closed {
            d.closed_early += 1;
            d.first_close.get_or_insert_with(|| why.clone());
        }
        compare_frames(&mut d, spec, seen, reference);
    }
    all.sort_by(f64::total_cmp);
    let mut lasts: Vec<f64> = last_per_block.into_values().collect();
    lasts.sort_by(f64::total_cmp);
    d.samples = all.len();
    d.p50_ms = percentile(&all, 0.5);
    d.p99_ms = percentile(&all, 0.99);
    d.max_ms = percentile(&all, 1.0);
    d.last_client_p50_ms = percentile(&lasts, 0.5);
    d
}

/// Milliseconds from `t0` to `at`; below zero when the client's frame was read before
/// the reference's (both are on loopback: it happens, by a little).
fn signed_ms(at: Instant, t0: Instant) -> f64 {
    match at.checked_duration_since(t0) {
        Some(d) => d.as_secs_f64() * 1e3,
        None => -(t0.duration_since(at).as_secs_f64() * 1e3),
    }
}

fn count_order(d: &mut Delivery, seen: &Seen, end: u64, spec: &Spec) {
    let problem = match order(seen.blocks.iter().map(|b| b.0), end) {
        Order::Complete => {
            d.in_order += 1;
            return;
        }
        Order::Nothing => {
            d.nothing += 1;
            "no block at all".to_string()
        }
        Order::Broken { after, got } => {
            d.gaps_or_disorder += 1;
            format!("block {got} after {after}")
        }
        Order::Short { last } => {
            d.short += 1;
            format!("last block {last}, the end was {end}")
        }
    };
    d.first_problem
        .get_or_insert_with(|| format!("client id {}: {problem}", spec.id));
}

fn compare_frames(d: &mut Delivery, spec: &Spec, seen: &Seen, reference: &(Spec, Seen)) {
    let (mine, theirs) = (spec.expect(), reference.0.expect());
    for (h, frame) in &seen.frames {
        let Some((_, node_frame)) = reference.1.frames.iter().find(|f| f.0 == *h) else {
            continue;
        };
        d.frames_compared += 1;
        if mine.rewrite(node_frame, &theirs).as_deref() == Some(&frame[..]) {
            d.frames_identical += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn spec(id: u64) -> Spec {
        Spec {
            url: String::new(),
            id: id.into(),
            query: "q".into(),
            keep_frames: false,
        }
    }

    fn seen(t0: Instant, blocks: &[(u64, u64)]) -> Seen {
        Seen {
            blocks: blocks
                .iter()
                .map(|&(h, ms)| (h, t0 + Duration::from_millis(h * 1000 + ms)))
                .collect(),
            ..Seen::default()
        }
    }

    #[test]
    fn latency_is_against_the_reference_over_the_window_only() {
        let t0 = Instant::now();
        let reference = (spec(0), seen(t0, &[(1, 0), (2, 0), (3, 0), (4, 0)]));
        let clients = vec![
            (spec(1), seen(t0, &[(1, 900), (2, 10), (3, 20), (4, 30)])),
            (spec(2), seen(t0, &[(2, 40), (3, 5), (4, 5)])),
            (spec(3), seen(t0, &[(2, 1), (4, 1)])),
        ];
        let d = tally(&clients, &reference, 2, 4);
        assert_eq!(d.samples, 8, "block 1 is before the window");
        assert!((d.max_ms - 40.0).abs() < 0.5);
        assert!((d.last_client_p50_ms - 30.0).abs() < 0.5, "{d:?}");
        assert_eq!((d.in_order, d.gaps_or_disorder), (2, 1));
        assert_eq!(
            d.first_problem.as_deref(),
            Some("client id 3: block 4 after 2")
        );
        assert_eq!(d.blocks(), 3);
    }

    #[test]
    fn negative_when_the_client_read_first() {
        let t0 = Instant::now();
        let later = t0 + Duration::from_millis(3);
        assert!((signed_ms(t0, later) + 3.0).abs() < 0.01);
        assert!((signed_ms(later, t0) - 3.0).abs() < 0.01);
    }
}
