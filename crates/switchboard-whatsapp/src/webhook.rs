//! Lenient serde types for the webhook POST envelope (REFERENCE §3, §10).
//!
//! Meta adds fields and message types all the time, so:
//! * every field is optional or defaults to empty, unknown keys are ignored;
//! * the message `type` is a plain string with optional per-type objects;
//! * identifiers accept strings or numbers, timestamps accept strings or numbers in seconds or
//!   milliseconds;
//! * a malformed element of `messages`/`statuses`/`contacts`/`errors`, or a malformed per-type
//!   object, degrades to an empty value instead of failing the whole batch.
//!
//! Only the skeleton (`entry[]`, `changes[]`) must have the right shape; otherwise
//! [`parse_webhook`] reports [`WebhookParseError::Shape`].
//!
//! Types holding message content or user identities have redacted `Debug` output.

use serde::Deserialize;

use crate::lenient::{lenient, lenient_i64, lenient_string, lenient_timestamp, lenient_vec, null_as_default};

/// Why a webhook body could not be read. The strings never contain body content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookParseError {
    /// The body is not JSON at all.
    #[error("webhook body is not JSON: {0}")]
    NotJson(String),
    /// The body is JSON, but not a webhook envelope we can read.
    #[error("webhook body has an unexpected shape: {0}")]
    Shape(String),
}

/// Parses a webhook body (after its signature was verified on the same raw bytes).
pub fn parse_webhook(body: &[u8]) -> Result<WebhookPayload, WebhookParseError> {
    // serde would happily read a struct from a JSON array: insist on an object first.
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(match serde_json::from_slice::<serde::de::IgnoredAny>(body) {
            Ok(_) => WebhookParseError::Shape("the top-level value is not an object".into()),
            Err(e) => WebhookParseError::NotJson(json_error_summary(&e)),
        });
    }
    serde_json::from_slice(body).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => WebhookParseError::Shape(json_error_summary(&e)),
        _ => WebhookParseError::NotJson(json_error_summary(&e)),
    })
}

/// A content-free description of a serde_json error: its category and position only (the
/// message of a data error can quote the offending value).
pub(crate) fn json_error_summary(e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    let category = match e.classify() {
        Category::Io => "io error",
        Category::Syntax => "syntax error",
        Category::Data => "unexpected data",
        Category::Eof => "unexpected end of input",
    };
    format!("{category} at line {} column {}", e.line(), e.column())
}

/// Converts a raw Unix timestamp to seconds: values `>= 1e12` are taken as milliseconds.
pub fn timestamp_seconds(raw: i64) -> i64 {
    if raw >= 1_000_000_000_000 {
        raw / 1000
    } else {
        raw
    }
}

/// The whole POST body.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct WebhookPayload {
    /// `whatsapp_business_account` for WhatsApp.
    #[serde(deserialize_with = "lenient_string")]
    pub object: Option<String>,
    #[serde(deserialize_with = "null_as_default")]
    pub entry: Vec<Entry>,
}

/// One `entry[]` item: one WhatsApp Business Account.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Entry {
    /// The WABA id.
    #[serde(deserialize_with = "lenient_string")]
    pub id: Option<String>,
    #[serde(deserialize_with = "null_as_default")]
    pub changes: Vec<Change>,
}

/// One `changes[]` item.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Change {
    /// The subscription field; only `messages` carries messages and statuses.
    #[serde(deserialize_with = "lenient_string")]
    pub field: Option<String>,
    #[serde(deserialize_with = "lenient")]
    pub value: Option<ChangeValue>,
}

/// The `value` of a `messages` change.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ChangeValue {
    #[serde(deserialize_with = "lenient")]
    pub metadata: Option<Metadata>,
    #[serde(deserialize_with = "lenient_vec")]
    pub contacts: Vec<Contact>,
    #[serde(deserialize_with = "lenient_vec")]
    pub messages: Vec<Message>,
    #[serde(deserialize_with = "lenient_vec")]
    pub statuses: Vec<Status>,
    /// Out-of-band errors not tied to one message (`value.errors`).
    #[serde(deserialize_with = "lenient_vec")]
    pub errors: Vec<ErrorInfo>,
}

/// Which business number the change is for.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Metadata {
    #[serde(deserialize_with = "lenient_string")]
    pub display_phone_number: Option<String>,
    /// The id to route on (and to send from).
    #[serde(deserialize_with = "lenient_string")]
    pub phone_number_id: Option<String>,
}

/// A `contacts[]` item: a sender's profile.
#[derive(Clone, Default, Deserialize)]
#[serde(default)]
pub struct Contact {
    #[serde(deserialize_with = "lenient_string")]
    pub wa_id: Option<String>,
    /// Business-scoped user id (BSUID).
    #[serde(deserialize_with = "lenient_string")]
    pub user_id: Option<String>,
    #[serde(deserialize_with = "lenient")]
    pub profile: Option<Profile>,
}

/// A contact's profile.
#[derive(Clone, Default, Deserialize)]
#[serde(default)]
pub struct Profile {
    pub name: Option<String>,
    pub username: Option<String>,
}

/// A `messages[]` item: one user message.
#[derive(Clone, Default, Deserialize)]
#[serde(default)]
pub struct Message {
    /// The wamid.
    #[serde(deserialize_with = "lenient_string")]
    pub id: Option<String>,
    /// The sender's phone number (`wa_id`); absent for username users.
    #[serde(deserialize_with = "lenient_string")]
    pub from: Option<String>,
    /// The sender's BSUID.
    #[serde(deserialize_with = "lenient_string")]
    pub from_user_id: Option<String>,
    /// Unix seconds (normalised from milliseconds if needed).
    #[serde(deserialize_with = "lenient_timestamp")]
    pub timestamp: Option<i64>,
    /// `text`, `image`, `interactive`, … kept verbatim, unknown types included.
    #[serde(rename = "type", deserialize_with = "lenient_string")]
    pub kind: Option<String>,
    #[serde(deserialize_with = "lenient")]
    pub text: Option<TextObject>,
    #[serde(deserialize_with = "lenient")]
    pub interactive: Option<Interactive>,
    #[serde(deserialize_with = "lenient")]
    pub button: Option<ButtonObject>,
    #[serde(deserialize_with = "lenient")]
    pub reaction: Option<Reaction>,
}

/// `text` of a text message.
#[derive(Clone, Default, Deserialize)]
#[serde(default)]
pub struct TextObject {
    pub body: Option<String>,
}

/// `interactive` of an interactive reply.
#[derive(Clone, Default, Deserialize)]
#[serde(default)]
pub struct Interactive {
    /// `button_reply`, `list_reply`, `nfm_reply`, …
    #[serde(rename = "type", deserialize_with = "lenient_string")]
    pub kind: Option<String>,
    #[serde(deserialize_with = "lenient")]
    pub button_reply: Option<ReplyChoice>,
    #[serde(deserialize_with = "lenient")]
    pub list_reply: Option<ReplyChoice>,
}

/// The button or list row the user tapped.
#[derive(Clone, Default, Deserialize)]
#[serde(default)]
pub struct ReplyChoice {
    #[serde(deserialize_with = "lenient_string")]
    pub id: Option<String>,
    pub title: Option<String>,
}

/// `button` of a template quick-reply.
#[derive(Clone, Default, Deserialize)]
#[serde(default)]
pub struct ButtonObject {
    pub payload: Option<String>,
    pub text: Option<String>,
}

/// `reaction`: empty or absent `emoji` means the reaction was removed.
#[derive(Clone, Default, Deserialize)]
#[serde(default)]
pub struct Reaction {
    #[serde(deserialize_with = "lenient_string")]
    pub message_id: Option<String>,
    pub emoji: Option<String>,
}

/// A `statuses[]` item: the delivery status of one of our outbound messages.
#[derive(Clone, Default, Deserialize)]
#[serde(default)]
pub struct Status {
    /// The wamid of our message.
    #[serde(deserialize_with = "lenient_string")]
    pub id: Option<String>,
    /// `sent`, `delivered`, `read`, `played`, `failed`, …
    #[serde(deserialize_with = "lenient_string")]
    pub status: Option<String>,
    #[serde(deserialize_with = "lenient_timestamp")]
    pub timestamp: Option<i64>,
    #[serde(deserialize_with = "lenient_string")]
    pub recipient_id: Option<String>,
    #[serde(deserialize_with = "lenient_string")]
    pub recipient_user_id: Option<String>,
    /// Echo of what we set on send (our reply id).
    #[serde(deserialize_with = "lenient_string")]
    pub biz_opaque_callback_data: Option<String>,
    #[serde(deserialize_with = "lenient_vec")]
    pub errors: Vec<ErrorInfo>,
}

/// An error object (`value.errors[]`, `statuses[].errors[]`); only the code is kept.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ErrorInfo {
    #[serde(deserialize_with = "lenient_i64")]
    pub code: Option<i64>,
}

/// `Debug` that shows only the type name: these hold message text or user identities.
macro_rules! redacted_debug {
    ($($ty:ty),* $(,)?) => {$(
        impl std::fmt::Debug for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(concat!(stringify!($ty), "([redacted])"))
            }
        }
    )*};
}

redacted_debug!(Contact, Profile, TextObject, Interactive, ReplyChoice, ButtonObject, Reaction);

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Message")
            .field("id", &self.id)
            .field("type", &self.kind)
            .field("timestamp", &self.timestamp)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Status")
            .field("id", &self.id)
            .field("status", &self.status)
            .field("timestamp", &self.timestamp)
            .field("errors", &self.errors)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(json: &str) -> Message {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn timestamps_accept_strings_numbers_and_milliseconds() {
        for raw in [
            r#"{"timestamp":"1760000000"}"#,
            r#"{"timestamp":1760000000}"#,
            r#"{"timestamp":"1760000000000"}"#,
            r#"{"timestamp":1760000000123}"#,
            r#"{"timestamp":" 1760000000 "}"#,
        ] {
            assert_eq!(message(raw).timestamp, Some(1_760_000_000), "{raw}");
        }
        for raw in [r#"{"timestamp":"soon"}"#, r#"{"timestamp":null}"#, r#"{"timestamp":-5}"#, "{}"] {
            assert_eq!(message(raw).timestamp, None, "{raw}");
        }
        assert_eq!(timestamp_seconds(999_999_999_999), 999_999_999_999);
    }

    #[test]
    fn unknown_fields_and_types_are_tolerated() {
        let m = message(
            r#"{"id":"wamid.X","from":15551234567,"type":"hologram","hologram":{"x":1},
                "text":"not an object","interactive":{"type":"nfm_reply","nfm_reply":{}}}"#,
        );
        assert_eq!(m.id.as_deref(), Some("wamid.X"));
        assert_eq!(m.from.as_deref(), Some("15551234567"));
        assert_eq!(m.kind.as_deref(), Some("hologram"));
        assert!(m.text.is_none());
        assert_eq!(m.interactive.and_then(|i| i.kind).as_deref(), Some("nfm_reply"));
    }

    #[test]
    fn malformed_elements_degrade_to_defaults() {
        let v: ChangeValue = serde_json::from_str(
            r#"{"messages":["junk",{"id":"wamid.A"}],"statuses":"x","errors":[{"code":"130429"}]}"#,
        )
        .unwrap();
        assert_eq!(v.messages.len(), 2);
        assert!(v.messages[0].id.is_none());
        assert!(v.statuses.is_empty());
        assert_eq!(v.errors[0].code, Some(130429));
    }

    #[test]
    fn parse_errors_are_classified_and_content_free() {
        assert!(matches!(parse_webhook(b"hello secret"), Err(WebhookParseError::NotJson(_))));
        assert!(matches!(parse_webhook(b""), Err(WebhookParseError::NotJson(_))));
        assert!(matches!(parse_webhook(b"{\"entry\":["), Err(WebhookParseError::NotJson(_))));
        for body in [&br#"{"entry":"secret words"}"#[..], b"[]", b"[1,2]", b"\"secret words\"", b"null"] {
            let err = parse_webhook(body).unwrap_err();
            assert!(matches!(err, WebhookParseError::Shape(_)), "{err:?}");
            assert!(!err.to_string().contains("secret"), "{err}");
        }
        let err = parse_webhook(br#"{"entry":[{"changes":"secret words"}]}"#).unwrap_err();
        assert!(matches!(err, WebhookParseError::Shape(_)) && !err.to_string().contains("secret"));
        assert!(parse_webhook(b"{}").unwrap().entry.is_empty());
        assert!(parse_webhook(br#"{"entry":null}"#).unwrap().entry.is_empty());
    }

    #[test]
    fn debug_output_hides_content_and_identities() {
        let m = message(r#"{"id":"wamid.A","from":"15551234567","type":"text","text":{"body":"secret"}}"#);
        let dbg = format!("{m:?} {:?}", m.text);
        assert!(dbg.contains("wamid.A"));
        assert!(!dbg.contains("15551234567") && !dbg.contains("secret"), "{dbg}");
    }
}
