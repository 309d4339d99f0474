//! Each transaction's `ResultTx`, encoded once. A search page is then its transactions'
//! bytes joined, where building and dropping the same nested maps for every page cost
//! the simulator milliseconds of real CPU (not the node's modelled time, which is slept
//! apart) on the machine the bench shares with the gateway and the clients. A block's
//! transactions never change once it exists, so an encoding never goes stale.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::blockgen;
use crate::chain::Chain;

/// About 3 KB each in the bench's chains: tens of MB at most, then it starts afresh.
const MAX_ENTRIES: usize = 16_384;

#[derive(Default)]
pub(crate) struct TxJson {
    encoded: Mutex<HashMap<(u64, u32, bool), Arc<str>>>,
}

impl TxJson {
    /// `ResultTx` of transaction `i` of block `h` (whose transactions are `txs`), as
    /// compact JSON.
    pub(crate) fn get(
        &self,
        chain: &Chain,
        h: u64,
        txs: &[Vec<u8>],
        i: u32,
        prove: bool,
    ) -> Arc<str> {
        let key = (h, i, prove);
        if let Some(hit) = self.lock().get(&key) {
            return hit.clone();
        }
        let tree = blockgen::result_tx_of(chain, h, txs, i, prove);
        let text: Arc<str> = serde_json::to_string(&tree).unwrap_or_default().into();
        let mut map = self.lock();
        if map.len() >= MAX_ENTRIES {
            map.clear();
        }
        map.insert(key, text.clone());
        text
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(u64, u32, bool), Arc<str>>> {
        self.encoded.lock().unwrap_or_else(|e| e.into_inner())
    }
}
