//! The gateway's own account of the fan-out, from its `/metrics`: what it says it holds
//! and delivered, beside what the clients and the node saw. Names the gateway does not
//! export (yet) are left out, not failed on.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use serde::Serialize;

use crate::client::{Call, Client};

/// Gauges and counters read, each summed over its label sets.
pub const NAMES: [&str; 8] = [
    "cometgate_ws_clients",
    "cometgate_ws_client_subscriptions",
    "cometgate_ws_node_subscriptions",
    "cometgate_ws_node_connections",
    "cometgate_ws_events_delivered_total",
    "cometgate_ws_events_dropped_total",
    "cometgate_ws_slow_consumer_cancellations_total",
    "cometgate_ws_missed_blocks_total",
];

/// The gateway's delivery histogram (node frame to client write), in seconds.
pub const HISTOGRAM: &str = "cometgate_ws_delivery_seconds";

#[derive(Clone, Debug, Default, Serialize)]
pub struct Scrape {
    /// The names of `NAMES` found, each summed over its label sets.
    pub values: BTreeMap<String, f64>,
    pub delivery: Option<Histogram>,
    /// Why the page could not be read, if it could not.
    pub error: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Histogram {
    pub count: f64,
    pub sum_seconds: f64,
    /// The upper bound of the bucket holding the median and the 99th percentile; `None`
    /// when that is the `+Inf` bucket or nothing was recorded.
    pub p50_le_seconds: Option<f64>,
    pub p99_le_seconds: Option<f64>,
}

pub async fn scrape(metrics: SocketAddr) -> Scrape {
    let page = async {
        let client = Client::new(&format!("http://{metrics}"), None)?;
        match client.fetch(&Call::Get("/metrics".into())).await {
            Ok((200, body)) => Ok(String::from_utf8_lossy(&body).into_owned()),
            Ok((status, _)) => Err(format!("HTTP {status}")),
            Err(e) => Err(e.to_string()),
        }
    };
    match page.await {
        Ok(text) => parse(&text),
        Err(e) => Scrape {
            error: Some(format!("gateway /metrics: {e}")),
            ..Scrape::default()
        },
    }
}

/// One sample line: its name, its labels' text, its value.
fn sample(line: &str) -> Option<(&str, &str, f64)> {
    if line.starts_with('#') {
        return None;
    }
    let (name, rest) = match line.find(['{', ' ']) {
        Some(i) if line.as_bytes()[i] == b'{' => {
            let close = line[i..].find('}')? + i;
            (&line[..i], (&line[i + 1..close], &line[close + 1..]))
        }
        Some(i) => (&line[..i], ("", &line[i..])),
        None => return None,
    };
    let value = rest.1.split_whitespace().next()?.parse().ok()?;
    Some((name, rest.0, value))
}

pub fn parse(text: &str) -> Scrape {
    let mut out = Scrape::default();
    let mut buckets: BTreeMap<String, f64> = BTreeMap::new();
    let (mut count, mut sum, mut seen_histogram) = (0.0, 0.0, false);
    for (name, labels, value) in text.lines().filter_map(sample) {
        if NAMES.contains(&name) {
            *out.values.entry(name.to_string()).or_default() += value;
        } else if name == format!("{HISTOGRAM}_bucket") {
            let le = labels
                .split(',')
                .find_map(|l| l.trim().strip_prefix("le="))
                .map(|v| v.trim_matches('"').to_string());
            if let Some(le) = le {
                *buckets.entry(le).or_default() += value;
                seen_histogram = true;
            }
        } else if name == format!("{HISTOGRAM}_count") {
            count += value;
        } else if name == format!("{HISTOGRAM}_sum") {
            sum += value;
        }
    }
    if seen_histogram {
        let mut bounds: Vec<(f64, f64)> = buckets
            .iter()
            .filter_map(|(le, n)| Some((le.parse::<f64>().ok()?, *n)))
            .collect();
        bounds.sort_by(|a, b| a.0.total_cmp(&b.0));
        let le_for = |q: f64| {
            if count <= 0.0 {
                return None;
            }
            let want = q * count;
            bounds
                .iter()
                .find(|(_, n)| *n >= want)
                .map(|b| b.0)
                .filter(|b| b.is_finite())
        };
        out.delivery = Some(Histogram {
            count,
            sum_seconds: sum,
            p50_le_seconds: le_for(0.5),
            p99_le_seconds: le_for(0.99),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_label_sets_and_reads_the_histogram() {
        let page = "# HELP cometgate_ws_clients Clients.\n\
            # TYPE cometgate_ws_clients gauge\n\
            cometgate_ws_clients 10000\n\
            cometgate_ws_client_subscriptions{query=\"a\"} 6000\n\
            cometgate_ws_client_subscriptions{query=\"b, c\"} 4000\n\
            cometgate_ws_clients_other 5\n\
            cometgate_ws_delivery_seconds_bucket{le=\"0.01\"} 50\n\
            cometgate_ws_delivery_seconds_bucket{le=\"0.05\"} 99\n\
            cometgate_ws_delivery_seconds_bucket{le=\"+Inf\"} 100\n\
            cometgate_ws_delivery_seconds_sum 1.5\n\
            cometgate_ws_delivery_seconds_count 100\n\
            # EOF\n";
        let s = parse(page);
        assert_eq!(s.values["cometgate_ws_clients"], 10000.0);
        assert_eq!(s.values["cometgate_ws_client_subscriptions"], 10000.0);
        assert!(!s.values.contains_key("cometgate_ws_events_dropped_total"));
        assert_eq!(
            s.delivery,
            Some(Histogram {
                count: 100.0,
                sum_seconds: 1.5,
                p50_le_seconds: Some(0.01),
                p99_le_seconds: Some(0.05),
            })
        );
        assert!(parse("cometgate_requests_total 3\n").delivery.is_none());
        let empty = parse("cometgate_ws_delivery_seconds_bucket{le=\"0.01\"} 0\n");
        assert_eq!(empty.delivery.unwrap().p99_le_seconds, None);
    }
}
