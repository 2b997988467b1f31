//! Claims: idempotency records that double as exclusive leases.
//!
//! A claim key holds `p:<token>` while someone works on it (with a lease as its TTL) and
//! `d:<result>` once the work is done (with a longer TTL). Whoever finds `d:` skips the work
//! and reuses the result.

use std::time::Duration;

use crate::{millis, scripts, ClaimKey, Store, StoreError};

/// The state of a claim as seen by a claimant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimOutcome {
    /// The lease is ours (freshly taken, or re-entered with the same token and extended).
    Acquired,
    /// The work was done; this is the result stored by [`Store::complete`].
    Done(String),
    /// Someone else holds a live lease, which expires in `ttl_ms` (-1: no expiry, -2: gone).
    Busy { ttl_ms: i64 },
}

impl Store {
    /// Takes the claim for `token` with a lease, or reports that it is done or busy. One
    /// atomic script: missing → `SET p:<token> PX lease` → [`ClaimOutcome::Acquired`]; `d:` →
    /// [`ClaimOutcome::Done`]; our own `p:<token>` → `PEXPIRE` → `Acquired`; otherwise
    /// [`ClaimOutcome::Busy`].
    pub async fn claim(&self, key: &ClaimKey, token: &str, lease: Duration) -> Result<ClaimOutcome, StoreError> {
        let mut conn = self.conn().await?;
        let reply: Vec<String> =
            scripts::CLAIM.key(self.keys.claim(key)).arg(token).arg(millis(lease)).invoke_async(&mut conn).await?;
        let outcome = parse_claim_reply(reply)?;
        tracing::debug!(claim = key.id(), outcome = outcome_name(&outcome), "claim");
        Ok(outcome)
    }

    /// Extends our lease. `true` if the claim still holds `p:<token>` (now with a fresh
    /// `lease`); `false` if the lease was lost (expired, taken over, completed or released).
    pub async fn renew(&self, key: &ClaimKey, token: &str, lease: Duration) -> Result<bool, StoreError> {
        let mut conn = self.conn().await?;
        let renewed: i64 =
            scripts::RENEW.key(self.keys.claim(key)).arg(token).arg(millis(lease)).invoke_async(&mut conn).await?;
        Ok(renewed == 1)
    }

    /// Records the work as done: writes `d:<result>` with `ttl`, unless the claim already holds
    /// a done value (the first result stays). Returns `true` if we still held the lease,
    /// `false` if it had expired or been taken; the done value is written in that case too,
    /// because the work did happen.
    pub async fn complete(&self, key: &ClaimKey, token: &str, result: &str, ttl: Duration) -> Result<bool, StoreError> {
        let mut conn = self.conn().await?;
        let held: i64 = scripts::COMPLETE
            .key(self.keys.claim(key))
            .arg(token)
            .arg(result)
            .arg(millis(ttl))
            .invoke_async(&mut conn)
            .await?;
        if held != 1 {
            tracing::debug!(claim = key.id(), "completed without holding the lease");
        }
        Ok(held == 1)
    }

    /// Gives the claim up without completing it (deletes it only if it holds `p:<token>`), so
    /// that another claimant can take it at once. `true` if deleted.
    pub async fn release(&self, key: &ClaimKey, token: &str) -> Result<bool, StoreError> {
        let mut conn = self.conn().await?;
        let released: i64 = scripts::RELEASE.key(self.keys.claim(key)).arg(token).invoke_async(&mut conn).await?;
        Ok(released == 1)
    }

    /// Read-only peek: `None` if unclaimed, `Done` if done, `Busy` for any live lease
    /// (whoever holds it). For tests and tools.
    pub async fn claim_state(&self, key: &ClaimKey) -> Result<Option<ClaimOutcome>, StoreError> {
        let full = self.keys.claim(key);
        let mut conn = self.conn().await?;
        let (value, ttl_ms): (Option<String>, i64) =
            redis::pipe().atomic().get(&full).pttl(&full).query_async(&mut conn).await?;
        Ok(value.map(|v| match v.strip_prefix("d:") {
            Some(result) => ClaimOutcome::Done(result.to_owned()),
            None => ClaimOutcome::Busy { ttl_ms },
        }))
    }
}

/// Decodes the CLAIM script's reply.
fn parse_claim_reply(reply: Vec<String>) -> Result<ClaimOutcome, StoreError> {
    let mut it = reply.into_iter();
    match (it.next().as_deref(), it.next()) {
        (Some("acquired"), None) => Ok(ClaimOutcome::Acquired),
        (Some("done"), Some(result)) => Ok(ClaimOutcome::Done(result)),
        (Some("busy"), Some(ttl)) => ttl
            .parse()
            .map(|ttl_ms| ClaimOutcome::Busy { ttl_ms })
            .map_err(|_| StoreError::decode("claim reply: bad ttl")),
        _ => Err(StoreError::decode("claim reply: unexpected shape")),
    }
}

fn outcome_name(outcome: &ClaimOutcome) -> &'static str {
    match outcome {
        ClaimOutcome::Acquired => "acquired",
        ClaimOutcome::Done(_) => "done",
        ClaimOutcome::Busy { .. } => "busy",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn parses_replies() {
        assert_eq!(parse_claim_reply(s(&["acquired"])).unwrap(), ClaimOutcome::Acquired);
        assert_eq!(parse_claim_reply(s(&["done", "x:y"])).unwrap(), ClaimOutcome::Done("x:y".into()));
        assert_eq!(parse_claim_reply(s(&["busy", "1234"])).unwrap(), ClaimOutcome::Busy { ttl_ms: 1234 });
        assert!(parse_claim_reply(s(&["busy", "soon"])).is_err());
        assert!(parse_claim_reply(s(&[])).is_err());
        assert!(parse_claim_reply(s(&["what"])).is_err());
    }
}
