//! Access and portability: one document of everything held about a subject.

use std::collections::BTreeSet;

use serde::Serialize;
use switchboard_domain::{message_ref, now_ms, ChatEntry, InboundEvent, OutboundJob};

use super::reply_ids;
use crate::error::json_error;
use crate::{StatusRecord, Store, StoreError};

/// Everything the store holds about one end-user (one JSON document: access and portability).
#[derive(Debug, Clone, Serialize)]
pub struct SubjectExport {
    pub tenant: String,
    /// The conversation key: a keyed hash of tenant and user, never the number.
    pub subject_ref: String,
    pub exported_at_ms: i64,
    /// The WhatsApp profile name, kept only where the tenant enables `remember_profile_name`.
    pub profile_name: Option<String>,
    /// The context window sent to the LLM, oldest first.
    pub context: Vec<ChatEntry>,
    /// Messages waiting for their turn (full events, with the user's number and text).
    pub pending: Vec<InboundEvent>,
    /// Replies committed and not yet handed to the broker.
    pub unpublished: Vec<OutboundJob>,
    /// Replies kept by the dispatcher after sending (for retries of failed parts).
    pub sent_jobs: Vec<OutboundJob>,
    /// Processing state of each inbound message still remembered.
    pub messages: Vec<MessageRecord>,
    /// Each reply part handed to WhatsApp, with its delivery status and error codes.
    pub deliveries: Vec<DeliveryRecord>,
    /// Since when (Unix ms) processing is restricted, if it is.
    pub restricted_since_ms: Option<i64>,
    /// When (Unix ms) the user's data was last erased, while the marker lasts.
    pub erased_at_ms: Option<i64>,
    /// The user's last message time (Unix s), within WhatsApp's 24-hour window (+1 h).
    pub last_inbound_at: Option<i64>,
    /// Whether a worker is running a turn of this conversation right now.
    pub turn_in_progress: bool,
    /// Every key read, with its remaining lifetime.
    pub storage: Vec<StoredKey>,
}

/// The processing state of one inbound message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MessageRecord {
    /// [`message_ref`] of the inbound wamid.
    pub message_ref: String,
    /// `committed` (in a turn not yet published), `answered`, `no_reply` or `unknown`.
    pub state: String,
    pub reply_id: Option<String>,
    pub expires_in_ms: i64,
}

/// One part of a reply as the send ledger knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeliveryRecord {
    pub reply_id: String,
    pub part: usize,
    /// `sent` (WhatsApp accepted it) or `sending` (a dispatcher holds the part right now).
    pub state: String,
    /// [`message_ref`] of the outbound wamid, when sent.
    pub message_ref: Option<String>,
    pub status: Option<StatusRecord>,
}

/// A key holding data of the subject and its remaining lifetime (ms; -1 = no expiry).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoredKey {
    pub key: String,
    pub expires_in_ms: i64,
}

impl Store {
    /// One JSON-able document of everything held about the subject.
    pub async fn export_subject(&self, tenant: &str, conversation: &str) -> Result<SubjectExport, StoreError> {
        let found = self.subject_keys(tenant, conversation).await?;
        let context = self.context(tenant, conversation).await?;
        let pending = self.pending_events(tenant, conversation).await?;
        let unpublished = self.unpublished_turns(tenant, conversation).await?;
        let messages = self.message_records(&found).await?;
        let replies = reply_ids(&context, &unpublished, &messages);
        let ledger = self.ledger(tenant, &replies).await?;
        let mut deliveries = Vec::with_capacity(ledger.len());
        for (_, reply_id, part, wamid) in &ledger {
            let status = match wamid {
                Some(w) => self.status(tenant, w).await?,
                None => None,
            };
            deliveries.push(DeliveryRecord {
                reply_id: reply_id.clone(),
                part: *part,
                state: if wamid.is_some() { "sent" } else { "sending" }.into(),
                message_ref: wamid.as_deref().map(message_ref),
                status,
            });
        }
        let mut sent_jobs = Vec::new();
        let mut conn = self.conn().await?;
        for reply in &replies {
            let raw: Option<String> =
                redis::cmd("GET").arg(self.keys.job(tenant, reply)).query_async(&mut conn).await?;
            if let Some(raw) = raw {
                sent_jobs.push(serde_json::from_str(&raw).map_err(|e| json_error("sent job", &e))?);
            }
        }
        let mut all: BTreeSet<String> = found.tagged.iter().chain(&found.other).cloned().collect();
        for (key, _, _, wamid) in &ledger {
            all.insert(key.clone());
            if let Some(w) = wamid {
                all.extend([self.keys.status(tenant, w), self.keys.sent(tenant, w)]);
            }
        }
        all.extend(replies.iter().flat_map(|r| [self.keys.job(tenant, r), self.resends_key(tenant, r)]));
        let storage = self.existing_with_ttl(all.into_iter().collect()).await?;
        Ok(SubjectExport {
            tenant: tenant.to_owned(),
            subject_ref: conversation.to_owned(),
            exported_at_ms: now_ms(),
            profile_name: self.profile_name(tenant, conversation).await?,
            context,
            pending,
            unpublished,
            sent_jobs,
            messages,
            deliveries,
            restricted_since_ms: self.restricted_since(tenant, conversation).await?,
            erased_at_ms: self.erased_at(tenant, conversation).await?,
            last_inbound_at: self.last_inbound(tenant, conversation).await?,
            turn_in_progress: self.conversation_leased(tenant, conversation).await?,
            storage,
        })
    }

    /// The pending events as stored (read-only, unlike [`Store::pending_messages`]), in order.
    async fn pending_events(&self, tenant: &str, conversation: &str) -> Result<Vec<InboundEvent>, StoreError> {
        let mut conn = self.conn().await?;
        let raw: Vec<String> =
            redis::cmd("HVALS").arg(self.keys.conv(tenant, conversation, "events")).query_async(&mut conn).await?;
        let mut events: Vec<InboundEvent> = raw
            .iter()
            .map(|r| serde_json::from_str(r).map_err(|e| json_error("pending event", &e)))
            .collect::<Result<_, _>>()?;
        events.sort_by_key(|e| (e.timestamp, e.received_at_ms));
        Ok(events)
    }

    /// `(key, PTTL)` of each key that exists.
    async fn existing_with_ttl(&self, keys: Vec<String>) -> Result<Vec<StoredKey>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for key in &keys {
            pipe.pttl(key);
        }
        let mut conn = self.conn().await?;
        let ttls: Vec<i64> = pipe.query_async(&mut conn).await?;
        Ok(keys
            .into_iter()
            .zip(ttls)
            .filter(|(_, ttl)| *ttl != -2)
            .map(|(key, expires_in_ms)| StoredKey { key, expires_in_ms })
            .collect())
    }
}
