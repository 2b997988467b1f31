//! The subject's messages parked on the broker: dead letters (`{ns}.dlq`) and held replies of
//! paused tenants (`{ns}.held`) can wait there for days, with the user's number and text in the
//! body. Export lists them; erasure deletes them.
//!
//! Messages in the work queues (inbound, outbound, statuses, the retry ladder) are not touched:
//! they are consumed within seconds, and the worker and dispatcher skip those of an erased
//! subject (the store's erasure marker). `{ns}.rejected` is not swept either: it holds raw
//! webhook batches that may mix several users' messages; see `docs/privacy.md`.

use serde::Serialize;
use switchboard_bus::{parked::Filter, Bus, BusError};
use utoipa::ToSchema;

/// Parked messages looked at (or held unacknowledged while sweeping) at most, per queue.
pub const SWEEP_LIMIT: usize = 500;

/// Which messages belong to the subject: envelopes of the tenant whose conversation key
/// matches, or whose user reference is the subject's identity.
pub struct Subject<'a> {
    pub tenant: &'a str,
    pub conversation: &'a str,
    pub identity: &'a str,
}

impl Subject<'_> {
    pub fn owns(&self, body: &[u8]) -> bool {
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else { return false };
        if v.get("tenant_id").and_then(|t| t.as_str()) != Some(self.tenant) {
            return false;
        }
        let user = |field: &str| {
            let r = v.get(field);
            r.and_then(|r| r.get("wa_id")).and_then(|x| x.as_str()) == Some(self.identity)
                || r.and_then(|r| r.get("user_id")).and_then(|x| x.as_str()) == Some(self.identity)
        };
        v.get("conversation").and_then(|c| c.as_str()) == Some(self.conversation) || user("from") || user("to")
    }
}

/// One parked message of the subject, as exported.
#[derive(Debug, Serialize, ToSchema)]
pub struct ParkedMessage {
    pub queue: String,
    /// Why it was parked (`x-sb-reason` or the broker's death reason).
    pub reason: Option<String>,
    /// The envelope as parked (inbound event or outbound job JSON).
    #[schema(value_type = Object)]
    pub body: serde_json::Value,
}

/// The parking queues swept for a subject.
fn queues(bus: &Bus) -> [String; 2] {
    let t = bus.topology();
    [t.dlq.clone(), t.held.clone()]
}

/// The subject's parked messages (looking at up to [`SWEEP_LIMIT`] per queue, leaving them in
/// place).
pub async fn find(bus: &Bus, subject: &Subject<'_>) -> Result<Vec<ParkedMessage>, BusError> {
    let mut out = Vec::new();
    for queue in queues(bus) {
        for m in bus.peek(&queue, &Filter::default(), SWEEP_LIMIT).await? {
            if subject.owns(&m.body) {
                out.push(ParkedMessage {
                    queue: queue.clone(),
                    reason: switchboard_bus::parked::reason(&m.headers).map(str::to_owned),
                    body: serde_json::from_slice(&m.body).unwrap_or_default(),
                });
            }
        }
    }
    Ok(out)
}

/// What a sweep did.
#[derive(Debug, Default, Serialize, ToSchema)]
pub struct Sweep {
    /// Parked messages of the subject deleted.
    pub deleted: usize,
    /// Parked messages not looked at (the queues were deeper than the sweep limit).
    pub not_examined: usize,
}

/// Deletes the subject's parked messages. Each queue is walked once from the head: the
/// subject's messages are acknowledged (deleted), the others stay unacknowledged until the walk
/// ends and then go back to the queue untouched.
pub async fn sweep(bus: &Bus, subject: &Subject<'_>) -> Result<Sweep, BusError> {
    let mut result = Sweep::default();
    for queue in queues(bus) {
        let depth = bus.queue_depth(&queue).await? as usize;
        let (deleted, examined) = bus.purge_where(&queue, SWEEP_LIMIT, |_, body| subject.owns(body)).await?;
        result.deleted += deleted;
        result.not_examined += depth.saturating_sub(examined);
    }
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ownership_is_by_tenant_and_conversation_or_identity() {
        let s = Subject { tenant: "t1", conversation: "c1", identity: "15551234567" };
        assert!(s.owns(br#"{"tenant_id":"t1","conversation":"c1"}"#));
        assert!(s.owns(br#"{"tenant_id":"t1","conversation":"zz","to":{"wa_id":"15551234567"}}"#));
        assert!(s.owns(br#"{"tenant_id":"t1","from":{"user_id":"15551234567"}}"#));
        assert!(!s.owns(br#"{"tenant_id":"t2","conversation":"c1"}"#));
        assert!(!s.owns(br#"{"tenant_id":"t1","conversation":"c2","from":{"wa_id":"1"}}"#));
        assert!(!s.owns(b"not json 15551234567"));
    }
}
