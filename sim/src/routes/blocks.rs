//! `rpc/core/blocks.go`: blockchain, block, block_by_hash, block_results, commit, header,
//! header_by_hash and block_search.

use serde_json::{json, Value};

use super::{descending, get_height, page, per_page, Args};
use crate::blockgen;
use crate::node::Node;
use crate::query::{self, MAX_QUERY_LENGTH};

/// CometBFT returns at most 20 block metas per `blockchain` call.
const BLOCKCHAIN_LIMIT: i64 = 20;

/// `filterMinMax` with base 1.
pub(super) fn blockchain(node: &Node, args: &Args) -> Result<Value, String> {
    let head = node.chain.head() as i64;
    let (mut min, mut max) = (args.int(0).unwrap_or(0), args.int(1).unwrap_or(0));
    if min < 0 || max < 0 {
        return Err("heights must be non-negative".to_string());
    }
    if min == 0 {
        min = 1;
    }
    if max == 0 {
        max = head;
    }
    max = max.min(head);
    min = min.max(1).max(max - BLOCKCHAIN_LIMIT + 1);
    if min > max {
        return Err(format!(
            "min height {min} can't be greater than max height {max}"
        ));
    }
    let chain = &node.chain;
    let metas: Vec<Value> = (min..=max)
        .rev()
        .map(|h| {
            let h = h as u64;
            let txs = chain.txs(h);
            json!({
                "block_id": blockgen::block_id(chain, h),
                "block_size": blockgen::block_size(chain, h).to_string(),
                "header": blockgen::header(chain, h, &txs),
                "num_txs": txs.len().to_string(),
            })
        })
        .collect();
    Ok(json!({"last_height": head.to_string(), "block_metas": metas}))
}

pub(super) fn block(node: &Node, args: &Args) -> Result<Value, String> {
    let h = get_height(node.chain.head(), node.chain.params.base, args, 0)?;
    Ok(blockgen::result_block(&node.chain, h))
}

/// An unknown hash is not an error in CometBFT: it answers an empty block id and a null block.
pub(super) fn block_by_hash(node: &Node, args: &Args) -> Value {
    match node.chain.find_block(args.bytes(0)) {
        Some(h) => blockgen::result_block(&node.chain, h),
        None => json!({"block_id": blockgen::block_id(&node.chain, 0), "block": null}),
    }
}

pub(super) fn block_results(node: &Node, args: &Args) -> Result<Value, String> {
    let h = get_height(node.chain.head(), node.chain.params.base, args, 0)?;
    Ok(blockgen::block_results(&node.chain, h))
}

/// The head's commit is the node's own seen commit: `canonical: false`.
pub(super) fn commit(node: &Node, args: &Args) -> Result<Value, String> {
    let head = node.chain.head();
    let h = get_height(head, node.chain.params.base, args, 0)?;
    let txs = node.chain.txs(h);
    Ok(json!({
        "canonical": h != head,
        "signed_header": {
            "header": blockgen::header(&node.chain, h, &txs),
            "commit": blockgen::commit(&node.chain, h),
        }
    }))
}

pub(super) fn header(node: &Node, args: &Args) -> Result<Value, String> {
    let h = get_height(node.chain.head(), node.chain.params.base, args, 0)?;
    let txs = node.chain.txs(h);
    Ok(json!({"header": blockgen::header(&node.chain, h, &txs)}))
}

pub(super) fn header_by_hash(node: &Node, args: &Args) -> Value {
    match node.chain.find_block(args.bytes(0)) {
        Some(h) => json!({"header": blockgen::header(&node.chain, h, &node.chain.txs(h))}),
        None => json!({"header": null}),
    }
}

/// Blocks are indexed under `block.height` only.
pub(super) fn block_search(node: &Node, args: &Args) -> Result<Value, String> {
    let text = args.str(0);
    if text.len() > MAX_QUERY_LENGTH {
        return Err("maximum query length exceeded".to_string());
    }
    let q = query::parse(text)?;
    let head = node.chain.head();
    let (lo, hi) = q.bounds("block.height", 1, head);
    let mut heights: Vec<u64> = (lo..=hi)
        .filter(|h| {
            let mut ev = query::EventMap::new();
            ev.insert("block.height".into(), vec![h.to_string()]);
            q.matches(&ev)
        })
        .collect();
    if descending(args.str(3))? {
        heights.reverse();
    }
    let per = per_page(args, 2);
    let pg = page(args, 1, per, heights.len())?;
    let blocks: Vec<Value> = heights
        .iter()
        .skip((pg - 1) * per)
        .take(per)
        .map(|h| blockgen::result_block(&node.chain, *h))
        .collect();
    Ok(json!({"blocks": blocks, "total_count": heights.len().to_string()}))
}
