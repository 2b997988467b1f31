//! Conversation sequencing state: the pending messages of a conversation, the processing state
//! of each inbound message, and turns committed but not yet published.
//!
//! Keys (all of one conversation share the hash tag `{tenant:conversation}`):
//! * `{ns}:conv:{t:c}:pending`: sorted set of wamids waiting for a turn, scored by the user's
//!   timestamp, then arrival;
//! * `{ns}:conv:{t:c}:events`: hash wamid → the inbound event JSON;
//! * `{ns}:conv:{t:c}:unpublished`: hash reply id → outbound job JSON, for a turn committed
//!   and not yet confirmed on the broker (a crash there is recovered by the next lease holder);
//! * `{ns}:conv:{t:c}:outbox`: sorted set of the reply ids committed and not yet settled by a
//!   dispatcher, scored in commit order (see [`crate::outbox`]);
//! * `{ns}:msg:{t:c}:{wamid}`: `t:<reply id>` (in a committed turn), `d:<reply id>` (answered),
//!   `n` (needs no reply). Kept for the idempotency TTL: redeliveries are recognised.
//!
//! A turn is committed by [`Store::commit_turn`] only while the caller still holds the
//! conversation's lease ([`crate::ClaimKey::conversation`]): the lease token is the fencing token.

use std::time::Duration;

use redis::Script;
use std::sync::LazyLock;
use switchboard_domain::{ChatEntry, InboundEvent, OutboundJob, CONTEXT_WINDOW_MESSAGES};

use crate::error::json_error;
use crate::{millis, ClaimKey, Store, StoreError};

/// The processing state of one inbound message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageState {
    /// Not seen, or waiting for its turn.
    Open,
    /// In a turn committed under this reply id, not yet published.
    Committed(String),
    /// Answered by this reply id (the outbound job is on the broker).
    Answered(String),
    /// Needs no reply (reactions, system notices…).
    NoReply,
}

impl MessageState {
    fn parse(raw: Option<String>) -> Self {
        match raw.as_deref() {
            None => Self::Open,
            Some("n") => Self::NoReply,
            Some(v) if v.starts_with("t:") => Self::Committed(v[2..].to_string()),
            Some(v) if v.starts_with("d:") => Self::Answered(v[2..].to_string()),
            Some(_) => Self::Open,
        }
    }

    /// True when the delivery that carried the message may be acknowledged.
    pub fn is_settled(&self) -> bool {
        matches!(self, Self::Answered(_) | Self::NoReply)
    }
}

/// `KEYS[1]` msg state, `KEYS[2]` pending, `KEYS[3]` events, `KEYS[4]` window; `ARGV[1]` wamid,
/// `ARGV[2]` score, `ARGV[3]` event JSON, `ARGV[4]` ttl ms, `ARGV[5]` user timestamp (s),
/// `ARGV[6]` window key ttl ms. Records the user's latest inbound time (the 24-hour window),
/// then returns the message state when it has one (nothing queued), else nil after queueing it
/// (idempotent).
static ENQUEUE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local last = tonumber(redis.call('GET', KEYS[4]) or '0')
if tonumber(ARGV[5]) > last then
  redis.call('SET', KEYS[4], ARGV[5], 'PX', ARGV[6])
end
local st = redis.call('GET', KEYS[1])
if st then return st end
redis.call('ZADD', KEYS[2], 'NX', ARGV[2], ARGV[1])
redis.call('HSETNX', KEYS[3], ARGV[1], ARGV[3])
redis.call('PEXPIRE', KEYS[2], ARGV[4])
redis.call('PEXPIRE', KEYS[3], ARGV[4])
return false
"#,
    )
});

/// `KEYS[1]` pending, `KEYS[2]` events. Returns the pending events' JSON in order; members
/// whose event is missing are dropped from the set.
static PENDING: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local ids = redis.call('ZRANGE', KEYS[1], 0, -1)
local out = {}
for _, id in ipairs(ids) do
  local ev = redis.call('HGET', KEYS[2], id)
  if ev then table.insert(out, ev) else redis.call('ZREM', KEYS[1], id) end
end
return out
"#,
    )
});

/// Fenced commit of a turn. `KEYS[1]` lease, `KEYS[2]` pending, `KEYS[3]` events,
/// `KEYS[4]` unpublished, `KEYS[5]` context, `KEYS[6]` outbox, `KEYS[7..]` message states.
/// `ARGV[1]` lease value, `ARGV[2]` reply id, `ARGV[3]` job JSON, `ARGV[4]` state ttl ms,
/// `ARGV[5]` assistant entry JSON ('' = none), `ARGV[6]` its id, `ARGV[7]` window size,
/// `ARGV[8]` context ttl ms, `ARGV[9..]` wamids (same order as the state keys).
/// Returns 1, or 0 when the lease is no longer the caller's (nothing written).
static COMMIT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
for i = 7, #KEYS do
  local w = ARGV[i + 2]
  redis.call('SET', KEYS[i], 't:' .. ARGV[2], 'PX', ARGV[4])
  redis.call('ZREM', KEYS[2], w)
  redis.call('HDEL', KEYS[3], w)
end
redis.call('HSET', KEYS[4], ARGV[2], ARGV[3])
redis.call('PEXPIRE', KEYS[4], ARGV[4])
local last = redis.call('ZRANGE', KEYS[6], -1, -1, 'WITHSCORES')
redis.call('ZADD', KEYS[6], 'NX', (tonumber(last[2]) or 0) + 1, ARGV[2])
redis.call('PEXPIRE', KEYS[6], ARGV[4])
if ARGV[5] ~= '' then
  local present = false
  for _, raw in ipairs(redis.call('LRANGE', KEYS[5], 0, -1)) do
    local ok, e = pcall(cjson.decode, raw)
    if ok and type(e) == 'table' and e.id == ARGV[6] then present = true break end
  end
  if not present then
    redis.call('RPUSH', KEYS[5], ARGV[5])
    redis.call('LTRIM', KEYS[5], -tonumber(ARGV[7]), -1)
  end
  redis.call('PEXPIRE', KEYS[5], ARGV[8])
end
return 1
"#,
    )
});

/// `KEYS[1]` unpublished, `KEYS[2..]` message states; `ARGV[1]` reply id, `ARGV[2]` ttl ms.
static FINISH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
for i = 2, #KEYS do
  local v = redis.call('GET', KEYS[i])
  if (not v) or v == 't:' .. ARGV[1] then
    redis.call('SET', KEYS[i], 'd:' .. ARGV[1], 'PX', ARGV[2])
  end
end
redis.call('HDEL', KEYS[1], ARGV[1])
return 1
"#,
    )
});

/// The sort score of a pending message: the user's timestamp (seconds), then the arrival
/// offset in ms after it (capped at 99.999 s), so equal timestamps keep their arrival order.
/// Stays below 2^53 for any real timestamp, so the double in Redis is exact.
/// The window key outlives WhatsApp's 24-hour window by an hour.
const WINDOW_KEY_TTL_MS: u64 = 25 * 3600 * 1000;

fn score(event: &InboundEvent) -> i64 {
    let offset = (event.received_at_ms - event.timestamp * 1000).clamp(0, 99_999);
    event.timestamp * 100_000 + offset
}

impl Store {
    /// Queues an inbound message for its conversation's next turn. Idempotent. Returns the
    /// message's state: anything but [`MessageState::Open`] means it was handled before
    /// (a redelivery) and nothing was queued.
    pub async fn enqueue_message(&self, event: &InboundEvent, ttl: Duration) -> Result<MessageState, StoreError> {
        let json = serde_json::to_string(event).map_err(|e| json_error("inbound event", &e))?;
        let (t, c) = (&event.tenant_id, &event.conversation);
        let mut conn = self.conn().await?;
        let state: Option<String> = ENQUEUE
            .key(self.keys.message(t, c, &event.wamid))
            .key(self.keys.conv(t, c, "pending"))
            .key(self.keys.conv(t, c, "events"))
            .key(self.keys.conv(t, c, "window"))
            .arg(&event.wamid)
            .arg(score(event))
            .arg(json)
            .arg(millis(ttl))
            .arg(event.timestamp)
            // Never kept longer than the tenant's retention of message data.
            .arg(WINDOW_KEY_TTL_MS.min(millis(ttl)))
            .invoke_async(&mut conn)
            .await?;
        Ok(MessageState::parse(state))
    }

    /// Marks a message as needing no reply (if it has no state yet).
    pub async fn mark_no_reply(&self, event: &InboundEvent, ttl: Duration) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        let _: Option<String> = redis::cmd("SET")
            .arg(self.keys.message(&event.tenant_id, &event.conversation, &event.wamid))
            .arg("n")
            .arg("NX")
            .arg("PX")
            .arg(millis(ttl))
            .query_async(&mut conn)
            .await?;
        Ok(())
    }

    /// The conversation's pending messages, oldest first (user timestamp, then arrival).
    pub async fn pending_messages(&self, tenant: &str, conversation: &str) -> Result<Vec<InboundEvent>, StoreError> {
        let mut conn = self.conn().await?;
        let raw: Vec<String> = PENDING
            .key(self.keys.conv(tenant, conversation, "pending"))
            .key(self.keys.conv(tenant, conversation, "events"))
            .invoke_async(&mut conn)
            .await?;
        raw.iter().map(|r| serde_json::from_str(r).map_err(|e| json_error("pending event", &e))).collect()
    }

    /// States of several messages of one conversation, in the order asked.
    pub async fn message_states(
        &self,
        tenant: &str,
        conversation: &str,
        wamids: &[String],
    ) -> Result<Vec<MessageState>, StoreError> {
        if wamids.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = wamids.iter().map(|w| self.keys.message(tenant, conversation, w)).collect();
        let mut conn = self.conn().await?;
        let raw: Vec<Option<String>> = redis::cmd("MGET").arg(keys).query_async(&mut conn).await?;
        Ok(raw.into_iter().map(MessageState::parse).collect())
    }

    /// Whether anyone holds the conversation's lease right now.
    pub async fn conversation_leased(&self, tenant: &str, conversation: &str) -> Result<bool, StoreError> {
        let mut conn = self.conn().await?;
        let n: i64 = redis::cmd("EXISTS")
            .arg(self.keys.claim(&ClaimKey::conversation(tenant, conversation)))
            .query_async(&mut conn)
            .await?;
        Ok(n == 1)
    }

    /// Commits a turn, fenced by the conversation lease: only if `lease_token` still holds it,
    /// atomically marks the turn's messages committed, removes them from the pending set, keeps
    /// the outbound job for publication and appends the assistant's reply to the context window.
    /// Returns false (and writes nothing) when the lease was lost.
    pub async fn commit_turn(
        &self,
        lease_token: &str,
        job: &OutboundJob,
        assistant: Option<&ChatEntry>,
        state_ttl: Duration,
        context_ttl: Duration,
    ) -> Result<bool, StoreError> {
        let (t, c) = (&job.tenant_id, &job.conversation);
        let job_json = serde_json::to_string(job).map_err(|e| json_error("outbound job", &e))?;
        let entry_json = match assistant {
            Some(e) => serde_json::to_string(e).map_err(|err| json_error("context entry", &err))?,
            None => String::new(),
        };
        let mut invocation = COMMIT.prepare_invoke();
        invocation
            .key(self.keys.claim(&ClaimKey::conversation(t, c)))
            .key(self.keys.conv(t, c, "pending"))
            .key(self.keys.conv(t, c, "events"))
            .key(self.keys.conv(t, c, "unpublished"))
            .key(self.keys.context(t, c))
            .key(self.keys.conv(t, c, "outbox"));
        for w in &job.wamids {
            invocation.key(self.keys.message(t, c, w));
        }
        invocation
            .arg(format!("p:{lease_token}"))
            .arg(&job.reply_id)
            .arg(job_json)
            .arg(millis(state_ttl))
            .arg(entry_json)
            .arg(assistant.map(|e| e.id.as_str()).unwrap_or(""))
            .arg(CONTEXT_WINDOW_MESSAGES)
            .arg(millis(context_ttl));
        for w in &job.wamids {
            invocation.arg(w);
        }
        let mut conn = self.conn().await?;
        let ok: i64 = invocation.invoke_async(&mut conn).await?;
        Ok(ok == 1)
    }

    /// Turns committed but not yet confirmed on the broker.
    pub async fn unpublished_turns(&self, tenant: &str, conversation: &str) -> Result<Vec<OutboundJob>, StoreError> {
        let mut conn = self.conn().await?;
        let raw: Vec<String> =
            redis::cmd("HVALS").arg(self.keys.conv(tenant, conversation, "unpublished")).query_async(&mut conn).await?;
        raw.iter().map(|r| serde_json::from_str(r).map_err(|e| json_error("unpublished turn", &e))).collect()
    }

    /// Marks a published turn's messages answered and forgets the turn.
    pub async fn finish_turn(&self, job: &OutboundJob, state_ttl: Duration) -> Result<(), StoreError> {
        let (t, c) = (&job.tenant_id, &job.conversation);
        let mut invocation = FINISH.prepare_invoke();
        invocation.key(self.keys.conv(t, c, "unpublished"));
        for w in &job.wamids {
            invocation.key(self.keys.message(t, c, w));
        }
        invocation.arg(&job.reply_id).arg(millis(state_ttl));
        let mut conn = self.conn().await?;
        let _: i64 = invocation.invoke_async(&mut conn).await?;
        Ok(())
    }
}
