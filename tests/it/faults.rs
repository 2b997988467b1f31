//! Faults: the broker going away, a worker dying mid-turn.

use std::time::Duration;

use switchboard_tests::{wait_until, webhook, webhook::Text, LlmReply, TcpProxy, TestEnv, PHONE_NUMBER_ID};

use crate::DEADLINE;

fn amqp_addr(env: &TestEnv) -> std::net::SocketAddr {
    let url = env.settings.amqp_url.expose();
    let host_port = url.split('@').nth(1).unwrap_or(url.trim_start_matches("amqp://")).split('/').next().unwrap();
    use std::net::ToSocketAddrs;
    host_port.to_socket_addrs().unwrap().next().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_down_means_503_and_nothing_lost_once_it_is_back() {
    let mut env = TestEnv::with(|s| s.publish_timeout_ms = 1_000).await;
    let proxy = TcpProxy::start(amqp_addr(&env)).await;
    let via_proxy = format!("amqp://guest:guest@{}/%2f", proxy.addr());
    env.start_ingress_with(Some(via_proxy)).await;
    let msg = |wamid: &str| {
        webhook::text_batch(
            PHONE_NUMBER_ID,
            &[Text { from: "15551234567", wamid, body: "hi", timestamp: webhook::now_s() }],
        )
    };

    assert_eq!(env.post_webhook(msg("wamid.f.1"), None).await.status(), 200);
    proxy.down();
    let res = env.post_webhook(msg("wamid.f.2"), None).await;
    assert_eq!(res.status(), 503, "Meta must retry");
    assert!(res.headers().contains_key("retry-after"));
    let ready = reqwest::get(format!("{}/readyz", env.ingress_url())).await.unwrap();
    assert_eq!(ready.status(), 503);

    proxy.up();
    // Meta's retry of the same webhook now succeeds.
    let status = wait_until(DEADLINE, "ingress recovers", || async {
        let s = env.post_webhook(msg("wamid.f.2"), None).await.status();
        (s == 200).then_some(s)
    })
    .await;
    assert_eq!(status, 200);
    assert_eq!(env.bus.queue_depth(&env.bus.topology().inbound).await.unwrap(), 2);
    env.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_turn_is_replaced_and_every_message_answered_exactly_once() {
    let mut env = TestEnv::new().await;
    // Slow LLM so the kill lands while calls are in flight.
    env.llm.set_fallback(LlmReply::Delayed(Duration::from_millis(800), Box::new(LlmReply::Echo)));
    env.start_ingress().await;
    let dispatcher = env.start_dispatcher();
    let doomed = env.start_worker();
    let users = ["15550000011", "15550000012", "15550000013"];
    for (i, u) in users.iter().enumerate() {
        let body = webhook::text_batch(
            PHONE_NUMBER_ID,
            &[Text {
                from: u,
                wamid: &format!("wamid.k.{i}"),
                body: &format!("question {i}"),
                timestamp: webhook::now_s(),
            }],
        );
        assert_eq!(env.post_webhook(body, None).await.status(), 200);
    }
    wait_until(DEADLINE, "LLM calls in flight", || async { (env.llm.calls().len() >= 3).then_some(()) }).await;
    doomed.kill().await;
    let survivor = env.start_worker();
    wait_until(DEADLINE, "three replies", || async { (env.graph.delivered().len() >= 3).then_some(()) }).await;
    let inbound = env.bus.topology().inbound.clone();
    wait_until(DEADLINE, "inbound drained", || async {
        (env.bus.queue_depth(&inbound).await.ok()? == 0).then_some(())
    })
    .await;
    survivor.stop().await;
    dispatcher.stop().await;
    for (i, u) in users.iter().enumerate() {
        assert_eq!(env.graph.delivered_to(u), vec![format!("reply to: question {i}")], "user {i}");
    }
    env.teardown().await;
}
