//! Brings up what one measurement needs: a fresh simulated node, and in front of it the
//! target under test (nothing, cometgate, nginx) or the ceiling server. Fresh processes per
//! run so that caches, peaks and RSS high-water marks belong to that run alone.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::client::{Call, Client};
use crate::configs::{cometgate_toml, nginx_conf, Front, GatewayConf, Lanes, NginxConf, WORKERS};
use crate::mix::{Form, Mix, Picker};
use crate::procs::{free_addr, wait_listening, Proc};
use cometgate_sim::SimNodeConfig;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    Direct,
    /// cometgate as shipped: fair lanes, the adaptive heavy lane, and the memory guard where
    /// the scenario has one.
    Cometgate,
    /// cometgate with `fair = false` in both lanes (first come, first served), otherwise
    /// as shipped (guard included).
    Fcfs,
    /// cometgate with a static heavy lane of this size and no guard.
    Static(usize),
    /// cometgate as shipped but with its access log off, beside a logged `Cometgate`:
    /// what the log costs, measured side by side.
    Unlogged,
    Nginx,
    Ceiling,
}

impl Target {
    pub fn name(self) -> String {
        match self {
            Target::Direct => "direct".into(),
            Target::Cometgate => "cometgate".into(),
            Target::Fcfs => "cometgate-fcfs".into(),
            Target::Static(n) => format!("cometgate-static-{n}"),
            Target::Unlogged => "cometgate-unlogged".into(),
            Target::Nginx => "nginx".into(),
            Target::Ceiling => "ceiling".into(),
        }
    }

    /// One of cometgate's variants.
    pub fn is_cometgate(self) -> bool {
        matches!(
            self,
            Target::Cometgate | Target::Fcfs | Target::Static(_) | Target::Unlogged
        )
    }

    fn lanes(self) -> Lanes {
        Lanes {
            fcfs: self == Target::Fcfs,
            static_heavy: match self {
                Target::Static(n) => Some(n),
                _ => None,
            },
        }
    }
}

/// Paths to the programs the bench starts.
#[derive(Clone, Debug)]
pub struct Bins {
    pub simnode: PathBuf,
    pub cometgate: PathBuf,
    /// None when nginx could not be installed: its runs are skipped and the report says so.
    pub nginx: Option<PathBuf>,
    /// None when wrk could not be installed: the cross-checks are skipped, and say so.
    pub wrk: Option<PathBuf>,
    /// This executable, which serves the ceiling as a subcommand.
    pub me: PathBuf,
}

pub struct Node {
    /// Held for its Drop: the node dies with the stack.
    _proc: Proc,
    pub rpc: SocketAddr,
    pub control: SocketAddr,
    /// Its `--metrics-listen` port, like a real node's :26660, when a guard reads it.
    pub metrics: Option<SocketAddr>,
}

pub struct Stack {
    pub node: Node,
    pub front: Option<Proc>,
    /// Where the load goes.
    pub url: String,
    /// The generated config of the front, for the report.
    pub config_text: Option<String>,
    /// cometgate's own metrics listener, where the bench reads its lanes' limits.
    pub gateway_metrics: Option<SocketAddr>,
}

impl Stack {
    /// Processes whose memory counts as the gateway's: the front and nginx's workers.
    pub fn front_pids(&self) -> Vec<u32> {
        match &self.front {
            Some(p) => {
                let mut pids = vec![p.pid()];
                pids.extend(crate::procs::children_of(p.pid()));
                pids
            }
            None => Vec::new(),
        }
    }
}

pub async fn start_node(
    bins: &Bins,
    cfg: &SimNodeConfig,
    metrics: bool,
    dir: &Path,
) -> Result<Node, String> {
    let mut cfg = cfg.clone();
    cfg.listen = free_addr();
    cfg.control_listen = Some(free_addr());
    cfg.metrics_listen = metrics.then(free_addr);
    start_node_at(bins, &cfg, dir).await
}

/// A node on the addresses `cfg` names: a node restarted where it was.
pub async fn start_node_at(bins: &Bins, cfg: &SimNodeConfig, dir: &Path) -> Result<Node, String> {
    let cfg = cfg.clone();
    let path = dir.join("simnode.json");
    let text = serde_json::to_string_pretty(&cfg).map_err(|e| e.to_string())?;
    std::fs::write(&path, text).map_err(|e| e.to_string())?;
    let mut cmd = Command::new(&bins.simnode);
    cmd.arg("--config").arg(&path).env("RUST_LOG", "warn");
    let mut proc = Proc::spawn(cmd, "simnode", dir, false)?;
    wait_listening(cfg.listen, &mut proc).await?;
    let control = cfg.control_listen.expect("set above");
    wait_listening(control, &mut proc).await?;
    if let Some(metrics) = cfg.metrics_listen {
        wait_listening(metrics, &mut proc).await?;
    }
    Ok(Node {
        _proc: proc,
        rpc: cfg.listen,
        control,
        metrics: cfg.metrics_listen,
    })
}

pub async fn start(
    bins: &Bins,
    target: Target,
    node_cfg: &SimNodeConfig,
    front: Front,
    dir: &Path,
) -> Result<Stack, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let node = start_node(bins, node_cfg, front.guard.is_some(), dir).await?;
    let listen = free_addr();
    let mut gateway_metrics = None;
    let (front, config_text) = match target {
        Target::Direct => (None, None),
        Target::Cometgate | Target::Fcfs | Target::Static(_) | Target::Unlogged => {
            let metrics = *gateway_metrics.insert(free_addr());
            start_cometgate(bins, (listen, metrics), &node, target, front, dir)?
        }
        Target::Nginx => start_nginx(bins, listen, node.rpc, front, dir)?,
        Target::Ceiling => start_ceiling(bins, listen, node.rpc, dir).await?,
    };
    let url = match target {
        Target::Direct => format!("http://{}", node.rpc),
        _ => format!("http://{listen}"),
    };
    let mut stack = Stack {
        node,
        front,
        url,
        config_text,
        gateway_metrics,
    };
    if let Some(front) = stack.front.as_mut() {
        wait_listening(listen, front).await?;
    }
    if target != Target::Ceiling {
        wait_answering(&stack.url).await?;
    }
    Ok(stack)
}

/// The process in front of the node, if any, and its generated config (for the report).
type FrontProc = (Option<Proc>, Option<String>);

fn start_cometgate(
    bins: &Bins,
    (listen, metrics): (SocketAddr, SocketAddr),
    node: &Node,
    target: Target,
    front: Front,
    dir: &Path,
) -> Result<FrontProc, String> {
    // Static lanes stand for the gateway before the guard: no guard.
    let guard = match (front.guard, node.metrics, target) {
        (Some(limit), Some(addr), Target::Cometgate | Target::Fcfs) => {
            Some((format!("http://{addr}/metrics"), limit))
        }
        _ => None,
    };
    let text = cometgate_toml(&GatewayConf {
        listen,
        metrics,
        upstream: node.rpc,
        limits: front.limits,
        lanes: target.lanes(),
        guard,
        api_key: front.api_key,
        access_log: front.access_log && target != Target::Unlogged,
        idle: front.idle,
    });
    let path = dir.join("cometgate.toml");
    std::fs::write(&path, &text).map_err(|e| e.to_string())?;
    let mut cmd = Command::new(&bins.cometgate);
    cmd.arg("--config")
        .arg(&path)
        // The default log level, as operators run it (its per-request span included).
        .env("TOKIO_WORKER_THREADS", WORKERS.to_string())
        .env_remove("RUST_LOG");
    Ok((Some(Proc::spawn(cmd, "cometgate", dir, true)?), Some(text)))
}

fn start_nginx(
    bins: &Bins,
    listen: SocketAddr,
    upstream: SocketAddr,
    front: Front,
    dir: &Path,
) -> Result<FrontProc, String> {
    let limits = front.api_key.map_or(front.limits, |k| k.limits);
    let nginx = bins.nginx.as_ref().ok_or("nginx is not installed")?;
    let ndir = dir.join("nginx");
    std::fs::create_dir_all(&ndir).map_err(|e| e.to_string())?;
    // nginx's workers drop to an unprivileged user when started as root; they
    // must still write the cache and temp directories.
    let _ = Command::new("chmod")
        .args(["-R", "a+rwx"])
        .arg(dir)
        .status();
    let text = nginx_conf(&NginxConf {
        dir: &ndir,
        listen,
        upstream,
        limits,
        access_log: front.access_log,
    });
    let conf = ndir.join("nginx.conf");
    std::fs::write(&conf, &text).map_err(|e| e.to_string())?;
    let mut cmd = Command::new(nginx);
    cmd.arg("-p")
        .arg(&ndir)
        .arg("-e")
        .arg(ndir.join("error.log"))
        .arg("-c")
        .arg(&conf);
    Ok((Some(Proc::spawn(cmd, "nginx", dir, true)?), Some(text)))
}

async fn start_ceiling(
    bins: &Bins,
    listen: SocketAddr,
    upstream: SocketAddr,
    dir: &Path,
) -> Result<FrontProc, String> {
    // The ceiling serves the very bytes the cache-hit scenario asks for.
    let call = Picker::new(Mix::CacheHit, Form::Post, 0).next(1);
    let (_, body) = Client::new(&format!("http://{upstream}"), None)?
        .fetch(&call)
        .await
        .map_err(|e| format!("fetching the ceiling's body: {e}"))?;
    let body_path = dir.join("ceiling-body.json");
    std::fs::write(&body_path, &body).map_err(|e| e.to_string())?;
    let mut cmd = Command::new(&bins.me);
    cmd.arg("ceiling")
        .arg("--listen")
        .arg(listen.to_string())
        .arg("--body")
        .arg(&body_path)
        .env("TOKIO_WORKER_THREADS", WORKERS.to_string());
    Ok((Some(Proc::spawn(cmd, "ceiling", dir, false)?), None))
}

/// Waits until `status` answers 200 through the target: cometgate also needs its head
/// tracker to have seen the node before "latest" answers are cacheable.
async fn wait_answering(url: &str) -> Result<(), String> {
    let client = Client::new(url, None)?;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Ok((200, _)) = client.fetch(&Call::Get("/status".into())).await {
            tokio::time::sleep(Duration::from_millis(200)).await;
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("{url} did not answer /status within 15 s"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// nginx from PATH or /usr/sbin, installed from Debian's packages when missing.
pub fn ensure_nginx() -> Option<PathBuf> {
    installed(
        "nginx",
        &["/usr/sbin/nginx", "/usr/bin/nginx", "/usr/local/sbin/nginx"],
        &["nginx-light", "nginx"],
    )
}

/// The first of `paths` that exists, after installing the first of `packages` Debian
/// has when none does.
pub fn installed(name: &str, paths: &[&str], packages: &[&str]) -> Option<PathBuf> {
    let find = || paths.iter().map(PathBuf::from).find(|p| p.exists());
    if let Some(p) = find() {
        return Some(p);
    }
    eprintln!("{name} not found: installing it with apt-get");
    apt_install(packages);
    find()
}

/// Installs the first of `packages` Debian has, refreshing the package lists once if
/// none installs from them as they are.
fn apt_install(packages: &[&str]) -> bool {
    let apt = |args: &[&str]| {
        Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdout(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    packages.iter().any(|package| {
        apt(&["install", "-y", "-qq", package])
            || (apt(&["update", "-qq"]) && apt(&["install", "-y", "-qq", package]))
    })
}
