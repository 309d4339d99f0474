//! Logging that stays off the request path. A request's task formats its line, but the
//! write to stderr (a pipe to journald or a container runtime, which can stall) happens
//! on a writer thread behind a bounded queue (tracing-appender's non-blocking writer).
//! When the queue is full the line is dropped rather than the request held, and
//! `cometgate_log_lines_dropped_total` says how many were. The access line is formatted
//! by hand (`access`), not by tracing, and goes to the same writer.

mod access;

pub use access::flush as flush_access;
pub(crate) use access::Access;

use std::io::IsTerminal;
use std::sync::OnceLock;

use tracing_appender::non_blocking::{ErrorCounter, NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Writes waiting for the writer at most. A write is a log line, or a batch of access
/// lines of about `access::BATCH_BYTES` (8 KiB): at most about 8 MiB queued.
const QUEUED_WRITES: usize = 1024;

/// The writer thread takes every line queued, then flushes: through this buffer a busy
/// second's lines leave in a few large writes, not one system call each.
const WRITE_BUFFER: usize = 64 << 10;

static DROPPED: OnceLock<ErrorCounter> = OnceLock::new();
static ACCESS: OnceLock<access::Sink> = OnceLock::new();

/// Installs the global subscriber. Keep the guard until exit: dropping it flushes the
/// lines still queued. Access lines wait in per-thread batches: a runtime that serves
/// the gateway must call `flush_access` from `on_thread_park` and `on_thread_stop`, as
/// the binary does, or a quiet thread's last lines wait for its next 8 KiB.
pub fn init(format: LogFormat) -> WorkerGuard {
    let (writer, guard) = NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(QUEUED_WRITES)
        .thread_name("cometgate-log")
        .finish(std::io::BufWriter::with_capacity(
            WRITE_BUFFER,
            std::io::stderr(),
        ));
    let _ = DROPPED.set(writer.error_counter());
    let _ = ACCESS.set(access::Sink {
        writer: writer.clone(),
        format,
    });
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(true)
        .with_writer(writer)
        // Coloured only on a terminal, so files and collectors get plain text.
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .init(),
        LogFormat::Text => builder.init(),
    }
    guard
}

/// Lines dropped because the writer could not keep up (0 before `init`).
pub(crate) fn dropped_lines() -> u64 {
    DROPPED.get().map_or(0, |c| c.dropped_lines() as u64) + access::dropped_in_batches()
}

/// Writes one access line: by hand to the writer `init` installed, or as a tracing event
/// where `init` was not called.
pub(crate) fn access(line: &Access<'_>) {
    match ACCESS.get() {
        Some(sink) => sink.write(line),
        None => access::event(line),
    }
}
