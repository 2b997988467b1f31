//! Erasure: every key of one subject, and the records linked to it, deleted within one call;
//! a marker tells the roles to skip the subject's messages still in the queues.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;
use switchboard_domain::now_ms;

use super::reply_ids;
use crate::{millis, Store, StoreError};

/// What an erasure deleted. Counts and kinds only: no text, number or wamid.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ErasureReport {
    /// The conversation key (a keyed hash), the only identifier an audit record keeps.
    pub subject_ref: String,
    pub erased_at_ms: i64,
    /// Keys deleted, by kind (`ctx`, `conv`, `msg`, `claim`, `sent`, `job`, `resends`, `status`,
    /// `rate`).
    pub deleted_keys: BTreeMap<String, usize>,
    pub context_entries: usize,
    pub pending_messages: usize,
    pub unpublished_replies: usize,
    pub delivery_statuses: usize,
    /// Whether processing stays restricted (a restriction survives erasure).
    pub restricted: bool,
    /// How long the erasure marker is kept (queue messages of the subject up to
    /// `erased_at_ms` are skipped meanwhile).
    pub marker_ttl_ms: u64,
}

impl Store {
    /// Deletes everything held about the subject: context window, pending messages and their
    /// events, unpublished turns, message states, the conversation lease (so a turn in flight
    /// cannot commit any more), the last-inbound time, the pair-rate bucket, and the linked
    /// send ledger, `sent` index, kept jobs, resend counters and delivery statuses. First sets
    /// `{ns}:erased:{t:c}` (value: now, TTL `marker_ttl`), which the worker and the dispatcher
    /// check to skip the subject's older queue messages. A restriction flag is kept. Idempotent.
    pub async fn erase_subject(
        &self,
        tenant: &str,
        conversation: &str,
        marker_ttl: Duration,
    ) -> Result<ErasureReport, StoreError> {
        let erased_at_ms = now_ms();
        let marker = self.marker_key("erased", tenant, conversation);
        let mut conn = self.conn().await?;
        let _: () = redis::cmd("SET")
            .arg(&marker)
            .arg(erased_at_ms)
            .arg("PX")
            .arg(millis(marker_ttl))
            .query_async(&mut conn)
            .await?;

        let context = self.context(tenant, conversation).await?;
        let unpublished = self.unpublished_turns(tenant, conversation).await?;
        let pending: i64 =
            redis::cmd("HLEN").arg(self.keys.conv(tenant, conversation, "events")).query_async(&mut conn).await?;
        let mut report = ErasureReport {
            subject_ref: conversation.to_owned(),
            erased_at_ms,
            context_entries: context.len(),
            pending_messages: usize::try_from(pending).unwrap_or(0),
            unpublished_replies: unpublished.len(),
            marker_ttl_ms: millis(marker_ttl),
            ..Default::default()
        };

        // Two passes: a turn that committed between the scan and the delete is caught by the
        // second (its lease is gone after the first, so nothing can commit after that).
        for _ in 0..2 {
            let found = self.subject_keys(tenant, conversation).await?;
            let messages = self.message_records(&found).await?;
            let replies = reply_ids(&context, &unpublished, &messages);
            let mut linked: Vec<String> = Vec::new();
            for (key, _, _, wamid) in self.ledger(tenant, &replies).await? {
                linked.push(key);
                if let Some(w) = wamid {
                    linked.extend([self.keys.status(tenant, &w), self.keys.sent(tenant, &w)]);
                }
            }
            linked.extend(replies.iter().flat_map(|r| [self.keys.job(tenant, r), self.resends_key(tenant, r)]));
            // Inbound claims, if a role uses them, are keyed by the same message refs.
            linked.extend(found.messages.iter().map(|(_, r)| self.inbound_claim_key(tenant, r)));

            let keep = |k: &String| *k == marker || *k == self.marker_key("restricted", tenant, conversation);
            let tagged: Vec<String> = found.tagged.into_iter().filter(|k| !keep(k)).collect();
            // The tagged keys share one slot: one DEL removes them atomically, lease included.
            if !tagged.is_empty() {
                let _: i64 = redis::cmd("DEL").arg(&tagged).query_async(&mut conn).await?;
                self.count(&mut report, &tagged);
            }
            let rest: Vec<String> = found.other.into_iter().chain(linked).collect();
            if rest.is_empty() {
                continue;
            }
            let mut pipe = redis::pipe();
            for key in &rest {
                pipe.cmd("DEL").arg(key);
            }
            let deleted: Vec<i64> = pipe.query_async(&mut conn).await?;
            let gone: Vec<String> = rest.into_iter().zip(deleted).filter(|(_, n)| *n == 1).map(|(k, _)| k).collect();
            report.delivery_statuses += gone.iter().filter(|k| self.kind(k) == "status").count();
            self.count(&mut report, &gone);
        }
        report.restricted = self.is_restricted(tenant, conversation).await?;
        Ok(report)
    }

    /// Erases the subject and restricts its processing, restriction first (so nothing new is
    /// processed meanwhile): the "promptly delete" of a child's data, and a block.
    pub async fn block_subject(
        &self,
        tenant: &str,
        conversation: &str,
        marker_ttl: Duration,
    ) -> Result<ErasureReport, StoreError> {
        self.restrict(tenant, conversation, true).await?;
        self.erase_subject(tenant, conversation, marker_ttl).await
    }

    /// `{ns}:resends:{tenant}:{reply_id}` (see [`Store::count_resend`]).
    pub(crate) fn resends_key(&self, tenant: &str, reply_id: &str) -> String {
        format!("{}:resends:{tenant}:{reply_id}", self.keys.namespace())
    }

    /// `{ns}:claim:{tenant}:in:{message_ref}`: what [`crate::ClaimKey::inbound`] names, from the ref.
    fn inbound_claim_key(&self, tenant: &str, reference: &str) -> String {
        format!("{}:claim:{tenant}:in:{reference}", self.keys.namespace())
    }

    /// The kind of a key: its first segment after the namespace.
    fn kind<'k>(&self, key: &'k str) -> &'k str {
        let rest = key.strip_prefix(self.keys.namespace()).and_then(|r| r.strip_prefix(':')).unwrap_or(key);
        rest.split(':').next().unwrap_or(rest)
    }

    fn count(&self, report: &mut ErasureReport, keys: &[String]) {
        for key in keys {
            *report.deleted_keys.entry(self.kind(key).to_owned()).or_default() += 1;
        }
    }
}
