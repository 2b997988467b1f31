//! Webhook bodies as Meta sends them, signed.

use serde_json::json;

/// The WhatsApp fixtures, copied from `shared/whatsapp/fixtures`.
pub const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/whatsapp");

/// Raw bytes of `fixtures/whatsapp/webhook/<name>`.
pub fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{FIXTURES}/webhook/{name}")).unwrap_or_else(|e| panic!("fixture {name}: {e}"))
}

/// Now, in Unix seconds: the timestamp of a message the user "just sent" (replies are only
/// sent within 24 hours of it).
pub fn now_s() -> i64 {
    switchboard_domain::now_ms() / 1000
}

/// One inbound text message.
#[derive(Debug, Clone)]
pub struct Text<'a> {
    pub from: &'a str,
    pub wamid: &'a str,
    pub body: &'a str,
    pub timestamp: i64,
}

/// A webhook body carrying the given text messages (one `messages[]` entry each) for
/// `phone_number_id`, compact and `\u`-escaped like Meta's.
pub fn text_batch(phone_number_id: &str, messages: &[Text<'_>]) -> Vec<u8> {
    let msgs: Vec<_> = messages
        .iter()
        .map(|m| json!({"from": m.from, "id": m.wamid, "timestamp": m.timestamp.to_string(), "type": "text", "text": {"body": m.body}}))
        .collect();
    let contacts: Vec<_> =
        messages.iter().map(|m| json!({"profile": {"name": "Test User"}, "wa_id": m.from})).collect();
    let body = json!({"object": "whatsapp_business_account", "entry": [{"id": "100000000000001", "changes": [{"field": "messages", "value": {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550001111", "phone_number_id": phone_number_id},
        "contacts": contacts,
        "messages": msgs
    }}]}]});
    ascii_json(&body)
}

/// A webhook body with one message of another type (`image`, `reaction`, …) and its object.
pub fn typed_message(phone_number_id: &str, from: &str, wamid: &str, kind: &str, object: serde_json::Value) -> Vec<u8> {
    let mut msg = json!({"from": from, "id": wamid, "timestamp": now_s().to_string(), "type": kind});
    msg[kind] = object;
    let body = json!({"object": "whatsapp_business_account", "entry": [{"id": "100000000000001", "changes": [{"field": "messages", "value": {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550001111", "phone_number_id": phone_number_id},
        "contacts": [{"profile": {"name": "Test User"}, "wa_id": from}],
        "messages": [msg]
    }}]}]});
    ascii_json(&body)
}

/// JSON with every non-ASCII character `\u`-escaped (lowercase hex), as Meta serialises.
fn ascii_json(v: &serde_json::Value) -> Vec<u8> {
    let s = serde_json::to_string(v).expect("serialisable");
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut buf = [0u16; 2];
            for unit in c.encode_utf16(&mut buf) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
    out.into_bytes()
}

/// The `X-Hub-Signature-256` value for `body`.
pub fn sign(secret: &str, body: &[u8]) -> String {
    switchboard_whatsapp::sign(secret.as_bytes(), body)
}
