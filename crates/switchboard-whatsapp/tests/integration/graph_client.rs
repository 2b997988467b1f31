use std::time::Duration;

use serde_json::{json, Value};
use switchboard_domain::UserRef;
use switchboard_whatsapp::{classify, ErrorClass, GraphClient, GraphError, TextMessage};
use wiremock::matchers::{body_json, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::{fixture_json, fixture_stems};

const TOKEN: &str = "EAAG-test-token-do-not-log";
const PNID: &str = "200000000000002";
const MESSAGES_PATH: &str = "/v25.0/200000000000002/messages";
const INBOUND: &str = "wamid.HBgLMTU1NTEyMzQ1NjcVAgASGBQzQUZBS0UwMDAwMDAwMDAwMDAw0001AA=";

fn client(server: &MockServer) -> GraphClient {
    GraphClient::new(&format!("{}/v25.0/", server.uri()), Duration::from_secs(5)).unwrap()
}

fn phone() -> UserRef {
    UserRef { wa_id: Some("15551234567".into()), user_id: Some("US.13491208655302741918".into()) }
}

fn text<'a>(to: &'a UserRef, body: &'a str) -> TextMessage<'a> {
    TextMessage { to, body, reply_to: None, biz_opaque_callback_data: None }
}

/// Mounts a POST /messages mock that requires the bearer token and exactly `body`.
async fn expect_post(server: &MockServer, body: Value, response: ResponseTemplate) {
    Mock::given(method("POST"))
        .and(path(MESSAGES_PATH))
        .and(header("authorization", format!("Bearer {TOKEN}").as_str()))
        .and(header("content-type", "application/json"))
        .and(body_json(body))
        .respond_with(response)
        .expect(1)
        .mount(server)
        .await;
}

fn ok(fixture: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(fixture_json(&format!("graph/responses/{fixture}.json")))
}

fn sent_wamid(fixture: &str) -> String {
    fixture_json(&format!("graph/responses/{fixture}.json"))["messages"][0]["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn send_text_posts_the_fixture_body_and_returns_the_wamid() {
    let server = MockServer::start().await;
    expect_post(&server, fixture_json("graph/requests/send_text.json"), ok("send_ok")).await;
    let to = phone();
    let sent = client(&server).send_text(TOKEN, PNID, &text(&to, "We open at 9:00.")).await.unwrap();
    assert_eq!(sent.wamid, sent_wamid("send_ok"));
}

#[tokio::test]
async fn send_text_reply_quotes_the_inbound_message() {
    let server = MockServer::start().await;
    expect_post(&server, fixture_json("graph/requests/send_text_reply.json"), ok("send_ok")).await;
    let to = phone();
    let msg = TextMessage { reply_to: Some(INBOUND), ..text(&to, "We open at 9:00.") };
    client(&server).send_text(TOKEN, PNID, &msg).await.unwrap();
}

#[tokio::test]
async fn send_text_to_a_username_user_uses_the_bsuid() {
    let server = MockServer::start().await;
    // The fixture omits `preview_url`; we always send it explicitly as `false` (its default).
    let mut expected = fixture_json("graph/requests/send_text_to_bsuid.json");
    assert!(expected["text"].get("preview_url").is_none(), "fixture changed: drop this patch");
    expected["text"]["preview_url"] = json!(false);
    expect_post(&server, expected, ok("send_ok_bsuid")).await;
    let to = UserRef { wa_id: None, user_id: Some("US.13491208655302741918".into()) };
    let sent = client(&server).send_text(TOKEN, PNID, &text(&to, "Hello")).await.unwrap();
    assert_eq!(sent.wamid, sent_wamid("send_ok_bsuid"));
}

#[tokio::test]
async fn send_text_carries_biz_opaque_callback_data() {
    let server = MockServer::start().await;
    let mut expected = fixture_json("graph/requests/send_text.json");
    expected["biz_opaque_callback_data"] = json!("rp_0123");
    expect_post(&server, expected, ok("send_ok_template_accepted")).await;
    let to = phone();
    let msg = TextMessage { biz_opaque_callback_data: Some("rp_0123"), ..text(&to, "We open at 9:00.") };
    let sent = client(&server).send_text(TOKEN, PNID, &msg).await.unwrap();
    assert_eq!(sent.wamid, sent_wamid("send_ok_template_accepted"));
}

#[tokio::test]
async fn mark_read_with_and_without_typing_indicator() {
    for (typing, fixture) in [(false, "mark_read"), (true, "mark_read_typing")] {
        let server = MockServer::start().await;
        let body = fixture_json(&format!("graph/requests/{fixture}.json"));
        expect_post(&server, body, ok("success_true")).await;
        client(&server).mark_read(TOKEN, PNID, INBOUND, typing).await.unwrap();
    }
}

#[tokio::test]
async fn every_error_fixture_becomes_a_classified_api_error() {
    for stem in fixture_stems("graph/errors", "json") {
        let fixture = fixture_json(&format!("graph/errors/{stem}.json"));
        let status = u16::try_from(fixture["_http_status"].as_u64().unwrap()).unwrap();
        let error = &fixture["body"]["error"];
        let server = MockServer::start().await;
        expect_post(
            &server,
            fixture_json("graph/requests/send_text.json"),
            ResponseTemplate::new(status).set_body_json(&fixture["body"]),
        )
        .await;
        let to = phone();
        let err = client(&server).send_text(TOKEN, PNID, &text(&to, "We open at 9:00.")).await.unwrap_err();
        let GraphError::Api { http_status, code, subcode, ref fbtrace_id, retry_after } = err else {
            panic!("{stem}: {err:?}");
        };
        assert_eq!(http_status, status, "{stem}");
        assert_eq!(code, error["code"].as_i64(), "{stem}");
        assert_eq!(subcode, error["error_subcode"].as_i64(), "{stem}");
        assert_eq!(fbtrace_id.as_deref(), error["fbtrace_id"].as_str(), "{stem}");
        assert_eq!(retry_after, None, "{stem}");
        assert_eq!(err.class(), classify(Some(status), code), "{stem}");
        assert_eq!((err.code(), err.http_status()), (code, Some(status)), "{stem}");

        let shown = format!("{err} {err:?}");
        for secret in [TOKEN, "15551234567", "We open at 9:00.", "US.1349"] {
            assert!(!shown.contains(secret), "{stem}: {shown}");
        }
        assert!(shown.contains(&status.to_string()) && shown.contains(fbtrace_id.as_deref().unwrap()));
    }
}

#[tokio::test]
async fn specific_error_classes() {
    for (stem, class) in [
        ("131047_reengagement", ErrorClass::WindowClosed),
        ("190_token_expired", ErrorClass::TokenInvalid),
        ("131056_pair_rate", ErrorClass::PairRate),
        ("131000_generic", ErrorClass::Transient),
        ("100_invalid_param_text_too_long", ErrorClass::Permanent),
    ] {
        let fixture = fixture_json(&format!("graph/errors/{stem}.json"));
        let status = u16::try_from(fixture["_http_status"].as_u64().unwrap()).unwrap();
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(status).set_body_json(&fixture["body"]))
            .mount(&server)
            .await;
        let err = client(&server).mark_read(TOKEN, PNID, INBOUND, false).await.unwrap_err();
        assert_eq!(err.class(), class, "{stem}");
        assert_eq!(err.class().is_retryable(), matches!(class, ErrorClass::PairRate | ErrorClass::Transient));
    }
}

#[tokio::test]
async fn retry_after_header_is_honoured() {
    let server = MockServer::start().await;
    let body = fixture_json("graph/errors/131056_pair_rate_http429.json")["body"].clone();
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(429).set_body_json(body).insert_header("Retry-After", "7"))
        .mount(&server)
        .await;
    let to = phone();
    let err = client(&server).send_text(TOKEN, PNID, &text(&to, "hi")).await.unwrap_err();
    match err {
        GraphError::Api { http_status: 429, code: Some(131056), retry_after, .. } => {
            assert_eq!(retry_after, Some(Duration::from_secs(7)));
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn slow_server_is_a_network_timeout() {
    let server = MockServer::start().await;
    Mock::given(method("POST")).respond_with(ok("send_ok").set_delay(Duration::from_secs(3))).mount(&server).await;
    let graph = GraphClient::new(&format!("{}/v25.0", server.uri()), Duration::from_millis(200)).unwrap();
    let to = phone();
    let err = graph.send_text(TOKEN, PNID, &text(&to, "We open at 9:00.")).await.unwrap_err();
    assert!(matches!(err, GraphError::Network { timeout: true, .. }), "{err:?}");
    assert_eq!((err.class(), err.http_status(), err.code()), (ErrorClass::Transient, None, None));
    assert!(!err.to_string().contains(TOKEN));
}

#[tokio::test]
async fn refused_connection_is_a_network_error_without_timeout() {
    let graph = GraphClient::new("http://127.0.0.1:1/v25.0", Duration::from_secs(2)).unwrap();
    let err = graph.mark_read(TOKEN, PNID, INBOUND, true).await.unwrap_err();
    assert!(matches!(err, GraphError::Network { timeout: false, .. }), "{err:?}");
    assert!(err.class().is_retryable());
}

#[tokio::test]
async fn unreadable_responses_are_decode_errors() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(MESSAGES_PATH))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"messages": []})))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(502).set_body_string("<html>Bad gateway</html>"))
        .mount(&server)
        .await;
    let to = phone();
    let graph = client(&server);
    let err = graph.send_text(TOKEN, PNID, &text(&to, "x")).await.unwrap_err();
    assert!(matches!(err, GraphError::Decode { http_status: 200, .. }), "{err:?}");
    let err = graph.send_text(TOKEN, PNID, &text(&to, "x")).await.unwrap_err();
    assert!(matches!(err, GraphError::Decode { http_status: 502, .. }), "{err:?}");
    assert_eq!(err.class(), ErrorClass::Transient);
}

#[tokio::test]
async fn configuration_errors_send_nothing() {
    let server = MockServer::start().await;
    Mock::given(method("POST")).respond_with(ok("send_ok")).expect(0).mount(&server).await;
    let graph = client(&server);
    let nobody = UserRef::default();
    let err = graph.send_text(TOKEN, PNID, &text(&nobody, "x")).await.unwrap_err();
    assert!(matches!(err, GraphError::Config(_)), "{err:?}");
    let to = phone();
    for pnid in ["", "../me", "200/messages"] {
        let err = graph.send_text(TOKEN, pnid, &text(&to, "x")).await.unwrap_err();
        assert!(matches!(err, GraphError::Config(_)), "{pnid}: {err:?}");
    }
    let err = graph.mark_read("bad\ntoken", PNID, INBOUND, false).await.unwrap_err();
    assert!(matches!(err, GraphError::Config(_)) && !err.to_string().contains("bad"), "{err:?}");
    assert_eq!(err.class(), ErrorClass::Permanent);

    for base in ["not a url", "ftp://graph.example/v25.0", "mailto:x@example.com"] {
        assert!(matches!(GraphClient::new(base, Duration::from_secs(1)), Err(GraphError::Config(_))), "{base}");
    }
}
