//! String message headers and the dead-letter header names.

use std::collections::BTreeMap;

use lapin::types::{AMQPValue, FieldTable};
use switchboard_domain::DeadLetter;

/// Message headers as plain strings (the trace context and Switchboard's own metadata).
pub type Headers = BTreeMap<String, String>;

/// Dead-letter header names. None of them ever holds message text or an identity.
pub mod names {
    pub const REASON: &str = "x-sb-reason";
    pub const TENANT: &str = "x-sb-tenant";
    pub const ERROR_CODE: &str = "x-sb-error-code";
    pub const LAST_ERROR: &str = "x-sb-last-error";
    pub const ATTEMPTS: &str = "x-sb-attempts";
    pub const FIRST_ATTEMPT_AT: &str = "x-sb-first-attempt-at";
    pub const DEAD_LETTERED_AT: &str = "x-sb-dead-lettered-at";
    pub const SOURCE_QUEUE: &str = "x-sb-source-queue";
    pub const RECEIVED_AT: &str = "x-sb-received-at";
}

/// The headers describing a dead letter.
pub fn dead_letter_headers(dl: &DeadLetter) -> Headers {
    let mut h = Headers::new();
    h.insert(names::REASON.into(), dl.reason.as_str().into());
    if let Some(t) = &dl.tenant_id {
        h.insert(names::TENANT.into(), t.clone());
    }
    if let Some(code) = dl.error_code {
        h.insert(names::ERROR_CODE.into(), code.to_string());
    }
    h.insert(names::LAST_ERROR.into(), dl.last_error.clone());
    h.insert(names::ATTEMPTS.into(), dl.attempts.to_string());
    h.insert(names::FIRST_ATTEMPT_AT.into(), dl.first_attempt_at_ms.to_string());
    h.insert(names::DEAD_LETTERED_AT.into(), dl.dead_lettered_at_ms.to_string());
    h.insert(names::SOURCE_QUEUE.into(), dl.source_queue.clone());
    h
}

pub(crate) fn to_field_table(headers: &Headers) -> FieldTable {
    let mut table = FieldTable::default();
    for (k, v) in headers {
        table.insert(k.as_str().into(), AMQPValue::LongString(v.as_str().into()));
    }
    table
}

/// Reads a field table as strings; values that are not scalars (arrays, tables such as RabbitMQ's
/// `x-death`) are rendered in their debug form.
pub(crate) fn from_field_table(table: Option<&FieldTable>) -> Headers {
    let mut headers = Headers::new();
    let Some(table) = table else { return headers };
    for (k, v) in table {
        let value = match v {
            AMQPValue::LongString(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
            AMQPValue::ShortString(s) => s.as_str().to_string(),
            AMQPValue::Boolean(b) => b.to_string(),
            AMQPValue::ShortShortInt(i) => i.to_string(),
            AMQPValue::ShortShortUInt(i) => i.to_string(),
            AMQPValue::ShortInt(i) => i.to_string(),
            AMQPValue::ShortUInt(i) => i.to_string(),
            AMQPValue::LongInt(i) => i.to_string(),
            AMQPValue::LongUInt(i) => i.to_string(),
            AMQPValue::LongLongInt(i) => i.to_string(),
            AMQPValue::Timestamp(t) => t.to_string(),
            other => format!("{other:?}"),
        };
        headers.insert(k.as_str().to_string(), value);
    }
    headers
}
