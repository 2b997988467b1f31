//! A fake Graph API: `POST /v25.0/{phone_number_id}/messages`, scriptable per call.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
};

use serde_json::{json, Value};
use wiremock::{matchers::method, matchers::path_regex, Mock, MockServer, Request, Respond, ResponseTemplate};

/// What the fake answers to one send.
#[derive(Debug, Clone)]
pub enum GraphReply {
    /// 200 with a fresh `wamid.fake.N`.
    Ok,
    /// An HTTP status with a Graph error envelope carrying `code`.
    Error { status: u16, code: i64 },
    /// One of `tests/fixtures/whatsapp/graph/errors/*.json` (its `_http_status` and `body`).
    Fixture(&'static str),
}

/// One recorded call (every attempt, accepted or not).
#[derive(Debug, Clone)]
pub struct GraphSend {
    pub phone_number_id: String,
    pub authorization: Option<String>,
    pub to: Option<String>,
    pub recipient: Option<String>,
    /// `text.body` for text sends, empty for read receipts.
    pub body: String,
    pub biz_opaque_callback_data: Option<String>,
    /// The wamid returned, when the fake accepted the message.
    pub accepted: Option<String>,
    pub raw: Value,
    pub at: std::time::Instant,
}

#[derive(Default)]
struct State {
    sends: Mutex<Vec<GraphSend>>,
    script: Mutex<VecDeque<GraphReply>>,
    per_recipient: Mutex<std::collections::HashMap<String, VecDeque<GraphReply>>>,
    fail_receipts: std::sync::atomic::AtomicBool,
}

pub struct FakeGraph {
    server: MockServer,
    state: Arc<State>,
}

struct Responder(Arc<State>);

impl Respond for Responder {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let raw: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
        let phone_number_id = request.url.path().split('/').nth(2).unwrap_or("").to_string();
        if raw["status"] == "read" {
            // Read receipts: answered apart from the scripted sends.
            let fail = self.0.fail_receipts.load(std::sync::atomic::Ordering::SeqCst);
            self.0.sends.lock().unwrap().push(GraphSend {
                phone_number_id,
                authorization: request.headers.get("authorization").and_then(|v| v.to_str().ok()).map(String::from),
                to: None,
                recipient: None,
                body: String::new(),
                biz_opaque_callback_data: None,
                accepted: None,
                raw,
                at: std::time::Instant::now(),
            });
            return if fail {
                ResponseTemplate::new(500)
                    .set_body_json(json!({"error": {"message": "x", "type": "OAuthException", "code": 131000}}))
            } else {
                ResponseTemplate::new(200).set_body_json(json!({"success": true}))
            };
        }
        let to = raw["to"].as_str().unwrap_or("").to_string();
        let for_recipient = self.0.per_recipient.lock().unwrap().get_mut(&to).and_then(VecDeque::pop_front);
        let reply = for_recipient.or_else(|| self.0.script.lock().unwrap().pop_front()).unwrap_or(GraphReply::Ok);
        let mut sends = self.0.sends.lock().unwrap();
        let (template, accepted) = match reply {
            GraphReply::Ok => {
                let wamid = format!("wamid.fake.{}", sends.len() + 1);
                let to = raw["to"].as_str().unwrap_or("");
                (
                    ResponseTemplate::new(200).set_body_json(json!({
                        "messaging_product": "whatsapp",
                        "contacts": [{"input": to, "wa_id": to}],
                        "messages": [{"id": wamid}]
                    })),
                    Some(wamid),
                )
            }
            GraphReply::Error { status, code } => (
                ResponseTemplate::new(status).set_body_json(json!({"error": {
                    "message": format!("(#{code}) fake error"), "type": "OAuthException", "code": code,
                    "fbtrace_id": "AFAKEtrace"
                }})),
                None,
            ),
            GraphReply::Fixture(name) => {
                let text = std::fs::read_to_string(format!("{}/graph/errors/{name}", crate::webhook::FIXTURES))
                    .expect("fixture exists");
                let v: Value = serde_json::from_str(&text).expect("fixture is JSON");
                let status = v["_http_status"].as_u64().unwrap_or(400) as u16;
                (ResponseTemplate::new(status).set_body_json(v["body"].clone()), None)
            }
        };
        sends.push(GraphSend {
            phone_number_id,
            authorization: request.headers.get("authorization").and_then(|v| v.to_str().ok()).map(String::from),
            to: raw["to"].as_str().map(String::from),
            recipient: raw["recipient"].as_str().map(String::from),
            body: raw["text"]["body"].as_str().unwrap_or("").to_string(),
            biz_opaque_callback_data: raw["biz_opaque_callback_data"].as_str().map(String::from),
            accepted,
            raw,
            at: std::time::Instant::now(),
        });
        template
    }
}

impl FakeGraph {
    pub async fn start() -> Self {
        let server = MockServer::start().await;
        let state = Arc::new(State::default());
        Mock::given(method("POST"))
            .and(path_regex(r"^/v25\.0/[0-9A-Za-z]+/messages$"))
            .respond_with(Responder(state.clone()))
            .mount(&server)
            .await;
        Self { server, state }
    }

    /// The base URL to configure, version included.
    pub fn base_url(&self) -> String {
        format!("{}/v25.0", self.server.uri())
    }

    /// Answers the next sends with these replies, in order; then `Ok`.
    pub fn script(&self, replies: impl IntoIterator<Item = GraphReply>) {
        self.state.script.lock().unwrap().extend(replies);
    }

    /// Answers the next sends to `to` with these replies, in order (before the general script).
    pub fn script_for(&self, to: &str, replies: impl IntoIterator<Item = GraphReply>) {
        self.state.per_recipient.lock().unwrap().entry(to.to_string()).or_default().extend(replies);
    }

    /// Makes every read receipt fail with a 500.
    pub fn fail_receipts(&self) {
        self.state.fail_receipts.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Read receipts (`status: read`) received so far.
    pub fn receipts(&self) -> Vec<GraphSend> {
        self.sends().into_iter().filter(|s| s.raw["status"] == "read").collect()
    }

    /// Every call so far.
    pub fn sends(&self) -> Vec<GraphSend> {
        self.state.sends.lock().unwrap().clone()
    }

    /// Text messages the fake accepted (what users actually received).
    pub fn delivered(&self) -> Vec<GraphSend> {
        self.sends().into_iter().filter(|s| s.accepted.is_some() && s.raw["type"] == "text").collect()
    }

    /// Accepted texts to one user.
    pub fn delivered_to(&self, wa_id: &str) -> Vec<String> {
        self.delivered().into_iter().filter(|s| s.to.as_deref() == Some(wa_id)).map(|s| s.body).collect()
    }
}
