//! The context window: the last [`CONTEXT_WINDOW_MESSAGES`] entries of a conversation, oldest
//! first, as JSON [`ChatEntry`] values in one Redis list.

use std::time::Duration;

use switchboard_domain::{ChatEntry, CONTEXT_WINDOW_MESSAGES};

use crate::error::json_error;
use crate::{millis, scripts, Store, StoreError};

impl Store {
    /// Appends `entry` to the conversation's window and returns the whole window, oldest first.
    ///
    /// One atomic script: if no entry with the same `id` is in the window it is pushed; the
    /// window is trimmed to the last [`CONTEXT_WINDOW_MESSAGES`]; its TTL is set to `ttl`.
    /// Replaying an entry that is still in the window changes nothing but the TTL.
    pub async fn append_context(
        &self,
        tenant: &str,
        conversation: &str,
        entry: &ChatEntry,
        ttl: Duration,
    ) -> Result<Vec<ChatEntry>, StoreError> {
        let json = serde_json::to_string(entry).map_err(|e| json_error("context entry", &e))?;
        let mut conn = self.conn().await?;
        let raw: Vec<String> = scripts::APPEND_CONTEXT
            .key(self.keys.context(tenant, conversation))
            .arg(json)
            .arg(&entry.id)
            .arg(CONTEXT_WINDOW_MESSAGES)
            .arg(millis(ttl))
            .invoke_async(&mut conn)
            .await?;
        Ok(decode_window(tenant, conversation, raw))
    }

    /// The conversation's window, oldest first (empty if none or expired).
    pub async fn context(&self, tenant: &str, conversation: &str) -> Result<Vec<ChatEntry>, StoreError> {
        let mut conn = self.conn().await?;
        let raw: Vec<String> = redis::cmd("LRANGE")
            .arg(self.keys.context(tenant, conversation))
            .arg(0)
            .arg(-1)
            .query_async(&mut conn)
            .await?;
        Ok(decode_window(tenant, conversation, raw))
    }

    /// The entry with this `id` if it is still in the conversation's window.
    pub async fn find_context_entry(
        &self,
        tenant: &str,
        conversation: &str,
        id: &str,
    ) -> Result<Option<ChatEntry>, StoreError> {
        Ok(self.context(tenant, conversation).await?.into_iter().find(|e| e.id == id))
    }
}

/// Decodes a window. An entry that does not decode (written by an incompatible version, or
/// corrupted) is skipped with a warning rather than failing the whole conversation: losing one
/// entry of context is better than never answering again.
fn decode_window(tenant: &str, conversation: &str, raw: Vec<String>) -> Vec<ChatEntry> {
    raw.iter()
        .enumerate()
        .filter_map(|(index, item)| match serde_json::from_str(item) {
            Ok(entry) => Some(entry),
            Err(e) => {
                let err = json_error("context entry", &e);
                tracing::warn!(tenant, conversation, index, error = %err, "skipping context entry");
                None
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_domain::ChatRole;

    #[test]
    fn undecodable_entries_are_skipped() {
        let good = ChatEntry { id: "wamid.1".into(), role: ChatRole::User, content: "hi".into(), at: 1 };
        let raw = vec!["not json".to_owned(), serde_json::to_string(&good).unwrap(), r#"{"id":"x"}"#.to_owned()];
        assert_eq!(decode_window("t", "c", raw), vec![good]);
    }
}
