//! Dispatcher state besides the send ledger: paused tenants, the index from sent WhatsApp
//! message ids back to reply parts, and a short-lived copy of each sent job (so a `failed`
//! status with a retryable code can send the part again).
//!
//! Keys:
//! * `{ns}:paused:{tenant}`: the reason sending is paused (no TTL: until an operator resumes);
//! * `{ns}:sent:{tenant}:{message_ref}`: `<reply id>|<part>` of a sent part;
//! * `{ns}:job:{tenant}:{reply id}`: the outbound job JSON.

use std::time::Duration;

use switchboard_domain::OutboundJob;

use crate::error::json_error;
use crate::subject::marker_time;
use crate::{millis, outbox, ClaimKey, Store, StoreError};

/// What the dispatcher checks before sending a reply, read in one round trip.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SendChecks {
    /// When the user's data was erased (Unix ms), while the marker lasts.
    pub erased_at: Option<i64>,
    /// Whether the user restricted processing.
    pub restricted: bool,
    /// Why the tenant's sending is paused, if it is.
    pub paused: Option<String>,
    /// The user's newest message time (Unix s): the start of the 24-hour window.
    pub last_inbound: Option<i64>,
    /// Whether the reply may go now as far as its conversation's order goes (see
    /// [`Store::reply_may_go`], which this reads without a script).
    pub may_go: bool,
}

impl Store {
    /// The erasure and restriction markers of the user, the tenant's pause, the user's last
    /// inbound time and the reply's place in its conversation's line, in one pipelined round trip
    /// (the dispatcher reads them for every reply).
    pub async fn send_checks(
        &self,
        tenant: &str,
        conversation: &str,
        reply_id: &str,
    ) -> Result<SendChecks, StoreError> {
        let mut conn = self.conn().await?;
        let mut pipe = redis::pipe();
        pipe.cmd("GET")
            .arg(self.marker_key("erased", tenant, conversation))
            .cmd("GET")
            .arg(self.marker_key("restricted", tenant, conversation))
            .cmd("GET")
            .arg(self.keys.paused(tenant))
            .cmd("GET")
            .arg(self.keys.conv(tenant, conversation, "window"));
        outbox::read_place(&mut pipe, &self.keys.conv(tenant, conversation, "outbox"), reply_id);
        type Raw = (Option<String>, Option<String>, Option<String>, Option<i64>, Vec<String>, Option<f64>);
        let (erased, restricted, paused, last_inbound, first, place): Raw = pipe.query_async(&mut conn).await?;
        let may_go = outbox::may_go(&first, place, reply_id);
        let (erased_at, restricted) = (marker_time(erased)?, marker_time(restricted)?.is_some());
        Ok(SendChecks { erased_at, restricted, paused, last_inbound, may_go })
    }

    /// Pauses the tenant's sending (e.g. its access token was refused), with a short reason.
    pub async fn pause_tenant(&self, tenant: &str, reason: &str) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        let _: () = redis::cmd("SET").arg(self.keys.paused(tenant)).arg(reason).query_async(&mut conn).await?;
        Ok(())
    }

    /// Lifts a pause. Returns whether the tenant was paused.
    pub async fn resume_tenant(&self, tenant: &str) -> Result<bool, StoreError> {
        let mut conn = self.conn().await?;
        let n: i64 = redis::cmd("DEL").arg(self.keys.paused(tenant)).query_async(&mut conn).await?;
        Ok(n == 1)
    }

    /// Why the tenant's sending is paused, if it is.
    pub async fn tenant_paused(&self, tenant: &str) -> Result<Option<String>, StoreError> {
        let mut conn = self.conn().await?;
        Ok(redis::cmd("GET").arg(self.keys.paused(tenant)).query_async(&mut conn).await?)
    }

    /// Remembers that `wamid` is part `part` of reply `reply_id`, and keeps the job for `ttl`.
    pub async fn record_sent(
        &self,
        job: &OutboundJob,
        wamid: &str,
        part: usize,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let json = serde_json::to_string(job).map_err(|e| json_error("outbound job", &e))?;
        let mut conn = self.conn().await?;
        let _: () = redis::pipe()
            .cmd("SET")
            .arg(self.keys.sent(&job.tenant_id, wamid))
            .arg(format!("{}|{part}", job.reply_id))
            .arg("PX")
            .arg(millis(ttl))
            .ignore()
            .cmd("SET")
            .arg(self.keys.job(&job.tenant_id, &job.reply_id))
            .arg(json)
            .arg("PX")
            .arg(millis(ttl))
            .ignore()
            .query_async(&mut conn)
            .await?;
        Ok(())
    }

    /// The job and part a sent WhatsApp message belongs to, while still remembered.
    pub async fn sent_part(&self, tenant: &str, wamid: &str) -> Result<Option<(OutboundJob, usize)>, StoreError> {
        let mut conn = self.conn().await?;
        let Some(entry): Option<String> =
            redis::cmd("GET").arg(self.keys.sent(tenant, wamid)).query_async(&mut conn).await?
        else {
            return Ok(None);
        };
        let Some((reply_id, part)) = entry.rsplit_once('|') else { return Ok(None) };
        let part: usize = part.parse().map_err(|_| StoreError::decode("sent part index"))?;
        let json: Option<String> =
            redis::cmd("GET").arg(self.keys.job(tenant, reply_id)).query_async(&mut conn).await?;
        match json {
            Some(j) => Ok(Some((serde_json::from_str(&j).map_err(|e| json_error("outbound job", &e))?, part))),
            None => Ok(None),
        }
    }

    /// Counts one more resend of a reply after a `failed` status; returns the count so far.
    pub async fn count_resend(&self, tenant: &str, reply_id: &str, ttl: Duration) -> Result<u32, StoreError> {
        let key = format!("{}:resends:{tenant}:{reply_id}", self.keys.namespace());
        let mut conn = self.conn().await?;
        let (n, _): (u32, i64) = redis::pipe()
            .cmd("INCR")
            .arg(&key)
            .cmd("PEXPIRE")
            .arg(&key)
            .arg(millis(ttl))
            .query_async(&mut conn)
            .await?;
        Ok(n)
    }

    /// Forgets that a part was sent, so the next delivery of its job sends it again.
    pub async fn unsend_part(&self, tenant: &str, reply_id: &str, part: usize) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        let _: i64 = redis::cmd("DEL")
            .arg(self.keys.claim(&ClaimKey::send(tenant, reply_id, part)))
            .query_async(&mut conn)
            .await?;
        Ok(())
    }

    /// The user's last inbound message time (Unix seconds) in the conversation, if within the
    /// last ~25 hours: the start of WhatsApp's 24-hour customer service window.
    pub async fn last_inbound(&self, tenant: &str, conversation: &str) -> Result<Option<i64>, StoreError> {
        let mut conn = self.conn().await?;
        Ok(redis::cmd("GET").arg(self.keys.conv(tenant, conversation, "window")).query_async(&mut conn).await?)
    }
}
