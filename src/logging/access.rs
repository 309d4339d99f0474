//! The access line, written by hand. Through tracing's formatter a line cost a span per
//! request and a visitor call per field, about a tenth of a cache hit's time; this one
//! is a few `write!`s into a buffer the thread reuses, with the date part of its
//! timestamp rebuilt once a second. It goes to the same non-blocking writer as every
//! other line, so lines never interleave and a stalled stderr still drops, not blocks.
//! A thread's lines go in batches of up to 8 KiB, handed over whenever the thread runs
//! out of work: a log read live lags a busy thread's batch, and lines of two threads
//! may come out of time order by as much (each carries its own timestamp).
//!
//! Where no writer is installed (a library user's own subscriber, tests), the line is a
//! tracing event with the same fields, under the target `cometgate::access`.

use std::cell::RefCell;
use std::fmt::Write as _;
use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use tracing_appender::non_blocking::NonBlocking;

use crate::config::LogFormat;

/// One request as its access line tells it.
#[derive(Debug)]
pub(crate) struct Access<'a> {
    pub id: u64,
    /// As sent, already bounded and stripped of control characters.
    pub method: &'a str,
    pub client: SocketAddr,
    pub cache: &'static str,
    pub node_ms: Option<f64>,
    pub status: u16,
    pub ms: f64,
    pub rejected: &'static str,
}

pub(super) struct Sink {
    pub(super) writer: NonBlocking,
    pub(super) format: LogFormat,
}

thread_local! {
    static LINE: RefCell<Line> = RefCell::new(Line::default());
}

/// Lines a thread holds before it hands them to the writer as one: each hand-over wakes
/// the writer thread, which cost a hit about a tenth of its time when done per line.
const BATCH_BYTES: usize = 8 << 10;

/// Lines in batches the writer dropped, beyond the one its own counter counts a batch as.
static DROPPED_IN_BATCHES: AtomicU64 = AtomicU64::new(0);

/// A thread's batch of lines, its writer handle and its cached second.
#[derive(Default)]
struct Line {
    text: String,
    lines: u64,
    writer: Option<NonBlocking>,
    second: u64,
    date: String,
}

impl Line {
    fn hand_over(&mut self) {
        let Some(writer) = self.writer.as_mut() else {
            return;
        };
        if self.text.is_empty() {
            return;
        }
        let counter = writer.error_counter();
        let before = counter.dropped_lines();
        // Lossy: a full queue drops the batch and counts it; nothing to handle here.
        let _ = writer.write_all(self.text.as_bytes());
        if counter.dropped_lines() > before {
            DROPPED_IN_BATCHES.fetch_add(self.lines.saturating_sub(1), Ordering::Relaxed);
        }
        self.text.clear();
        self.lines = 0;
    }
}

/// Hands this thread's lines to the writer: called by the runtime each time a worker
/// thread has nothing left to run (and as it stops), so a line waits for its batch only
/// while the thread is busy.
pub fn flush() {
    // A thread being torn down may have lost its thread-local already.
    let _ = LINE.try_with(|line| {
        if let Ok(mut line) = line.try_borrow_mut() {
            line.hand_over();
        }
    });
}

/// Lines dropped as parts of batches, beyond one a batch.
pub(super) fn dropped_in_batches() -> u64 {
    DROPPED_IN_BATCHES.load(Ordering::Relaxed)
}

impl Sink {
    pub(super) fn write(&self, access: &Access<'_>) {
        LINE.with_borrow_mut(|line| {
            line.writer.get_or_insert_with(|| self.writer.clone());
            let Line {
                text,
                lines,
                second,
                date,
                ..
            } = line;
            *lines += 1;
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default();
            if *second != now.as_secs() || date.is_empty() {
                *second = now.as_secs();
                *date = date_time(*second);
            }
            let micros = now.subsec_micros();
            match self.format {
                LogFormat::Text => text_line(text, date, micros, access),
                LogFormat::Json => json_line(text, date, micros, access),
            }
            if text.len() >= BATCH_BYTES {
                line.hand_over();
            }
        });
    }
}

/// `2026-12-01T20:51:18`, in UTC.
fn date_time(unix_seconds: u64) -> String {
    let at = i64::try_from(unix_seconds)
        .ok()
        .and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok())
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second()
    )
}

/// The shape tracing's text formatter gives an event, fields in logfmt.
fn text_line(out: &mut String, date: &str, micros: u32, a: &Access<'_>) {
    let _ = write!(
        out,
        "{date}.{micros:06}Z  INFO cometgate::access: request id={} method={} client={} cache={}",
        a.id, a.method, a.client, a.cache
    );
    if let Some(node_ms) = a.node_ms {
        let _ = write!(out, " node_ms={node_ms:.3}");
    }
    let _ = writeln!(
        out,
        " status={} ms={:.3} rejected={}",
        a.status, a.ms, a.rejected
    );
}

/// The shape tracing's JSON formatter gives a flattened event.
fn json_line(out: &mut String, date: &str, micros: u32, a: &Access<'_>) {
    let _ = write!(
        out,
        r#"{{"timestamp":"{date}.{micros:06}Z","level":"INFO","target":"cometgate::access","message":"request","id":{},"method":""#,
        a.id
    );
    json_escape(out, a.method);
    let _ = write!(out, r#"","client":"{}","cache":"{}""#, a.client, a.cache);
    if let Some(node_ms) = a.node_ms {
        let _ = write!(out, r#","node_ms":{node_ms:.3}"#);
    }
    let _ = writeln!(
        out,
        r#","status":{},"ms":{:.3},"rejected":"{}"}}"#,
        a.status, a.ms, a.rejected
    );
}

fn json_escape(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
}

/// The same line as a tracing event, for a process whose subscriber is not ours.
pub(super) fn event(a: &Access<'_>) {
    tracing::info!(
        target: "cometgate::access",
        id = a.id,
        method = %a.method,
        client = %a.client,
        cache = a.cache,
        node_ms = a.node_ms,
        status = a.status,
        ms = a.ms,
        rejected = a.rejected,
        "request"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(node_ms: Option<f64>) -> Access<'static> {
        Access {
            id: 7,
            method: r#"block,we"ird\"#,
            client: "10.0.0.1:5000".parse().unwrap(),
            cache: "hit",
            node_ms,
            status: 200,
            ms: 0.1234,
            rejected: "-",
        }
    }

    #[test]
    fn the_date_is_utc_and_rfc3339() {
        assert_eq!(date_time(0), "1970-01-01T00:00:00");
        assert_eq!(date_time(1_796_154_678), "2026-12-01T19:51:18");
        assert_eq!(date_time(951_825_600), "2000-02-29T12:00:00");
    }

    #[test]
    fn a_text_line_reads_as_logfmt_and_omits_unknown_node_time() {
        let mut out = String::new();
        text_line(&mut out, "2026-12-01T20:31:18", 42, &sample(Some(1.5)));
        assert_eq!(
            out,
            "2026-12-01T20:31:18.000042Z  INFO cometgate::access: request id=7 \
             method=block,we\"ird\\ client=10.0.0.1:5000 cache=hit node_ms=1.500 \
             status=200 ms=0.123 rejected=-\n"
        );
        out.clear();
        text_line(&mut out, "2026-12-01T20:31:18", 42, &sample(None));
        assert!(!out.contains("node_ms"), "{out}");
    }

    #[test]
    fn a_json_line_parses_with_every_field() {
        let mut out = String::new();
        json_line(&mut out, "2026-12-01T20:31:18", 42, &sample(Some(1.5)));
        assert!(out.ends_with('\n'));
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["timestamp"], "2026-12-01T20:31:18.000042Z");
        assert_eq!(v["target"], "cometgate::access");
        assert_eq!(v["method"], r#"block,we"ird\"#);
        assert_eq!(v["client"], "10.0.0.1:5000");
        assert_eq!(
            (v["id"].as_u64(), v["status"].as_u64()),
            (Some(7), Some(200))
        );
        assert_eq!(
            (v["node_ms"].as_f64(), v["ms"].as_f64()),
            (Some(1.5), Some(0.123))
        );
        out.clear();
        json_line(&mut out, "2026-12-01T20:31:18", 42, &sample(None));
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert!(v.get("node_ms").is_none());
    }
}
