//! The order in which one conversation's replies leave: `{ns}:conv:{t:c}:outbox`, a sorted set
//! of the reply ids committed by [`Store::commit_turn`] (score: 1 + the highest score present,
//! so commit order) and not yet settled by a dispatcher.
//!
//! Dispatcher replicas handle replies concurrently, so two replies of one conversation committed
//! a few milliseconds apart (no LLM call, a fast model, a command's notice) could reach WhatsApp
//! in the wrong order. A dispatcher therefore sends a reply only when it is the first of its
//! conversation's outbox ([`Store::reply_may_go`]) and removes it once settled, whatever the
//! outcome ([`Store::reply_settled`]). Replies that are not in the outbox (redriven from the DLQ,
//! redelivered after settling, notices published outside a turn) go at once. A reply that waits
//! too long for its predecessors drops them from the outbox ([`Store::skip_replies_before`]),
//! so an outbox entry whose job was lost cannot hold the conversation back for more than that.

use redis::Script;
use std::sync::LazyLock;

use crate::{Store, StoreError};

/// `KEYS[1]` outbox; `ARGV[1]` reply id. Removes the replies committed before it; returns how many.
static SKIP_BEFORE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score then return 0 end
return redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. score)
"#,
    )
});

/// Adds to `pipe` the two reads [`may_go`] decides on: the first of the line and the reply's place.
pub(crate) fn read_place(pipe: &mut redis::Pipeline, outbox: &str, reply_id: &str) {
    pipe.cmd("ZRANGE").arg(outbox).arg(0).arg(0).cmd("ZSCORE").arg(outbox).arg(reply_id);
}

/// The reply may go when it is first in its line or not in it at all. (Read without a script:
/// a line that changes between the two reads can only make a reply wait one more poll.)
pub(crate) fn may_go(first: &[String], place: Option<f64>, reply_id: &str) -> bool {
    place.is_none() || first.first().is_none_or(|f| f == reply_id)
}

impl Store {
    /// Whether the reply may be sent now: it is its conversation's oldest unsettled reply, or it
    /// is not in the outbox at all.
    pub async fn reply_may_go(&self, tenant: &str, conversation: &str, reply_id: &str) -> Result<bool, StoreError> {
        let mut conn = self.conn().await?;
        let mut pipe = redis::pipe();
        read_place(&mut pipe, &self.keys.conv(tenant, conversation, "outbox"), reply_id);
        let (first, place): (Vec<String>, Option<f64>) = pipe.query_async(&mut conn).await?;
        Ok(may_go(&first, place, reply_id))
    }

    /// Gives up waiting for the replies committed before this one (they stay wherever they are
    /// and are sent when they come, unordered). Returns how many were dropped from the line.
    pub async fn skip_replies_before(
        &self,
        tenant: &str,
        conversation: &str,
        reply_id: &str,
    ) -> Result<u64, StoreError> {
        let mut conn = self.conn().await?;
        let n: u64 = SKIP_BEFORE
            .key(self.keys.conv(tenant, conversation, "outbox"))
            .arg(reply_id)
            .invoke_async(&mut conn)
            .await?;
        Ok(n)
    }

    /// The reply is settled (sent, suppressed, held, dead-lettered or on the retry ladder): the
    /// next one of its conversation may go.
    pub async fn reply_settled(&self, tenant: &str, conversation: &str, reply_id: &str) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        let _: i64 = redis::cmd("ZREM")
            .arg(self.keys.conv(tenant, conversation, "outbox"))
            .arg(reply_id)
            .query_async(&mut conn)
            .await?;
        Ok(())
    }
}
