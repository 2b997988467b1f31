//! The LLM client against a fake OpenAI-compatible server (wiremock).

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use switchboard_domain::{ChatEntry, ChatRole};
use switchboard_llm::{ChatRequest, LlmClient, LlmError};
use wiremock::matchers::{body_json, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const TIMEOUT: Duration = Duration::from_secs(5);
const SYSTEM: &str = "You are a helpful assistant.";

fn history() -> Vec<ChatEntry> {
    vec![
        ChatEntry { id: "wamid.1".into(), role: ChatRole::User, content: "Hello".into(), at: 1 },
        ChatEntry { id: "rp_1".into(), role: ChatRole::Assistant, content: "Hi! How can I help?".into(), at: 2 },
        ChatEntry { id: "wamid.2".into(), role: ChatRole::User, content: "Opening hours?".into(), at: 3 },
    ]
}

fn request<'a>(history: &'a [ChatEntry], max_tokens: Option<u32>) -> ChatRequest<'a> {
    ChatRequest { model: "gpt-test", system_prompt: SYSTEM, history, max_tokens }
}

fn ok_body(content: &str) -> Value {
    json!({
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1_760_000_000,
        "model": "gpt-test-2025",
        "system_fingerprint": "fp_x",
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": content, "refusal": null},
            "logprobs": null,
            "finish_reason": "stop"
        }],
        "usage": {"prompt_tokens": 42, "completion_tokens": 7, "total_tokens": 49}
    })
}

/// A server answering every completion with `template`, and a client pointing at it.
async fn server_with(template: ResponseTemplate, key: Option<&str>) -> (MockServer, LlmClient) {
    let server = MockServer::start().await;
    Mock::given(method("POST")).and(path("/v1/chat/completions")).respond_with(template).mount(&server).await;
    let client = LlmClient::new(&format!("{}/v1", server.uri()), key, TIMEOUT).unwrap();
    (server, client)
}

async fn complete_err(template: ResponseTemplate) -> LlmError {
    let (_server, client) = server_with(template, None).await;
    let h = history();
    client.complete(&request(&h, None)).await.unwrap_err()
}

#[tokio::test]
async fn sends_the_exact_request_and_parses_the_answer() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .and(header("authorization", "Bearer sk-test-123"))
        .and(header("content-type", "application/json"))
        .and(body_json(json!({
            "model": "gpt-test",
            "messages": [
                {"role": "system", "content": SYSTEM},
                {"role": "user", "content": "Hello"},
                {"role": "assistant", "content": "Hi! How can I help?"},
                {"role": "user", "content": "Opening hours?"}
            ],
            "max_tokens": 300,
            "stream": false
        })))
        .respond_with(ResponseTemplate::new(200).set_body_json(ok_body("  We open at 9.\n")))
        .expect(1)
        .mount(&server)
        .await;
    // Trailing slash tolerated.
    let client = LlmClient::new(&format!("{}/v1/", server.uri()), Some("sk-test-123"), TIMEOUT).unwrap();
    let h = history();
    let c = client.complete(&request(&h, Some(300))).await.unwrap();
    assert_eq!(c.content, "We open at 9.");
    assert_eq!(c.model, "gpt-test-2025");
    assert_eq!((c.prompt_tokens, c.completion_tokens), (Some(42), Some(7)));
    let dbg = format!("{c:?} {client:?}");
    assert!(!dbg.contains("We open") && !dbg.contains("sk-test-123"), "{dbg}");
}

#[tokio::test]
async fn no_key_means_no_authorization_header() {
    for key in [None, Some(""), Some("   ")] {
        let (server, client) = server_with(ResponseTemplate::new(200).set_body_json(ok_body("ok")), key).await;
        let h = history();
        let c = client.complete(&request(&h, None)).await.unwrap();
        assert_eq!(c.content, "ok");
        let received = server.received_requests().await.unwrap();
        assert_eq!(received.len(), 1);
        assert!(received[0].headers.get("authorization").is_none(), "{key:?}");
        let body: Value = serde_json::from_slice(&received[0].body).unwrap();
        assert!(body.get("max_tokens").is_none(), "max_tokens omitted when None");
        assert_eq!(body["stream"], json!(false));
    }
}

#[tokio::test]
async fn missing_usage_and_model_are_tolerated() {
    let body = json!({"choices": [{"message": {"content": "fine"}}]});
    let (_server, client) = server_with(ResponseTemplate::new(200).set_body_json(body), None).await;
    let c = client.complete(&request(&[], None)).await.unwrap();
    assert_eq!((c.content.as_str(), c.model.as_str()), ("fine", "gpt-test"));
    assert_eq!((c.prompt_tokens, c.completion_tokens), (None, None));
}

#[tokio::test]
async fn server_errors_are_retryable() {
    let err = complete_err(ResponseTemplate::new(500).set_body_string("boom")).await;
    assert!(matches!(err, LlmError::Status { status: 500, retry_after: None }), "{err:?}");
    assert!(err.is_retryable());
}

#[tokio::test]
async fn client_errors_are_not_retryable() {
    let err =
        complete_err(ResponseTemplate::new(400).set_body_json(json!({"error": {"message": "echo: Opening hours?"}})))
            .await;
    assert!(matches!(err, LlmError::Status { status: 400, .. }), "{err:?}");
    assert!(!err.is_retryable());
    assert!(!format!("{err} {err:?}").contains("Opening"));
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let err = complete_err(ResponseTemplate::new(429).insert_header("retry-after", "3")).await;
    assert!(matches!(err, LlmError::Status { status: 429, .. }), "{err:?}");
    assert_eq!(err.retry_after(), Some(Duration::from_secs(3)));
    assert!(err.is_retryable());

    let err = complete_err(ResponseTemplate::new(503).insert_header("retry-after", "7")).await;
    assert_eq!(err.retry_after(), Some(Duration::from_secs(7)));
    let err = complete_err(ResponseTemplate::new(429).insert_header("retry-after", "soon")).await;
    assert_eq!(err.retry_after(), None);
}

#[tokio::test]
async fn slow_answers_time_out() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(ok_body("late")).set_delay(Duration::from_secs(3)))
        .mount(&server)
        .await;
    let client = LlmClient::new(&server.uri(), None, Duration::from_millis(200)).unwrap();
    let started = Instant::now();
    let err = client.complete(&request(&[], None)).await.unwrap_err();
    assert!(matches!(err, LlmError::Timeout), "{err:?}");
    assert!(err.is_retryable());
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn garbage_is_a_decode_error_without_the_text() {
    let err =
        complete_err(ResponseTemplate::new(200).set_body_raw("<html>secret words</html>", "application/json")).await;
    assert!(matches!(err, LlmError::Decode(_)), "{err:?}");
    assert!(!err.is_retryable());
    assert!(!format!("{err} {err:?}").contains("secret"));

    // Valid JSON of the wrong shape: serde would quote the value; we do not.
    let err = complete_err(ResponseTemplate::new(200).set_body_json(json!({"choices": "secret words"}))).await;
    assert!(matches!(err, LlmError::Decode(_)), "{err:?}");
    assert!(!format!("{err} {err:?}").contains("secret"));
}

#[tokio::test]
async fn empty_content_is_empty() {
    let blank = [
        ok_body(""),
        ok_body(" \n\t "),
        json!({"choices": [{"message": {"role": "assistant", "content": null}}]}),
        json!({"choices": []}),
        json!({"object": "chat.completion"}),
    ];
    for body in blank {
        let err = complete_err(ResponseTemplate::new(200).set_body_json(body.clone())).await;
        assert!(matches!(err, LlmError::Empty), "{body}: {err:?}");
        assert!(!err.is_retryable());
    }
}

#[tokio::test]
async fn unreachable_server_is_a_retryable_network_error() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let client = LlmClient::new(&format!("http://127.0.0.1:{port}/v1"), Some("sk-x"), TIMEOUT).unwrap();
    let err = client.complete(&request(&[], None)).await.unwrap_err();
    assert!(matches!(err, LlmError::Network(_)), "{err:?}");
    assert!(err.is_retryable());
    assert!(!err.to_string().contains("sk-x"));
}
