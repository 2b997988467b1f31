use switchboard_whatsapp::{sign, verify_signature};

use crate::{fixture_bytes, fixture_json, fixture_stems};

const SECRET: &[u8] = b"test_app_secret";

/// `_signatures.json` keys name a webhook fixture without `.json`, or a full file name.
fn file_of(key: &str) -> String {
    if key.contains('.') {
        format!("webhook/{key}")
    } else {
        format!("webhook/{key}.json")
    }
}

fn signatures() -> serde_json::Map<String, serde_json::Value> {
    let file = fixture_json("webhook/_signatures.json");
    assert_eq!(file["app_secret"], "test_app_secret");
    file["signatures"].as_object().unwrap().clone()
}

#[test]
fn every_listed_signature_verifies_against_its_raw_bytes() {
    let signatures = signatures();
    for (key, header) in &signatures {
        let header = header.as_str().unwrap();
        let body = fixture_bytes(&file_of(key));
        assert!(verify_signature(&[SECRET], &body, Some(header)), "{key}");
        assert_eq!(sign(SECRET, &body), header, "{key}");
        assert!(!verify_signature(&[b"wrong_secret"], &body, Some(header)), "{key}");
        assert!(verify_signature(&[b"old_secret", SECRET], &body, Some(header)), "{key}");
        assert!(!verify_signature(&[SECRET], &body, None), "{key}");
    }
    // And every webhook fixture is listed.
    for stem in fixture_stems("webhook", "json") {
        assert!(signatures.contains_key(&stem), "{stem} has no signature");
    }
}

#[test]
fn reference_vector_for_text_json() {
    let body = fixture_bytes("webhook/text.json");
    assert_eq!(sign(SECRET, &body), "sha256=d5f6c3a0fdb6b2b1a3a5b4c75d87b4ecf9d98c9dc461602e8edfb3eea651ee7e");
}

#[test]
fn decoded_unicode_form_fails_with_the_escaped_form_signature() {
    let header = signatures()["text_unicode"].as_str().unwrap().to_owned();
    let escaped = fixture_bytes("webhook/text_unicode.json");
    let decoded = fixture_bytes("webhook/text_unicode_decoded_form.bin");
    assert!(verify_signature(&[SECRET], &escaped, Some(&header)));
    assert!(!verify_signature(&[SECRET], &decoded, Some(&header)));
    // Same JSON value, different bytes.
    let a: serde_json::Value = serde_json::from_slice(&escaped).unwrap();
    let b: serde_json::Value = serde_json::from_slice(&decoded).unwrap();
    assert_eq!(a, b);
}

#[test]
fn garbage_headers_fail() {
    let body = fixture_bytes("webhook/text.json");
    for header in ["", "sha256=", "sha256=deadbeef", "d5f6c3a0fdb6b2b1a3a5b4c75d87b4ecf9d98c9dc461602e8edfb3eea651ee7e"]
    {
        assert!(!verify_signature(&[SECRET], &body, Some(header)), "{header}");
    }
}
