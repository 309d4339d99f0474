//! The node memory guard. Every `node_guard.interval` it reads the node's resident
//! memory from the node's own Prometheus endpoint; above `shed_above` of
//! `memory_limit` the heavy lane starts nothing new (its queue keeps waiting within its
//! `queue_timeout`; light calls, hits and stale answers flow on), and below
//! `resume_below` heavy calls start again. The gap between the two keeps it from
//! flapping.
//!
//! Between readings it predicts: from what the node's memory was with and without heavy
//! calls running it learns what one costs, and holds the heavy lane to as many as fit
//! under `shed_above` (one at a time until it has measured one). Calls that would kill
//! the node together are never started together, which a threshold read once a second
//! cannot see coming.
//!
//! It never blocks traffic on its own failure: an endpoint that is down or serves
//! something unreadable leaves the guard blind, which acts as if it were off, and each
//! change of state is logged once.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::time::Instant;

use crate::admission::Admission;
use crate::config::NodeGuardConfig;
use crate::methods::Lane;

mod footprint;
use footprint::Footprint;

/// A node's metrics page is a few hundred KiB; more is not a metrics page.
const MAX_PAGE_BYTES: usize = 8 << 20;

const SERIES: &str = "process_resident_memory_bytes";

/// What the guard is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum GuardState {
    /// No `metrics_url`.
    Off = 0,
    /// The endpoint is down or unreadable: acting as if off.
    Blind = 1,
    /// Reading the node's memory; heavy calls start.
    Watching = 2,
    /// Over `shed_above`: heavy calls wait.
    Shedding = 3,
}

impl GuardState {
    fn from_u8(v: u8) -> GuardState {
        match v {
            1 => GuardState::Blind,
            2 => GuardState::Watching,
            3 => GuardState::Shedding,
            _ => GuardState::Off,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            GuardState::Off => "off",
            GuardState::Blind => "blind",
            GuardState::Watching => "watching",
            GuardState::Shedding => "shedding",
        }
    }
}

/// What metrics and the operator see of the guard.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GuardSnapshot {
    pub state: GuardState,
    /// The node's resident memory at the last good read (0: none yet).
    pub node_memory_bytes: u64,
    pub memory_limit_bytes: u64,
    /// Time spent shedding since start, the current stretch included.
    pub shedding_seconds: f64,
    /// What one heavy call was seen to add to the node's memory (0: not yet measured).
    pub heavy_call_bytes: u64,
}

pub struct Guard {
    settings: ArcSwap<NodeGuardConfig>,
    state: AtomicU8,
    memory: AtomicU64,
    shed_total_us: AtomicU64,
    shed_since: Mutex<Option<Instant>>,
    footprint: Mutex<Footprint>,
}

impl Guard {
    pub fn new(config: &NodeGuardConfig) -> Arc<Guard> {
        Arc::new(Guard {
            settings: ArcSwap::from_pointee(config.clone()),
            state: AtomicU8::new(GuardState::Off as u8),
            memory: AtomicU64::new(0),
            shed_total_us: AtomicU64::new(0),
            shed_since: Mutex::new(None),
            footprint: Mutex::new(Footprint::default()),
        })
    }

    /// Applies from the next read.
    pub(crate) fn reconfigure(&self, config: &NodeGuardConfig) {
        self.settings.store(Arc::new(config.clone()));
    }

    pub fn snapshot(&self) -> GuardSnapshot {
        let since = *self.shed_since.lock().unwrap_or_else(|e| e.into_inner());
        let current = since.map_or(0.0, |s| s.elapsed().as_secs_f64());
        GuardSnapshot {
            state: GuardState::from_u8(self.state.load(Ordering::Relaxed)),
            node_memory_bytes: self.memory.load(Ordering::Relaxed),
            memory_limit_bytes: self.settings.load().memory_limit.map_or(0, |b| b.as_u64()),
            shedding_seconds: self.shed_total_us.load(Ordering::Relaxed) as f64 / 1e6 + current,
            heavy_call_bytes: self.footprint().per_call_bytes(),
        }
    }

    /// Follows the node's memory until the runtime stops.
    pub fn spawn(self: &Arc<Self>, admission: Arc<Admission>) -> tokio::task::JoinHandle<()> {
        let guard = self.clone();
        tokio::spawn(async move {
            let client: Client<HttpConnector, Empty<Bytes>> =
                Client::builder(TokioExecutor::new()).build_http();
            loop {
                let settings = guard.settings.load_full();
                let next = match &settings.metrics_url {
                    None => GuardState::Off,
                    Some(url) => match read_memory(&client, url, settings.interval).await {
                        Ok(bytes) => {
                            let running = admission.snapshot().heavy.in_flight;
                            guard.footprint().observe(bytes, running, settings.interval);
                            guard.memory.store(bytes, Ordering::Relaxed);
                            guard.judge(bytes, &settings)
                        }
                        Err(why) => guard.blind(&why),
                    },
                };
                // The hold first: a state seen as watching has its hold in place.
                admission.hold_lane(Lane::Heavy, guard.hold(next, &settings));
                guard.enter(next);
                tokio::time::sleep(settings.interval).await;
            }
        })
    }

    /// Shedding or watching, with the hysteresis between the two fractions.
    fn judge(&self, bytes: u64, settings: &NodeGuardConfig) -> GuardState {
        let Some(limit) = settings.memory_limit.map(|l| l.as_u64()).filter(|l| *l > 0) else {
            return GuardState::Off;
        };
        let used = bytes as f64 / limit as f64;
        let shedding =
            GuardState::from_u8(self.state.load(Ordering::Relaxed)) == GuardState::Shedding;
        if used > settings.shed_above || (shedding && used >= settings.resume_below) {
            GuardState::Shedding
        } else {
            GuardState::Watching
        }
    }

    fn footprint(&self) -> std::sync::MutexGuard<'_, Footprint> {
        self.footprint.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How many heavy calls may run: none while shedding, what fits in the node's memory
    /// while watching. Blind, it holds nothing back on its own failure, except what it
    /// has already measured to fit: that needs no reading, and dropping it at a slow
    /// read would let through at once the calls that kill the node.
    fn hold(&self, state: GuardState, settings: &NodeGuardConfig) -> Option<usize> {
        let ceiling = settings.memory_limit.map_or(0, |l| l.as_u64()) as f64 * settings.shed_above;
        match state {
            GuardState::Shedding => Some(0),
            GuardState::Watching => self.footprint().room(ceiling),
            GuardState::Blind => self.footprint().measured_room(ceiling),
            GuardState::Off => None,
        }
    }

    fn blind(&self, why: &str) -> GuardState {
        if GuardState::from_u8(self.state.load(Ordering::Relaxed)) != GuardState::Blind {
            tracing::warn!(
                error = why,
                "node guard cannot read the node's memory: acting as if off"
            );
        }
        GuardState::Blind
    }

    fn enter(&self, next: GuardState) {
        let was = GuardState::from_u8(self.state.swap(next as u8, Ordering::Relaxed));
        if was == next {
            return;
        }
        let memory = self.memory.load(Ordering::Relaxed);
        let mut since = self.shed_since.lock().unwrap_or_else(|e| e.into_inner());
        if next == GuardState::Shedding {
            *since = Some(Instant::now());
            tracing::warn!(
                node_memory_bytes = memory,
                "node memory high: heavy calls wait"
            );
        } else {
            if let Some(start) = since.take() {
                let us = u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX);
                self.shed_total_us.fetch_add(us, Ordering::Relaxed);
            }
            match (was, next) {
                (GuardState::Shedding, GuardState::Watching) => {
                    tracing::info!(
                        node_memory_bytes = memory,
                        "node memory down: heavy calls resume"
                    )
                }
                (_, GuardState::Watching) => tracing::info!("node guard reads the node's memory"),
                _ => {}
            }
        }
    }
}

async fn read_memory(
    client: &Client<HttpConnector, Empty<Bytes>>,
    url: &http::Uri,
    timeout: Duration,
) -> Result<u64, String> {
    let read = async {
        let response = client.get(url.clone()).await.map_err(|e| e.to_string())?;
        if !response.status().is_success() {
            return Err(format!("HTTP {}", response.status().as_u16()));
        }
        let body = Limited::new(response.into_body(), MAX_PAGE_BYTES)
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        let text = std::str::from_utf8(&body).map_err(|_| "not UTF-8 text".to_string())?;
        resident_memory(text).ok_or_else(|| format!("no {SERIES} in the page"))
    };
    tokio::time::timeout(timeout, read)
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {timeout:?}")))
}

/// The value of `process_resident_memory_bytes` in a Prometheus text page: the sample
/// is `name[{labels}] value [timestamp]`, the value a float (Go writes `1.2e+08`).
/// One series of one well-known name: a parser crate would be more than the job.
fn resident_memory(page: &str) -> Option<u64> {
    page.lines().find_map(|line| {
        let rest = line.strip_prefix(SERIES)?;
        let rest = match rest.strip_prefix('{') {
            Some(labelled) => &labelled[labelled.find('}')? + 1..],
            None if rest.starts_with([' ', '\t']) => rest,
            None => return None,
        };
        let value: f64 = rest.split_whitespace().next()?.parse().ok()?;
        (value.is_finite() && value >= 0.0).then_some(value as u64)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_resident_memory_is_read_as_go_writes_it() {
        let page = "# HELP process_resident_memory_bytes Resident memory size in bytes.\n\
                    # TYPE process_resident_memory_bytes gauge\n\
                    process_resident_memory_bytes_total 1\n\
                    process_resident_memory_bytes 1.23456789e+08\n";
        assert_eq!(resident_memory(page), Some(123_456_789));
        let labelled = "process_resident_memory_bytes{job=\"node\"} 4096 1700000000\n";
        assert_eq!(resident_memory(labelled), Some(4096));
    }

    #[test]
    fn a_page_without_it_or_with_garbage_reads_as_nothing() {
        assert_eq!(resident_memory("go_goroutines 12\n"), None);
        assert_eq!(resident_memory("process_resident_memory_bytes NaN\n"), None);
        assert_eq!(resident_memory("process_resident_memory_bytes -5\n"), None);
        assert_eq!(resident_memory("\u{0}\u{1}garbage"), None);
    }

    #[test]
    fn shedding_starts_over_one_fraction_and_ends_under_the_other() {
        let settings = NodeGuardConfig {
            metrics_url: Some("http://127.0.0.1:26660/metrics".parse().unwrap()),
            memory_limit: Some(crate::config::ByteSize::bytes(1000)),
            ..NodeGuardConfig::default()
        };
        let guard = Guard::new(&settings);
        assert_eq!(guard.judge(800, &settings), GuardState::Watching);
        assert_eq!(guard.judge(900, &settings), GuardState::Shedding);
        guard
            .state
            .store(GuardState::Shedding as u8, Ordering::Relaxed);
        assert_eq!(
            guard.judge(800, &settings),
            GuardState::Shedding,
            "between the two: keeps shedding"
        );
        assert_eq!(guard.judge(700, &settings), GuardState::Watching);
    }
}
