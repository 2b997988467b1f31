//! The Redis store: idempotency claims, context windows, send ledger, statuses. The only crate
//! that uses Redis.
//!
//! # Keys
//!
//! Every key starts with the namespace `ns` given to [`Store::connect`]. Tenants and
//! conversations are safe strings (tenant ids, keyed pseudonyms); WhatsApp message ids, which
//! encode the user's phone number, appear in key names only as their hash
//! ([`message_ref`](switchboard_domain::message_ref)). `{t:c}` is `{tenant}:{conversation}` in
//! literal braces: a Redis Cluster hash tag keeping one conversation's keys on one slot.
//!
//! | key | type | written by | TTL |
//! | --- | --- | --- | --- |
//! | `{ns}:claim:{tenant}:send:{reply_id}:{part}` | string: `p:<token>` / `d:<wamid>` | [`Store::claim`], [`Store::complete`] (send ledger) | the lease, then the caller's `ttl` |
//! | `{ns}:claim:{tenant}:conv:{t:c}` | string `p:<token>` | the conversation lease ([`lease::Lease`]) | the lease, renewed |
//! | `{ns}:conv:{t:c}:pending` | sorted set of wamids (score: user timestamp, then arrival) | [`Store::enqueue_message`] | idempotency ttl, reset on enqueue |
//! | `{ns}:conv:{t:c}:events` | hash wamid → inbound event JSON | same | same |
//! | `{ns}:conv:{t:c}:unpublished` | hash reply id → outbound job JSON | [`Store::commit_turn`] | idempotency ttl |
//! | `{ns}:conv:{t:c}:outbox` | sorted set of reply ids, scored in commit order | [`Store::commit_turn`]; removed by [`Store::reply_settled`] | idempotency ttl |
//! | `{ns}:msg:{t:c}:{message_ref}` | string `t:<reply>` / `d:<reply>` / `n` | commit / finish / no-reply | idempotency ttl |
//! | `{ns}:ctx:{t:c}` | list of JSON [`ChatEntry`], oldest first, at most [`CONTEXT_WINDOW_MESSAGES`] | [`Store::append_context`], [`Store::commit_turn`] | context ttl, reset on every append |
//! | `{ns}:status:{tenant}:{message_ref}` | hash: `status`, `rank`, `timestamp`, `error_codes` (JSON), `reply_id`, `updated_at_ms` | [`Store::record_status`] | the caller's `ttl`, reset on every write |
//!
//! Every key has a TTL, so nothing the store writes lives forever. Durations are sent to Redis
//! in milliseconds, at least 1 ms and at most ten years.
//!
//! # Modules
//!
//! * `keys`: the key layout and [`ClaimKey`];
//! * `claim`: idempotency / exclusive work with a lease (`p:` in progress → `d:` done);
//! * `context`: the conversation window sent to the LLM;
//! * `conversation`: sequencing state (pending messages, message states, fenced turn commits);
//! * `lease`: renewed claims that notice a takeover;
//! * `outbox`: the order in which a conversation's replies are sent;
//! * `status`: monotonic delivery statuses;
//! * `scripts`: the Lua scripts (one per multi-step update, loaded once, `EVALSHA`);
//! * `error`: [`StoreError`], whose messages never hold stored values.
//!
//! [`ChatEntry`]: switchboard_domain::ChatEntry
//! [`CONTEXT_WINDOW_MESSAGES`]: switchboard_domain::CONTEXT_WINDOW_MESSAGES

mod claim;
mod context;
mod conversation;
mod dispatch;
mod error;
mod keys;
pub mod lease;
mod outbox;
mod persist;
mod profile;
mod ratelimit;
mod scripts;
mod status;
mod subject;

use std::sync::Arc;
use std::time::Duration;

use deadpool_redis::{Manager, Pool, Runtime};
use redis::AsyncConnectionConfig;

pub use claim::ClaimOutcome;
pub use conversation::MessageState;
pub use dispatch::SendChecks;
pub use error::StoreError;
pub use keys::ClaimKey;
pub use persist::persist;
pub use ratelimit::Rate;
pub use status::{status_rank, StatusRecord, StatusUpdate};
pub use subject::{AuditRecord, DeliveryRecord, ErasureReport, MessageRecord, StoredKey, SubjectExport};

use keys::Keys;

/// Time allowed to open a TCP connection to Redis.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Time allowed for one command's answer.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);
/// Time allowed to wait for a free pooled connection.
const POOL_WAIT_TIMEOUT: Duration = Duration::from_secs(2);
/// Overall budget of [`Store::ping`] (readiness probes must answer quickly).
const PING_TIMEOUT: Duration = Duration::from_secs(1);
/// Longest TTL or lease the store will set (Redis rejects expiry times that overflow).
const MAX_TTL_MS: u64 = 10 * 365 * 24 * 3600 * 1000;

/// Handle on the Redis store: a connection pool and a namespace. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    pool: Pool,
    keys: Arc<Keys>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL (which may hold a password) is deliberately not kept or shown.
        let status = self.pool.status();
        f.debug_struct("Store")
            .field("namespace", &self.keys.namespace())
            .field("pool_size", &status.size)
            .field("pool_max_size", &status.max_size)
            .finish()
    }
}

impl Store {
    /// Builds the pool (at most `pool_size` multiplexed connections, at least one) and PINGs
    /// Redis once, so a wrong URL or an unreachable server fails at start-up.
    ///
    /// `namespace` prefixes every key; it must be non-empty and made of `[A-Za-z0-9_.:-]`.
    pub async fn connect(redis_url: &str, namespace: &str, pool_size: usize) -> Result<Self, StoreError> {
        if !keys::valid_namespace(namespace) {
            return Err(StoreError::Pool("invalid namespace: use 1-64 characters of [A-Za-z0-9_.:-]".to_owned()));
        }
        let conn_config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT));
        // The URL is not quoted in the error: it may carry a password.
        let manager = Manager::new_with_config(redis_url, conn_config)
            .map_err(|e| StoreError::Pool(format!("invalid redis url ({})", e.category())))?;
        let pool = Pool::builder(manager)
            .max_size(pool_size.max(1))
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(POOL_WAIT_TIMEOUT))
            .create_timeout(Some(CONNECT_TIMEOUT))
            .recycle_timeout(Some(RESPONSE_TIMEOUT))
            .build()
            .map_err(|e| StoreError::Pool(format!("cannot build pool: {e}")))?;
        let store = Self { pool, keys: Arc::new(Keys::new(namespace)) };
        store.ping().await?;
        Ok(store)
    }

    /// The namespace every key starts with.
    pub fn namespace(&self) -> &str {
        self.keys.namespace()
    }

    /// PINGs Redis through the pool, within about a second. For readiness probes.
    pub async fn ping(&self) -> Result<(), StoreError> {
        tokio::time::timeout(PING_TIMEOUT, async {
            let mut conn = self.conn().await?;
            let pong: String = redis::cmd("PING").query_async(&mut conn).await?;
            if pong == "PONG" {
                Ok(())
            } else {
                Err(StoreError::decode("unexpected PING reply"))
            }
        })
        .await?
    }

    /// A pooled connection.
    async fn conn(&self) -> Result<deadpool_redis::Connection, StoreError> {
        Ok(self.pool.get().await?)
    }
}

/// A duration as Redis milliseconds, clamped to `1..=MAX_TTL_MS` (0 would mean "delete now"
/// for `PEXPIRE` and is an error for `SET PX`).
fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).clamp(1, MAX_TTL_MS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn millis_is_clamped() {
        assert_eq!(millis(Duration::ZERO), 1);
        assert_eq!(millis(Duration::from_micros(10)), 1);
        assert_eq!(millis(Duration::from_millis(1500)), 1500);
        assert_eq!(millis(Duration::MAX), MAX_TTL_MS);
    }
}
