//! The `cometgate` binary as an operator runs it: config checking, and SIGTERM draining
//! a request in flight before exiting 0.

use std::net::TcpListener as StdListener;
use std::process::{Command, Stdio};
use std::time::Duration;

use cometgate_sim::{Fault, SimNodeConfig};

use crate::support::*;

pub fn cometgate() -> Command {
    Command::new(env!("CARGO_BIN_EXE_cometgate"))
}

pub fn temp_config(text: &str) -> tempfile_path::TempPath {
    tempfile_path::write(text)
}

/// A minimal temp file that removes itself (no extra dependency for one use).
pub mod tempfile_path {
    use std::path::PathBuf;

    pub struct TempPath(pub PathBuf);

    impl Drop for TempPath {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    pub fn write(text: &str) -> TempPath {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("cometgate-test-{}-{n}.toml", std::process::id()));
        std::fs::write(&path, text).expect("temp file");
        TempPath(path)
    }
}

#[test]
fn check_config_names_every_problem_by_its_key_path() {
    let file = temp_config(
        "[server]\nlisen = \"127.0.0.1:1\"\n[upstream]\ntimeout = \"10 parsecs\"\nurl = \"ftp://node\"\n",
    );
    let out = cometgate()
        .arg("--config")
        .arg(&file.0)
        .arg("--check-config")
        .output()
        .expect("runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    for key in ["server.lisen", "upstream.timeout", "upstream.url"] {
        assert!(stderr.contains(key), "{key} not named in:\n{stderr}");
    }
}

#[test]
fn check_config_prints_the_effective_config_with_defaults_and_overrides() {
    let out = cometgate()
        .args([
            "--check-config",
            "--listen",
            "127.0.0.1:7777",
            "--upstream",
            "http://10.1.2.3:26657",
        ])
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let config =
        cometgate::config::Config::from_toml_str(&text).expect("the printed config parses back");
    assert_eq!(config.server.listen.to_string(), "127.0.0.1:7777");
    assert_eq!(config.upstream.url.to_string(), "http://10.1.2.3:26657/");
    assert_eq!(
        config.cache.max_bytes,
        cometgate::config::Config::default().cache.max_bytes
    );
}

#[test]
fn version_is_printed() {
    let out = cometgate().arg("--version").output().expect("runs");
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains(env!("CARGO_PKG_VERSION")));
}

/// The gateway process; killed if a test fails before it has exited by itself.
pub struct Running(pub Option<std::process::Child>);

impl Running {
    pub fn id(&self) -> u32 {
        self.0.as_ref().map_or(0, std::process::Child::id)
    }

    pub fn wait(mut self) -> std::io::Result<std::process::ExitStatus> {
        match self.0.take() {
            Some(mut child) => child.wait(),
            None => Err(std::io::ErrorKind::NotFound.into()),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(child) = self.0.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// The binary with `file`, listening on `port` in front of `upstream`, once it listens.
pub async fn start_gateway(file: &tempfile_path::TempPath, port: u16, upstream: &str) -> Running {
    let child = cometgate()
        .arg("--config")
        .arg(&file.0)
        .args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--upstream",
            upstream,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map(|c| Running(Some(c)))
        .expect("starts");
    listening(port).await;
    child
}

pub async fn listening(port: u16) {
    eventually("the gateway listens", || async {
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
    })
    .await;
}

#[tokio::test]
async fn sigterm_lets_a_slow_request_finish_then_exits_zero() {
    let node = frozen_node(SimNodeConfig::default()).await;
    let port = free_port();
    let file = temp_config("[metrics]\nlisten = \"off\"\n[log]\naccess_log = false\n");
    let child = start_gateway(&file, port, &node.url()).await;
    let url = format!("http://127.0.0.1:{port}");

    node.set_fault(Fault::Slow(Duration::from_millis(1500)));
    let http = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http();
    let in_flight = tokio::spawn(async move {
        send(
            &http,
            http::Method::GET,
            &format!("{url}/block?height=3"),
            bytes::Bytes::new(),
            &[],
        )
        .await
    });
    // The client's own call, not just anything in flight: the head tracker's `status`
    // polls are slowed by the same fault and once satisfied a bare in-flight count
    // before the client's request had even been read.
    eventually("the slow request reaches the node", || async {
        node.stats().per_request.contains_key("block(height=3)")
    })
    .await;
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());

    let reply = in_flight.await.expect("request task");
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["result"]["block"]["header"]["height"], "3");
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .expect("exits");
    assert_eq!(status.code(), Some(0));
}

#[tokio::test]
async fn sighup_applies_a_tighter_rate_limit_and_keeps_the_old_config_on_a_broken_file() {
    let node = frozen_node(SimNodeConfig::default()).await;
    let port = free_port();
    let base = format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\n[upstream]\nurl = \"{}\"\n[metrics]\nlisten = \"off\"\n",
        node.url()
    );
    let file = temp_config(&format!(
        "{base}[rate_limit]\nrequests_per_second = 100000\nburst = 100000\n"
    ));
    let log = std::env::temp_dir().join(format!("cometgate-sighup-{}.log", std::process::id()));
    let child = cometgate()
        .arg("--config")
        .arg(&file.0)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .map(|c| Running(Some(c)))
        .expect("starts");
    listening(port).await;
    let http = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http();
    let url = format!("http://127.0.0.1:{port}/block?height=2");
    let get = || send(&http, http::Method::GET, &url, bytes::Bytes::new(), &[]);
    let hup = || {
        Command::new("kill")
            .args(["-HUP", &child.id().to_string()])
            .status()
            .expect("kill")
            .success()
    };

    std::fs::write(
        &file.0,
        format!("{base}[rate_limit]\nrequests_per_second = \"fast\"\n"),
    )
    .unwrap();
    assert!(hup());
    eventually("the broken file is rejected", || async {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("config rejected")
    })
    .await;
    assert!(std::fs::read_to_string(&log)
        .unwrap()
        .contains("rate_limit.requests_per_second"));
    for _ in 0..20 {
        assert_eq!(get().await.status, 200, "still serving on the old config");
    }

    std::fs::write(
        &file.0,
        format!("{base}[rate_limit]\nlocal_clients = \"limited\"\nrequests_per_second = 1\nburst = 20\n"),
    )
    .unwrap();
    assert!(hup());
    eventually("the tighter limit applies", || async {
        get().await.status == 429
    })
    .await;
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .expect("exits");
    assert_eq!(status.code(), Some(0));
    let _ = std::fs::remove_file(&log);
}

#[tokio::test]
async fn a_second_signal_exits_without_waiting_out_the_grace_period() {
    let node = frozen_node(SimNodeConfig::default()).await;
    let port = free_port();
    let file = temp_config(
        "[server]\nshutdown_grace = \"120s\"\n[upstream]\ntimeout = \"120s\"\n\
         [metrics]\nlisten = \"off\"\n[log]\naccess_log = false\n",
    );
    let child = start_gateway(&file, port, &node.url()).await;
    let url = format!("http://127.0.0.1:{port}");
    // A request the node never answers keeps the drain waiting.
    node.set_fault(Fault::Hang);
    let http = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http();
    let _in_flight = tokio::spawn(async move {
        send(
            &http,
            http::Method::GET,
            &format!("{url}/block?height=3"),
            bytes::Bytes::new(),
            &[],
        )
        .await
    });
    // The client's own call: the head's `status` polls hang at the node too.
    eventually("the hung request reaches the node", || async {
        node.stats().per_request.contains_key("block(height=3)")
    })
    .await;
    let signal = |name: &str| {
        let sent = Command::new("kill")
            .args([name, &child.id().to_string()])
            .status()
            .expect("kill");
        assert!(sent.success());
    };
    signal("-TERM");
    eventually("the gateway stops accepting: it is draining", || async {
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
    })
    .await;
    signal("-INT");
    let exited = tokio::time::timeout(DEADLINE, tokio::task::spawn_blocking(move || child.wait()))
        .await
        .expect("exits long before the 120 s grace period")
        .unwrap()
        .expect("exit status");
    assert_eq!(exited.code(), Some(1));
}

/// `Max open files` soft and hard limits of a running process, from /proc.
fn open_files_limits(pid: u32) -> Option<(String, String)> {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let mut fields = line["Max open files".len()..].split_whitespace();
    Some((fields.next()?.to_owned(), fields.next()?.to_owned()))
}

#[tokio::test]
async fn a_low_open_files_soft_limit_is_raised_to_the_hard_one() {
    let node = frozen_node(SimNodeConfig::default()).await;
    let port = free_port();
    let file = temp_config("[metrics]\nlisten = \"off\"\n");
    // A shell lowers the soft limit, as systemd's default 1024 would, then execs.
    let child = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -Sn 100 && exec \"$0\" --config \"$1\" --listen 127.0.0.1:{port} --upstream {}",
            node.url()
        ))
        .arg(env!("CARGO_BIN_EXE_cometgate"))
        .arg(&file.0)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map(|c| Running(Some(c)))
        .expect("starts");
    listening(port).await;
    let (soft, hard) = open_files_limits(child.id()).expect("/proc limits");
    assert_ne!(soft, "100", "the soft limit was raised");
    assert_eq!(soft, hard);
}
