//! Identifiers: pseudonymous conversation keys and deterministic reply ids.

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

/// Derives stable pseudonyms for end-users so that logs, Redis keys and metrics never hold a
/// phone number. Keyed (HMAC-SHA256): without the key a pseudonym cannot be reversed by
/// enumerating the phone-number space.
#[derive(Clone)]
pub struct Pseudonymizer {
    key: Vec<u8>,
}

impl std::fmt::Debug for Pseudonymizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pseudonymizer([redacted])")
    }
}

impl Pseudonymizer {
    pub fn new(key: impl AsRef<[u8]>) -> Self {
        Self { key: key.as_ref().to_vec() }
    }

    /// The conversation key of one end-user of one tenant: 32 hex characters.
    pub fn conversation(&self, tenant_id: &str, user: &str) -> String {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(b"conversation\0");
        mac.update(tenant_id.as_bytes());
        mac.update(b"\0");
        mac.update(user.as_bytes());
        let digest = mac.finalize().into_bytes();
        hex::encode(&digest[..16])
    }
}

/// A stable, non-reversible reference to a WhatsApp message id, safe for logs, spans, AMQP
/// properties and Redis key names. Message ids (`wamid.…`) are base64 of data that includes the
/// user's phone number, so they never appear there themselves.
pub fn message_ref(wamid: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"wamid\0");
    hasher.update(wamid.as_bytes());
    format!("m_{}", hex::encode(&hasher.finalize()[..12]))
}

/// The deterministic id of the reply to one inbound message. A redelivered inbound message
/// produces the same reply id, so the dispatcher's ledger can refuse to send it twice.
pub fn reply_id(tenant_id: &str, inbound_wamid: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"reply\0");
    hasher.update(tenant_id.as_bytes());
    hasher.update(b"\0");
    hasher.update(inbound_wamid.as_bytes());
    format!("rp_{}", hex::encode(&hasher.finalize()[..16]))
}

/// The deterministic id of the reply to one turn: the user messages it answers. A turn of one
/// message has the id [`reply_id`] gives that message.
pub fn turn_reply_id(tenant_id: &str, wamids: &[String]) -> String {
    match wamids {
        [one] => reply_id(tenant_id, one),
        many => {
            let mut sorted: Vec<&str> = many.iter().map(String::as_str).collect();
            sorted.sort_unstable();
            let mut hasher = Sha256::new();
            hasher.update(b"turn\0");
            hasher.update(tenant_id.as_bytes());
            for w in sorted {
                hasher.update(b"\0");
                hasher.update(w.as_bytes());
            }
            format!("rp_{}", hex::encode(&hasher.finalize()[..16]))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversation_keys_are_stable_keyed_and_tenant_scoped() {
        let p = Pseudonymizer::new("k1");
        let a = p.conversation("t1", "15551234567");
        assert_eq!(a, p.conversation("t1", "15551234567"));
        assert_eq!(a.len(), 32);
        assert!(!a.contains("1555"));
        assert_ne!(a, p.conversation("t2", "15551234567"));
        assert_ne!(a, Pseudonymizer::new("k2").conversation("t1", "15551234567"));
        assert_eq!(format!("{p:?}"), "Pseudonymizer([redacted])");
    }

    #[test]
    fn reply_ids_are_deterministic_per_tenant_and_message() {
        let a = reply_id("t1", "wamid.A");
        assert_eq!(a, reply_id("t1", "wamid.A"));
        assert_ne!(a, reply_id("t1", "wamid.B"));
        assert_ne!(a, reply_id("t2", "wamid.A"));
        assert!(a.starts_with("rp_") && a.len() == 35);
    }

    #[test]
    fn message_refs_hide_the_wamid() {
        // The fixture wamid decodes to data holding the phone number 15551234567.
        let wamid = "wamid.HBgLMTU1NTEyMzQ1NjcVAgASGBQzQUZBS0UwMDAwMDAwMDAwMDAw0001AA=";
        let r = message_ref(wamid);
        assert_eq!(r, message_ref(wamid));
        assert_eq!(r.len(), 26);
        assert!(!r.contains("HBgL") && !r.contains("1555"));
    }

    #[test]
    fn turn_reply_ids_ignore_order_and_match_single_replies() {
        let one = vec!["wamid.A".to_string()];
        assert_eq!(turn_reply_id("t", &one), reply_id("t", "wamid.A"));
        let ab = vec!["wamid.A".to_string(), "wamid.B".to_string()];
        let ba = vec!["wamid.B".to_string(), "wamid.A".to_string()];
        assert_eq!(turn_reply_id("t", &ab), turn_reply_id("t", &ba));
        assert_ne!(turn_reply_id("t", &ab), turn_reply_id("t", &one));
    }
}
