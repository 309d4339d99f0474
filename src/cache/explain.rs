//! The admin view of what the cache would do with a call (`/admin/explain`).

use serde::Serialize;
use tokio::time::Instant;

use super::{Cache, Plan};

impl Cache {
    /// What the cache would do with a plan, and what it holds for it now.
    pub async fn explain(&self, plan: &Plan) -> Explain {
        let Plan::Cached {
            key,
            method,
            policy,
            ..
        } = plan
        else {
            return Explain {
                key: None,
                method: None,
                policy: "bypass".into(),
                ..Explain::default()
            };
        };
        let settings = self.inner.settings.load();
        let now = Instant::now();
        let entry = self.inner.store.get(key).await;
        Explain {
            key: Some(key.to_string()),
            method: Some(method),
            policy: policy.describe(),
            cached: entry.is_some(),
            fresh: entry
                .as_ref()
                .is_some_and(|e| e.is_fresh(now, self.head_view(), settings.latest_max_ttl)),
            stored_policy: entry.as_ref().map(|e| e.policy.describe()),
            age_ms: entry.as_ref().map(|e| e.age(now).as_millis() as u64),
            bytes: entry.as_ref().map(|e| e.answer.len()),
        }
    }
}

/// The admin view of one plan.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Explain {
    pub key: Option<String>,
    pub method: Option<&'static str>,
    /// What a call would be planned as now.
    pub policy: String,
    pub cached: bool,
    /// Would be served as a hit now.
    pub fresh: bool,
    /// The policy the stored entry was kept under (a pinned key may hold an older one).
    pub stored_policy: Option<String>,
    pub age_ms: Option<u64>,
    pub bytes: Option<usize>,
}
