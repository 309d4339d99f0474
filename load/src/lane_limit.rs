//! The heavy lane's limit as cometgate held it during a run, read from its own
//! `/metrics` (`cometgate_lane_limit{lane="heavy"}`). The sweep and the crowd are judged
//! on what clients saw; this says what the adaptive lane did to get there.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::client::{Call, Client};

/// The limit's spread over one run's samples, or over the rounds' runs. `median` is the
/// middle sample (the upper one of an even count): limits are whole calls.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq)]
pub struct LimitSeen {
    pub median: f64,
    pub least: f64,
    pub most: f64,
}

impl LimitSeen {
    pub fn of(samples: &[f64]) -> Option<LimitSeen> {
        if samples.is_empty() {
            return None;
        }
        let mut v = samples.to_vec();
        v.sort_by(f64::total_cmp);
        Some(LimitSeen {
            median: v[v.len() / 2],
            least: v[0],
            most: v[v.len() - 1],
        })
    }

    /// Rounds folded: the median of their medians, the extremes of their extremes.
    pub fn fold(rounds: impl Iterator<Item = Option<LimitSeen>>) -> Option<LimitSeen> {
        let seen: Vec<LimitSeen> = rounds.flatten().collect();
        let medians: Vec<f64> = seen.iter().map(|s| s.median).collect();
        let mid = LimitSeen::of(&medians)?.median;
        Some(LimitSeen {
            median: mid,
            least: seen.iter().map(|s| s.least).fold(f64::INFINITY, f64::min),
            most: seen
                .iter()
                .map(|s| s.most)
                .fold(f64::NEG_INFINITY, f64::max),
        })
    }
}

impl std::fmt::Display for LimitSeen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "median {:.0}, {:.0} to {:.0}",
            self.median, self.least, self.most
        )
    }
}

/// One reading, or None when the page or the line is missing.
pub async fn heavy_limit(metrics: SocketAddr) -> Option<f64> {
    let client = Client::new(&format!("http://{metrics}"), None).ok()?;
    match client.fetch(&Call::Get("/metrics".into())).await {
        Ok((200, body)) => parse(std::str::from_utf8(&body).ok()?),
        _ => None,
    }
}

fn parse(page: &str) -> Option<f64> {
    page.lines()
        .find(|l| l.starts_with("cometgate_lane_limit{") && l.contains("lane=\"heavy\""))
        .and_then(|l| l.rsplit(' ').next()?.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_heavy_line_is_read_and_the_light_one_is_not() {
        let page = "# TYPE cometgate_lane_limit gauge\n\
                    cometgate_lane_limit{lane=\"light\"} 48\n\
                    cometgate_lane_limit{lane=\"heavy\"} 6\n";
        assert_eq!(parse(page), Some(6.0));
        assert_eq!(parse("cometgate_lane_limit{lane=\"light\"} 48\n"), None);
    }

    #[test]
    fn rounds_fold_to_the_median_of_medians_and_the_outer_extremes() {
        let a = LimitSeen::of(&[4.0, 5.0, 9.0]);
        let b = LimitSeen::of(&[3.0, 6.0, 6.0]);
        let c = LimitSeen::of(&[7.0]);
        assert_eq!(
            LimitSeen::fold([a, b, None, c].into_iter()),
            Some(LimitSeen {
                median: 6.0,
                least: 3.0,
                most: 9.0
            })
        );
        assert_eq!(LimitSeen::of(&[]), None);
        assert_eq!(LimitSeen::fold([None].into_iter()), None);
    }
}
