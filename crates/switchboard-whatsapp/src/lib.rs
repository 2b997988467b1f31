//! WhatsApp Cloud API: webhook types, signatures, Graph API client and error classification.
//!
//! What lives where:
//!
//! * [`signature`]: `X-Hub-Signature-256` verification over the raw webhook body
//!   ([`verify_signature`], with several secrets for rotation) and [`sign`] for tests and tools;
//! * [`webhook`]: lenient serde types for the webhook envelope and [`parse_webhook`];
//! * [`split`]: [`split_batch`] turns a parsed webhook into the domain's
//!   [`InboundEvent`](switchboard_domain::InboundEvent)s and
//!   [`StatusEvent`](switchboard_domain::StatusEvent)s, routed per tenant and deduplicated;
//! * [`graph`]: [`GraphClient`], sending text messages and read receipts / typing indicators;
//! * [`errors`]: [`classify`] Graph/WhatsApp errors into an [`ErrorClass`] (retry or not, and
//!   how).
//!
//! Privacy: nothing here logs or formats message text, phone numbers, BSUIDs or access tokens.
//! Types holding them have redacted `Debug` output, errors carry only statuses and codes.

pub mod errors;
pub mod graph;
mod lenient;
pub mod signature;
pub mod split;
pub mod webhook;

pub use errors::{classify, ErrorClass};
pub use graph::{GraphClient, GraphError, SendOk, TextMessage};
pub use signature::{sign, verify_signature};
pub use split::{split_batch, SplitBatch};
pub use webhook::{parse_webhook, WebhookParseError, WebhookPayload};
