//! The genesis document, built once per node: the fixture's, with this chain's id and
//! validators, padded to the configured size.

use serde_json::{json, Value};

use crate::blockgen::{self, b64, pub_key_json};
use crate::chain::Chain;
use crate::fixtures;

/// CometBFT v0.38 serves the genesis in 16 MB chunks.
pub(crate) const GENESIS_CHUNK_BYTES: usize = 16 * 1024 * 1024;

/// The genesis document, built once: whole, and as base64 chunks of its JSON.
pub(crate) struct Genesis {
    doc: Value,
    chunks: Vec<String>,
}

impl Genesis {
    pub(crate) fn build(chain: &Chain, target_bytes: usize) -> Genesis {
        let mut doc = fixtures::genesis()["genesis"].take();
        doc["chain_id"] = json!(chain.params.chain_id);
        doc["validators"] = blockgen::validators(chain)
            .iter()
            .map(|v| json!({"address": v.address, "name": "", "power": v.power.to_string(), "pub_key": pub_key_json(&v.pub_key)}))
            .collect();
        let base = serde_json::to_vec(&doc).map(|b| b.len()).unwrap_or(0);
        if target_bytes > base + 32 {
            // Heavy genesis: an app_state blob, as real chains carry their accounts there.
            let pad = target_bytes - base - 32;
            doc["app_state"] = json!({"padding": "a".repeat(pad)});
        }
        let bytes = serde_json::to_vec(&doc).unwrap_or_default();
        let chunks = bytes.chunks(GENESIS_CHUNK_BYTES).map(b64).collect();
        Genesis { doc, chunks }
    }

    pub(crate) fn whole(&self) -> Result<Value, String> {
        if self.chunks.len() > 1 {
            return Err(
                "genesis response is large, please use the genesis_chunked API instead".to_string(),
            );
        }
        Ok(json!({"genesis": self.doc}))
    }

    pub(crate) fn chunk(&self, id: i64) -> Result<Value, String> {
        if self.chunks.is_empty() {
            return Err("service configuration error, there are no chunks".to_string());
        }
        let id = id.max(0) as usize;
        let Some(data) = self.chunks.get(id) else {
            return Err(format!(
                "there are {} chunks, {id} is invalid",
                self.chunks.len() - 1
            ));
        };
        Ok(json!({"chunk": id.to_string(), "total": self.chunks.len().to_string(), "data": data}))
    }
}
