//! The `cometgate` binary: reads the config once at the edge, binds the listeners, wires
//! signals (SIGTERM/SIGINT drain and exit 0; SIGHUP reloads) and watches the config file.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use clap::Parser;
use cometgate::config::{Config, ConfigErrors, WsMode};
use cometgate::gateway::Gateway;
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;

/// A protective, height-aware caching gateway for a CometBFT node's RPC port.
#[derive(Parser, Debug)]
#[command(name = "cometgate", version, about)]
struct Cli {
    /// TOML config file; without one the built-in defaults apply.
    #[arg(long, short = 'c', value_name = "FILE")]
    config: Option<PathBuf>,
    /// Overrides `[server] listen`.
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Overrides `[upstream] url`.
    #[arg(long, value_name = "URL")]
    upstream: Option<String>,
    /// Print the effective config (defaults filled in) and exit 0, with any warnings on
    /// stderr; exit non-zero naming every problem by its key path.
    #[arg(long)]
    check_config: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(clap::Subcommand, Debug)]
enum Command {
    /// The live page in a terminal: who is costing the node, from a running gateway's
    /// /admin/state, redrawn every second.
    Top {
        /// The gateway's metrics listener (`[metrics] listen`).
        #[arg(long, default_value = "http://127.0.0.1:9464")]
        url: String,
        /// `metrics.admin_token`, when one is set; COMETGATE_ADMIN_TOKEN is read if this
        /// is not given (a token on the command line shows in `ps`).
        #[arg(long)]
        token: Option<String>,
        /// Print one screen and exit.
        #[arg(long)]
        once: bool,
    },
}

/// `cometgate top`: a client of the gateway's own operator listener.
fn top(url: &str, token: Option<String>, once: bool) -> ExitCode {
    let token = token.or_else(|| std::env::var("COMETGATE_ADMIN_TOKEN").ok());
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cometgate top: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cometgate::ops::top(url, token.as_deref(), once)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cometgate top: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The file plus the command line's overrides, validated as one document so that an
/// override gets the same checks and key-path messages as the file.
fn load(cli: &Cli) -> Result<Config, ConfigErrors> {
    let text = match &cli.config {
        Some(path) => std::fs::read_to_string(path).map_err(|e| {
            ConfigErrors(vec![cometgate::config::ConfigError::new(
                "",
                format!("cannot read {}: {e}", path.display()),
            )])
        })?,
        None => String::new(),
    };
    if cli.listen.is_none() && cli.upstream.is_none() {
        return Config::from_toml_str(&text);
    }
    let mut doc: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        ConfigErrors(vec![cometgate::config::ConfigError::new(
            "",
            format!("TOML syntax error: {}", e.message()),
        )])
    })?;
    // `--upstream` names the one node: it replaces a file's node list.
    if cli.upstream.is_some() {
        if let Some(toml::Value::Table(t)) = doc.get_mut("upstream") {
            t.remove("nodes");
            t.remove("ca_file");
        }
    }
    let mut set = |section: &str, key: &str, value: String| {
        let entry = doc
            .entry(section.to_owned())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if let toml::Value::Table(t) = entry {
            t.insert(key.to_owned(), toml::Value::String(value));
        }
    };
    if let Some(listen) = cli.listen {
        set("server", "listen", listen.to_string());
    }
    if let Some(url) = &cli.upstream {
        set("upstream", "url", url.clone());
    }
    Config::from_toml_str(&doc.to_string())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Top { url, token, once }) = cli.command {
        return top(&url, token, once);
    }
    let config = match load(&cli) {
        Ok(config) => config,
        Err(errors) => {
            eprintln!("cometgate: invalid configuration:\n{errors}");
            return ExitCode::from(2);
        }
    };
    if cli.check_config {
        let warnings = config.warnings();
        if !warnings.is_empty() {
            eprintln!("cometgate: configuration warnings (it starts anyway):");
            for w in &warnings {
                eprintln!("{w}");
            }
        }
        print!("{}", config.to_toml_string());
        return ExitCode::SUCCESS;
    }
    let _log = cometgate::logging::init(config.log.format);
    warn_about(&config);
    raise_open_files_limit(&config);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        // Access lines leave a worker in batches, handed over when it has nothing to do.
        .on_thread_park(cometgate::logging::flush_access)
        .on_thread_stop(cometgate::logging::flush_access)
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cometgate: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let served = runtime.block_on(serve(cli, config));
    // Stopping the workers hands over their batches of access lines (`on_thread_stop`),
    // then the main thread's own; `_log`, dropped last, writes out the queue.
    drop(runtime);
    cometgate::logging::flush_access();
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "cometgate stopped");
            ExitCode::FAILURE
        }
    }
}

async fn serve(cli: Cli, config: Config) -> std::io::Result<()> {
    // Handlers first: once the port is open a signal may come at any time, and an
    // unhandled SIGHUP or SIGTERM kills the process outright.
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let hup = signal(SignalKind::hangup());
    let listener = TcpListener::bind(config.server.listen).await?;
    let ops_listener = match config.metrics.listen {
        Some(addr) => Some(TcpListener::bind(addr).await?),
        None => None,
    };
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        listen = %cometgate::server::local_addr(&listener),
        // Host and port only: a provider's user:password stays out of the log.
        nodes = ?config
            .upstream
            .node_list()
            .iter()
            .map(|n| format!("{}:{}", n.url.host().unwrap_or(""), n.url.port_u16().unwrap_or(80)))
            .collect::<Vec<_>>(),
        metrics = ?ops_listener.as_ref().map(cometgate::server::local_addr),
        "cometgate started"
    );
    let gateway = Gateway::new(config);
    let (stop_tx, stop_rx) = watch::channel(false);
    if let Some(ops) = ops_listener {
        tokio::spawn(cometgate::ops::run(
            ops,
            gateway.clone(),
            stopped(stop_rx.clone()),
        ));
    }
    tokio::spawn(watch_reloads(cli, gateway.clone(), hup, stop_rx.clone()));

    let shutdown = async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: finishing requests in flight"),
            _ = int.recv() => tracing::info!("SIGINT: finishing requests in flight"),
        }
        let _ = stop_tx.send(true);
        // An operator who signals again does not want to sit out the grace period.
        tokio::spawn(async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            tracing::warn!("second signal: exiting without waiting for requests in flight");
            std::process::exit(1);
        });
    };
    cometgate::server::run(listener, gateway, shutdown).await;
    tracing::info!("cometgate stopped");
    Ok(())
}

/// Every connection is a file descriptor, a websocket relay two (a fan-out client one,
/// the hub's node websockets a few), and the node pool more; systemd's default soft
/// limit of 1024 is far below what the defaults allow. The soft limit is raised to the
/// hard one, and a limit still short of the config is named.
fn raise_open_files_limit(config: &Config) {
    let w = &config.websocket;
    let websockets = match w.mode {
        WsMode::Relay => 2 * w.max_connections,
        WsMode::Fanout => w.max_connections + w.max_node_connections,
    };
    // Each node keeps its own idle connections, and its head a poll and a websocket.
    let u = &config.upstream;
    let nodes = u.node_list().len();
    let upstream = u.max_concurrency + nodes * (u.pool_max_idle.min(u.max_concurrency) + 2);
    let wanted = config.server.max_connections + websockets + upstream + 64;
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read or write the struct passed to them.
    let got = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    if got != 0 {
        return;
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: as above.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            limit = raised;
        }
    }
    if (limit.rlim_cur as u128) < wanted as u128 {
        tracing::warn!(
            open_files = limit.rlim_cur,
            wanted,
            "the open-files limit is below what server.max_connections, \
             websocket.max_connections and upstream.max_concurrency allow; raise it \
             (LimitNOFILE= under systemd, --ulimit nofile= in Docker) or lower them"
        );
    }
}

/// What the config can never do, logged once per load; it runs anyway.
fn warn_about(config: &Config) {
    for w in config.warnings() {
        tracing::warn!(key = %w.path, problem = %w.message, "config warning");
    }
}

async fn stopped(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Reloads on SIGHUP and when the config file changes (polled: no watcher dependency,
/// and it works on every filesystem, bind mounts and ConfigMaps included).
async fn watch_reloads(
    cli: Cli,
    gateway: Arc<Gateway>,
    hup: std::io::Result<tokio::signal::unix::Signal>,
    mut stop: watch::Receiver<bool>,
) {
    let Ok(mut hup) = hup else {
        tracing::warn!("cannot listen for SIGHUP: reload by signal is off");
        return;
    };
    let mut seen = cli.config.as_deref().and_then(modified);
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    loop {
        let why = tokio::select! {
            _ = hup.recv() => "SIGHUP",
            _ = tick.tick() => {
                let now = cli.config.as_deref().and_then(modified);
                if now == seen { continue; }
                seen = now;
                "file changed"
            }
            _ = stop.changed() => return,
        };
        match load(&cli) {
            Ok(config) => {
                warn_about(&config);
                let restart = gateway.reload(config);
                gateway.metrics().reloaded(true);
                tracing::info!(trigger = why, "config reloaded");
                for key in restart {
                    tracing::warn!(key, "changed, but only takes effect after a restart");
                }
            }
            Err(errors) => {
                gateway.metrics().reloaded(false);
                for e in &errors.0 {
                    tracing::error!(trigger = why, key = %e.path, problem = %e.message, "config rejected: keeping the old one");
                }
            }
        }
    }
}
