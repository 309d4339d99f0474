//! `cometgate-load`: load scenarios against any CometBFT RPC URL, the full benchmark with
//! its report, and a one-command demo.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand, ValueEnum};
use cometgate_load::drive::{drive, end_progress, progress, Live, Load, Mode};
use cometgate_load::mix::{Form, Mix};
use cometgate_load::plan::{ABUSER, ABUSER_RATE};
use cometgate_load::record::Recorder;
use cometgate_load::{bench, ceiling, demo, lean, sampler, ws_floor};
use cometgate_sim::parse_duration;

#[derive(Parser, Debug)]
#[command(
    name = "cometgate-load",
    about = "Load scenarios and benchmark report for cometgate"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
enum ScenarioArg {
    LcdStorm,
    Explorer,
    Abuse,
    CacheHit,
    MissOverhead,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
enum FormArg {
    Post,
    Get,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Drive one scenario against a URL and print its latency and status summary.
    Run(RunArgs),
    /// Start simnode, cometgate, nginx and a ceiling server; run every scenario; write
    /// REPORT.md, report.json and PNG charts.
    Bench {
        /// About 3 minutes instead of about 10.
        #[arg(long)]
        quick: bool,
        #[arg(long, default_value = "bench-report")]
        out: PathBuf,
        /// Only scenarios whose name starts with one of these.
        #[arg(long)]
        only: Vec<String>,
    },
    /// A storm against a simulated node, direct then through cometgate, and what the node
    /// went through each time.
    Demo {
        #[arg(long, default_value = "60s", value_parser = parse_duration)]
        duration: Duration,
    },
    /// The memory budget and refresh-ahead benches: big answers under each allocator,
    /// idle connections against nginx, the latency around each block with
    /// refresh-ahead off, "wait" and "previous", websocket fan-out to 10,000 clients,
    /// and failover across three nodes; writes LEAN.md and lean.json (and WS-FANOUT.md
    /// for ws-fanout).
    Lean {
        #[arg(long)]
        quick: bool,
        #[arg(long, default_value = "lean-report")]
        out: PathBuf,
        /// `memory`, `connections`, `entries`, `refresh`, `replicas`, `ws-fanout` or
        /// `failover` (all when absent).
        #[arg(long)]
        only: Vec<String>,
    },
    /// The bench's ceiling server: answers every request with the file's bytes.
    #[command(hide = true)]
    Ceiling {
        #[arg(long)]
        listen: SocketAddr,
        #[arg(long)]
        body: PathBuf,
    },
    /// `ws-fanout`'s floor: one node subscription written to every client, nothing else.
    #[command(hide = true)]
    WsFloor {
        #[arg(long)]
        listen: SocketAddr,
        /// The node's RPC address.
        #[arg(long)]
        node: SocketAddr,
        #[arg(long)]
        query: String,
    },
}

#[derive(Args, Debug)]
struct RunArgs {
    /// Target, e.g. http://127.0.0.1:26658
    #[arg(long)]
    url: String,
    #[arg(long, value_enum)]
    scenario: ScenarioArg,
    /// Closed loop with this many clients (the default, 16).
    #[arg(long, conflicts_with = "rate")]
    clients: Option<usize>,
    /// Open loop at this many requests per second.
    #[arg(long)]
    rate: Option<f64>,
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    /// JSON-RPC POST or URI GET.
    #[arg(long, value_enum, default_value = "post")]
    form: FormArg,
    /// `abuse` only: the abuser's source address and its open-loop rate (req/s).
    #[arg(long, default_value_t = ABUSER)]
    abuser_from: IpAddr,
    #[arg(long, default_value_t = ABUSER_RATE)]
    abuser_rate: f64,
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => {
            let (load, abuser) = loads(&args);
            run(args.url, load, abuser).await
        }
        Command::Bench { quick, out, only } => run_bench(quick, out, only).await,
        Command::Demo { duration } => demo::demo(duration).await,
        Command::Lean { quick, out, only } => lean::lean(lean::Options { quick, out, only }).await,
        Command::Ceiling { listen, body } => match std::fs::read(&body) {
            Ok(bytes) => ceiling::serve(listen, bytes.into())
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(format!("{}: {e}", body.display())),
        },
        Command::WsFloor {
            listen,
            node,
            query,
        } => ws_floor::serve(listen, node, query).await,
    };
    if let Err(e) = result {
        eprintln!("cometgate-load: {e}");
        std::process::exit(1);
    }
}

/// The measured load `run` asks for, and the abuser's beside it for `abuse`.
fn loads(args: &RunArgs) -> (Load, Option<Load>) {
    let mix = match args.scenario {
        ScenarioArg::LcdStorm => Mix::Storm,
        ScenarioArg::Explorer | ScenarioArg::Abuse => Mix::Explorer,
        ScenarioArg::CacheHit => Mix::CacheHit,
        ScenarioArg::MissOverhead => Mix::MissOverhead,
    };
    let mode = match args.rate {
        Some(rate) => Mode::Open { rate },
        None => Mode::Closed {
            clients: args.clients.unwrap_or(16),
        },
    };
    let form = match args.form {
        FormArg::Post => Form::Post,
        FormArg::Get => Form::Get,
    };
    let load = Load {
        mix,
        form,
        mode,
        duration: args.duration,
        seed: 7,
        local: None,
        addresses: 1,
        api_key: None,
    };
    let abuser = (args.scenario == ScenarioArg::Abuse).then(|| Load {
        mix: Mix::Abuser,
        mode: Mode::Open {
            rate: args.abuser_rate,
        },
        local: Some(args.abuser_from),
        ..load.clone()
    });
    (load, abuser)
}

/// Runs the bench and prints each target's verdict.
async fn run_bench(quick: bool, out: PathBuf, only: Vec<String>) -> Result<(), String> {
    let began = Instant::now();
    let report = bench::bench(bench::Options {
        quick,
        out: out.clone(),
        only,
    })
    .await?;
    for v in &report.targets {
        let verdict = match v.met {
            Some(true) => "met",
            Some(false) => "MISSED",
            None => "not measured",
        };
        println!("{:<14} {verdict:<12} {}", v.scenario, v.measured);
    }
    println!(
        "report in {} ({:.0} s)",
        out.join("REPORT.md").display(),
        began.elapsed().as_secs_f64()
    );
    Ok(())
}

async fn run(url: String, load: Load, abuser: Option<Load>) -> Result<(), String> {
    let live = Arc::new(Live::default());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let follower = tokio::spawn(sampler::follow_head(url.clone(), live.clone(), stop_rx));
    // Give the follower a moment so the first requests aim at the real head.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let bar = progress(format!("{:?}", load.mix), live.clone(), load.duration);
    let background = abuser.map(|a| {
        let (url, live) = (url.clone(), live.clone());
        tokio::spawn(async move { drive(&a, &url, live).await })
    });
    let began = Instant::now();
    let rec = drive(&load, &url, live.clone()).await?;
    let elapsed = began.elapsed();
    end_progress(bar);
    let abused = match background {
        Some(task) => Some(task.await.map_err(|e| e.to_string())??),
        None => None,
    };
    let _ = stop_tx.send(true);
    let _ = follower.await;
    summary("measured clients", &rec, elapsed);
    if let Some(a) = abused {
        summary("abuser", &a, elapsed);
    }
    Ok(())
}

fn summary(who: &str, rec: &Recorder, elapsed: Duration) {
    println!(
        "{who}: {} requests in {:.1} s ({:.0} req/s), p50 {:.3} ms, p99 {:.3} ms, p99.9 {:.3} ms, max {:.3} ms, errors {}",
        rec.count(),
        elapsed.as_secs_f64(),
        rec.count() as f64 / elapsed.as_secs_f64(),
        rec.quantile_ms(0.5),
        rec.quantile_ms(0.99),
        rec.quantile_ms(0.999),
        rec.quantile_ms(1.0),
        rec.errors()
    );
    println!(
        "  statuses: {:?}  failures: {:?}",
        rec.statuses, rec.failures
    );
}
