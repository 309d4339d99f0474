//! The two ways of applying load. Closed loop: N clients, each sending its next request when
//! the previous one is answered (throughput scenarios). Open loop: a fixed arrival rate with
//! each request's latency counted from its intended send time (latency scenarios).

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use crate::client::Client;
use crate::mix::{Form, Mix, Picker};
use crate::record::{Outcome, Recorder};
use crate::schedule::{latency_from_intended, Schedule};

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Mode {
    Closed { clients: usize },
    Open { rate: f64 },
}

#[derive(Clone, Debug)]
pub struct Load {
    pub mix: Mix,
    pub form: Form,
    pub mode: Mode,
    pub duration: Duration,
    pub seed: u64,
    /// Source address of this load's sockets (the abuser's own client key).
    pub local: Option<IpAddr>,
}

/// Counters shared with the progress line and the node sampler.
#[derive(Default)]
pub struct Live {
    pub sent: AtomicU64,
    pub errors: AtomicU64,
    /// The chain head as last seen; mixes aim their heights at it.
    pub head: AtomicU64,
    /// One line about the node, written by the sampler, shown by the progress line.
    pub node_line: Mutex<String>,
}

impl Live {
    fn note(&self, outcome: &Outcome) {
        self.sent.fetch_add(1, Ordering::Relaxed);
        if !outcome.is_ok() {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Most requests one open-loop run keeps in flight; beyond it the scheduler waits, and the
/// wait still shows in latency because latency counts from the intended time.
const MAX_OPEN_INFLIGHT: usize = 4096;

pub async fn drive(load: &Load, base: &str, live: Arc<Live>) -> Result<Recorder, String> {
    let client = Client::new(base, load.local)?;
    Ok(match load.mode {
        Mode::Closed { clients } => closed(load, client, clients, live).await,
        Mode::Open { rate } => open(load, client, Schedule::new(rate, load.duration), live).await,
    })
}

async fn closed(load: &Load, client: Client, clients: usize, live: Arc<Live>) -> Recorder {
    let deadline = Instant::now() + load.duration;
    let tasks: Vec<_> = (0..clients)
        .map(|i| {
            let client = client.clone();
            let live = live.clone();
            let mut picker = Picker::new(load.mix, load.form, load.seed.wrapping_add(i as u64));
            tokio::spawn(async move {
                let mut rec = Recorder::new();
                while Instant::now() < deadline {
                    let call = picker.next(live.head.load(Ordering::Relaxed));
                    let t0 = Instant::now();
                    let outcome = if picker.wants_answer() {
                        let (outcome, body) = client.send_keep(&call).await;
                        picker.observe(&body);
                        outcome
                    } else {
                        client.send(&call).await
                    };
                    rec.record(t0.elapsed(), &outcome);
                    live.note(&outcome);
                    if let Outcome::Failed(_) = outcome {
                        // A dead node refuses in microseconds; spinning on it would only
                        // starve the processes being measured of CPU.
                        tokio::time::sleep(Duration::from_millis(25)).await;
                    }
                }
                rec
            })
        })
        .collect();
    let mut total = Recorder::new();
    for t in tasks {
        if let Ok(rec) = t.await {
            total.merge(&rec);
        }
    }
    total
}

async fn open(load: &Load, client: Client, schedule: Schedule, live: Arc<Live>) -> Recorder {
    let rec = Arc::new(Mutex::new(Recorder::new()));
    let slots = Arc::new(Semaphore::new(MAX_OPEN_INFLIGHT));
    let mut picker = Picker::new(load.mix, load.form, load.seed);
    let start = tokio::time::Instant::now();
    for i in 0..schedule.total() {
        let intended = schedule.intended(i);
        tokio::time::sleep_until(start + intended).await;
        let Ok(permit) = slots.clone().acquire_owned().await else {
            break;
        };
        let call = picker.next(live.head.load(Ordering::Relaxed));
        let (client, live, rec) = (client.clone(), live.clone(), rec.clone());
        tokio::spawn(async move {
            let outcome = client.send(&call).await;
            let latency = latency_from_intended(intended, start.elapsed());
            live.note(&outcome);
            rec.lock().expect("recorder").record(latency, &outcome);
            drop(permit);
        });
    }
    let _ = slots.acquire_many(MAX_OPEN_INFLIGHT as u32).await;
    let out = rec.lock().expect("recorder").clone();
    out
}

/// Prints a progress line every second until `stop` fires: in place on a terminal, as
/// plain lines every 5 s otherwise (CI logs).
pub fn progress(label: String, live: Arc<Live>, total: Duration) -> tokio::task::JoinHandle<()> {
    use std::io::{IsTerminal, Write};
    tokio::spawn(async move {
        let tty = std::io::stderr().is_terminal();
        let start = Instant::now();
        let (mut last_sent, mut last_t) = (0u64, start);
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.tick().await;
        loop {
            tick.tick().await;
            let now = Instant::now();
            let sent = live.sent.load(Ordering::Relaxed);
            let rps = (sent - last_sent) as f64 / (now - last_t).as_secs_f64();
            let line = format!(
                "{label:<26} {:>5.1}/{:.0}s  sent {sent:>8}  {rps:>8.0} rps  errors {:>7}  {}",
                (now - start).as_secs_f64(),
                total.as_secs_f64(),
                live.errors.load(Ordering::Relaxed),
                live.node_line.lock().map(|s| s.clone()).unwrap_or_default(),
            );
            let elapsed_s = (now - start).as_secs();
            if tty {
                eprint!("\r\x1b[2K{line}");
                let _ = std::io::stderr().flush();
            } else if elapsed_s % 5 == 0 {
                eprintln!("{line}");
            }
            (last_sent, last_t) = (sent, now);
        }
    })
}

/// Ends a progress line started by `progress` (keeps the last figures on screen).
pub fn end_progress(handle: tokio::task::JoinHandle<()>) {
    use std::io::IsTerminal;
    handle.abort();
    if std::io::stderr().is_terminal() {
        eprintln!();
    }
}
