//! The webhook endpoint: handshake, signatures, limits, parsing, publishing.

use switchboard_tests::{webhook, TestEnv, PHONE_NUMBER_ID, VERIFY_TOKEN};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_echoes_the_challenge_only_for_the_right_token_and_mode() {
    let mut env = TestEnv::new().await;
    let url = env.start_ingress().await;
    let client = reqwest::Client::new();
    let get = |q: String| client.get(format!("{url}/webhooks/whatsapp?{q}")).send();

    let ok = get(format!("hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token={VERIFY_TOKEN}")).await.unwrap();
    assert_eq!(ok.status(), 200);
    assert!(ok.headers()["content-type"].to_str().unwrap().starts_with("text/plain"));
    assert_eq!(ok.text().await.unwrap(), "1158201444");

    for bad in [
        "hub.mode=subscribe&hub.challenge=1&hub.verify_token=wrong".to_string(),
        format!("hub.mode=unsubscribe&hub.challenge=1&hub.verify_token={VERIFY_TOKEN}"),
        format!("hub.mode=subscribe&hub.verify_token={VERIFY_TOKEN}"),
        String::new(),
    ] {
        assert_eq!(get(bad.clone()).await.unwrap().status(), 403, "query {bad:?}");
    }
    env.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signatures_are_checked_over_the_raw_bytes() {
    let mut env = TestEnv::new().await;
    env.start_ingress().await;
    let inbound = env.bus.topology().inbound.clone();

    // Good signature (from the fixture file), including the \u-escaped unicode body.
    let sigs: serde_json::Value = serde_json::from_slice(&webhook::fixture("_signatures.json")).unwrap();
    let sig_of = |name: &str| sigs["signatures"][name].as_str().unwrap().to_string();
    for name in ["text", "text_unicode"] {
        let res = env.post_webhook(webhook::fixture(&format!("{name}.json")), Some(Some(sig_of(name)))).await;
        assert_eq!(res.status(), 200, "{name}");
    }
    // The same unicode message decoded to UTF-8 does not match the escaped form's signature.
    let res =
        env.post_webhook(webhook::fixture("text_unicode_decoded_form.bin"), Some(Some(sig_of("text_unicode")))).await;
    assert_eq!(res.status(), 401);
    // Missing header, wrong secret, garbage.
    assert_eq!(env.post_webhook(webhook::fixture("text.json"), Some(None)).await.status(), 401);
    let wrong = webhook::sign("not-the-secret", &webhook::fixture("text.json"));
    assert_eq!(env.post_webhook(webhook::fixture("text.json"), Some(Some(wrong))).await.status(), 401);
    assert_eq!(env.post_webhook(webhook::fixture("text.json"), Some(Some("sha256=zz".into()))).await.status(), 401);

    // Only the two accepted posts were published (nothing from the rejected ones).
    assert_eq!(env.bus.queue_depth(&inbound).await.unwrap(), 2);
    env.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_bodies_get_413_and_publish_nothing() {
    let mut env = TestEnv::with(|s| s.max_body_bytes = 1024).await;
    env.start_ingress().await;
    let big = webhook::text_batch(
        PHONE_NUMBER_ID,
        &[webhook::Text {
            from: "15551234567",
            wamid: "wamid.big",
            body: &"x".repeat(2000),
            timestamp: webhook::now_s(),
        }],
    );
    assert_eq!(env.post_webhook(big, None).await.status(), 413);
    assert_eq!(env.bus.queue_depth(&env.bus.topology().inbound).await.unwrap(), 0);
    env.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_body_that_is_not_json_is_parked_and_acknowledged() {
    let mut env = TestEnv::new().await;
    env.start_ingress().await;
    let body = b"{not json at all".to_vec();
    assert_eq!(env.post_webhook(body.clone(), None).await.status(), 200);
    let parked = env.bus.get(&env.bus.topology().rejected).await.unwrap().expect("parked body");
    assert_eq!(parked.body, body);
    assert!(
        parked.headers["x-sb-reason"].contains("JSON") || parked.headers["x-sb-reason"].to_lowercase().contains("json")
    );
    parked.ack().await.unwrap();
    // Valid JSON of the wrong shape is parked too.
    assert_eq!(env.post_webhook(br#"{"entry":"nope"}"#.to_vec(), None).await.status(), 200);
    assert_eq!(env.bus.queue_depth(&env.bus.topology().rejected).await.unwrap(), 1);
    env.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fixture_is_accepted_and_split_into_one_event_per_message_and_status() {
    let mut env = TestEnv::new().await;
    env.start_ingress().await;
    let t = env.bus.topology().clone();
    // (fixture, inbound events, status events)
    let cases = [
        ("text.json", 1, 0),
        ("batch_mixed.json", 2, 1),
        ("duplicate_in_one_post.json", 1, 0),
        ("non_messages_field.json", 0, 0),
        ("status_read.json", 0, 1),
        ("image.json", 1, 0),
        ("reaction.json", 1, 0),
        ("bsuid_no_phone.json", 1, 0),
    ];
    let (mut want_in, mut want_st) = (0, 0);
    for (name, inbound, statuses) in cases {
        let res = env.post_webhook(webhook::fixture(name), None).await;
        assert_eq!(res.status(), 200, "{name}");
        want_in += inbound;
        want_st += statuses;
        assert_eq!(env.bus.queue_depth(&t.inbound).await.unwrap(), want_in, "inbound after {name}");
        assert_eq!(env.bus.queue_depth(&t.statuses).await.unwrap(), want_st, "statuses after {name}");
    }
    // Every other fixture is accepted too.
    let dir = std::fs::read_dir(format!("{}/webhook", webhook::FIXTURES)).unwrap();
    for entry in dir {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if name.ends_with(".json") && !name.starts_with('_') {
            assert_eq!(env.post_webhook(webhook::fixture(&name), None).await.status(), 200, "{name}");
        }
    }
    assert_eq!(env.bus.queue_depth(&t.rejected).await.unwrap(), 0, "no fixture is unreadable");
    env.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_phone_number_ids_are_acknowledged_but_not_processed() {
    let mut env = TestEnv::new().await;
    env.start_ingress().await;
    let body = webhook::text_batch(
        "999999999999999",
        &[webhook::Text { from: "15551234567", wamid: "wamid.x", body: "hi", timestamp: webhook::now_s() }],
    );
    assert_eq!(env.post_webhook(body, None).await.status(), 200);
    assert_eq!(env.bus.queue_depth(&env.bus.topology().inbound).await.unwrap(), 0);
    env.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_report_liveness_and_readiness() {
    let mut env = TestEnv::new().await;
    let url = env.start_ingress().await;
    assert_eq!(reqwest::get(format!("{url}/healthz")).await.unwrap().status(), 200);
    let ready = reqwest::get(format!("{url}/readyz")).await.unwrap();
    assert_eq!(ready.status(), 200);
    let body: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(body, serde_json::json!({"broker": true, "redis": true, "draining": false}));
    env.teardown().await;
}
