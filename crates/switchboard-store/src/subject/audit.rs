//! The audit log of one tenant: admin actions and erasures (who, what, when, about whom),
//! kept for the tenant's audit retention and exportable by the tenant.
//!
//! One Redis stream per tenant, `{ns}:audit:{tenant}`, one entry per record (field `r`: the
//! record's JSON). Entry ids are the Redis server's clock in ms, so "since" reads are id ranges.
//! Every write trims entries older than the retention (`XADD … MINID`) and sets the key's TTL to
//! the retention; every read trims too, so expired records are gone, not just hidden.

use std::sync::LazyLock;
use std::time::Duration;

use redis::Script;
use serde::{Deserialize, Serialize};

use crate::error::json_error;
use crate::{millis, Store, StoreError};

/// One audited action. Holds no text, number or wamid: the subject is its conversation key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// When it happened, Unix ms (the caller's clock).
    pub at_ms: i64,
    /// Who acted: `operator`, `tenant:<id>` (admin API; never a token) or `user` (the
    /// end-user's own command).
    pub actor: String,
    /// What was done: `export`, `rectify`, `erase`, `restrict`, `lift_restriction`, `block`,
    /// `audit_export`, … and the user's own `stop`, `start`, `forget`.
    pub action: String,
    /// The conversation key of the end-user concerned (a keyed hash), if any.
    pub subject_ref: Option<String>,
    /// A short, text-free description of the outcome (counts, kinds, `not_found`).
    pub detail: String,
}

/// `KEYS[1]` stream; `ARGV[1]` record JSON; `ARGV[2]` retention ms. Appends, trims by age on the
/// server's clock, sets the TTL. Returns the entry id.
static APPEND: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local min = now - tonumber(ARGV[2])
if min < 0 then min = 0 end
local id = redis.call('XADD', KEYS[1], 'MINID', '=', string.format('%d', min), '*', 'r', ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return id
"#,
    )
});

/// `KEYS[1]` stream; `ARGV[1]` since ms; `ARGV[2]` retention ms; `ARGV[3]` limit. Trims by age,
/// then returns the record JSONs from `max(since, now - retention)` on, oldest first.
static READ: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local min = now - tonumber(ARGV[2])
if min < 0 then min = 0 end
if redis.call('EXISTS', KEYS[1]) == 0 then return {} end
redis.call('XTRIM', KEYS[1], 'MINID', '=', string.format('%d', min))
local since = math.max(tonumber(ARGV[1]), min)
local out = {}
for _, entry in ipairs(redis.call('XRANGE', KEYS[1], string.format('%d', since), '+', 'COUNT', ARGV[3])) do
  local fields = entry[2]
  for i = 1, #fields, 2 do
    if fields[i] == 'r' then table.insert(out, fields[i + 1]) end
  end
end
return out
"#,
    )
});

impl Store {
    /// Appends `record` to the tenant's audit log, dropping records older than `retention`.
    /// Returns the entry id.
    pub async fn audit(&self, tenant: &str, record: &AuditRecord, retention: Duration) -> Result<String, StoreError> {
        let json = serde_json::to_string(record).map_err(|e| json_error("audit record", &e))?;
        let mut conn = self.conn().await?;
        let id: String =
            APPEND.key(self.audit_key(tenant)).arg(json).arg(millis(retention)).invoke_async(&mut conn).await?;
        Ok(id)
    }

    /// The tenant's audit records written at or after `since_ms` (server clock) and within
    /// `retention`, oldest first, at most `limit`.
    pub async fn audit_log(
        &self,
        tenant: &str,
        since_ms: i64,
        retention: Duration,
        limit: usize,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        let mut conn = self.conn().await?;
        let raw: Vec<String> = READ
            .key(self.audit_key(tenant))
            .arg(since_ms.max(0))
            .arg(millis(retention))
            .arg(limit.max(1))
            .invoke_async(&mut conn)
            .await?;
        raw.iter().map(|r| serde_json::from_str(r).map_err(|e| json_error("audit record", &e))).collect()
    }

    /// `{ns}:audit:{tenant}`
    fn audit_key(&self, tenant: &str) -> String {
        format!("{}:audit:{tenant}", self.keys.namespace())
    }
}
