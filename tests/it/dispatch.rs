//! Sending replies: retries, dead letters, long replies.

use switchboard_tests::{wait_until, webhook, webhook::Text, GraphReply, LlmReply, TestEnv, PHONE_NUMBER_ID};

use crate::DEADLINE;

const USER: &str = "15551234567";

fn text(wamid: &str, body: &str) -> Vec<u8> {
    webhook::text_batch(PHONE_NUMBER_ID, &[Text { from: USER, wamid, body, timestamp: webhook::now_s() }])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graph_500_twice_then_200_delivers_exactly_once() {
    let mut env = TestEnv::new().await;
    env.graph.script([
        GraphReply::Error { status: 500, code: 131000 },
        GraphReply::Fixture("131016_service_unavailable.json"),
    ]);
    env.start_all().await;
    assert_eq!(env.post_webhook(text("wamid.retry.1", "hi"), None).await.status(), 200);
    wait_until(DEADLINE, "delivery", || async { env.graph.delivered().into_iter().next() }).await;
    let outbound = env.bus.topology().outbound.clone();
    wait_until(DEADLINE, "outbound settled", || async {
        (env.bus.queue_depth(&outbound).await.ok()? == 0).then_some(())
    })
    .await;
    assert_eq!(env.graph.sends().len(), 3, "two failures, one success");
    assert_eq!(env.graph.delivered().len(), 1);
    assert_eq!(env.bus.queue_depth(&env.bus.topology().dlq).await.unwrap(), 0);
    env.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permanent_error_is_dead_lettered_after_one_attempt() {
    let mut env = TestEnv::new().await;
    env.graph.script([GraphReply::Fixture("131026_undeliverable.json")]);
    env.start_all().await;
    assert_eq!(env.post_webhook(text("wamid.perm.1", "hi"), None).await.status(), 200);
    let dlq = env.bus.topology().dlq.clone();
    let dead = wait_until(DEADLINE, "dead letter", || async { env.bus.get(&dlq).await.ok().flatten() }).await;
    assert_eq!(dead.headers["x-sb-reason"], "send_permanent");
    assert_eq!(dead.headers["x-sb-error-code"], "131026");
    assert_eq!(dead.headers["x-sb-attempts"], "1");
    assert_eq!(dead.headers["x-sb-source-queue"], env.bus.topology().outbound);
    assert!(dead.headers["x-sb-dead-lettered-at"].parse::<i64>().unwrap() > 0);
    dead.ack().await.unwrap();
    assert_eq!(env.graph.sends().len(), 1, "not retried");
    assert!(env.graph.delivered().is_empty());
    env.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_reply_is_sent_as_ordered_parts_of_at_most_4096_characters() {
    let mut env = TestEnv::new().await;
    let sentence = "This answer is deliberately long and keeps going. ";
    let long = sentence.repeat(5000 / sentence.len() + 1);
    env.llm.script([LlmReply::Text(long.clone())]);
    env.start_all().await;
    assert_eq!(env.post_webhook(text("wamid.long.1", "tell me everything"), None).await.status(), 200);
    let parts = wait_until(DEADLINE, "two parts", || async {
        let d = env.graph.delivered_to(USER);
        (d.len() >= 2).then_some(d)
    })
    .await;
    assert_eq!(parts.len(), 2);
    assert!(parts.iter().all(|p| p.chars().count() <= 4096));
    assert_eq!(parts.join(" "), long.trim());
    env.teardown().await;
}
