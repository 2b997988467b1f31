//! The user's WhatsApp profile name, kept only for tenants with `remember_profile_name`:
//! `{ns}:conv:{t:c}:profile`, a plain string with the context window's retention. It is one of
//! the conversation's keys, so export lists it and erasure deletes it with the rest.

use std::time::Duration;

use crate::{millis, Store, StoreError};

impl Store {
    /// Stores (or refreshes) the name, expiring after `ttl`.
    pub async fn set_profile_name(
        &self,
        tenant: &str,
        conversation: &str,
        name: &str,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        let _: () = redis::cmd("SET")
            .arg(self.keys.conv(tenant, conversation, "profile"))
            .arg(name)
            .arg("PX")
            .arg(millis(ttl))
            .query_async(&mut conn)
            .await?;
        Ok(())
    }

    /// The stored name, if any.
    pub async fn profile_name(&self, tenant: &str, conversation: &str) -> Result<Option<String>, StoreError> {
        let mut conn = self.conn().await?;
        Ok(redis::cmd("GET").arg(self.keys.conv(tenant, conversation, "profile")).query_async(&mut conn).await?)
    }

    /// Rectification: replaces a stored name, keeping its expiry. `false` if none is stored.
    pub async fn rectify_profile_name(&self, tenant: &str, conversation: &str, name: &str) -> Result<bool, StoreError> {
        let mut conn = self.conn().await?;
        let set: Option<String> = redis::cmd("SET")
            .arg(self.keys.conv(tenant, conversation, "profile"))
            .arg(name)
            .arg("XX")
            .arg("KEEPTTL")
            .query_async(&mut conn)
            .await?;
        Ok(set.is_some())
    }

    /// Deletes the stored name. `false` if none was stored.
    pub async fn delete_profile_name(&self, tenant: &str, conversation: &str) -> Result<bool, StoreError> {
        let mut conn = self.conn().await?;
        let n: i64 =
            redis::cmd("DEL").arg(self.keys.conv(tenant, conversation, "profile")).query_async(&mut conn).await?;
        Ok(n == 1)
    }
}
