//! Captured CometBFT v0.38 answers (see `sim/fixtures/README.md`), embedded so the binary
//! stands alone. Each accessor returns the `result` member.

use serde_json::Value;

fn result_of(text: &str) -> Value {
    serde_json::from_str::<Value>(text)
        .ok()
        .and_then(|mut v| v.get_mut("result").map(Value::take))
        .unwrap_or(Value::Null)
}

pub(crate) fn status() -> Value {
    result_of(include_str!("../fixtures/status.json"))
}
pub(crate) fn net_info() -> Value {
    result_of(include_str!("../fixtures/net_info.json"))
}
pub(crate) fn genesis() -> Value {
    result_of(include_str!("../fixtures/genesis.json"))
}
pub(crate) fn consensus_state() -> Value {
    result_of(include_str!("../fixtures/consensus_state.json"))
}
pub(crate) fn consensus_params() -> Value {
    result_of(include_str!("../fixtures/consensus_params.json"))
}
pub(crate) fn abci_info() -> Value {
    result_of(include_str!("../fixtures/abci_info.json"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn fixtures_parse() {
        for v in [
            super::status(),
            super::net_info(),
            super::genesis(),
            super::consensus_state(),
        ] {
            assert!(v.is_object());
        }
    }
}
