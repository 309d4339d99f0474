//! `rpc/core/tx.go` and `mempool.go`: tx, tx_search, check_tx, the broadcasts and the
//! unconfirmed-tx views.

use std::fmt::Write as _;
use std::time::Duration;

use serde_json::value::RawValue;
use serde_json::{json, Value};

use super::{descending, page, per_page, Args};
use crate::blockgen::{self, b64};
use crate::chain::{hex_upper, sha256};
use crate::node::Node;
use crate::query::{self, EventMap, Query, MAX_QUERY_LENGTH};

pub(super) fn check_tx() -> Value {
    json!({
        "code": 0, "codespace": "", "data": null, "events": [],
        "gas_used": "0", "gas_wanted": "1", "info": "", "log": "",
    })
}

pub(super) fn tx(node: &Node, args: &Args) -> Result<Value, String> {
    let hash = args.bytes(0);
    match node.chain.find_tx(hash) {
        Some((h, i)) => Ok(blockgen::result_tx(&node.chain, h, i, args.bool(1))),
        None => Err(format!("tx ({}) not found", hex_upper(hash))),
    }
}

/// Indexed events of a tx (CometBFT's indexer skips `index: false` attributes).
fn tx_event_map(node: &Node, h: u64, i: usize, tx: &[u8]) -> EventMap {
    let mut m = EventMap::new();
    m.insert("tx.height".into(), vec![h.to_string()]);
    m.insert("tx.hash".into(), vec![hex_upper(&sha256(tx))]);
    for ev in blockgen::tx_events(&node.chain, h, i, tx) {
        let ty = ev["type"].as_str().unwrap_or_default().to_string();
        for a in ev["attributes"].as_array().into_iter().flatten() {
            if a["index"].as_bool() != Some(true) {
                continue;
            }
            let key = format!("{ty}.{}", a["key"].as_str().unwrap_or_default());
            m.entry(key)
                .or_default()
                .push(a["value"].as_str().unwrap_or_default().to_string());
        }
    }
    m
}

/// A query whose every condition is a numeric comparison of `tx.height`: `bounds`
/// then says exactly which transactions match.
fn heights_only(q: &Query) -> bool {
    q.conditions.iter().all(|c| {
        c.tag == "tx.height"
            && matches!(c.arg, query::Operand::Num(_))
            && matches!(
                c.op,
                query::Op::Eq | query::Op::Gt | query::Op::Ge | query::Op::Lt | query::Op::Le
            )
    })
}

fn matching_txs(node: &Node, q: &Query) -> Vec<(u64, u32)> {
    if let Some(c) = q.condition_on("tx.hash") {
        if let (query::Op::Eq, query::Operand::Str(hash)) = (&c.op, &c.arg) {
            let Ok(bytes) = hex::decode(hash) else {
                return Vec::new();
            };
            return node
                .chain
                .find_tx(&bytes)
                .filter(|(h, i)| {
                    let tx = node.chain.txs(*h).swap_remove(*i as usize);
                    q.matches(&tx_event_map(node, *h, *i as usize, &tx))
                })
                .into_iter()
                .collect();
        }
    }
    let (lo, hi) = q.bounds("tx.height", 1, node.chain.head());
    let mut out = Vec::new();
    if heights_only(q) {
        // Every transaction in the range matches: no need to build each one's events.
        for h in lo..=hi {
            out.extend((0..node.chain.tx_count(h)).map(|i| (h, i as u32)));
        }
        return out;
    }
    for h in lo..=hi {
        for (i, tx) in node.chain.txs(h).iter().enumerate() {
            if q.matches(&tx_event_map(node, h, i, tx)) {
                out.push((h, i as u32));
            }
        }
    }
    out
}

/// The transactions on the asked page, the total matching, and whether to prove them.
struct Page {
    txs: Vec<(u64, u32)>,
    total: usize,
    prove: bool,
}

fn search_page(node: &Node, args: &Args) -> Result<Page, String> {
    let text = args.str(0);
    if text.len() > MAX_QUERY_LENGTH {
        return Err("maximum query length exceeded".to_string());
    }
    let q = query::parse(text)?;
    let mut found = matching_txs(node, &q);
    if descending(args.str(4))? {
        found.reverse();
    }
    let per = per_page(args, 3);
    let pg = page(args, 2, per, found.len())?;
    let total = found.len();
    let txs = found.into_iter().skip((pg - 1) * per).take(per).collect();
    Ok(Page {
        txs,
        total,
        prove: args.bool(1),
    })
}

/// A page's transactions come a block at a time: each block is generated once.
fn each_tx<T>(
    node: &Node,
    page: &[(u64, u32)],
    mut one: impl FnMut(u64, &[Vec<u8>], u32) -> T,
) -> Vec<T> {
    let mut block: Option<(u64, Vec<Vec<u8>>)> = None;
    page.iter()
        .map(|&(h, i)| {
            if block.as_ref().is_none_or(|b| b.0 != h) {
                block = Some((h, node.chain.txs(h)));
            }
            let txs = block.as_ref().map_or(&[][..], |b| &b.1[..]);
            one(h, txs, i)
        })
        .collect()
}

pub(super) fn tx_search(node: &Node, args: &Args) -> Result<Value, String> {
    let p = search_page(node, args)?;
    let txs = each_tx(node, &p.txs, |h, txs, i| {
        blockgen::result_tx_of(&node.chain, h, txs, i, p.prove)
    });
    Ok(json!({"txs": txs, "total_count": p.total.to_string()}))
}

/// `tx_search` as compact JSON, each transaction's encoding kept: the same bytes as
/// `tx_search`'s tree encoded (its keys in the same sorted order).
pub(super) fn tx_search_encoded(node: &Node, args: &Args) -> Result<Box<RawValue>, String> {
    let p = search_page(node, args)?;
    let txs = each_tx(node, &p.txs, |h, txs, i| {
        node.tx_json.get(&node.chain, h, txs, i, p.prove)
    });
    let mut out = String::with_capacity(32 + txs.iter().map(|t| t.len() + 1).sum::<usize>());
    let _ = write!(out, "{{\"total_count\":\"{}\",\"txs\":[", p.total);
    for (n, t) in txs.iter().enumerate() {
        if n > 0 {
            out.push(',');
        }
        out.push_str(t);
    }
    out.push_str("]}");
    RawValue::from_string(out).map_err(|e| e.to_string())
}

fn mempool_view(node: &Node, limit: Option<usize>) -> Value {
    let pool = node.chain.mempool();
    let total_bytes: usize = pool.iter().map(Vec::len).sum();
    let shown: Option<Vec<String>> = limit.map(|n| pool.iter().take(n).map(|t| b64(t)).collect());
    json!({
        "n_txs": shown.as_ref().map_or(0, Vec::len).to_string(),
        "total": pool.len().to_string(),
        "total_bytes": total_bytes.to_string(),
        "txs": shown,
    })
}

pub(super) fn unconfirmed_txs(node: &Node, args: &Args) -> Value {
    mempool_view(node, Some(per_page(args, 0)))
}

pub(super) fn num_unconfirmed_txs(node: &Node) -> Value {
    let mut v = mempool_view(node, None);
    v["n_txs"] = v["total"].clone();
    v
}

/// `broadcast_tx_sync` / `_async`: CheckTx passes, the tx waits in the mempool for a block.
pub(super) fn broadcast_tx(node: &Node, args: &Args) -> Result<Value, String> {
    let tx = args.bytes(0).to_vec();
    let hash = hex_upper(&sha256(&tx));
    node.chain.add_to_mempool(tx)?;
    Ok(json!({"code": 0, "codespace": "", "data": "", "hash": hash, "log": ""}))
}

pub(super) async fn broadcast_tx_commit(node: &Node, args: &Args) -> Result<Value, String> {
    let tx = args.bytes(0).to_vec();
    let hash_bytes = sha256(&tx);
    let mut blocks = node.chain.subscribe();
    node.chain.add_to_mempool(tx.clone())?;
    let timeout = node.cfg.broadcast_commit_timeout;
    let wait = async {
        loop {
            if let Some(found) = node.chain.find_tx(&hash_bytes) {
                return Some(found);
            }
            if let Err(tokio::sync::broadcast::error::RecvError::Closed) = blocks.recv().await {
                return None;
            }
        }
    };
    let Ok(Some((h, i))) = tokio::time::timeout(timeout.max(Duration::from_millis(1)), wait).await
    else {
        return Err("timed out waiting for tx to be included in a block".to_string());
    };
    Ok(json!({
        "check_tx": check_tx(),
        "hash": hex_upper(&hash_bytes),
        "height": h.to_string(),
        "tx_result": blockgen::exec_tx_result(&node.chain, h, i as usize, &tx),
    }))
}
