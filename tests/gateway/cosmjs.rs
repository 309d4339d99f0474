//! cosmjs, the JavaScript client most Cosmos front ends use, pointed at the gateway's
//! `/websocket`: its `Tendermint37Client.subscribeNewBlock` must work unchanged, whether
//! the gateway relays the node's websocket or fans one subscription out.

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};

use cometgate_sim::SimNodeConfig;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};
use tokio::task::JoinHandle;

use crate::support::*;

/// Blocks the script waits for: more than one, so that order and gaps show.
const BLOCKS: u64 = 3;

/// The script, once the machine has what it needs; `.ci/test` installs all of it.
fn script() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients");
    assert!(
        dir.join("node_modules/@cosmjs/tendermint-rpc/package.json")
            .exists(),
        "the cosmjs test needs @cosmjs/tendermint-rpc in tests/clients/node_modules: run \
         .ci/test, or (cd tests/clients && npm ci)"
    );
    dir.join("subscribe_new_block.mjs")
}

/// The running script: its stdout line by line, and its stderr gathered on the side so
/// that a failure can say what the script said.
struct Script {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
    stderr: JoinHandle<String>,
    said: Vec<String>,
}

impl Script {
    fn start(script: &Path, url: &str, blocks: u64) -> Script {
        let mut child = Command::new("node")
            .arg(script)
            .arg(url)
            .arg(blocks.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("the cosmjs test needs Node.js (`node`) on PATH ({e}); .ci/test installs it")
            });
        let lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let mut stderr = child.stderr.take().expect("stderr");
        let stderr = tokio::spawn(async move {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text).await;
            text
        });
        Script {
            child,
            lines,
            stderr,
            said: Vec::new(),
        }
    }

    /// The next line, within the deadline; `what` names it for the failure.
    async fn line(&mut self, what: &str) -> String {
        match tokio::time::timeout(DEADLINE, self.lines.next_line()).await {
            Ok(Ok(Some(line))) => {
                self.said.push(line.clone());
                line
            }
            Ok(Ok(None)) => self.fail(&format!("the script ended before {what}")).await,
            Ok(Err(e)) => self.fail(&format!("reading {what}: {e}")).await,
            Err(_) => self.fail(&format!("no {what} within {DEADLINE:?}")).await,
        }
    }

    /// How the script ended, which it must within the deadline, and anything it printed
    /// that the test did not read.
    async fn end(&mut self) -> (ExitStatus, Vec<String>) {
        let mut rest = Vec::new();
        let drained = tokio::time::timeout(DEADLINE, async {
            while let Ok(Some(line)) = self.lines.next_line().await {
                rest.push(line);
            }
            self.child.wait().await
        })
        .await;
        match drained {
            Ok(Ok(status)) => (status, rest),
            Ok(Err(e)) => self.fail(&format!("waiting for the script: {e}")).await,
            Err(_) => self.fail("the script did not exit").await,
        }
    }

    /// Fails the test with everything the script wrote, stopping it first so that its
    /// stderr ends.
    async fn fail(&mut self, why: &str) -> ! {
        let _ = self.child.start_kill();
        let stderr = tokio::time::timeout(DEADLINE, &mut self.stderr)
            .await
            .map(|r| r.unwrap_or_default())
            .unwrap_or_default();
        panic!(
            "{why}\nthe script printed: {:?}\nits stderr: {stderr}",
            self.said
        );
    }
}

#[tokio::test]
async fn cosmjs_subscribe_new_block_gets_every_block_through_the_gateway() {
    let script = script();
    let h = spawn_gateway().await;
    let chain_id = SimNodeConfig::default().chain_id;
    // The URL a dapp would be given; the script lets cosmjs add nothing to it.
    let mut run = Script::start(&script, &format!("ws://{}/websocket", h.addr), BLOCKS);

    // The chain is frozen, so no block can come before the subscription is acknowledged
    // and every block produced after it must arrive.
    let ack = run.line("the subscription's acknowledgement").await;
    if ack != "subscribed" {
        run.fail(&format!("expected `subscribed`, got {ack:?}"))
            .await;
    }
    // The gateway holds the script's websocket, so these blocks reach cosmjs through it
    // and not from the node directly.
    let open = h.metric("cometgate_websocket_connections", &[]).await;
    if open != 1.0 {
        run.fail(&format!(
            "the gateway counts {open} client websockets while cosmjs is subscribed"
        ))
        .await;
    }

    // One block at a time, each awaited before the next, so a missing or repeated block
    // is named by its height rather than shifting every line after it.
    for _ in 0..BLOCKS {
        let height = h.advance_block().await;
        let line = run.line(&format!("block {height}")).await;
        let got: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
        let wanted = json!({"height": height, "chainId": chain_id});
        if got != wanted {
            run.fail(&format!("expected {wanted}, got {line:?}")).await;
        }
    }

    let (status, rest) = run.end().await;
    if !status.success() || !rest.is_empty() {
        run.fail(&format!(
            "the script ended {status} after printing {rest:?} beyond the {BLOCKS} blocks"
        ))
        .await;
    }
    // The gateway lets go of the websocket once cosmjs has gone.
    let gw = &h;
    eventually("the gateway counts no client websocket", || async move {
        gw.metric("cometgate_websocket_connections", &[]).await == 0.0
    })
    .await;
    h.shutdown().await;
}
