//! `X-Hub-Signature-256` verification of webhook bodies (REFERENCE §2).
//!
//! The signature is HMAC-SHA256 over the **raw** request body bytes, keyed with the Meta App
//! Secret, sent as `sha256=<64 hex>`. Never verify a re-serialised body: Meta signs the bytes it
//! sent (with `\uXXXX` escapes), and any re-encoding changes the digest.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The header value prefix.
const PREFIX: &str = "sha256=";

/// Checks a `X-Hub-Signature-256` header value against the raw body.
///
/// Returns `true` when the signature matches under **any** of `secrets` (during an App Secret
/// rotation both the old and the new secret are valid). Empty secrets are ignored, so a
/// misconfigured empty secret never accepts anything. A missing header, a value without the
/// `sha256=` prefix or with anything but 64 hex digits after it is rejected. Digests are
/// compared in constant time, and every secret is tried whatever the outcome of the others.
pub fn verify_signature(secrets: &[&[u8]], body: &[u8], header: Option<&str>) -> bool {
    let Some(expected) = header.and_then(parse_header) else {
        return false;
    };
    secrets.iter().filter(|secret| !secret.is_empty()).fold(false, |matched, secret| {
        let ok = mac(secret, body).verify_slice(&expected).is_ok();
        matched | ok
    })
}

/// The header value Meta would send for `body` signed with `secret`:
/// `sha256=<lowercase hex>`. Used by tests and tools that replay webhooks.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let digest = mac(secret, body).finalize().into_bytes();
    format!("{PREFIX}{}", hex::encode(digest))
}

/// The 32 digest bytes of a well-formed header value.
fn parse_header(header: &str) -> Option<Vec<u8>> {
    let hex_digest = header.trim().strip_prefix(PREFIX)?;
    if hex_digest.len() != 64 {
        return None;
    }
    hex::decode(hex_digest).ok()
}

fn mac(secret: &[u8], body: &[u8]) -> HmacSha256 {
    let mut mac = <HmacSha256 as KeyInit>::new_from_slice(secret).expect("HMAC accepts keys of any length");
    mac.update(body);
    mac
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_vectors() {
        assert_eq!(sign(b"secret", b"test"), "sha256=0329a06b62cd16b33eb6792be8c60b158d89a2ee3a876fce9a881ebb488c0914");
        assert_eq!(
            sign(b"test_app_secret", b"{}"),
            "sha256=d73e9e864071bf8dbd89f02cbf0017b6e96cf6c13d09ced00b472c1d060e4301"
        );
    }

    #[test]
    fn sign_and_verify_round_trip() {
        let header = sign(b"k", b"body");
        assert!(verify_signature(&[b"k"], b"body", Some(&header)));
        assert!(!verify_signature(&[b"k"], b"body!", Some(&header)));
        // Upper-case hex is still the same digest.
        let upper = format!("sha256={}", header["sha256=".len()..].to_uppercase());
        assert!(verify_signature(&[b"k"], b"body", Some(&upper)));
    }

    #[test]
    fn any_of_several_secrets_may_match() {
        let header = sign(b"new", b"body");
        assert!(verify_signature(&[b"old", b"new"], b"body", Some(&header)));
        assert!(verify_signature(&[b"new", b"old"], b"body", Some(&header)));
        assert!(!verify_signature(&[b"old"], b"body", Some(&header)));
        assert!(!verify_signature(&[], b"body", Some(&header)));
    }

    #[test]
    fn empty_secret_never_verifies() {
        let header = sign(b"", b"body");
        assert!(!verify_signature(&[b""], b"body", Some(&header)));
    }

    #[test]
    fn missing_or_malformed_headers_fail() {
        let good = sign(b"k", b"body");
        let digest = &good["sha256=".len()..];
        for header in [
            None,
            Some(""),
            Some("sha256="),
            Some(digest),
            Some("sha1=0329a06b62cd16b33eb6792be8c60b158d89a2ee"),
            Some("sha256=zz29a06b62cd16b33eb6792be8c60b158d89a2ee3a876fce9a881ebb488c0914"),
            Some(&good[..good.len() - 2]),
            Some("garbage"),
        ] {
            assert!(!verify_signature(&[b"k"], b"body", header), "{header:?}");
        }
        let doubled = format!("{good}{digest}");
        assert!(!verify_signature(&[b"k"], b"body", Some(&doubled)));
    }
}
