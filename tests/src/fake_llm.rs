//! A fake OpenAI-compatible LLM: `POST /v1/chat/completions`, recording every call.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use serde_json::{json, Value};
use wiremock::{matchers::method, matchers::path, Mock, MockServer, Request, Respond, ResponseTemplate};

/// What the fake answers to one call.
#[derive(Debug, Clone)]
pub enum LlmReply {
    /// `reply to: <last user message>` (so tests can match replies to messages).
    Echo,
    Text(String),
    /// An HTTP error status with an OpenAI-style error body.
    Status(u16),
    /// The given reply after a delay.
    Delayed(Duration, Box<LlmReply>),
}

/// One recorded call.
#[derive(Debug, Clone)]
pub struct LlmCall {
    pub model: String,
    /// (role, content) in request order, the system prompt first.
    pub messages: Vec<(String, String)>,
    pub authorization: Option<String>,
    /// When the request arrived.
    pub at: Instant,
    /// When the response was scheduled to be sent (arrival + the scripted delay).
    pub ends: Instant,
}

impl LlmCall {
    /// The user messages of the prompt, in order.
    pub fn user_messages(&self) -> Vec<String> {
        self.messages.iter().filter(|(r, _)| r == "user").map(|(_, c)| c.clone()).collect()
    }

    pub fn system_prompt(&self) -> Option<&str> {
        self.messages.iter().find(|(r, _)| r == "system").map(|(_, c)| c.as_str())
    }
    /// Every non-system message.
    pub fn history(&self) -> Vec<(String, String)> {
        self.messages.iter().filter(|(r, _)| r != "system").cloned().collect()
    }
}

#[derive(Default)]
struct State {
    calls: Mutex<Vec<LlmCall>>,
    script: Mutex<VecDeque<LlmReply>>,
    fallback: Mutex<Option<LlmReply>>,
}

/// The fake server. Unscripted calls get [`LlmReply::Echo`] (or the fallback when set).
pub struct FakeLlm {
    server: MockServer,
    state: Arc<State>,
}

struct Responder(Arc<State>);

impl Respond for Responder {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
        let messages: Vec<(String, String)> = body["messages"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|m| {
                        (m["role"].as_str().unwrap_or("").to_string(), m["content"].as_str().unwrap_or("").to_string())
                    })
                    .collect()
            })
            .unwrap_or_default();
        let call = LlmCall {
            model: body["model"].as_str().unwrap_or("").to_string(),
            authorization: request.headers.get("authorization").and_then(|v| v.to_str().ok()).map(String::from),
            messages,
            at: Instant::now(),
            ends: Instant::now(),
        };
        let reply = self
            .0
            .script
            .lock()
            .unwrap()
            .pop_front()
            .or_else(|| self.0.fallback.lock().unwrap().clone())
            .unwrap_or(LlmReply::Echo);
        let template = render(&reply, &call);
        let mut call = call;
        call.ends = call.at + delay_of(&reply);
        self.0.calls.lock().unwrap().push(call);
        template
    }
}

fn render(reply: &LlmReply, call: &LlmCall) -> ResponseTemplate {
    match reply {
        LlmReply::Echo => {
            let last = call.messages.iter().rev().find(|(r, _)| r == "user").map(|(_, c)| c.as_str()).unwrap_or("");
            completion(&format!("reply to: {last}"))
        }
        LlmReply::Text(t) => completion(t),
        LlmReply::Status(code) => ResponseTemplate::new(*code)
            .set_body_json(json!({"error": {"message": "fake failure", "type": "server_error"}})),
        LlmReply::Delayed(d, inner) => render(inner, call).set_delay(*d),
    }
}

fn delay_of(reply: &LlmReply) -> Duration {
    match reply {
        LlmReply::Delayed(d, inner) => *d + delay_of(inner),
        _ => Duration::ZERO,
    }
}

fn completion(text: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "model": "fake-model",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
    }))
}

impl FakeLlm {
    pub async fn start() -> Self {
        let server = MockServer::start().await;
        let state = Arc::new(State::default());
        Mock::given(method("POST"))
            .and(path("/v1/chat/completions"))
            .respond_with(Responder(state.clone()))
            .mount(&server)
            .await;
        Self { server, state }
    }

    /// The base URL to configure (`…/v1`).
    pub fn base_url(&self) -> String {
        format!("{}/v1", self.server.uri())
    }

    /// Answers the next calls with these replies, in order.
    pub fn script(&self, replies: impl IntoIterator<Item = LlmReply>) {
        self.state.script.lock().unwrap().extend(replies);
    }

    /// Answers every unscripted call with this reply.
    pub fn set_fallback(&self, reply: LlmReply) {
        *self.state.fallback.lock().unwrap() = Some(reply);
    }

    pub fn calls(&self) -> Vec<LlmCall> {
        self.state.calls.lock().unwrap().clone()
    }
}
