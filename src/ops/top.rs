//! `cometgate top`: the live page in a terminal, for a host with no browser at hand. It
//! reads the same `/admin/state` and only formats it.

use std::fmt::Write as _;
use std::time::Duration;

use bytes::Bytes;
use http::{header, Request};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

/// Client rows shown: a terminal's worth.
const ROWS: usize = 15;

/// Prints the state of the gateway whose operator listener is `base` (for example
/// `http://127.0.0.1:9464`), once or every second until interrupted.
pub async fn top(base: &str, token: Option<&str>, once: bool) -> Result<(), String> {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let url = format!("{}/admin/state", base.trim_end_matches('/'));
    loop {
        let mut request = Request::get(&url);
        if let Some(token) = token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let request = request.body(Empty::new()).map_err(|e| e.to_string())?;
        let response = tokio::time::timeout(Duration::from_secs(5), client.request(request))
            .await
            .map_err(|_| format!("{url}: no answer within 5 s"))?
            .map_err(|e| format!("{url}: {e}"))?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("{url}: {e}"))?
            .to_bytes();
        if !status.is_success() {
            let why = String::from_utf8_lossy(&body);
            return Err(format!("{url}: {status}: {}", why.trim()));
        }
        let state: Value = serde_json::from_slice(&body).map_err(|e| format!("{url}: {e}"))?;
        if once {
            print!("{}", frame(&state));
            return Ok(());
        }
        // Home and clear, then the frame: the terminal redraws in place.
        print!("\x1b[H\x1b[2J{}", frame(&state));
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

fn seconds(v: &Value) -> String {
    match v.as_f64() {
        None => "-".into(),
        Some(s) if s < 1e-3 => format!("{:.0} µs", s * 1e6),
        Some(s) if s < 1.0 => format!("{:.1} ms", s * 1e3),
        Some(s) => format!("{s:.2} s"),
    }
}

fn percent(v: &Value) -> String {
    v.as_f64()
        .map_or("-".into(), |x| format!("{:.1} %", x * 100.0))
}

fn mib(v: &Value) -> String {
    v.as_f64()
        .map_or("-".into(), |b| format!("{:.1} MiB", b / 1048576.0))
}

fn reasons(v: &Value) -> String {
    let list: Vec<String> = v
        .as_object()
        .into_iter()
        .flatten()
        .map(|(reason, n)| format!("{reason} {n}"))
        .collect();
    if list.is_empty() {
        "-".into()
    } else {
        list.join(", ")
    }
}

/// One screen: nodes, lanes, cache, then the clients by node time.
fn frame(s: &Value) -> String {
    let mut out = String::new();
    let window = s["window_seconds"].as_f64().unwrap_or(0.0);
    let _ = writeln!(out, "cometgate top: last {window:.0} s\n");
    for n in s["nodes"].as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "node {}  {}  head {}  lag {}  in flight {}  p50 {}  p99 {}  breaker {}  guard {} {}/{}",
            n["url"].as_str().unwrap_or("?"),
            if n["up"] == true { "up" } else { "DOWN" },
            n["head_height"],
            n["lag_blocks"],
            n["in_flight"],
            seconds(&n["latency_p50_seconds"]),
            seconds(&n["latency_p99_seconds"]),
            n["breaker"].as_str().unwrap_or("?"),
            n["guard"]["state"].as_str().unwrap_or("?"),
            mib(&n["guard"]["node_memory_bytes"]),
            mib(&n["guard"]["memory_limit_bytes"]),
        );
    }
    let _ = writeln!(
        out,
        "\n{:<7}{:>7}{:>11}{:>12}{:>24}  refusals",
        "lane", "limit", "in flight", "queued", "wait p50 / p99"
    );
    for l in s["lanes"].as_array().into_iter().flatten() {
        let queued = format!("{}/{}", l["queued"], l["max_queue"]);
        let wait = format!(
            "{} / {}",
            seconds(&l["wait_p50_seconds"]),
            seconds(&l["wait_p99_seconds"])
        );
        let _ = writeln!(
            out,
            "{:<7}{:>7}{:>11}{:>12}{:>24}  {}",
            l["name"].as_str().unwrap_or("?"),
            l["limit"],
            l["in_flight"],
            queued,
            wait,
            reasons(&l["refusals"]),
        );
    }
    let c = &s["cache"];
    let _ = writeln!(
        out,
        "\ncache  hit ratio {}  {} of {}  coalesced {}  stale {}  chain generation {}",
        percent(&c["hit_ratio"]),
        mib(&c["bytes"]),
        mib(&c["max_bytes"]),
        c["coalesced"],
        c["stale"],
        c["chain_generation"],
    );
    let _ = writeln!(
        out,
        "\n{:<28}{:>12}{:>9}{:>11}{:>10}",
        "client", "node time", "share", "node calls", "refusals"
    );
    for t in s["clients"]["top"]
        .as_array()
        .into_iter()
        .flatten()
        .take(ROWS)
    {
        let _ = writeln!(
            out,
            "{:<28}{:>12}{:>9}{:>11}{:>10}",
            t["client"].as_str().unwrap_or("?"),
            seconds(&t["node_seconds"]),
            percent(&t["share"]),
            t["node_calls"],
            t["refusals"],
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_frame_lists_lanes_and_clients_most_first() {
        let state = json!({
            "window_seconds": 60.2,
            "nodes": [{"url": "http://127.0.0.1:26657", "up": true, "head_height": 7,
                       "lag_blocks": 0, "in_flight": 2, "latency_p50_seconds": 0.002,
                       "latency_p99_seconds": null, "breaker": "closed",
                       "guard": {"state": "off", "node_memory_bytes": null,
                                 "memory_limit_bytes": null}}],
            "lanes": [{"name": "heavy", "limit": 16, "in_flight": 16, "queued": 3,
                       "max_queue": 256, "wait_p50_seconds": 0.018,
                       "wait_p99_seconds": 0.07, "refusals": {"lane": 4}}],
            "cache": {"hit_ratio": 0.5, "bytes": 1048576, "max_bytes": 268435456,
                      "coalesced": 1, "stale": 0, "chain_generation": 0},
            "clients": {"top": [
                {"client": "10.0.0.9", "node_seconds": 12.5, "share": 0.9,
                 "node_calls": 400, "refusals": 3},
                {"client": "10.0.0.2", "node_seconds": 0.0004, "share": 0.1,
                 "node_calls": 2, "refusals": 0}]},
        });
        let text = frame(&state);
        assert!(text.contains("last 60 s"), "{text}");
        assert!(
            text.contains("node http://127.0.0.1:26657  up  head 7"),
            "{text}"
        );
        assert!(text.contains("p50 2.0 ms  p99 -"), "{text}");
        assert!(text.contains("3/256") && text.contains("lane 4"), "{text}");
        assert!(
            text.contains("hit ratio 50.0 %  1.0 MiB of 256.0 MiB"),
            "{text}"
        );
        let first = text.find("10.0.0.9").unwrap();
        assert!(first < text.find("10.0.0.2").unwrap());
        assert!(
            text.contains("12.50 s") && text.contains("90.0 %"),
            "{text}"
        );
        assert!(text.contains("400 µs"), "{text}");
    }
}
