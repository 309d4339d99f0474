//! The two ways of applying load. Closed loop: N clients, each sending its next request when
//! the previous one is answered (throughput scenarios). Open loop: a fixed arrival rate with
//! each request's latency counted from its intended send time (latency scenarios).

use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use crate::client::Client;
use crate::lean_client::{closed_lean, LeanLoad};
pub use crate::live::Live;
use crate::mix::{is_heavy, Form, Mix, Picker};
use crate::record::{Outcome, Recorder};
use crate::schedule::{latency_from_intended, poisson, Schedule};

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Mode {
    Closed {
        clients: usize,
    },
    Open {
        rate: f64,
    },
    /// Open loop with Poisson arrivals (seeded by the load's seed).
    Poisson {
        rate: f64,
    },
    /// Closed loop on one thread over raw keep-alive connections (`lean_client`): for
    /// throughput, where the pooled client would be the bottleneck.
    Lean {
        connections: usize,
    },
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
    /// Clients on this many consecutive addresses from `local` (a crowd), each sending an
    /// equal share of the load; 1 = one address.
    pub addresses: usize,
    /// `(header, key)` sent with every call: an API key.
    pub api_key: Option<(&'static str, &'static str)>,
}

/// `first` and the `n - 1` IPv4 addresses after it (IPv6: `first` alone).
pub fn addresses_from(first: IpAddr, n: usize) -> Vec<IpAddr> {
    match first {
        IpAddr::V4(v4) => (0..n.max(1) as u32)
            .map(|i| IpAddr::V4(std::net::Ipv4Addr::from(u32::from(v4).wrapping_add(i))))
            .collect(),
        IpAddr::V6(_) => vec![first],
    }
}

/// One pooled client per source address of the load.
fn clients(load: &Load, base: &str) -> Result<Vec<Client>, String> {
    let locals: Vec<Option<IpAddr>> = match load.local {
        Some(first) => addresses_from(first, load.addresses)
            .into_iter()
            .map(Some)
            .collect(),
        None => vec![None],
    };
    locals
        .into_iter()
        .map(|local| {
            let client = Client::new(base, local)?;
            match load.api_key {
                Some((name, key)) => client.with_header(name, key),
                None => Ok(client),
            }
        })
        .collect()
}

/// Most requests one open-loop run keeps in flight; beyond it the scheduler waits, and the
/// wait still shows in latency because latency counts from the intended time.
const MAX_OPEN_INFLIGHT: usize = 4096;

pub async fn drive(load: &Load, base: &str, live: Arc<Live>) -> Result<Recorder, String> {
    let pool = clients(load, base)?;
    Ok(match load.mode {
        Mode::Closed { clients } => closed(load, &pool, clients, live).await,
        Mode::Open { rate } => {
            let s = Schedule::new(rate, load.duration);
            let at = (0..s.total()).map(|i| s.intended(i)).collect();
            open(load, &pool, at, live).await
        }
        Mode::Poisson { rate } => {
            let at = poisson(rate, load.duration, load.seed);
            open(load, &pool, at, live).await
        }
        Mode::Lean { connections } => {
            let lean = LeanLoad {
                mix: load.mix,
                form: load.form,
                seed: load.seed,
                duration: load.duration,
            };
            closed_lean(lean, base, connections, live).await?
        }
    })
}

async fn closed(load: &Load, pool: &[Client], clients: usize, live: Arc<Live>) -> Recorder {
    let deadline = Instant::now() + load.duration;
    let tasks: Vec<_> = (0..clients)
        .map(|i| {
            let client = pool[i % pool.len()].clone();
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
                    rec.record_call(t0.elapsed(), &outcome, is_heavy(&call));
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

/// Request `i` goes to client `i % pool.len()`: a crowd's addresses share the rate evenly.
async fn open(load: &Load, pool: &[Client], at: Vec<Duration>, live: Arc<Live>) -> Recorder {
    let rec = Arc::new(Mutex::new(Recorder::new()));
    let slots = Arc::new(Semaphore::new(MAX_OPEN_INFLIGHT));
    let mut picker = Picker::new(load.mix, load.form, load.seed);
    let start = tokio::time::Instant::now();
    for (i, intended) in at.into_iter().enumerate() {
        tokio::time::sleep_until(start + intended).await;
        let Ok(permit) = slots.clone().acquire_owned().await else {
            break;
        };
        let call = picker.next(live.head.load(Ordering::Relaxed));
        let client = pool[i % pool.len()].clone();
        let (live, rec) = (live.clone(), rec.clone());
        tokio::spawn(async move {
            let outcome = client.send(&call).await;
            let latency = latency_from_intended(intended, start.elapsed());
            live.note(&outcome);
            let heavy = is_heavy(&call);
            rec.lock()
                .expect("recorder")
                .record_call(latency, &outcome, heavy);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_crowd_takes_consecutive_addresses() {
        let first: IpAddr = "127.0.0.10".parse().unwrap();
        let crowd = addresses_from(first, 20);
        assert_eq!(crowd.len(), 20);
        assert_eq!(crowd[0], first);
        assert_eq!(crowd[19], "127.0.0.29".parse::<IpAddr>().unwrap());
        assert_eq!(addresses_from(first, 0), vec![first]);
    }
}
