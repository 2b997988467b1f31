//! Splitting a parsed webhook batch into the domain events the ingress publishes.

use std::collections::HashSet;

use switchboard_domain::{InboundContent, InboundEvent, ProfileName, Pseudonymizer, StatusEvent, UserRef};

use crate::webhook::{Contact, Message, Status, WebhookPayload};

/// The outcome of splitting one webhook POST.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SplitBatch {
    /// One event per distinct inbound wamid, in payload order.
    pub inbound: Vec<InboundEvent>,
    /// One event per distinct `(wamid, status)`, in payload order.
    pub statuses: Vec<StatusEvent>,
    /// `metadata.phone_number_id`s no tenant is configured for (deduplicated); their changes
    /// produced nothing.
    pub unknown_phone_number_ids: Vec<String>,
    /// Codes of `value.errors[]` (out-of-band errors such as throughput), for logs and metrics.
    pub value_error_codes: Vec<i64>,
    /// Changes that carry nothing for us: other subscription fields, or a `messages` change
    /// without a value or without a `phone_number_id`.
    pub ignored_changes: usize,
    /// Messages dropped because they have no id or no identifiable sender, and statuses
    /// dropped because they have no id or no status.
    pub skipped_messages: usize,
}

impl SplitBatch {
    /// Whether the batch produced no event at all.
    pub fn is_empty(&self) -> bool {
        self.inbound.is_empty() && self.statuses.is_empty()
    }
}

/// Splits `payload` into inbound and status events.
///
/// `route` maps a `metadata.phone_number_id` to the tenant id that owns it. Every
/// `entry[] × changes[] × messages[]/statuses[]/errors[]` is visited; only `messages` changes
/// produce events. Inbound messages are deduplicated by wamid and statuses by `(wamid, status)`
/// within the batch. A missing timestamp falls back to `received_at_ms`. The n-th inbound
/// message of the batch is stamped `received_at_ms + n`: messages with the same timestamp (one
/// second) keep the order Meta listed them in, since arrival orders them next.
pub fn split_batch(
    payload: &WebhookPayload,
    route: impl Fn(&str) -> Option<String>,
    pseudo: &Pseudonymizer,
    received_at_ms: i64,
) -> SplitBatch {
    let mut batch = SplitBatch::default();
    let mut seen_messages = HashSet::new();
    let mut seen_statuses = HashSet::new();
    let received_at_s = received_at_ms.div_euclid(1000);

    for change in payload.entry.iter().flat_map(|entry| &entry.changes) {
        if change.field.as_deref() != Some("messages") {
            batch.ignored_changes += 1;
            continue;
        }
        let Some(value) = &change.value else {
            batch.ignored_changes += 1;
            continue;
        };
        let Some(phone_number_id) = value.metadata.as_ref().and_then(|m| m.phone_number_id.as_deref()) else {
            tracing::warn!("messages change without metadata.phone_number_id ignored");
            batch.ignored_changes += 1;
            continue;
        };
        let Some(tenant_id) = route(phone_number_id) else {
            if !batch.unknown_phone_number_ids.iter().any(|id| id == phone_number_id) {
                batch.unknown_phone_number_ids.push(phone_number_id.to_owned());
            }
            continue;
        };

        for message in &value.messages {
            let (Some(wamid), Some((from, profile_name))) = (&message.id, sender(message, &value.contacts)) else {
                batch.skipped_messages += 1;
                continue;
            };
            if !seen_messages.insert(wamid.as_str()) {
                continue;
            }
            // `sender` guarantees an identity.
            let identity = from.identity().unwrap_or_default();
            let position = batch.inbound.len() as i64;
            batch.inbound.push(InboundEvent {
                tenant_id: tenant_id.clone(),
                phone_number_id: phone_number_id.to_owned(),
                wamid: wamid.clone(),
                conversation: pseudo.conversation(&tenant_id, identity),
                from,
                timestamp: message.timestamp.unwrap_or(received_at_s),
                received_at_ms: received_at_ms + position,
                content: content_of(message),
                profile_name,
                trace: Default::default(),
            });
        }

        for status in &value.statuses {
            let (Some(wamid), Some(state)) = (&status.id, &status.status) else {
                batch.skipped_messages += 1;
                continue;
            };
            if !seen_statuses.insert((wamid.as_str(), state.as_str())) {
                continue;
            }
            batch.statuses.push(status_event(status, &tenant_id, phone_number_id, pseudo, received_at_ms));
        }

        batch.value_error_codes.extend(value.errors.iter().filter_map(|e| e.code));
    }
    batch
}

/// The sender of `message`: `from` / `from_user_id`, completed from the matching `contacts[]`
/// entry. A message naming no sender at all is attributed to the only contact of its change,
/// if there is exactly one. `None` when no identity can be found.
fn sender(message: &Message, contacts: &[Contact]) -> Option<(UserRef, Option<ProfileName>)> {
    let (from, from_user_id) = (message.from.as_deref(), message.from_user_id.as_deref());
    let contact = if from.is_none() && from_user_id.is_none() {
        match contacts {
            [only] => Some(only),
            _ => None,
        }
    } else {
        contacts.iter().find(|c| {
            (from.is_some() && c.wa_id.as_deref() == from)
                || (from_user_id.is_some() && c.user_id.as_deref() == from_user_id)
        })
    };
    let user = UserRef {
        wa_id: from.map(str::to_owned).or_else(|| contact.and_then(|c| c.wa_id.clone())),
        user_id: from_user_id.map(str::to_owned).or_else(|| contact.and_then(|c| c.user_id.clone())),
    };
    let name = contact
        .and_then(|c| c.profile.as_ref())
        .and_then(|p| p.name.as_deref())
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(|n| ProfileName(n.chars().take(MAX_PROFILE_NAME_CHARS).collect()));
    user.identity().is_some().then_some((user, name))
}

/// Longer profile names are cut (WhatsApp allows 25 characters; this only bounds odd input).
const MAX_PROFILE_NAME_CHARS: usize = 128;

/// What the worker needs to know about the message's content.
fn content_of(message: &Message) -> InboundContent {
    let kind = message.kind.as_deref().unwrap_or("unknown");
    let text = |body: &str| InboundContent::Text { body: body.to_owned() };
    let unsupported = || InboundContent::Unsupported { message_type: kind.to_owned() };
    let no_reply = || InboundContent::NoReply { message_type: kind.to_owned() };
    match kind {
        "text" => match message.text.as_ref().and_then(|t| t.body.as_deref()) {
            Some(body) if !body.trim().is_empty() => text(body),
            _ => no_reply(),
        },
        "interactive" => {
            let choice = message.interactive.as_ref().and_then(|i| match i.kind.as_deref() {
                Some("button_reply") => i.button_reply.as_ref(),
                Some("list_reply") => i.list_reply.as_ref(),
                _ => None,
            });
            match choice.and_then(|c| c.title.as_deref()) {
                Some(title) if !title.trim().is_empty() => text(title),
                _ => unsupported(),
            }
        }
        "button" => {
            let button = message.button.as_ref();
            let label = [button.and_then(|b| b.text.as_deref()), button.and_then(|b| b.payload.as_deref())]
                .into_iter()
                .flatten()
                .find(|s| !s.trim().is_empty());
            label.map_or_else(unsupported, text)
        }
        "reaction" | "system" | "edit" | "revoke" | "request_welcome" | "ephemeral" => no_reply(),
        _ => unsupported(),
    }
}

fn status_event(
    status: &Status,
    tenant_id: &str,
    phone_number_id: &str,
    pseudo: &Pseudonymizer,
    received_at_ms: i64,
) -> StatusEvent {
    let recipient = status.recipient_id.as_deref().or(status.recipient_user_id.as_deref());
    StatusEvent {
        tenant_id: tenant_id.to_owned(),
        phone_number_id: phone_number_id.to_owned(),
        wamid: status.id.clone().unwrap_or_default(),
        status: status.status.clone().unwrap_or_default(),
        timestamp: status.timestamp.unwrap_or(received_at_ms.div_euclid(1000)),
        conversation: recipient.map(|r| pseudo.conversation(tenant_id, r)),
        reply_id: status.biz_opaque_callback_data.clone(),
        error_codes: status.errors.iter().filter_map(|e| e.code).collect(),
        received_at_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::webhook::parse_webhook;

    const PNID: &str = "200000000000002";

    fn split(json: &str) -> SplitBatch {
        let payload = parse_webhook(json.as_bytes()).unwrap();
        let route = |id: &str| (id == PNID).then(|| "t1".to_owned());
        split_batch(&payload, route, &Pseudonymizer::new("k"), 1_760_000_500_123)
    }

    fn with_messages(messages: &str, contacts: &str) -> String {
        format!(
            r#"{{"entry":[{{"changes":[{{"field":"messages","value":{{"metadata":{{"phone_number_id":"{PNID}"}},
                "contacts":{contacts},"messages":{messages}}}}}]}}]}}"#
        )
    }

    fn contents(batch: &SplitBatch) -> Vec<InboundContent> {
        batch.inbound.iter().map(|e| e.content.clone()).collect()
    }

    #[test]
    fn content_mapping_covers_edge_cases() {
        let msgs = r#"[
            {"id":"1","from":"1555","type":"text","text":{"body":"  "}},
            {"id":"2","from":"1555","type":"interactive","interactive":{"type":"nfm_reply","nfm_reply":{}}},
            {"id":"3","from":"1555","type":"button","button":{"payload":"P"}},
            {"id":"4","from":"1555","type":"voice"},
            {"id":"5","from":"1555"},
            {"id":"6","from":"1555","type":"request_welcome"},
            {"id":"7","from":"1555","type":"text"}
        ]"#;
        let batch = split(&with_messages(msgs, "[]"));
        let t = |s: &str| InboundContent::Text { body: s.into() };
        let u = |s: &str| InboundContent::Unsupported { message_type: s.into() };
        let n = |s: &str| InboundContent::NoReply { message_type: s.into() };
        assert_eq!(
            contents(&batch),
            vec![n("text"), u("interactive"), t("P"), u("voice"), u("unknown"), n("request_welcome"), n("text")]
        );
    }

    #[test]
    fn sender_is_completed_from_contacts_and_required() {
        let msgs = r#"[
            {"id":"1","from":"15551234567","type":"text","text":{"body":"a"}},
            {"id":"2","type":"text","text":{"body":"b"}},
            {"from":"15551234567","type":"text","text":{"body":"c"}}
        ]"#;
        let contacts = r#"[{"wa_id":"15551234567","user_id":"US.1"},{"wa_id":"15550000000"}]"#;
        let batch = split(&with_messages(msgs, contacts));
        assert_eq!(batch.inbound.len(), 1);
        assert_eq!(batch.skipped_messages, 2);
        let from = &batch.inbound[0].from;
        assert_eq!((from.wa_id.as_deref(), from.user_id.as_deref()), (Some("15551234567"), Some("US.1")));

        // With a single contact, a message naming no sender belongs to it.
        let batch = split(&with_messages(r#"[{"id":"9","type":"system"}]"#, r#"[{"user_id":"US.2"}]"#));
        assert_eq!(batch.inbound[0].from.user_id.as_deref(), Some("US.2"));
    }

    #[test]
    fn missing_timestamp_falls_back_to_receive_time() {
        let batch = split(&with_messages(r#"[{"id":"1","from":"1","type":"text","text":{"body":"a"}}]"#, "[]"));
        assert_eq!(batch.inbound[0].timestamp, 1_760_000_500);
        assert_eq!(batch.inbound[0].received_at_ms, 1_760_000_500_123);
    }

    #[test]
    fn messages_change_without_phone_number_id_is_ignored() {
        let batch =
            split(r#"{"entry":[{"changes":[{"field":"messages","value":{"messages":[{"id":"1","from":"1"}]}}]}]}"#);
        assert!(batch.is_empty());
        assert_eq!(batch.ignored_changes, 1);
    }
}
