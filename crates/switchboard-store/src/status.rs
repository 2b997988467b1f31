//! Delivery statuses of our outbound messages, kept monotonic: a late `delivered` never
//! overwrites `read`.

use std::time::Duration;

use serde::Serialize;
use switchboard_domain::now_ms;

use crate::error::json_error;
use crate::{millis, scripts, Store, StoreError};

/// One status report to record.
#[derive(Debug, Clone, Copy)]
pub struct StatusUpdate<'a> {
    /// The wamid of our outbound message.
    pub wamid: &'a str,
    /// `sent`, `delivered`, `read`, `played`, `failed`, or anything newer (kept verbatim).
    pub status: &'a str,
    /// When WhatsApp says it happened, Unix seconds.
    pub timestamp: i64,
    /// Graph error codes (for `failed`).
    pub error_codes: &'a [i64],
    /// Our reply id, when the webhook echoed it back.
    pub reply_id: Option<&'a str>,
}

/// The stored status of one outbound message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatusRecord {
    pub status: String,
    pub timestamp: i64,
    pub error_codes: Vec<i64>,
    pub reply_id: Option<String>,
    /// When the status last changed, Unix milliseconds.
    pub updated_at_ms: i64,
    /// `true` when the update just recorded was not newer than the stored status (an
    /// out-of-order or duplicate report) and was ignored. Always `false` from [`Store::status`].
    pub regressed_ignored: bool,
}

/// The order of delivery statuses: `sent` 1, `delivered` 2, `read` 3, `played` 4, `failed` 5
/// (terminal); anything else 0 (recorded only when nothing is known yet).
pub fn status_rank(status: &str) -> u8 {
    match status {
        "sent" => 1,
        "delivered" => 2,
        "read" => 3,
        "played" => 4,
        "failed" => 5,
        _ => 0,
    }
}

impl Store {
    /// Records a status report for `tenant`, applying it only if it ranks above the stored
    /// status (see [`status_rank`]). The reply id is kept once known, even from an update that
    /// is otherwise ignored; error codes are stored when an update carrying them is applied.
    /// The record's TTL is reset to `ttl`. Returns the resulting record.
    pub async fn record_status(
        &self,
        tenant: &str,
        update: &StatusUpdate<'_>,
        ttl: Duration,
    ) -> Result<StatusRecord, StoreError> {
        let codes = if update.error_codes.is_empty() {
            String::new()
        } else {
            serde_json::to_string(update.error_codes).map_err(|e| json_error("error codes", &e))?
        };
        let mut conn = self.conn().await?;
        let reply: Vec<Option<String>> = scripts::RECORD_STATUS
            .key(self.keys.status(tenant, update.wamid))
            .arg(update.status)
            .arg(status_rank(update.status))
            .arg(update.timestamp)
            .arg(codes)
            .arg(update.reply_id.unwrap_or(""))
            .arg(now_ms())
            .arg(millis(ttl))
            .invoke_async(&mut conn)
            .await?;
        let mut it = reply.into_iter();
        let applied = it.next().flatten();
        let fields: Vec<Option<String>> = it.collect();
        let mut record =
            parse_record(fields)?.ok_or_else(|| StoreError::decode("status reply: no status after write"))?;
        record.regressed_ignored = applied.as_deref() != Some("1");
        if record.regressed_ignored {
            tracing::debug!(tenant, message = %switchboard_domain::message_ref(update.wamid), status = update.status, "status ignored");
        }
        Ok(record)
    }

    /// The stored status of an outbound message, if any.
    pub async fn status(&self, tenant: &str, wamid: &str) -> Result<Option<StatusRecord>, StoreError> {
        let mut conn = self.conn().await?;
        let fields: Vec<Option<String>> = redis::cmd("HMGET")
            .arg(self.keys.status(tenant, wamid))
            .arg(&["status", "timestamp", "error_codes", "reply_id", "updated_at_ms"])
            .query_async(&mut conn)
            .await?;
        parse_record(fields)
    }
}

/// Decodes `[status, timestamp, error_codes, reply_id, updated_at_ms]`; `None` if no status.
fn parse_record(fields: Vec<Option<String>>) -> Result<Option<StatusRecord>, StoreError> {
    let [status, timestamp, codes, reply_id, updated]: [Option<String>; 5] =
        fields.try_into().map_err(|_| StoreError::decode("status record: wrong field count"))?;
    let Some(status) = status else {
        return Ok(None);
    };
    let int = |v: Option<String>, what: &str| -> Result<i64, StoreError> {
        v.as_deref().unwrap_or("0").parse().map_err(|_| StoreError::decode(what))
    };
    let error_codes = match codes.as_deref() {
        None | Some("") => Vec::new(),
        Some(json) => serde_json::from_str(json).map_err(|e| json_error("status error codes", &e))?,
    };
    Ok(Some(StatusRecord {
        status,
        timestamp: int(timestamp, "status record: bad timestamp")?,
        error_codes,
        reply_id: reply_id.filter(|r| !r.is_empty()),
        updated_at_ms: int(updated, "status record: bad updated_at_ms")?,
        regressed_ignored: false,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(v: &[Option<&str>]) -> Vec<Option<String>> {
        v.iter().map(|x| x.map(str::to_owned)).collect()
    }

    #[test]
    fn ranks() {
        assert!(status_rank("sent") < status_rank("delivered"));
        assert!(status_rank("delivered") < status_rank("read"));
        assert!(status_rank("read") < status_rank("played"));
        assert!(status_rank("played") < status_rank("failed"));
        assert_eq!(status_rank("deleted"), 0);
    }

    #[test]
    fn parses_records() {
        assert_eq!(parse_record(f(&[None, None, None, None, None])).unwrap(), None);
        let r = parse_record(f(&[Some("failed"), Some("7"), Some("[131047]"), None, Some("9")])).unwrap().unwrap();
        assert_eq!(r.error_codes, vec![131047]);
        assert_eq!((r.timestamp, r.updated_at_ms, r.reply_id), (7, 9, None));
        assert!(parse_record(f(&[Some("x"), Some("nan"), None, None, None])).is_err());
        assert!(parse_record(f(&[Some("x")])).is_err());
    }
}
