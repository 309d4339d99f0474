//! Questions that follow the head ("latest"), and the previous block's answer to one
//! while its answer for the new block is being fetched (`while_refreshing = "previous"`).

use super::policy::Policy;
use super::Cache;
use crate::config::WhileRefreshing;
use crate::methods::{CacheKey, Canonical};
use crate::upstream::Answer;

/// A question whose answer follows the head: asked without a height (or pinned to the
/// head's by the plan), kept until the next block or as the head's immutable block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Latest {
    /// The head the call was planned at.
    pub height: u64,
    /// The plan pinned it to `height`, so its key names that height.
    pub pinned: bool,
    /// Where the previous block's answer to a pinned question is kept; only worked out
    /// under "previous", which is the only reader.
    pub previous: Option<CacheKey>,
}

impl Latest {
    /// The question as its caller asked it, without the pinned height: what a refresh
    /// asks again at the next block.
    pub(crate) fn question(&self, planned: &Canonical) -> CacheKey {
        if !self.pinned {
            return planned.key();
        }
        let mut asked = planned.clone();
        asked.params.remove("height");
        asked.key()
    }
}

/// `call` after planning, `asked` its height before: whether (and at which head) its
/// answer follows the head.
pub(super) fn latest(
    call: &Canonical,
    asked: Option<i64>,
    policy: Policy,
    mode: WhileRefreshing,
) -> Option<Latest> {
    let pinned = asked.is_none() && call.int("height").is_some();
    let height = match policy {
        // A head-following answer asked at an explicit height (`commit` at the head) is
        // that height's question, not "latest".
        Policy::UntilNextBlock { height } if asked.is_none() => height,
        Policy::UntilNextBlock { .. } | Policy::Immutable if pinned => {
            u64::try_from(call.int("height")?).ok()?
        }
        _ => return None,
    };
    let previous = (pinned && mode == WhileRefreshing::Previous && height > 1).then(|| {
        let mut before = call.clone();
        before.set_int("height", height as i64 - 1);
        before.key()
    });
    Some(Latest {
        height,
        pinned,
        previous,
    })
}

impl Cache {
    /// The previous block's answer to a "latest" question whose new answer another
    /// caller is fetching: only under "previous", only within `previous_max_age` of the
    /// block, and only the block right before the head the caller planned at.
    pub(super) async fn previous(&self, key: &CacheKey, latest: Option<&Latest>) -> Option<Answer> {
        let latest = latest?;
        let settings = self.inner.settings.load();
        if settings.while_refreshing != WhileRefreshing::Previous
            || self.inner.head.age()? > settings.previous_max_age
        {
            return None;
        }
        let entry = match &latest.previous {
            Some(before) => self.inner.store.get(before).await?,
            None if latest.pinned => return None,
            None => {
                let entry = self.inner.store.get(key).await?;
                let before = latest.height.checked_sub(1)?;
                (entry.policy == Policy::UntilNextBlock { height: before }).then_some(entry)?
            }
        };
        (entry.chain == self.inner.head.chain_generation()).then_some(entry.answer)
    }
}
