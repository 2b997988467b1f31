//! Domain types and message envelopes shared by every Switchboard role.
//!
//! Nothing here does I/O. The envelopes are the JSON bodies of the AMQP messages that flow
//! between the roles:
//!
//! * [`InboundEvent`]: ingress → worker, one per user message of a webhook batch;
//! * [`StatusEvent`]: ingress → dispatcher, one per delivery status of a webhook batch;
//! * [`OutboundJob`]: worker → dispatcher, one reply to send;
//! * [`DeadLetter`]: metadata carried (as headers) by anything parked in the dead-letter queue.
//!
//! Identities: phone numbers and WhatsApp ids travel inside message bodies (the dispatcher needs
//! them to send) but never in logs, spans, metric labels, AMQP headers or Redis keys. Those use
//! the [`Pseudonymizer`]'s keyed hash instead.

mod envelope;
mod ids;
mod split;

pub use envelope::*;
pub use ids::*;
pub use split::{split_message, MAX_TEXT_CHARS};

/// The privacy policy promises that the assistant's context is limited to the last 10 messages.
pub const CONTEXT_WINDOW_MESSAGES: usize = 10;

/// Current time as Unix milliseconds.
pub fn now_ms() -> i64 {
    let now = time::OffsetDateTime::now_utc();
    (now.unix_timestamp_nanos() / 1_000_000) as i64
}
