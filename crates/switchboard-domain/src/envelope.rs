//! The JSON envelopes carried on the bus between roles.

use serde::{Deserialize, Serialize};

/// Who an end-user is, as WhatsApp identifies them. `wa_id` is the phone number in
/// international digits; `user_id` is the business-scoped user id (BSUID) of users who hide
/// their number behind a username. At least one is present.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct UserRef {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wa_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
}

impl UserRef {
    /// The stable identity used for pseudonymisation: the phone number when known, else the BSUID.
    pub fn identity(&self) -> Option<&str> {
        self.wa_id.as_deref().or(self.user_id.as_deref())
    }
}

impl std::fmt::Debug for UserRef {
    // Never print identities, even in debug output.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UserRef([redacted])")
    }
}

/// What the user sent, reduced to what the worker needs to decide on a reply.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum InboundContent {
    /// Text the assistant can answer: a text message, or the title of a tapped button/list row.
    Text { body: String },
    /// A message the assistant cannot read yet (media, location, contacts, polls, …): it gets
    /// an honest short reply instead of silence.
    Unsupported { message_type: String },
    /// Reactions, system notices, edits and deletions: recorded, never answered.
    NoReply { message_type: String },
}

impl std::fmt::Debug for InboundContent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Text { body } => write!(f, "Text({} chars)", body.chars().count()),
            Self::Unsupported { message_type } => write!(f, "Unsupported({message_type})"),
            Self::NoReply { message_type } => write!(f, "NoReply({message_type})"),
        }
    }
}

/// A user's WhatsApp profile name: personal data, never printed (`Debug` shows its length).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ProfileName(pub String);

impl std::fmt::Debug for ProfileName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ProfileName({} chars)", self.0.chars().count())
    }
}

/// One inbound user message, split out of a webhook batch by the ingress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboundEvent {
    pub tenant_id: String,
    pub phone_number_id: String,
    /// WhatsApp message id (`wamid.…`): the idempotency key of inbound processing.
    pub wamid: String,
    pub from: UserRef,
    /// Pseudonymous conversation key (see [`crate::Pseudonymizer`]); safe to log.
    pub conversation: String,
    /// The user's send time, Unix seconds (from the webhook, normalised from ms if needed).
    pub timestamp: i64,
    /// When the ingress received it, Unix milliseconds.
    pub received_at_ms: i64,
    pub content: InboundContent,
    /// The sender's WhatsApp profile name (`contacts[].profile.name`), only for tenants with
    /// `remember_profile_name`: the ingress drops it otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile_name: Option<ProfileName>,
    /// W3C trace context of the webhook that brought it (`traceparent`, `tracestate`), kept
    /// with the message while it waits for its turn.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub trace: std::collections::BTreeMap<String, String>,
}

/// One delivery status of an outbound message, split out of a webhook batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusEvent {
    pub tenant_id: String,
    pub phone_number_id: String,
    /// The wamid of *our* outbound message.
    pub wamid: String,
    /// `sent`, `delivered`, `read`, `played`, `failed` (or anything newer, kept verbatim).
    pub status: String,
    pub timestamp: i64,
    /// Pseudonymous conversation key of the recipient, when the recipient is known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversation: Option<String>,
    /// Our reply id, echoed back through `biz_opaque_callback_data`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_id: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub error_codes: Vec<i64>,
    pub received_at_ms: i64,
}

/// Mark a user message read (and show "typing…"): best effort, sent by the dispatcher.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadReceipt {
    pub tenant_id: String,
    pub phone_number_id: String,
    pub wamid: String,
    pub typing: bool,
}

/// Why a reply exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplyKind {
    /// The assistant's answer.
    Assistant,
    /// The configured apology, after the LLM failed on every attempt.
    Apology,
    /// The honest "I can only read text" answer to media and other unsupported messages.
    Unsupported,
    /// A confirmation of the user's own command (STOP, START, /forget): sent even while the
    /// user's processing is restricted.
    Notice,
}

/// One reply for the dispatcher to send.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboundJob {
    pub tenant_id: String,
    pub phone_number_id: String,
    /// Deterministic id (see [`crate::reply_id`]); the dispatcher's send ledger is keyed on it.
    pub reply_id: String,
    pub to: UserRef,
    pub conversation: String,
    /// The newest user message this answers.
    pub in_reply_to: String,
    /// Every user message this reply answers (one turn may coalesce several), in order.
    #[serde(default)]
    pub wamids: Vec<String>,
    pub kind: ReplyKind,
    pub body: String,
    /// The user's last message time, Unix seconds (the 24-hour window is counted from it).
    pub user_timestamp: i64,
    pub created_at_ms: i64,
    /// When the ingress received the newest message of the turn (Unix ms): the start of the
    /// latency the platform adds.
    #[serde(default)]
    pub last_received_at_ms: i64,
    /// W3C trace context of the turn that produced it (later status webhooks link to it).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub trace: std::collections::BTreeMap<String, String>,
}

impl std::fmt::Debug for OutboundJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboundJob")
            .field("tenant_id", &self.tenant_id)
            .field("reply_id", &self.reply_id)
            .field("conversation", &self.conversation)
            .field("kind", &self.kind)
            .field("body_chars", &self.body.chars().count())
            .finish_non_exhaustive()
    }
}

/// Why something was dead-lettered. Stable snake_case strings: they are AMQP header values,
/// filter keys of the redrive command and (later) metric labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeadLetterReason {
    /// The LLM failed on every attempt (the user got the apology).
    LlmFailed,
    /// The Graph API refused the send with a permanent error.
    SendPermanent,
    /// Transient send errors did not clear within the retry budget.
    SendRetriesExhausted,
    /// A message on the bus could not be decoded.
    Undecodable,
    /// A message names a tenant this deployment does not know (configuration changed).
    UnknownTenant,
    /// The reply would fall outside WhatsApp's 24-hour customer service window.
    WindowClosed,
    /// The reply grew older than `SWITCHBOARD_REPLY_MAX_AGE_SECS` before it could be sent.
    Expired,
}

impl DeadLetterReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::LlmFailed => "llm_failed",
            Self::SendPermanent => "send_permanent",
            Self::SendRetriesExhausted => "send_retries_exhausted",
            Self::Undecodable => "undecodable",
            Self::UnknownTenant => "unknown_tenant",
            Self::WindowClosed => "window_closed",
            Self::Expired => "expired",
        }
    }
}

impl std::fmt::Display for DeadLetterReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Metadata attached to a dead letter. Never holds message text or identities.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    pub reason: DeadLetterReason,
    pub tenant_id: Option<String>,
    /// The WhatsApp/Graph error code of the last failure, when there was one.
    pub error_code: Option<i64>,
    /// A short, text-free description of the last error (e.g. `http 500`, `timeout`).
    pub last_error: String,
    pub attempts: u32,
    pub first_attempt_at_ms: i64,
    pub dead_lettered_at_ms: i64,
    /// The queue the message came from (for redrive).
    pub source_queue: String,
}

/// A role of a message in the context window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChatRole {
    User,
    Assistant,
}

/// One entry of a conversation's context window (kept in Redis, sent to the LLM).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatEntry {
    /// The inbound wamid for user entries, the reply id for assistant entries: makes appends
    /// idempotent.
    pub id: String,
    pub role: ChatRole,
    pub content: String,
    /// Unix seconds (the user's timestamp for user entries).
    pub at: i64,
}

impl std::fmt::Debug for ChatEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatEntry")
            .field("id", &self.id)
            .field("role", &self.role)
            .field("chars", &self.content.chars().count())
            .field("at", &self.at)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_never_shows_text_or_numbers() {
        let job = OutboundJob {
            tenant_id: "t".into(),
            phone_number_id: "200".into(),
            reply_id: "rp_x".into(),
            to: UserRef { wa_id: Some("15551234567".into()), user_id: None },
            conversation: "c".into(),
            in_reply_to: "wamid.1".into(),
            wamids: vec!["wamid.1".into()],
            last_received_at_ms: 0,
            kind: ReplyKind::Assistant,
            body: "secret words".into(),
            user_timestamp: 1,
            created_at_ms: 2,
            trace: Default::default(),
        };
        let dbg = format!("{job:?} {:?}", job.to);
        assert!(!dbg.contains("15551234567"));
        assert!(!dbg.contains("secret words"));
        let content = InboundContent::Text { body: "secret words".into() };
        assert!(!format!("{content:?}").contains("secret"));
        assert_eq!(format!("{:?}", ProfileName("Zelda".into())), "ProfileName(5 chars)");
    }

    #[test]
    fn envelopes_round_trip_as_json() {
        let ev = InboundEvent {
            tenant_id: "t".into(),
            phone_number_id: "200".into(),
            wamid: "wamid.1".into(),
            from: UserRef { wa_id: None, user_id: Some("US.1".into()) },
            conversation: "c".into(),
            timestamp: 1_760_000_000,
            received_at_ms: 1,
            content: InboundContent::Unsupported { message_type: "image".into() },
            profile_name: Some(ProfileName("Zelda".into())),
            trace: Default::default(),
        };
        let json = serde_json::to_string(&ev).unwrap();
        assert!(json.contains(r#""kind":"unsupported""#));
        assert_eq!(serde_json::from_str::<InboundEvent>(&json).unwrap(), ev);
        assert_eq!(ev.from.identity(), Some("US.1"));
    }
}
