//! What `ws-fanout` sets up: the gateway's config text, the node, the counts of
//! clients and the queries they subscribe to.

use std::path::Path;
use std::time::Duration;

use serde::Serialize;

use crate::stack::Bins;
use cometgate_sim::SimNodeConfig;

/// Room for every client on one address in `[server]` (its defaults, 4,096 and 256 from
/// one address, are sized for HTTP).
pub(super) const SERVER: &str = "max_connections = 12000\nmax_connections_per_client = 12000\n";

/// The fan-out. Until the gateway knows `mode` it refuses the config and exits.
pub(super) const FANOUT: &str = "[websocket]\nmode = \"fanout\"\nmax_connections = 20000\n\
                      max_connections_per_client = 20000\n";

/// Today's relay: one node websocket per client, 500 at most by default. A gateway with
/// fan-out defaults to it and is told `mode = "relay"`; one without refuses the key.
pub(super) const RELAY: &str =
    "[websocket]\nmax_connections = 500\nmax_connections_per_client = 500\n";
pub(super) const RELAY_MODE: &str = "mode = \"relay\"\n";

/// 10 transactions of 530 bytes: NewBlock frames of about 10 KB (base64 and the
/// header on top), as the target assumes.
pub(crate) const TXS_PER_BLOCK: usize = 10;
pub(crate) const TX_BYTES: usize = 530;

/// Clients connecting at once: under the gateway's 256 half-open connections.
pub(super) const OPENING: usize = 128;
/// Blocks after the last subscription before RSS and the node's counts are read.
pub(super) const SETTLE_BLOCKS: u64 = 5;
/// Distinct queries in the spread variant.
pub(super) const QUERIES: usize = 20;
/// Every client subscribed within this, or the point goes on with those that did.
pub(super) const SUBSCRIBING: Duration = Duration::from_secs(120);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Fanout,
    Relay,
    /// No gateway: `cometgate-load ws-floor`, the least a fan-out must do (one query).
    Floor,
}

pub struct Plan {
    pub mode: Mode,
    pub counts: Vec<usize>,
    /// Blocks measured after the last subscription.
    pub blocks: u64,
    /// The gateway's sections after `[upstream]`.
    pub sections: String,
    pub quick: bool,
}

impl Plan {
    pub(super) fn from_env(bins: &Bins, quick: bool, dir: &Path) -> Result<Plan, String> {
        let mode = match std::env::var("WS_FANOUT_MODE").as_deref() {
            Ok("relay") => Mode::Relay,
            Ok("floor") => Mode::Floor,
            Ok("fanout") | Err(_) => Mode::Fanout,
            Ok(other) => return Err(format!("WS_FANOUT_MODE={other}: fanout, relay or floor")),
        };
        let counts = match std::env::var("WS_FANOUT_CLIENTS") {
            Ok(list) => list
                .split(',')
                .map(|n| n.trim().parse::<usize>().map_err(|e| format!("{n}: {e}")))
                .collect::<Result<Vec<_>, _>>()?,
            Err(_) => match (mode, quick) {
                (Mode::Fanout | Mode::Floor, false) => vec![1_000, 5_000, 10_000],
                (Mode::Fanout | Mode::Floor, true) => vec![200, 1_000],
                (Mode::Relay, false) => vec![100, 200, 400],
                (Mode::Relay, true) => vec![100, 400],
            },
        };
        let sections = match std::env::var("WS_FANOUT_CONFIG") {
            Ok(path) => std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?,
            Err(_) if mode == Mode::Relay => relay_sections(bins, dir)?,
            Err(_) if mode == Mode::Floor => String::new(),
            Err(_) => FANOUT.to_string(),
        };
        Ok(Plan {
            mode,
            counts,
            blocks: if quick { 10 } else { 20 },
            sections,
            quick,
        })
    }
}

/// `RELAY`, with `mode = "relay"` when the gateway knows the key (its `--check-config`
/// says so).
fn relay_sections(bins: &Bins, dir: &Path) -> Result<String, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let with_mode = format!("{RELAY}{RELAY_MODE}");
    let probe = dir.join("relay-probe.toml");
    std::fs::write(&probe, &with_mode).map_err(|e| e.to_string())?;
    let known = std::process::Command::new(&bins.cometgate)
        .arg("--config")
        .arg(&probe)
        .arg("--check-config")
        .output()
        .map_err(|e| format!("{}: {e}", bins.cometgate.display()))?
        .status
        .success();
    Ok(if known { with_mode } else { RELAY.to_string() })
}

pub(crate) fn node() -> SimNodeConfig {
    SimNodeConfig {
        block_interval: Duration::from_secs(1),
        start_height: 100,
        txs_per_block: TXS_PER_BLOCK,
        tx_bytes: TX_BYTES,
        ..SimNodeConfig::default()
    }
}

/// `n` distinct queries that each match every NewBlock and nothing else, on the
/// simulated node as on CometBFT (where NewBlock events carry `tm.event` and the
/// app's block events): the plain one, then `tm.event CONTAINS` a piece of `NewBlock`.
pub(crate) fn queries(n: usize) -> Vec<String> {
    const WORD: &str = "NewBlock";
    let pieces = (1..WORD.len())
        .rev()
        .flat_map(|len| (0..=WORD.len() - len).map(move |at| &WORD[at..at + len]));
    std::iter::once("tm.event='NewBlock'".to_string())
        .chain(pieces.map(|p| format!("tm.event='NewBlock' AND tm.event CONTAINS '{p}'")))
        .take(n)
        .collect()
}
