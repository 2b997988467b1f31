//! Data-subject operations: everything the store holds about one end-user of one tenant,
//! addressed by `(tenant, conversation key)` (the keyed pseudonym of the user, see
//! [`Pseudonymizer::conversation`](switchboard_domain::Pseudonymizer::conversation)).
//!
//! Keys added by this module (`{t:c}` = `{tenant}:{conversation}` in literal braces, the
//! conversation's hash tag):
//!
//! | key | type | TTL |
//! | --- | --- | --- |
//! | `{ns}:restricted:{t:c}` | string: since (Unix ms) | none while the restriction is on |
//! | `{ns}:erased:{t:c}` | string: erased at (Unix ms) | the caller's (idempotency retention) |
//! | `{ns}:audit:{tenant}` | stream of JSON [`AuditRecord`]s, field `r` | audit retention, trimmed by age on every write and read |
//!
//! What is reachable for one user:
//! * by name (one `SCAN MATCH {ns}:*{tenant}:{conversation}*` over the namespace): the context
//!   window, pending messages and their events, unpublished turns, message states, the
//!   conversation lease, the last-inbound time, the pair-rate bucket, the markers above;
//! * by link, from the reply ids those hold (message states `t:`/`d:`, unpublished turns,
//!   assistant entries of the window): the send ledger `claim:{tenant}:send:{reply}:{part}`
//!   (parts probed from 0 until one is missing), and from each ledger value `d:<wamid>` the
//!   status hash and the `sent` index of that outbound message, plus `job:{tenant}:{reply}` and
//!   `resends:{tenant}:{reply}`.
//!
//! Not reachable: a status or ledger entry whose links expired first (a status outlives the
//! message states by default: 30 against 7 days). Such a record holds no text, number or
//! conversation key (a status, times, error codes and a reply id, itself a hash) and expires on
//! its own. Retry counts live only in AMQP headers (in-flight and dead-lettered messages), not
//! in Redis. No profile name is stored.
//!
//! * `subject/export.rs`: [`Store::export_subject`];
//! * `subject/erase.rs`: [`Store::erase_subject`], [`Store::block_subject`];
//! * `subject/audit.rs`: [`Store::audit`], [`Store::audit_log`].

mod audit;
mod erase;
mod export;

use std::collections::BTreeSet;
use std::sync::LazyLock;

use redis::Script;
use switchboard_domain::{message_ref, now_ms, ChatEntry, ChatRole, OutboundJob};

pub use audit::AuditRecord;
pub use erase::ErasureReport;
pub use export::{DeliveryRecord, MessageRecord, StoredKey, SubjectExport};

use crate::{ClaimKey, Store, StoreError};

/// Removes (`ARGV[2]` = `remove`) or edits (else; new content `ARGV[3]`) the entry with id
/// `ARGV[1]` of the context list `KEYS[1]`. Returns 1 if found. The TTL is left as it is.
static RECTIFY: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local items = redis.call('LRANGE', KEYS[1], 0, -1)
for i, raw in ipairs(items) do
  local ok, e = pcall(cjson.decode, raw)
  if ok and type(e) == 'table' and e.id == ARGV[1] then
    if ARGV[2] == 'remove' then
      redis.call('LSET', KEYS[1], i - 1, '\0sb-removed')
      redis.call('LREM', KEYS[1], 1, '\0sb-removed')
    else
      e.content = ARGV[3]
      redis.call('LSET', KEYS[1], i - 1, cjson.encode(e))
    end
    return 1
  end
end
return 0
"#,
    )
});

/// Keys of one subject found by name, sorted by role.
#[derive(Debug, Default)]
pub(crate) struct SubjectKeys {
    /// Keys with the conversation's hash tag (one cluster slot): context, `conv:*`, `msg:*`,
    /// the conversation lease, and the markers.
    pub tagged: Vec<String>,
    /// Other keys naming the conversation (the pair-rate bucket).
    pub other: Vec<String>,
    /// `(key, message_ref)` of each message state.
    pub messages: Vec<(String, String)>,
}

/// A marker's value: the time (Unix ms) it was set.
pub(crate) fn marker_time(raw: Option<String>) -> Result<Option<i64>, StoreError> {
    raw.map(|v| v.parse().map_err(|_| StoreError::decode("subject marker time"))).transpose()
}

impl Store {
    /// Edits (`Some(content)`) or removes (`None`) one entry of the context window, found by its
    /// id (an inbound wamid or a reply id) or by the [`message_ref`] of its id. Atomic. Returns
    /// false when no such entry is in the window. Pending events are not touched: they leave
    /// the store when their turn commits.
    pub async fn rectify_context_entry(
        &self,
        tenant: &str,
        conversation: &str,
        id: &str,
        new_content: Option<String>,
    ) -> Result<bool, StoreError> {
        let window = self.context(tenant, conversation).await?;
        let Some(entry) = window.iter().find(|e| e.id == id || message_ref(&e.id) == id) else {
            return Ok(false);
        };
        let mut conn = self.conn().await?;
        let mut invocation = RECTIFY.prepare_invoke();
        invocation.key(self.keys.context(tenant, conversation)).arg(&entry.id);
        match &new_content {
            Some(content) => invocation.arg("edit").arg(content),
            None => invocation.arg("remove").arg(""),
        };
        let found: i64 = invocation.invoke_async(&mut conn).await?;
        Ok(found == 1)
    }

    /// Deletes the conversation's context window (the end-user's `/forget`). Returns whether
    /// there was one.
    pub async fn forget_context(&self, tenant: &str, conversation: &str) -> Result<bool, StoreError> {
        let mut conn = self.conn().await?;
        let n: i64 = redis::cmd("DEL").arg(self.keys.context(tenant, conversation)).query_async(&mut conn).await?;
        Ok(n == 1)
    }

    /// Restricts (`on`) or lifts the restriction of processing for the subject. Returns whether
    /// the state changed. The flag has no TTL: it lasts until lifted, and survives erasure.
    pub async fn restrict(&self, tenant: &str, conversation: &str, on: bool) -> Result<bool, StoreError> {
        let key = self.marker_key("restricted", tenant, conversation);
        let mut conn = self.conn().await?;
        let changed = if on {
            let set: Option<String> =
                redis::cmd("SET").arg(&key).arg(now_ms()).arg("NX").query_async(&mut conn).await?;
            set.is_some()
        } else {
            let n: i64 = redis::cmd("DEL").arg(&key).query_async(&mut conn).await?;
            n == 1
        };
        Ok(changed)
    }

    /// Since when (Unix ms) the subject's processing is restricted, if it is.
    pub async fn restricted_since(&self, tenant: &str, conversation: &str) -> Result<Option<i64>, StoreError> {
        self.marker_time("restricted", tenant, conversation).await
    }

    pub async fn is_restricted(&self, tenant: &str, conversation: &str) -> Result<bool, StoreError> {
        Ok(self.restricted_since(tenant, conversation).await?.is_some())
    }

    /// When (Unix ms) the subject's data was erased, while the marker lasts. Queue messages of
    /// the subject received (or replies created) at or before that time are to be skipped.
    pub async fn erased_at(&self, tenant: &str, conversation: &str) -> Result<Option<i64>, StoreError> {
        self.marker_time("erased", tenant, conversation).await
    }

    pub async fn is_erased(&self, tenant: &str, conversation: &str) -> Result<bool, StoreError> {
        Ok(self.erased_at(tenant, conversation).await?.is_some())
    }

    /// `{ns}:{kind}:{{tenant}:{conversation}}`
    pub(crate) fn marker_key(&self, kind: &str, tenant: &str, conversation: &str) -> String {
        format!("{}:{kind}:{{{tenant}:{conversation}}}", self.keys.namespace())
    }

    async fn marker_time(&self, kind: &str, tenant: &str, conversation: &str) -> Result<Option<i64>, StoreError> {
        let mut conn = self.conn().await?;
        let raw: Option<String> =
            redis::cmd("GET").arg(self.marker_key(kind, tenant, conversation)).query_async(&mut conn).await?;
        marker_time(raw)
    }

    /// Every key whose name holds this tenant's conversation key (one pass of `SCAN`).
    pub(crate) async fn subject_keys(&self, tenant: &str, conversation: &str) -> Result<SubjectKeys, StoreError> {
        let ns = self.keys.namespace();
        let needle = format!("{tenant}:{conversation}");
        let pattern = format!("{}:*{}*", glob_escape(ns), glob_escape(&needle));
        let tag = format!("{{{needle}}}");
        let msg_prefix = format!("{ns}:msg:{tag}:");
        let mut found = SubjectKeys::default();
        for key in self.scan_match(&pattern).await? {
            // The tenant id must be the whole segment before the conversation key.
            let Some(at) = key.find(&needle) else { continue };
            if !matches!(key.as_bytes().get(at.wrapping_sub(1)), Some(b'{' | b':')) {
                continue;
            }
            if let Some(r) = key.strip_prefix(&msg_prefix) {
                found.messages.push((key.clone(), r.to_owned()));
            }
            if key.contains(&tag) {
                found.tagged.push(key);
            } else {
                found.other.push(key);
            }
        }
        Ok(found)
    }

    pub(crate) async fn scan_match(&self, pattern: &str) -> Result<Vec<String>, StoreError> {
        let mut conn = self.conn().await?;
        let mut cursor: u64 = 0;
        let mut out = BTreeSet::new();
        loop {
            let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(pattern)
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut conn)
                .await?;
            out.extend(batch);
            if next == 0 {
                return Ok(out.into_iter().collect());
            }
            cursor = next;
        }
    }

    async fn message_records(&self, found: &SubjectKeys) -> Result<Vec<MessageRecord>, StoreError> {
        if found.messages.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for (key, _) in &found.messages {
            pipe.get(key).pttl(key);
        }
        let mut conn = self.conn().await?;
        let raw: Vec<(Option<String>, i64)> = pipe.query_async(&mut conn).await?;
        Ok(found
            .messages
            .iter()
            .zip(raw)
            .filter_map(|((_, r), (value, ttl))| {
                let value = value?;
                let (state, reply) = match value.split_at_checked(2) {
                    Some(("t:", reply)) => ("committed", Some(reply.to_owned())),
                    Some(("d:", reply)) => ("answered", Some(reply.to_owned())),
                    _ if value == "n" => ("no_reply", None),
                    _ => ("unknown", None),
                };
                Some(MessageRecord { message_ref: r.clone(), state: state.into(), reply_id: reply, expires_in_ms: ttl })
            })
            .collect())
    }

    /// The send-ledger entries of the given replies: `(key, reply id, part, outbound wamid)`;
    /// the wamid is `None` while the part is being sent. Parts are probed from 0 until one
    /// is missing (the dispatcher claims parts in order).
    pub(crate) async fn ledger(
        &self,
        tenant: &str,
        replies: &BTreeSet<String>,
    ) -> Result<Vec<(String, String, usize, Option<String>)>, StoreError> {
        let mut out = Vec::new();
        let mut conn = self.conn().await?;
        for reply in replies {
            for part in 0.. {
                let key = self.keys.claim(&ClaimKey::send(tenant, reply, part));
                let value: Option<String> = redis::cmd("GET").arg(&key).query_async(&mut conn).await?;
                let Some(value) = value else { break };
                let wamid = value.strip_prefix("d:").map(str::to_owned);
                out.push((key, reply.clone(), part, wamid));
            }
        }
        Ok(out)
    }
}

/// The reply ids linked to the subject: assistant entries of the window, unpublished turns and
/// message states.
pub(crate) fn reply_ids(
    context: &[ChatEntry],
    unpublished: &[OutboundJob],
    messages: &[MessageRecord],
) -> BTreeSet<String> {
    let assistant = context.iter().filter(|e| e.role == ChatRole::Assistant).map(|e| e.id.clone());
    let turns = unpublished.iter().map(|j| j.reply_id.clone());
    let states = messages.iter().filter_map(|m| m.reply_id.clone());
    assistant.chain(turns).chain(states).filter(|r| !r.is_empty()).collect()
}

/// Escapes Redis glob metacharacters (`*?[]\`).
fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_are_escaped() {
        assert_eq!(glob_escape("a*b?[c]\\"), "a\\*b\\?\\[c\\]\\\\");
        assert_eq!(glob_escape("sb-1.x:t_1"), "sb-1.x:t_1");
    }
}
