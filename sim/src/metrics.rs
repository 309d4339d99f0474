//! The node's Prometheus page, as CometBFT exposes it with `instrumentation.prometheus`
//! (`:26660/metrics`): Go's client library's text format, families sorted by name, each
//! with its `# HELP` and `# TYPE` lines, values written as Go's `strconv.FormatFloat(v,
//! 'g', -1, 64)` writes them (`6.7108864e+07`). `process_resident_memory_bytes` is what a
//! memory guard reads: the baseline, the ballast and the live memory of answers being
//! built.

use hyper::{Response, StatusCode};

use crate::faults::MetricsFault;
use crate::node::Node;
use crate::response::{respond, Body};

/// What Go's `promhttp` sends for the text format.
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Goroutines of an idle node (consensus, p2p, mempool, RPC); each call in flight adds one.
const IDLE_GOROUTINES: u64 = 40;

/// Virtual memory a Go process reserves beyond what it touches.
const VIRTUAL_RESERVE: u64 = 1536 << 20;

/// The answer to `GET /metrics`. A `Down` fault closes the `metrics_listen` port; the
/// control port, which stays up, answers 503 instead.
pub(crate) fn answer(node: &Node) -> Response<Body> {
    match node.metrics_fault() {
        MetricsFault::None => respond(StatusCode::OK, Some(CONTENT_TYPE), page(node).into_bytes()),
        MetricsFault::Down => respond(
            StatusCode::SERVICE_UNAVAILABLE,
            Some("text/plain; charset=utf-8"),
            b"metrics endpoint down\n".to_vec(),
        ),
        MetricsFault::Http500 => respond(
            StatusCode::INTERNAL_SERVER_ERROR,
            Some("text/plain; charset=utf-8"),
            b"Internal Server Error\n".to_vec(),
        ),
        MetricsFault::Garbage => respond(
            StatusCode::OK,
            Some(CONTENT_TYPE),
            b"\x00\x9f\x92\x96<html>{{ process_resident_memory_bytes: lots }}\xff\n".to_vec(),
        ),
    }
}

fn family(out: &mut String, name: &str, help: &str, samples: &[(&str, f64)]) {
    out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} gauge\n"));
    for (labels, value) in samples {
        out.push_str(&format!("{name}{labels} {}\n", go_float(*value)));
    }
}

/// The page, families in the order Go's registry gathers them (by name).
pub(crate) fn page(node: &Node) -> String {
    let resident = node.resident_bytes();
    let heap = node.mem.ballast() + node.mem.live() + node.cfg.resident_baseline_bytes / 4;
    let chain = format!("{{chain_id=\"{}\"}}", node.cfg.chain_id);
    let inflight = node.counters.inflight();
    let mut out = String::new();
    family(
        &mut out,
        "cometbft_consensus_height",
        "Height of the chain.",
        &[(&chain, node.chain.head() as f64)],
    );
    family(
        &mut out,
        "go_goroutines",
        "Number of goroutines that currently exist.",
        &[("", (IDLE_GOROUTINES + inflight) as f64)],
    );
    family(
        &mut out,
        "go_memstats_heap_inuse_bytes",
        "Number of heap bytes that are in use.",
        &[("", heap as f64)],
    );
    family(
        &mut out,
        "process_resident_memory_bytes",
        "Resident memory size in bytes.",
        &[("", resident as f64)],
    );
    family(
        &mut out,
        "process_start_time_seconds",
        "Start time of the process since unix epoch in seconds.",
        &[("", node.started_unix.floor())],
    );
    family(
        &mut out,
        "process_virtual_memory_bytes",
        "Virtual memory size in bytes.",
        &[("", (resident + VIRTUAL_RESERVE) as f64)],
    );
    out
}

/// A float as Go's `strconv.FormatFloat(v, 'g', -1, 64)` (the Prometheus client's
/// `writeFloat`): the shortest digits that round-trip, in exponent form when the decimal
/// exponent is below -4 or at least 6, the exponent signed and at least two digits.
pub(crate) fn go_float(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "+Inf" } else { "-Inf" }.into();
    }
    if v == 0.0 {
        return "0".into();
    }
    let sci = format!("{:e}", v.abs());
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let sign = if v < 0.0 { "-" } else { "" };
    if !(-4..6).contains(&exp) {
        let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
        let (first, rest) = digits.split_at(1);
        let dot = if rest.is_empty() { "" } else { "." };
        let esign = if exp < 0 { '-' } else { '+' };
        format!("{sign}{first}{dot}{rest}e{esign}{:02}", exp.abs())
    } else {
        format!("{sign}{}", v.abs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_are_written_as_go_writes_them() {
        for (v, go) in [
            (0.0, "0"),
            (1.0, "1"),
            (-1.0, "-1"),
            (42.0, "42"),
            (0.5, "0.5"),
            (123456.0, "123456"),
            (1234567.0, "1.234567e+06"),
            (1e6, "1e+06"),
            (67108864.0, "6.7108864e+07"),
            (123456789.0, "1.23456789e+08"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1.7e9, "1.7e+09"),
            (1e21, "1e+21"),
            (f64::INFINITY, "+Inf"),
            (f64::NAN, "NaN"),
        ] {
            assert_eq!(go_float(v), go, "{v}");
        }
    }
}
