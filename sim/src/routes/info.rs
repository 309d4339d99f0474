//! Node, consensus and ABCI routes: status, net_info, consensus state and params, validators,
//! abci_info, abci_query, broadcast_evidence. The genesis routes answer from `genesis.rs`.

use serde_json::{json, Value};

use super::{get_height, page, per_page, Args};
use crate::blockgen::{self, b64, pub_key_json};
use crate::chain::hex_upper;
use crate::fixtures;
use crate::node::Node;

pub(super) fn status(node: &Node) -> Value {
    let chain = &node.chain;
    let head = chain.head();
    let base = chain.params.base.min(head);
    let mut v = fixtures::status();
    v["node_info"]["network"] = json!(chain.params.chain_id);
    let val = &blockgen::validators(chain)[0];
    v["validator_info"] = json!({"address": val.address, "pub_key": pub_key_json(&val.pub_key), "voting_power": val.power.to_string()});
    v["sync_info"] = json!({
        "catching_up": false,
        "earliest_app_hash": hex_upper(&blockgen::app_hash_bytes(chain, base - 1)),
        "earliest_block_hash": chain.block_hash(base),
        "earliest_block_height": base.to_string(),
        "earliest_block_time": blockgen::block_time(chain, base),
        "latest_app_hash": hex_upper(&blockgen::app_hash_bytes(chain, head - 1)),
        "latest_block_hash": chain.block_hash(head),
        "latest_block_height": head.to_string(),
        "latest_block_time": blockgen::block_time(chain, head),
    });
    v
}

pub(super) fn net_info() -> Value {
    fixtures::net_info()
}

pub(super) fn consensus_state(node: &Node) -> Value {
    let mut v = fixtures::consensus_state();
    v["round_state"]["height/round/step"] = json!(format!("{}/0/1", node.chain.head() + 1));
    v
}

/// The fixture has no dump; this follows the shape of `ResultDumpConsensusState`.
pub(super) fn dump_consensus_state(node: &Node) -> Value {
    let chain = &node.chain;
    let head = chain.head();
    let vals: Vec<Value> = blockgen::validators(chain)
        .iter()
        .map(|v| json!({"address": v.address, "pub_key": pub_key_json(&v.pub_key), "voting_power": v.power.to_string(), "proposer_priority": "0"}))
        .collect();
    let valset = json!({"validators": vals, "proposer": vals[0]});
    json!({
        "round_state": {
            "height": (head + 1).to_string(), "round": 0, "step": 1,
            "start_time": blockgen::block_time(chain, head + 1),
            "commit_time": blockgen::block_time(chain, head),
            "validators": valset, "proposal": null, "proposal_block": null, "proposal_block_parts": null,
            "locked_round": -1, "locked_block": null, "locked_block_parts": null,
            "valid_round": -1, "valid_block": null, "valid_block_parts": null,
            "votes": [], "commit_round": -1, "last_commit": null, "last_validators": valset,
            "triggered_timeout_precommit": false,
        },
        "peers": [],
    })
}

/// Validators and params are known one height past the head (`latestUncommittedHeight`).
pub(super) fn consensus_params(node: &Node, args: &Args) -> Result<Value, String> {
    let h = get_height(node.chain.head() + 1, node.chain.params.base, args, 0)?;
    let mut v = fixtures::consensus_params();
    v["block_height"] = json!(h.to_string());
    Ok(v)
}

pub(super) fn validators(node: &Node, args: &Args) -> Result<Value, String> {
    let h = get_height(node.chain.head() + 1, node.chain.params.base, args, 0)?;
    let all = blockgen::validators(&node.chain);
    let per = per_page(args, 2);
    let pg = page(args, 1, per, all.len())?;
    let shown: Vec<Value> = all
        .iter()
        .skip((pg - 1) * per)
        .take(per)
        .map(|v| json!({"address": v.address, "pub_key": pub_key_json(&v.pub_key), "voting_power": v.power.to_string(), "proposer_priority": "0"}))
        .collect();
    Ok(json!({
        "block_height": h.to_string(),
        "count": shown.len().to_string(),
        "total": all.len().to_string(),
        "validators": shown,
    }))
}

pub(super) fn abci_info(node: &Node) -> Value {
    let head = node.chain.head();
    let mut v = fixtures::abci_info();
    v["response"]["last_block_height"] = json!(head.to_string());
    v["response"]["last_block_app_hash"] = json!(b64(&blockgen::app_hash_bytes(&node.chain, head)));
    v
}

/// The kvstore app: `data` is the key; the value is what the last `key=value` tx stored.
pub(super) fn abci_query(node: &Node, args: &Args) -> Value {
    let key = args.bytes(1);
    let head = node.chain.head();
    let (log, value) = match node.chain.lookup_key(key) {
        Some((_, v)) => ("exists", json!(b64(&v))),
        None => ("does not exist", Value::Null),
    };
    json!({"response": {
        "code": 0, "codespace": "", "height": head.to_string(), "index": "0", "info": "",
        "key": b64(key), "log": log, "proofOps": null, "value": value,
    }})
}

pub(super) fn broadcast_evidence(args: &Args) -> Result<Value, String> {
    if !args.present(0) {
        return Err("no evidence was provided".to_string());
    }
    Err("evidence.ValidateBasic failed: the simulated node accepts no evidence".to_string())
}
