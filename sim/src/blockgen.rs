//! JSON shapes of blocks, headers, commits, results and transactions, taken from the
//! captured CometBFT v0.38 answers in `sim/fixtures/` and rewritten per height.

use base64::Engine;
use serde_json::{json, Value};

use crate::chain::{hex_upper, sha256, split_kv, Chain};
use crate::clock::{rfc3339, GENESIS_NANOS, GENESIS_SECS};

/// `sha256("")`, what CometBFT prints for the hash of an empty list.
pub(crate) const EMPTY_HASH: &str =
    "E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855";
const CONSENSUS_HASH: &str = "048091BC7DDC283F77BFBF91D73C44DA58C3DF8A9CBC867405D8B7F3DAADA22F";
const FIXTURE_VALSET_HASH: &str =
    "33415EFFCEDA5BD0A3A443A727457D9F7B9E38389BF27A936FEDF749A7B7566E";
const FIXTURE_VAL_ADDR: &str = "2DD9F44FD9067555C322243C3C913BA7B51D2BE0";
const FIXTURE_VAL_PUBKEY: &str = "bNNlGls5R25wC3Sd8720F/3+7IZBhXcD22MNFtPk/v0=";

pub(crate) fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

pub(crate) struct Validator {
    pub(crate) address: String,
    pub(crate) pub_key: String,
    pub(crate) power: u64,
}

/// The fixture's validator first, then derived ones (address = sha256(pubkey)[..20]).
pub(crate) fn validators(chain: &Chain) -> Vec<Validator> {
    (0..chain.params.validators.max(1))
        .map(|i| {
            if i == 0 {
                return Validator {
                    address: FIXTURE_VAL_ADDR.into(),
                    pub_key: FIXTURE_VAL_PUBKEY.into(),
                    power: 10,
                };
            }
            let pk = chain.digest("pubkey", i as u64);
            Validator {
                address: hex_upper(&sha256(&pk)[..20]),
                pub_key: b64(&pk),
                power: 10,
            }
        })
        .collect()
}

pub(crate) fn validators_hash(chain: &Chain) -> String {
    if chain.params.validators <= 1 {
        FIXTURE_VALSET_HASH.into()
    } else {
        hex_upper(&chain.digest("valset", chain.params.validators as u64))
    }
}

pub(crate) fn pub_key_json(b64key: &str) -> Value {
    json!({"type": "tendermint/PubKeyEd25519", "value": b64key})
}

/// One block per second from genesis, with a per-height sub-second jitter.
pub(crate) fn block_time(chain: &Chain, h: u64) -> String {
    let d = chain.digest("time", h);
    let nanos = u32::from_le_bytes([d[0], d[1], d[2], d[3]]) % 1_000_000_000;
    let nanos = if h == 0 { GENESIS_NANOS } else { nanos };
    rfc3339(GENESIS_SECS + h as i64, nanos)
}

pub(crate) fn app_hash_bytes(chain: &Chain, h: u64) -> Vec<u8> {
    chain.digest("app", h)[..8].to_vec()
}

pub(crate) fn block_id(chain: &Chain, h: u64) -> Value {
    if h == 0 {
        return json!({"hash": "", "parts": {"hash": "", "total": 0}});
    }
    json!({
        "hash": chain.block_hash(h),
        "parts": {"hash": hex_upper(&chain.digest("parts", h)), "total": 1}
    })
}

fn txs_hash(txs: &[Vec<u8>]) -> String {
    if txs.is_empty() {
        return EMPTY_HASH.into();
    }
    let mut all = Vec::with_capacity(txs.len() * 32);
    for tx in txs {
        all.extend_from_slice(&sha256(tx));
    }
    hex_upper(&sha256(&all))
}

pub(crate) fn header(chain: &Chain, h: u64, txs: &[Vec<u8>]) -> Value {
    let valset = validators_hash(chain);
    let prev_results = if h > 1 && chain.tx_count(h - 1) > 0 {
        hex_upper(&chain.digest("results", h - 1))
    } else {
        EMPTY_HASH.into()
    };
    json!({
        "app_hash": hex_upper(&app_hash_bytes(chain, h - 1)),
        "chain_id": chain.params.chain_id,
        "consensus_hash": CONSENSUS_HASH,
        "data_hash": txs_hash(txs),
        "evidence_hash": EMPTY_HASH,
        "height": h.to_string(),
        "last_block_id": block_id(chain, h - 1),
        "last_commit_hash": if h > 1 { hex_upper(&chain.digest("commit", h - 1)) } else { EMPTY_HASH.into() },
        "last_results_hash": prev_results,
        "next_validators_hash": valset,
        "proposer_address": validators(chain)[(h as usize) % chain.params.validators.max(1)].address,
        "time": block_time(chain, h),
        "validators_hash": valset,
        "version": {"app": "1", "block": "11"}
    })
}

/// The commit for block `h` (signed at the time of block h+1, as in the fixtures).
pub(crate) fn commit(chain: &Chain, h: u64) -> Value {
    if h == 0 {
        return json!({"block_id": block_id(chain, 0), "height": "0", "round": 0, "signatures": []});
    }
    let sigs: Vec<Value> = validators(chain)
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let a = chain.digest("sig-a", h * 1_000_003 + i as u64);
            let b = chain.digest("sig-b", h * 1_000_003 + i as u64);
            json!({
                "block_id_flag": 2,
                "signature": b64(&[a, b].concat()),
                "timestamp": block_time(chain, h + 1),
                "validator_address": v.address,
            })
        })
        .collect();
    json!({"block_id": block_id(chain, h), "height": h.to_string(), "round": 0, "signatures": sigs})
}

pub(crate) fn block(chain: &Chain, h: u64) -> Value {
    let txs = chain.txs(h);
    json!({
        "data": {"txs": txs.iter().map(|t| b64(t)).collect::<Vec<_>>()},
        "evidence": {"evidence": []},
        "header": header(chain, h, &txs),
        "last_commit": commit(chain, h - 1),
    })
}

/// `ResultBlock`: `{block_id, block}`.
pub(crate) fn result_block(chain: &Chain, h: u64) -> Value {
    json!({"block_id": block_id(chain, h), "block": block(chain, h)})
}

fn attr(key: &str, value: String, index: bool) -> Value {
    json!({"key": key, "value": value, "index": index})
}

/// Events of tx `i` at height `h`: the kvstore `app` event first, then heavy `transfer` ones.
pub(crate) fn tx_events(chain: &Chain, h: u64, i: usize, tx: &[u8]) -> Vec<Value> {
    let key = String::from_utf8_lossy(split_kv(tx).0).into_owned();
    (0..chain.params.events_per_tx)
        .map(|j| {
            if j == 0 {
                return json!({"type": "app", "attributes": [
                    attr("creator", "Cosmoshi Netowoko".into(), true),
                    attr("key", key.clone(), true),
                    attr("index_key", "index is working".into(), true),
                    attr("noindex_key", "index is working".into(), false),
                ]});
            }
            let d = chain.digest("addr", (h * 1_000_003 + i as u64) * 64 + j as u64);
            json!({"type": "transfer", "attributes": [
                attr("recipient", format!("cosmos1{}", hex::encode(&d[..20])), true),
                attr("sender", format!("cosmos1{}", hex::encode(&d[12..32])), true),
                attr("amount", format!("{}stake", j * 1000 + i), true),
            ]})
        })
        .collect()
}

/// `ExecTxResult` of a transaction, as `block_results`, `tx` and events carry it.
pub(crate) fn exec_tx_result(chain: &Chain, h: u64, i: usize, tx: &[u8]) -> Value {
    json!({
        "code": 0,
        "codespace": "",
        "data": null,
        "events": tx_events(chain, h, i, tx),
        "gas_used": "0",
        "gas_wanted": "0",
        "info": "",
        "log": "",
    })
}

pub(crate) fn block_results(chain: &Chain, h: u64) -> Value {
    let txs = chain.txs(h);
    let results: Vec<Value> = txs
        .iter()
        .enumerate()
        .map(|(i, t)| exec_tx_result(chain, h, i, t))
        .collect();
    json!({
        "app_hash": b64(&app_hash_bytes(chain, h)),
        "consensus_param_updates": null,
        "finalize_block_events": null,
        "height": h.to_string(),
        "txs_results": if results.is_empty() { Value::Null } else { Value::Array(results) },
        "validator_updates": null,
    })
}

/// `ResultTx`; `proof` only when asked, as CometBFT omits the empty proof.
pub(crate) fn result_tx(chain: &Chain, h: u64, i: u32, prove: bool) -> Value {
    result_tx_of(chain, h, &chain.txs(h), i, prove)
}

/// `result_tx` with block `h`'s transactions already generated: a page of a search
/// would otherwise generate the whole block again for each of its transactions, and
/// that real CPU (not the node's modelled time) would load the machine the bench runs
/// on.
pub(crate) fn result_tx_of(chain: &Chain, h: u64, txs: &[Vec<u8>], i: u32, prove: bool) -> Value {
    let tx = txs.get(i as usize).cloned().unwrap_or_default();
    let mut v = json!({
        "hash": hex_upper(&sha256(&tx)),
        "height": h.to_string(),
        "index": i,
        "tx": b64(&tx),
        "tx_result": exec_tx_result(chain, h, i as usize, &tx),
    });
    if prove {
        v["proof"] = json!({
            "data": b64(&tx),
            "proof": {"aunts": [], "index": i.to_string(), "leaf_hash": b64(&sha256(&tx)), "total": txs.len().to_string()},
            "root_hash": txs_hash(txs),
        });
    }
    v
}

/// Rough serialized size, for `block_metas[].block_size`.
pub(crate) fn block_size(chain: &Chain, h: u64) -> usize {
    let txs: usize = chain.txs(h).iter().map(|t| t.len() + 8).sum();
    600 + txs
}
