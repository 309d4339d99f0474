//! The plain-client cross-check: the same call against the same running target, sent by
//! `wrk` instead of the harness. wrk is a small C client on one thread; the harness is a
//! pooled hyper client on the tokio runtime. Where the two disagree on a ratio, the
//! report shows both, so that a figure never rests on the harness alone.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::client::Call;

/// What the cross-check is run with: one thread and 50 connections, as the issue's own
/// measurements were taken.
pub const THREADS: usize = 1;
pub const CONNECTIONS: usize = 50;

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq)]
pub struct WrkFigures {
    pub rps: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Non-2xx answers and socket errors together.
    pub errors: u64,
}

/// Several rounds' figures as one: the medians, with the errors summed. None unless
/// every round has a cross-check.
pub fn fold(rounds: impl Iterator<Item = Option<WrkFigures>>) -> Option<WrkFigures> {
    let rounds: Vec<WrkFigures> = rounds.collect::<Option<_>>()?;
    let median = |f: fn(&WrkFigures) -> f64| {
        let mut v: Vec<f64> = rounds.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied()
    };
    Some(WrkFigures {
        rps: median(|w| w.rps)?,
        p50_ms: median(|w| w.p50_ms)?,
        p99_ms: median(|w| w.p99_ms)?,
        errors: rounds.iter().map(|w| w.errors).sum(),
    })
}

/// wrk from PATH, installed from Debian's packages when missing.
pub fn ensure_wrk() -> Option<PathBuf> {
    crate::stack::installed("wrk", &["/usr/bin/wrk", "/usr/local/bin/wrk"], &["wrk"])
}

/// Runs wrk against `base` for `duration`, sending `call` on every request.
pub async fn cross_check(
    wrk: &Path,
    base: &str,
    call: &Call,
    duration: Duration,
    dir: &Path,
) -> Result<WrkFigures, String> {
    let url = match call {
        Call::Post(_) => format!("{base}/"),
        Call::Get(path) => format!("{base}{path}"),
    };
    run(wrk, &url, &lua(call), duration, dir).await
}

/// Runs wrk against `url` for `duration` with the Lua `script`.
pub async fn run(
    wrk: &Path,
    url: &str,
    script: &str,
    duration: Duration,
    dir: &Path,
) -> Result<WrkFigures, String> {
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let path = dir.join("wrk.lua");
    std::fs::write(&path, script).map_err(|e| e.to_string())?;
    let script = path;
    let url = url.to_string();
    let mut cmd = Command::new(wrk);
    cmd.arg(format!("-t{THREADS}"))
        .arg(format!("-c{CONNECTIONS}"))
        .arg(format!("-d{}s", duration.as_secs().max(1)))
        .arg("--latency")
        .arg("-s")
        .arg(&script)
        .arg(&url);
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("wrk: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!("wrk failed: {text}"));
    }
    parse(&text).ok_or_else(|| format!("wrk's output not understood: {text}"))
}

/// The request as a wrk script: the method, the body and its content type.
fn lua(call: &Call) -> String {
    match call {
        Call::Post(body) => format!(
            "wrk.method = \"POST\"\nwrk.headers[\"Content-Type\"] = \"application/json\"\nwrk.body = [==[{}]==]\n",
            String::from_utf8_lossy(body)
        ),
        Call::Get(_) => "wrk.method = \"GET\"\n".into(),
    }
}

/// Reads `Requests/sec`, the 50% and 99% lines of `--latency`, and the error lines.
fn parse(text: &str) -> Option<WrkFigures> {
    let mut figures = WrkFigures {
        rps: f64::NAN,
        p50_ms: f64::NAN,
        p99_ms: f64::NAN,
        errors: 0,
    };
    for line in text.lines().map(str::trim) {
        let mut words = line.split_whitespace();
        match (words.next(), words.next()) {
            (Some("Requests/sec:"), Some(v)) => figures.rps = v.parse().ok()?,
            (Some("50%"), Some(v)) => figures.p50_ms = millis(v)?,
            (Some("99%"), Some(v)) => figures.p99_ms = millis(v)?,
            (Some("Non-2xx"), _) => figures.errors += last_number(line)?,
            (Some("Socket"), _) => {
                figures.errors += line.split(',').filter_map(last_number).sum::<u64>()
            }
            _ => {}
        }
    }
    let complete = [figures.rps, figures.p50_ms, figures.p99_ms]
        .iter()
        .all(|v| v.is_finite());
    complete.then_some(figures)
}

fn last_number(s: &str) -> Option<u64> {
    s.split_whitespace().last()?.parse().ok()
}

/// wrk prints durations as `812.00us`, `1.23ms` or `2.01s`.
fn millis(v: &str) -> Option<f64> {
    let (number, scale) = if let Some(n) = v.strip_suffix("us") {
        (n, 1e-3)
    } else if let Some(n) = v.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = v.strip_suffix('m') {
        (n, 60_000.0)
    } else {
        (v.strip_suffix('s')?, 1_000.0)
    };
    Some(number.parse::<f64>().ok()? * scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// wrk 4.1's own output, as Debian ships it.
    const OUTPUT: &str = "Running 8s test @ http://127.0.0.1:40001/
  1 threads and 50 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   812.41us  301.22us   9.87ms   88.10%
    Req/Sec    61.23k     2.10k   64.90k    80.00%
  Latency Distribution
     50%  760.00us
     75%    0.91ms
     90%    1.10ms
     99%    2.01ms
  487312 requests in 8.00s, 420.11MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 7
Requests/sec:  60914.02
Transfer/sec:     52.51MB
";

    #[test]
    fn reads_throughput_latency_and_errors_in_every_unit() {
        let f = parse(OUTPUT).unwrap();
        assert_eq!(f.rps, 60914.02);
        assert!((f.p50_ms - 0.76).abs() < 1e-9, "{}", f.p50_ms);
        assert!((f.p99_ms - 2.01).abs() < 1e-9);
        assert_eq!(f.errors, 10);
        assert_eq!(millis("2.50s"), Some(2500.0));
        assert_eq!(millis("1.00m"), Some(60_000.0));
    }

    #[test]
    fn output_without_a_latency_distribution_is_not_a_figure() {
        let cut = OUTPUT.replace("     99%    2.01ms\n", "");
        assert_eq!(parse(&cut), None);
    }

    #[test]
    fn a_post_script_carries_the_body_verbatim() {
        let body = br#"{"jsonrpc":"2.0","id":1,"method":"block","params":{"height":"5"}}"#;
        let script = lua(&Call::Post(bytes::Bytes::from_static(body)));
        assert!(script.contains(std::str::from_utf8(body).unwrap()));
        assert!(script.contains("wrk.method = \"POST\""));
    }
}
