//! Webhook → worker → LLM → dispatcher → Graph API, end to end.

use switchboard_domain::{reply_id, CONTEXT_WINDOW_MESSAGES};
use switchboard_tests::{wait_until, webhook, webhook::Text, LlmReply, TestEnv, PHONE_NUMBER_ID};

use crate::DEADLINE;

const USER: &str = "15551234567";

fn text(wamid: &str, body: &str) -> Vec<u8> {
    webhook::text_batch(PHONE_NUMBER_ID, &[Text { from: USER, wamid, body, timestamp: webhook::now_s() }])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_text_message_gets_one_reply_from_the_llm_with_the_tenant_prompt() {
    let mut env = TestEnv::new().await;
    env.start_all().await;
    assert_eq!(env.post_webhook(text("wamid.e2e.1", "What are your opening hours?"), None).await.status(), 200);

    let sent = wait_until(DEADLINE, "the reply", || async { env.graph.delivered().into_iter().next() }).await;
    assert_eq!(sent.body, "reply to: What are your opening hours?");
    assert_eq!(sent.to.as_deref(), Some(USER));
    assert_eq!(sent.phone_number_id, PHONE_NUMBER_ID);
    assert_eq!(sent.authorization.as_deref(), Some("Bearer test-access-token"));
    assert_eq!(sent.biz_opaque_callback_data.as_deref(), Some(reply_id("default", "wamid.e2e.1").as_str()));

    let calls = env.llm.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].model, "test-model");
    assert_eq!(calls[0].system_prompt(), Some("You are the test assistant."));
    assert_eq!(calls[0].history(), vec![("user".to_string(), "What are your opening hours?".to_string())]);

    // The status webhook for the reply is recorded against it.
    let wamid = sent.accepted.clone().unwrap();
    let status = format!(
        r#"{{"object":"whatsapp_business_account","entry":[{{"id":"1","changes":[{{"field":"messages","value":{{"messaging_product":"whatsapp","metadata":{{"display_phone_number":"15550001111","phone_number_id":"{PHONE_NUMBER_ID}"}},"statuses":[{{"id":"{wamid}","status":"read","timestamp":"1760000100","recipient_id":"{USER}","biz_opaque_callback_data":"{}"}}]}}}}]}}]}}"#,
        reply_id("default", "wamid.e2e.1")
    );
    assert_eq!(env.post_webhook(status.into_bytes(), None).await.status(), 200);
    let record =
        wait_until(DEADLINE, "status recorded", || async { env.store.status("default", &wamid).await.unwrap() }).await;
    assert_eq!(record.status, "read");
    assert_eq!(record.reply_id.as_deref(), Some(reply_id("default", "wamid.e2e.1").as_str()));
    env.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_of_several_messages_gets_one_reply_each() {
    let mut env = TestEnv::new().await;
    env.start_all().await;
    let users = ["15550000001", "15550000002", "15550000003"];
    let msgs: Vec<Text<'_>> = users
        .iter()
        .enumerate()
        .map(|(i, u)| Text {
            from: u,
            wamid: ["wamid.b.1", "wamid.b.2", "wamid.b.3"][i],
            body: ["one", "two", "three"][i],
            timestamp: webhook::now_s(),
        })
        .collect();
    assert_eq!(env.post_webhook(webhook::text_batch(PHONE_NUMBER_ID, &msgs), None).await.status(), 200);
    wait_until(DEADLINE, "three replies", || async { (env.graph.delivered().len() >= 3).then_some(()) }).await;
    for (u, body) in users.iter().zip(["one", "two", "three"]) {
        assert_eq!(env.graph.delivered_to(u), vec![format!("reply to: {body}")]);
    }
    assert_eq!(env.graph.delivered().len(), 3);
    env.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_webhook_delivered_three_times_concurrently_is_answered_once() {
    let mut env = TestEnv::new().await;
    env.start_ingress().await;
    // Two workers, so the duplicates really race.
    let (w1, w2, d) = (env.start_worker(), env.start_worker(), env.start_dispatcher());
    let body = text("wamid.dup.1", "hello");
    let (a, b, c) = tokio::join!(
        env.post_webhook(body.clone(), None),
        env.post_webhook(body.clone(), None),
        env.post_webhook(body, None)
    );
    assert!([a.status(), b.status(), c.status()].iter().all(|s| *s == 200));
    wait_until(DEADLINE, "the reply", || async { env.graph.delivered().into_iter().next() }).await;
    // Every copy has been consumed and settled; still one LLM call and one reply.
    let inbound = env.bus.topology().inbound.clone();
    wait_until(DEADLINE, "queue drained", || async { (env.bus.queue_depth(&inbound).await.ok()? == 0).then_some(()) })
        .await;
    let outbound = env.bus.topology().outbound.clone();
    wait_until(DEADLINE, "outbound drained", || async {
        (env.bus.queue_depth(&outbound).await.ok()? == 0).then_some(())
    })
    .await;
    for role in [w1, w2, d] {
        role.stop().await;
    }
    assert_eq!(env.llm.calls().len(), 1);
    assert_eq!(env.graph.delivered().len(), 1);
    env.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifteen_messages_never_show_the_llm_more_than_ten_in_order() {
    let mut env = TestEnv::new().await;
    env.start_all().await;
    for i in 1..=15 {
        let body = format!("message {i}");
        assert_eq!(env.post_webhook(text(&format!("wamid.ctx.{i}"), &body), None).await.status(), 200);
        wait_until(DEADLINE, "reply", || async { (env.graph.delivered().len() >= i).then_some(()) }).await;
    }
    let calls = env.llm.calls();
    assert_eq!(calls.len(), 15);
    for (n, call) in calls.iter().enumerate() {
        let history = call.history();
        assert!(history.len() <= CONTEXT_WINDOW_MESSAGES, "call {n} saw {} messages", history.len());
        assert_eq!(history.last().unwrap(), &("user".to_string(), format!("message {}", n + 1)));
        // User messages appear in the order they were sent.
        let users: Vec<u32> = history
            .iter()
            .filter(|(r, _)| r == "user")
            .map(|(_, c)| c.trim_start_matches("message ").parse().unwrap())
            .collect();
        assert!(users.windows(2).all(|w| w[0] < w[1]), "order in call {n}: {users:?}");
    }
    let last = calls.last().unwrap().history();
    assert_eq!(last.len(), CONTEXT_WINDOW_MESSAGES);
    assert_eq!(last[0], ("assistant".to_string(), "reply to: message 10".to_string()));
    env.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_gets_an_honest_reply_and_reactions_get_none() {
    let mut env = TestEnv::new().await;
    env.start_all().await;
    let image = webhook::typed_message(
        PHONE_NUMBER_ID,
        USER,
        "wamid.img.1",
        "image",
        serde_json::json!({"id": "300", "mime_type": "image/jpeg", "sha256": "x"}),
    );
    let reaction = webhook::typed_message(
        PHONE_NUMBER_ID,
        "15550009999",
        "wamid.react.1",
        "reaction",
        serde_json::json!({"message_id": "wamid.x", "emoji": "👍"}),
    );
    assert_eq!(env.post_webhook(reaction, None).await.status(), 200);
    assert_eq!(env.post_webhook(image, None).await.status(), 200);
    let sent = wait_until(DEADLINE, "the reply", || async { env.graph.delivered().into_iter().next() }).await;
    assert_eq!(sent.body, env.settings.unsupported_reply);
    let inbound = env.bus.topology().inbound.clone();
    wait_until(DEADLINE, "inbound drained", || async {
        (env.bus.queue_depth(&inbound).await.ok()? == 0).then_some(())
    })
    .await;
    assert!(env.graph.delivered_to("15550009999").is_empty(), "a reaction is never answered");
    assert!(env.llm.calls().is_empty(), "media does not reach the LLM");
    env.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_llm_is_down_the_user_gets_the_apology_and_the_failure_is_dead_lettered() {
    let mut env = TestEnv::with(|s| s.llm_max_attempts = 3).await;
    env.llm.set_fallback(LlmReply::Status(503));
    env.start_all().await;
    assert_eq!(env.post_webhook(text("wamid.down.1", "anyone there?"), None).await.status(), 200);
    let sent = wait_until(DEADLINE, "the apology", || async { env.graph.delivered().into_iter().next() }).await;
    assert_eq!(sent.body, env.settings.llm_failure_reply);
    assert_eq!(env.llm.calls().len(), 3, "retried up to the limit");
    let dlq = env.bus.topology().dlq.clone();
    let dead = wait_until(DEADLINE, "dead letter", || async { env.bus.get(&dlq).await.ok().flatten() }).await;
    assert_eq!(dead.headers["x-sb-reason"], "llm_failed");
    assert_eq!(dead.headers["x-sb-tenant"], "default");
    assert_eq!(dead.headers["x-sb-attempts"], "3");
    assert!(
        !dead.headers.values().any(|v| v.contains("anyone there") || v.contains(USER)),
        "no text or number in headers"
    );
    dead.ack().await.unwrap();
    env.teardown().await;
}
