//! The `simnode` process: flags, a config file, serving, and a control port.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use common::*;

struct Kill(std::process::Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn simnode_binary_serves_from_a_config_file() {
    let dir = std::env::temp_dir().join(format!("simnode-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("node.toml");
    std::fs::write(
        &cfg,
        "txs_per_block = 4\nchain_id = \"simchain\"\ncontrol_listen = \"127.0.0.1:0\"\n",
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_simnode"))
        .args([
            "--config",
            cfg.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--block-interval",
            "0",
            "--start-height",
            "20",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let _guard = Kill(child);
    let first = lines.next().unwrap().unwrap();
    let url = first
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap()
        .to_string();
    let addr = url.trim_start_matches("http://").parse().unwrap();
    let status = get(addr, "/status").await.json();
    assert_eq!(status["result"]["sync_info"]["latest_block_height"], "20");
    assert_eq!(status["result"]["node_info"]["network"], "simchain");
    let block = get(addr, "/block?height=3").await.json();
    assert_eq!(
        block["result"]["block"]["data"]["txs"]
            .as_array()
            .unwrap()
            .len(),
        4
    );
    let control = lines.next().unwrap().unwrap();
    assert!(control.contains("/_simnode/stats"));
}
