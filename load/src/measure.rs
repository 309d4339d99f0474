//! One measurement: a scenario against one target, on fresh processes, with the node's
//! counters reset after the warm-up so that they count the measured load alone.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::drive::{drive, end_progress, progress, Live, Load};
use crate::mix::Picker;
use crate::plan::Scenario;
use crate::procs::hwm_bytes;
use crate::record::Recorder;
use crate::sampler::{node_post, node_stats, watch as sample, Watch, Watched};
use crate::stack::{self, Bins, Stack, Target};
use crate::wrk::{cross_check, WrkFigures};
use cometgate_sim::Stats;

pub struct Measured {
    pub scenario: &'static str,
    pub target: Target,
    pub round: usize,
    pub rec: Recorder,
    /// The unmeasured background load's own figures (the abuser's).
    pub background: Option<Recorder>,
    pub elapsed: Duration,
    pub node: Stats,
    pub start_height: u64,
    pub watched: Watched,
    /// The front's peak resident memory: sampled, and for one process also its VmHWM.
    pub front_peak_rss: Option<u64>,
    pub config_text: Option<String>,
    /// The plain client's figures against the same target, right after the harness.
    pub wrk: Option<WrkFigures>,
}

pub async fn measure(
    bins: &Bins,
    sc: &Scenario,
    target: Target,
    round: usize,
    dir: &Path,
) -> Result<Measured, String> {
    let stack = stack::start(bins, target, &sc.node, sc.front, dir).await?;
    let control = stack.node.control;
    let start = warm_up(sc, &stack.url, control).await?;
    let live = Arc::new(Live::default());
    live.head.store(start.height, Ordering::Relaxed);
    let (stop_tx, stop_rx) = watch::channel(false);
    let watcher = tokio::spawn(sample(
        Watch {
            control: Some(control),
            poll_node: sc.poll_node,
            pids: stack.front_pids(),
            every: Duration::from_millis(100),
            gateway_metrics: stack.gateway_metrics,
        },
        live.clone(),
        stop_rx,
    ));
    let label = format!("{}/{}", sc.name, target.name());
    let bar = progress(label, live.clone(), sc.load.duration);
    let (rec, background, elapsed) = run_loads(sc, &stack.url, live, start.height).await?;
    end_progress(bar);
    let _ = stop_tx.send(true);
    let watched = watcher.await.map_err(|e| e.to_string())?;
    let node = node_stats(control).await?;
    let front_peak_rss = front_peak_rss(target, &stack, &watched);
    let wrk = match (&bins.wrk, sc.cross_check && target != Target::Direct) {
        (Some(wrk), true) => {
            let call = Picker::new(sc.load.mix, sc.load.form, 0).next(start.height);
            let figures = cross_check(wrk, &stack.url, &call, sc.load.duration, dir).await;
            Some(figures.map_err(|e| format!("{}/{} wrk: {e}", sc.name, target.name()))?)
        }
        _ => None,
    };
    let config_text = stack.config_text.clone();
    drop(stack);
    Ok(Measured {
        scenario: sc.name,
        target,
        round,
        rec,
        background,
        elapsed,
        node,
        start_height: start.height,
        watched,
        front_peak_rss,
        config_text,
        wrk,
    })
}

/// Sends the scenario's warm-up load, then resets the node's counters: readiness probes
/// and warm-up are not the scenario's load. Returns the node's stats after the reset.
async fn warm_up(sc: &Scenario, url: &str, control: SocketAddr) -> Result<Stats, String> {
    let live = Arc::new(Live::default());
    let start = node_stats(control).await?;
    live.head.store(start.height, Ordering::Relaxed);
    if !sc.warmup.is_zero() {
        let warm = Load {
            duration: sc.warmup,
            ..sc.load.clone()
        };
        drive(&warm, url, live).await?;
    }
    node_post(control, "/_simnode/reset-counters").await?;
    node_stats(control).await
}

/// Drives the measured load, and the unmeasured background load beside it when the
/// scenario has one. Returns both recorders and the measured load's wall time.
async fn run_loads(
    sc: &Scenario,
    url: &str,
    live: Arc<Live>,
    start_height: u64,
) -> Result<(Recorder, Option<Recorder>, Duration), String> {
    let background = sc.background.clone().map(|load| {
        let (url, live) = (url.to_string(), Arc::new(Live::default()));
        live.head.store(start_height, Ordering::Relaxed);
        let head_src = live.clone();
        (
            tokio::spawn(async move { drive(&load, &url, live).await }),
            head_src,
        )
    });
    let began = std::time::Instant::now();
    let mirror = background.as_ref().map(|(_, l)| l.clone());
    let rec = {
        let run = drive(&sc.load, url, live.clone());
        tokio::pin!(run);
        // The abuser's mix needs the head too; mirror the sampler's view into its counters.
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        loop {
            tokio::select! {
                r = &mut run => break r?,
                _ = tick.tick() => {
                    if let Some(m) = &mirror {
                        m.head.store(live.head.load(Ordering::Relaxed), Ordering::Relaxed);
                    }
                }
            }
        }
    };
    let elapsed = began.elapsed();
    let background = match background {
        Some((task, _)) => task.await.ok().and_then(|r| r.ok()),
        None => None,
    };
    Ok((rec, background, elapsed))
}

/// The front's peak resident memory: sampled, and for one process also its VmHWM.
fn front_peak_rss(target: Target, stack: &Stack, watched: &Watched) -> Option<u64> {
    match target {
        Target::Direct => None,
        Target::Nginx => Some(watched.peak_rss),
        _ => {
            let hwm = stack.front.as_ref().and_then(|p| hwm_bytes(p.pid()));
            Some(watched.peak_rss.max(hwm.unwrap_or(0)))
        }
    }
}
