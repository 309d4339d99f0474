//! The node's CPU: how long serving a call takes. Off (`cpu_slots = 0`), a call is
//! served in its service time divided by the node's speed, however many run. On, the
//! CPU is shared as a processor-sharing queue: with `active` calls in service each
//! progresses at `speed × min(1, cpu_slots / active)`, so past `cpu_slots` every call's
//! latency stretches, and throughput stays at `cpu_slots / service` calls a second.
//!
//! Processor sharing in virtual time: every call in service progresses alike, so the
//! virtual clock advances at the per-call rate and a call that joins at virtual time `v`
//! with `w` seconds of work leaves at `v + w`. One driver task sleeps until the earliest
//! departure; arrivals, departures and speed changes wake it to recompute.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{oneshot, Notify};
use tokio::time::Instant;

/// Services shorter than this are accounted but not slept (timer granularity): a light
/// call costs what it always did.
const MIN_SLEEP: Duration = Duration::from_millis(1);

/// Virtual time slack: float rounding never keeps a finished call waiting.
const EPSILON: f64 = 1e-9;

pub(crate) struct Cpu {
    shared: Arc<Shared>,
}

struct Shared {
    slots: usize,
    state: Mutex<Ps>,
    /// Wakes the driver; its own `Arc` so the driver can wait on it without keeping the
    /// rest alive.
    kick: Arc<Notify>,
}

struct Ps {
    speed: f64,
    /// Virtual seconds of work each call in service has received since the start.
    vtime: f64,
    at: Instant,
    /// Calls in service by (virtual departure time, id); the sender wakes the call.
    active: BTreeMap<(u64, u64), oneshot::Sender<()>>,
    next_id: u64,
}

impl Ps {
    fn rate(&self, slots: usize) -> f64 {
        let n = self.active.len().max(1) as f64;
        self.speed * (slots as f64 / n).min(1.0)
    }

    fn advance(&mut self, slots: usize, now: Instant) {
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        self.vtime += dt * self.rate(slots);
        self.at = now;
    }
}

/// Virtual times are non-negative, so their bit patterns sort like their values.
fn key(v: f64) -> u64 {
    v.max(0.0).to_bits()
}

impl Cpu {
    /// `slots = 0` turns processor sharing off. The driver runs on `rt` when it is on.
    pub(crate) fn new(slots: usize, speed: f64, rt: &tokio::runtime::Handle) -> Cpu {
        let shared = Arc::new(Shared {
            slots,
            state: Mutex::new(Ps {
                speed: sane(speed),
                vtime: 0.0,
                at: Instant::now(),
                active: BTreeMap::new(),
                next_id: 0,
            }),
            kick: Arc::new(Notify::new()),
        });
        if slots > 0 {
            rt.spawn(drive(Arc::downgrade(&shared), shared.kick.clone()));
        }
        Cpu { shared }
    }

    pub(crate) fn speed(&self) -> f64 {
        self.shared.lock().speed
    }

    /// Calls in service keep the work they have done and go on at the new speed.
    pub(crate) fn set_speed(&self, speed: f64) {
        let mut ps = self.shared.lock();
        ps.advance(self.shared.slots, Instant::now());
        ps.speed = sane(speed);
        drop(ps);
        self.shared.kick.notify_one();
    }

    /// Serves `work` (seconds at speed 1). Cancel-safe: a dropped call leaves the CPU.
    pub(crate) async fn serve(&self, work: Duration) {
        let speed = self.speed();
        if work.as_secs_f64() / speed < MIN_SLEEP.as_secs_f64() {
            return;
        }
        if self.shared.slots == 0 {
            tokio::time::sleep(work.div_f64(speed)).await;
            return;
        }
        let (done, rx) = oneshot::channel();
        let k = {
            let mut ps = self.shared.lock();
            ps.advance(self.shared.slots, Instant::now());
            let k = (key(ps.vtime + work.as_secs_f64()), ps.next_id);
            ps.next_id += 1;
            ps.active.insert(k, done);
            k
        };
        self.shared.kick.notify_one();
        let _leave = Leave {
            shared: &self.shared,
            k,
        };
        let _ = rx.await;
    }
}

impl Drop for Cpu {
    fn drop(&mut self) {
        // The driver wakes, finds the CPU gone and ends.
        self.shared.kick.notify_one();
    }
}

/// Takes a call out of service however its wait ends.
struct Leave<'a> {
    shared: &'a Shared,
    k: (u64, u64),
}

impl Drop for Leave<'_> {
    fn drop(&mut self) {
        let mut ps = self.shared.lock();
        ps.advance(self.shared.slots, Instant::now());
        let left = ps.active.remove(&self.k).is_some();
        drop(ps);
        if left {
            self.shared.kick.notify_one();
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Ps> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn sane(speed: f64) -> f64 {
    if speed.is_finite() && speed > 0.0 {
        speed
    } else {
        1.0
    }
}

/// Releases calls whose work is done and sleeps until the next departure or change.
async fn drive(shared: std::sync::Weak<Shared>, kick: Arc<Notify>) {
    loop {
        let Some(s) = shared.upgrade() else { return };
        let wait = {
            let mut ps = s.lock();
            ps.advance(s.slots, Instant::now());
            let vtime = ps.vtime;
            while let Some(entry) = ps.active.first_entry() {
                if f64::from_bits(entry.key().0) > vtime + EPSILON {
                    break;
                }
                let _ = entry.remove().send(());
            }
            ps.active
                .first_key_value()
                .map(|(k, _)| (f64::from_bits(k.0) - vtime) / ps.rate(s.slots))
        };
        drop(s);
        let sleep = wait
            .and_then(|w| Duration::try_from_secs_f64(w).ok())
            .unwrap_or(Duration::from_secs(3600))
            .min(Duration::from_secs(3600));
        tokio::select! {
            _ = tokio::time::sleep(sleep) => {}
            _ = kick.notified() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn timed(cpu: Arc<Cpu>, n: usize, work: Duration) -> Vec<Duration> {
        let start = Instant::now();
        let tasks: Vec<_> = (0..n)
            .map(|_| {
                let cpu = cpu.clone();
                tokio::spawn(async move {
                    cpu.serve(work).await;
                    start.elapsed()
                })
            })
            .collect();
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap());
        }
        out
    }

    #[tokio::test(start_paused = true)]
    async fn up_to_the_slots_calls_run_at_full_speed_past_them_they_share() {
        let rt = tokio::runtime::Handle::current();
        let cpu = Arc::new(Cpu::new(2, 1.0, &rt));
        let work = Duration::from_millis(200);
        for t in timed(cpu.clone(), 2, work).await {
            assert!(t >= work && t < work + Duration::from_millis(5), "{t:?}");
        }
        // Eight calls on two slots: each gets a quarter of a slot, all end at 800 ms.
        for t in timed(cpu.clone(), 8, work).await {
            let want = Duration::from_millis(800);
            assert!(t >= want - Duration::from_millis(2), "{t:?}");
            assert!(t < want + Duration::from_millis(10), "{t:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn speed_divides_service_time_and_a_change_applies_to_calls_in_service() {
        let rt = tokio::runtime::Handle::current();
        let cpu = Arc::new(Cpu::new(1, 0.25, &rt));
        let t = timed(cpu.clone(), 1, Duration::from_millis(100)).await[0];
        assert!(t >= Duration::from_millis(400) && t < Duration::from_millis(410));
        // Half done at 0.25 after 200 ms, the rest at 1.0: 50 ms more.
        let start = Instant::now();
        let c = cpu.clone();
        let call = tokio::spawn(async move { c.serve(Duration::from_millis(100)).await });
        tokio::time::sleep(Duration::from_millis(200)).await;
        cpu.set_speed(1.0);
        call.await.unwrap();
        let t = start.elapsed();
        assert!(
            t >= Duration::from_millis(249) && t < Duration::from_millis(260),
            "{t:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn off_it_only_divides_by_the_speed() {
        let rt = tokio::runtime::Handle::current();
        let cpu = Arc::new(Cpu::new(0, 4.0, &rt));
        for t in timed(cpu, 20, Duration::from_millis(100)).await {
            assert!(
                t >= Duration::from_millis(25) && t < Duration::from_millis(30),
                "{t:?}"
            );
        }
    }
}
