//! Key layout. Every key the store writes is built here.
//!
//! Tenants, conversations and ids are already safe strings (pseudonyms and WhatsApp/reply ids);
//! phone numbers never reach a key.

use std::fmt;

use switchboard_domain::message_ref;

/// Identifies one claim (idempotency record / exclusive lease), without the namespace.
///
/// The store turns it into `{ns}:claim:{tenant}:{kind}:{id}`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ClaimKey {
    id: String,
}

impl ClaimKey {
    /// A claim on processing one inbound message (`kind = in`), keyed by the wamid's hash.
    pub fn inbound(tenant: &str, wamid: &str) -> Self {
        Self { id: format!("{tenant}:in:{}", message_ref(wamid)) }
    }

    /// The send-ledger claim on one part of a reply (`kind = send`).
    pub fn send(tenant: &str, reply_id: &str, part: usize) -> Self {
        Self { id: format!("{tenant}:send:{reply_id}:{part}") }
    }

    /// The lease on running one conversation's turns (`kind = conv`). The conversation part is
    /// a hash tag, so the lease shares a cluster slot with the conversation's other keys (the
    /// turn commit checks it in the same script).
    pub fn conversation(tenant: &str, conversation: &str) -> Self {
        Self { id: format!("{tenant}:conv:{{{tenant}:{conversation}}}") }
    }

    /// The key without the namespace and the `claim:` prefix: `{tenant}:{kind}:{id}`.
    pub fn id(&self) -> &str {
        &self.id
    }
}

impl fmt::Debug for ClaimKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ClaimKey").field(&self.id).finish()
    }
}

/// Builds full keys under one namespace.
#[derive(Clone, Debug)]
pub(crate) struct Keys {
    ns: String,
}

impl Keys {
    pub(crate) fn new(ns: &str) -> Self {
        Self { ns: ns.to_owned() }
    }

    pub(crate) fn namespace(&self) -> &str {
        &self.ns
    }

    /// `{ns}:claim:{tenant}:{kind}:{id}`
    pub(crate) fn claim(&self, key: &ClaimKey) -> String {
        format!("{}:claim:{}", self.ns, key.id)
    }

    /// `{ns}:ctx:{{tenant}:{conversation}}`: the braces are a literal Redis Cluster hash tag,
    /// so everything about one conversation lands on one slot.
    pub(crate) fn context(&self, tenant: &str, conversation: &str) -> String {
        format!("{}:ctx:{{{tenant}:{conversation}}}", self.ns)
    }

    /// `{ns}:conv:{{tenant}:{conversation}}:{part}`: the per-conversation sequencing keys
    /// (`pending`, `events`, `unpublished`).
    pub(crate) fn conv(&self, tenant: &str, conversation: &str, part: &str) -> String {
        format!("{}:conv:{{{tenant}:{conversation}}}:{part}", self.ns)
    }

    /// `{ns}:msg:{{tenant}:{conversation}}:{message_ref}`: the processing state of one inbound
    /// message. Keyed by [`message_ref`], never by the wamid (which encodes the phone number).
    pub(crate) fn message(&self, tenant: &str, conversation: &str, wamid: &str) -> String {
        format!("{}:msg:{{{tenant}:{conversation}}}:{}", self.ns, message_ref(wamid))
    }

    /// `{ns}:rate:{name}`: a rate-limit bucket.
    pub(crate) fn rate(&self, name: &str) -> String {
        format!("{}:rate:{name}", self.ns)
    }

    /// `{ns}:paused:{tenant}`
    pub(crate) fn paused(&self, tenant: &str) -> String {
        format!("{}:paused:{tenant}", self.ns)
    }

    /// `{ns}:sent:{tenant}:{message_ref}`
    pub(crate) fn sent(&self, tenant: &str, wamid: &str) -> String {
        format!("{}:sent:{tenant}:{}", self.ns, message_ref(wamid))
    }

    /// `{ns}:job:{tenant}:{reply_id}`
    pub(crate) fn job(&self, tenant: &str, reply_id: &str) -> String {
        format!("{}:job:{tenant}:{reply_id}", self.ns)
    }

    /// `{ns}:status:{tenant}:{message_ref}` (the outbound wamid, hashed: it encodes the number).
    pub(crate) fn status(&self, tenant: &str, wamid: &str) -> String {
        format!("{}:status:{tenant}:{}", self.ns, message_ref(wamid))
    }
}

/// A namespace must be non-empty and made of `[A-Za-z0-9_.:-]`: no braces (they would steal
/// the hash tag), no whitespace, no glob characters (tools SCAN `ns:*`).
pub(crate) fn valid_namespace(ns: &str) -> bool {
    !ns.is_empty()
        && ns.len() <= 64
        && ns.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout() {
        let k = Keys::new("sb");
        let x = message_ref("wamid.X");
        assert_eq!(k.claim(&ClaimKey::inbound("t1", "wamid.X")), format!("sb:claim:t1:in:{x}"));
        assert_eq!(k.claim(&ClaimKey::send("t1", "rp_1", 2)), "sb:claim:t1:send:rp_1:2");
        assert_eq!(k.context("t1", "c9"), "sb:ctx:{t1:c9}");
        assert_eq!(k.status("t1", "wamid.Y"), format!("sb:status:t1:{}", message_ref("wamid.Y")));
        assert_eq!(k.message("t1", "c9", "wamid.Z"), format!("sb:msg:{{t1:c9}}:{}", message_ref("wamid.Z")));
        assert_eq!(k.claim(&ClaimKey::conversation("t1", "c9")), "sb:claim:t1:conv:{t1:c9}");
        assert_eq!(ClaimKey::send("t", "r", 0).id(), "t:send:r:0");
    }

    #[test]
    fn namespaces() {
        assert!(valid_namespace("switchboard"));
        assert!(valid_namespace("sbtest-1a2b"));
        assert!(!valid_namespace(""));
        assert!(!valid_namespace("a{b}"));
        assert!(!valid_namespace("a b"));
        assert!(!valid_namespace("a*"));
    }
}
