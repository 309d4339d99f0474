//! Knobs of the simulated node, shared by the library API and `simnode --config`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Everything that shapes the simulated node. `Default` is light and fast, for tests.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SimNodeConfig {
    /// RPC listen address; port 0 picks a free port.
    pub listen: SocketAddr,
    /// Optional second listener serving only `/_simnode/*`; it stays up while the node is
    /// down or OOM so a benchmark can read a dead node's stats and restart it.
    pub control_listen: Option<SocketAddr>,
    /// Time between blocks; zero freezes the chain (use `advance_block`).
    #[serde(with = "duration_text")]
    pub block_interval: Duration,
    /// Height of the head at start; at least 1.
    pub start_height: u64,
    /// The lowest height the node still has (`earliest_block_height`); above 1 it is a
    /// pruned node, which answers lower heights with "height H is not available".
    pub earliest_height: u64,
    /// Seed of every generated hash, signature and time.
    pub seed: u64,
    pub chain_id: String,
    /// Generated transactions per block (broadcast ones come on top).
    pub txs_per_block: usize,
    /// ABCI events attached to every generated transaction.
    pub events_per_tx: usize,
    /// Size in bytes of every generated transaction.
    pub tx_bytes: usize,
    /// Target size of the genesis document; 0 keeps the fixture's natural size.
    pub genesis_bytes: usize,
    /// Size of the validator set.
    pub validators: usize,
    /// Simulated memory held per answered byte (go-amino decode/encode blow-up).
    pub amplification: f64,
    /// Encode speed: an answer of S bytes holds its memory for S / this seconds.
    pub encode_bytes_per_sec: u64,
    /// Per-method override of `encode_bytes_per_sec`.
    pub encode_bytes_per_sec_per_method: BTreeMap<String, u64>,
    /// Above this many live simulated bytes the node OOMs; `None` never OOMs.
    pub memory_limit_bytes: Option<u64>,
    /// Tendermint 0.34 mode: `abci_query` runs behind one lock (the old local ABCI client).
    pub legacy_abci_lock: bool,
    /// CometBFT `max_request_batch_size`; 0 means unlimited.
    pub max_batch_size: usize,
    /// CometBFT `max_body_bytes`.
    pub max_body_bytes: usize,
    /// How long `broadcast_tx_commit` waits for its block (CometBFT `timeout_broadcast_tx_commit`).
    #[serde(with = "duration_text")]
    pub broadcast_commit_timeout: Duration,
    /// Optional listener serving only `GET /metrics` (Prometheus text), like a real node's
    /// `:26660`; it dies with the node (down, OOM) and comes back with it.
    pub metrics_listen: Option<SocketAddr>,
    /// The process's resident memory with nothing in flight: `/metrics` reports this plus
    /// the ballast and the live memory of answers being built.
    pub resident_baseline_bytes: u64,
    /// Processor-sharing CPU: this many calls are served at full speed; with more in
    /// service each progresses at `cpu_slots / active`. 0 = off (every call is served at
    /// full speed however many run).
    pub cpu_slots: usize,
    /// Node speed: every service time is divided by it (0.25 = four times slower).
    pub speed: f64,
    /// CPU time one call of a method costs at speed 1, in milliseconds, on top of its
    /// encode time (`tx_search = 200` models an index scan).
    pub service_ms_per_method: BTreeMap<String, u64>,
}

impl Default for SimNodeConfig {
    fn default() -> Self {
        SimNodeConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            control_listen: None,
            block_interval: Duration::ZERO,
            start_height: 10,
            earliest_height: 1,
            seed: 0,
            chain_id: "dockerchain".to_string(),
            txs_per_block: 2,
            events_per_tx: 2,
            tx_bytes: 64,
            genesis_bytes: 0,
            validators: 1,
            amplification: 8.0,
            encode_bytes_per_sec: 50_000_000,
            encode_bytes_per_sec_per_method: BTreeMap::new(),
            memory_limit_bytes: None,
            legacy_abci_lock: false,
            max_batch_size: 10,
            max_body_bytes: 1_000_000,
            broadcast_commit_timeout: Duration::from_secs(10),
            metrics_listen: None,
            resident_baseline_bytes: 64 << 20,
            cpu_slots: 0,
            speed: 1.0,
            service_ms_per_method: BTreeMap::new(),
        }
    }
}

impl SimNodeConfig {
    /// Reads a TOML or JSON file (chosen by the `.json` extension, TOML otherwise).
    pub fn from_file(path: &std::path::Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        if path.extension().is_some_and(|e| e == "json") {
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
        } else {
            toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
        }
    }

    pub(crate) fn encode_rate_for(&self, method: &str) -> u64 {
        self.encode_bytes_per_sec_per_method
            .get(method)
            .copied()
            .unwrap_or(self.encode_bytes_per_sec)
    }

    /// The service time at speed 1 of an answer of `size` bytes to `method`: its encode
    /// time plus the method's own CPU cost.
    pub(crate) fn service_for(&self, method: &str, size: usize) -> Duration {
        let rate = self.encode_rate_for(method);
        let encode = if rate == 0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(size as f64 / rate as f64)
        };
        let own = self.service_ms_per_method.get(method).copied().unwrap_or(0);
        encode + Duration::from_millis(own)
    }
}

/// Parses `0`, `250ms`, `1s`, `1.5s`, `2m`, `100us`; a bare number means seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let value: f64 = num
        .parse()
        .map_err(|_| format!("invalid duration {text:?}"))?;
    let secs = match unit.trim() {
        "" | "s" => value,
        "ms" => value / 1e3,
        "us" | "µs" => value / 1e6,
        "ns" => value / 1e9,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => return Err(format!("invalid duration unit in {text:?}")),
    };
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!("invalid duration {text:?}"));
    }
    Ok(Duration::from_secs_f64(secs))
}

mod duration_text {
    use super::*;

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{}ms", d.as_millis()))
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Text(String),
        Secs(f64),
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        match Raw::deserialize(d)? {
            Raw::Text(t) => parse_duration(&t).map_err(serde::de::Error::custom),
            Raw::Secs(s) if s.is_finite() && s >= 0.0 => Ok(Duration::from_secs_f64(s)),
            Raw::Secs(s) => Err(serde::de::Error::custom(format!("invalid duration {s}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("1s").unwrap(), Duration::from_secs(1));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("fast").is_err());
    }

    #[test]
    fn toml_config_parses() {
        let cfg: SimNodeConfig = toml::from_str(
            "block_interval = \"250ms\"\ntxs_per_block = 100\nmemory_limit_bytes = 1000000\n",
        )
        .unwrap();
        assert_eq!(cfg.block_interval, Duration::from_millis(250));
        assert_eq!(cfg.txs_per_block, 100);
        assert_eq!(cfg.memory_limit_bytes, Some(1_000_000));
        assert_eq!(cfg.max_batch_size, 10);
        assert_eq!(cfg.cpu_slots, 0, "the CPU model is off unless asked for");
        assert_eq!(cfg.speed, 1.0);
    }

    #[test]
    fn service_is_encode_time_plus_the_methods_own() {
        let cfg: SimNodeConfig = toml::from_str(
            "encode_bytes_per_sec = 1000000\n[service_ms_per_method]\ntx_search = 200\n",
        )
        .unwrap();
        assert_eq!(cfg.service_for("block", 5_000_000), Duration::from_secs(5));
        assert_eq!(
            cfg.service_for("tx_search", 100_000),
            Duration::from_millis(300)
        );
    }
}
