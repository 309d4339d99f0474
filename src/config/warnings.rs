//! What a valid config can never do, said at start and by `--check-config` without
//! refusing to start: a method whose cost exceeds a burst can never pass that bucket
//! (GCRA refuses a cost above the bucket whatever the wait), so its callers are answered
//! 429 at once, without a Retry-After that would never come true.

use super::error::ConfigError;
use super::Config;

/// One warning per bucket (the per-client one, then each API key's) that some allowed
/// method's cost does not fit, naming the methods and the three ways out.
pub(super) fn warnings(c: &Config) -> Vec<ConfigError> {
    let r = &c.rate_limit;
    if !r.enabled {
        return Vec::new();
    }
    let mut bursts = vec![(
        "rate_limit.burst".to_owned(),
        r.burst,
        "a client held to the per-client limits",
    )];
    bursts.extend(r.api_keys.iter().enumerate().map(|(i, k)| {
        (
            format!("rate_limit.api_keys[{i}].burst"),
            k.burst,
            "a client with this key",
        )
    }));
    let costs = allowed_costs(c);
    bursts
        .into_iter()
        .filter_map(|(path, burst, who)| {
            let over: Vec<_> = costs.iter().filter(|(_, cost)| *cost > burst).collect();
            let most = over.iter().map(|(_, cost)| *cost).max()?;
            let names = over
                .iter()
                .map(|(name, cost)| format!("{name} ({cost})"))
                .collect::<Vec<_>>()
                .join(", ");
            Some(ConfigError::new(
                path.clone(),
                format!(
                    "{burst} is below the cost of {names}: {who} can never call them and is \
                     answered 429. Raise {path} to at least {most}, lower their cost \
                     ([methods.<name>] cost), or deny them ([methods.<name>] allow = false)"
                ),
            ))
        })
        .collect()
}

/// Every allowed route with its effective cost, in the method table's order.
fn allowed_costs(c: &Config) -> Vec<(&'static str, u32)> {
    crate::methods::ROUTES
        .iter()
        .filter(|spec| !spec.websocket_only)
        .filter_map(|spec| {
            let o = c.methods.get(spec.name);
            let allowed = o.and_then(|o| o.allow).unwrap_or(spec.allowed);
            let cost = o.and_then(|o| o.cost).unwrap_or(spec.cost);
            allowed.then_some((spec.name, cost))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    #[test]
    fn a_burst_below_a_cost_is_a_warning_naming_methods_and_fixes() {
        let c = Config::from_toml_str("[rate_limit]\nrequests_per_second = 2\nburst = 4").unwrap();
        let w = c.warnings();
        assert_eq!(w.len(), 1, "{w:?}");
        assert_eq!(w[0].path, "rate_limit.burst");
        for needle in [
            "genesis (20)",
            "block_results (5)",
            "at least 20",
            "allow = false",
            "429",
        ] {
            assert!(w[0].message.contains(needle), "{needle}: {}", w[0]);
        }
        assert!(!w[0].message.contains("status"), "status costs 1: {}", w[0]);
        // Denying what does not fit, or making it cheaper, leaves nothing to warn of.
        let fitted = Config::from_toml_str(
            "[rate_limit]\nburst = 10\n[methods.genesis]\nallow = false\n\
             [methods.genesis_chunked]\ncost = 5\n[methods.tx_search]\ncost = 5\n\
             [methods.block_search]\ncost = 5\n[methods.unconfirmed_txs]\ncost = 5\n\
             [methods.broadcast_tx_commit]\ncost = 5",
        )
        .unwrap();
        assert_eq!(fitted.warnings(), []);
        assert_eq!(Config::default().warnings(), []);
        let off = Config::from_toml_str("[rate_limit]\nenabled = false\nburst = 1").unwrap();
        assert_eq!(off.warnings(), []);
    }

    #[test]
    fn each_api_key_burst_is_checked_on_its_own() {
        let c = Config::from_toml_str(
            "[rate_limit]\napi_key_header = \"x-api-key\"\n\
             [[rate_limit.api_keys]]\nkey = \"big\"\nrequests_per_second = 1\nburst = 100\n\
             [[rate_limit.api_keys]]\nkey = \"small\"\nrequests_per_second = 1\nburst = 3\n",
        )
        .unwrap();
        let w = c.warnings();
        assert_eq!(w.len(), 1, "{w:?}");
        assert_eq!(w[0].path, "rate_limit.api_keys[1].burst");
        assert!(w[0].message.contains("a client with this key"), "{}", w[0]);
    }
}
