//! Metrics, probes and recovery (issue #5).

use std::{net::ToSocketAddrs, time::Duration};

use switchboard_store::Store;
use switchboard_tests::{wait_until, webhook, webhook::Text, TcpProxy, TestEnv, PHONE_NUMBER_ID};
use tokio_util::sync::CancellationToken;

use crate::DEADLINE;

/// The value of the first series whose line starts with `prefix` (name plus labels).
pub(crate) fn series(text: &str, prefix: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#') && l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_expose_the_named_series_and_they_move_when_a_message_flows() {
    switchboard_telemetry::metrics::install();
    let mut env = TestEnv::new().await;
    let url = env.start_all().await;
    let scrape = || async { reqwest::get(format!("{url}/metrics")).await.unwrap().text().await.unwrap() };
    let before = scrape().await;
    let body = webhook::text_batch(
        PHONE_NUMBER_ID,
        &[Text { from: "15551110000", wamid: "wamid.met.1", body: "hi", timestamp: webhook::now_s() }],
    );
    assert_eq!(env.post_webhook(body, None).await.status(), 200);
    assert_eq!(env.post_webhook(b"{}".to_vec(), Some(Some("sha256=00".into()))).await.status(), 401);
    wait_until(DEADLINE, "the reply", || async { env.graph.delivered().into_iter().next() }).await;
    let after = wait_until(DEADLINE, "send counted", || async {
        let text = scrape().await;
        (series(&text, "switchboard_sends_total{") >= 1.0).then_some(text)
    })
    .await;
    for (name, grew_by_at_least) in [
        ("switchboard_webhooks_total{outcome=\"accepted\"}", 1.0),
        ("switchboard_webhooks_total{outcome=\"bad_signature\"}", 1.0),
        ("switchboard_security_events_total{kind=\"bad_signature\"}", 1.0),
        ("switchboard_webhook_events_total{kind=\"inbound\"}", 1.0),
        ("switchboard_publish_confirm_seconds_count", 2.0),
        ("switchboard_queue_lag_seconds_count", 2.0),
        ("switchboard_turns_total{", 1.0),
        ("switchboard_llm_request_seconds_count", 1.0),
        ("switchboard_sends_total{", 1.0),
        ("switchboard_rate_limit_wait_seconds_count", 1.0),
    ] {
        let delta = series(&after, name) - series(&before, name);
        assert!(delta >= grew_by_at_least, "{name} grew by {delta}\n{after}");
    }
    assert!(after.contains("switchboard_in_flight{"), "in-flight gauge exported");
    assert!(!after.contains("15551110000"), "no phone number in any label");
    env.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_turns_false_while_redis_is_unreachable_and_back_when_it_returns() {
    let mut env = TestEnv::new().await;
    let redis_url = env.settings.redis_url.expose().to_string();
    let host = redis_url.trim_start_matches("redis://").split('/').next().unwrap().to_string();
    let proxy = TcpProxy::start(host.to_socket_addrs().unwrap().next().unwrap()).await;
    let via_proxy = Store::connect(&format!("redis://{}/0", proxy.addr()), &env.settings.namespace, 2).await.unwrap();
    env.role_store = Some(via_proxy.clone());
    let url = env.start_ingress().await;
    let ready = || async { reqwest::get(format!("{url}/readyz")).await.unwrap().status().as_u16() };
    assert_eq!(ready().await, 200);
    proxy.down();
    wait_until(DEADLINE, "not ready", || async { (ready().await == 503).then_some(()) }).await;
    proxy.up();
    wait_until(DEADLINE, "ready again", || async { (ready().await == 200).then_some(()) }).await;

    // The worker's and dispatcher's probe server says the same, and turns unready when draining.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let probe_url = format!("http://{}", listener.local_addr().unwrap());
    let draining = CancellationToken::new();
    let stop = CancellationToken::new();
    let probes =
        switchboard_ingress::probes::Probes { bus: env.bus.clone(), store: via_proxy, draining: draining.clone() };
    let server = tokio::spawn(switchboard_ingress::probes::serve(listener, probes, stop.clone()));
    let probe = |path: &'static str| {
        let u = probe_url.clone();
        async move { reqwest::get(format!("{u}{path}")).await.map(|r| r.status().as_u16()).unwrap_or(0) }
    };
    wait_until(DEADLINE, "probe server up", || async { (probe("/healthz").await == 200).then_some(()) }).await;
    assert_eq!(probe("/readyz").await, 200);
    proxy.down();
    wait_until(DEADLINE, "worker probe not ready", || async { (probe("/readyz").await == 503).then_some(()) }).await;
    assert_eq!(probe("/healthz").await, 200, "alive all the same");
    proxy.up();
    wait_until(DEADLINE, "worker probe ready", || async { (probe("/readyz").await == 200).then_some(()) }).await;
    draining.cancel();
    assert_eq!(probe("/readyz").await, 503, "draining is not ready");
    assert!(probe("/metrics").await == 200);
    stop.cancel();
    let _ = server.await;
    env.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_role_recovers_from_a_broker_restart_under_load_and_nothing_is_lost() {
    let mut env = TestEnv::with(|s| s.publish_timeout_ms = 1_000).await;
    let amqp = env.settings.amqp_url.expose().to_string();
    let host = amqp.split('@').nth(1).unwrap().split('/').next().unwrap().to_string();
    let proxy = TcpProxy::start(host.to_socket_addrs().unwrap().next().unwrap()).await;
    env.role_amqp_url = Some(format!("amqp://guest:guest@{}/%2f", proxy.addr()));
    env.start_all().await;
    const USERS: usize = 30;
    // Like Meta: a webhook that did not get a 200 is sent again until it does.
    let post = |i: usize| {
        let body = webhook::text_batch(
            PHONE_NUMBER_ID,
            &[Text {
                from: &format!("155522{i:05}"),
                wamid: &format!("wamid.chaos.{i}"),
                body: &format!("question {i}"),
                timestamp: webhook::now_s(),
            }],
        );
        let env = &env;
        async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
            loop {
                if env.post_webhook(body.clone(), None).await.status() == 200 {
                    return;
                }
                assert!(tokio::time::Instant::now() < deadline, "webhook {i} never accepted");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    for i in 0..USERS / 2 {
        post(i).await;
    }
    // The broker "restarts": every connection is cut and new ones refused for two seconds.
    proxy.down();
    let outage = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(2)).await;
        proxy.up();
        proxy
    });
    for i in USERS / 2..USERS {
        post(i).await; // 503s during the outage, accepted after it
    }
    let _proxy = outage.await.unwrap();
    wait_until(Duration::from_secs(60), "every message answered", || async {
        (env.graph.delivered().len() >= USERS).then_some(())
    })
    .await;
    let inbound = env.bus.topology().inbound.clone();
    wait_until(DEADLINE, "inbound settled", || async {
        (env.bus.queue_depth(&inbound).await.ok()? == 0).then_some(())
    })
    .await;
    for i in 0..USERS {
        assert_eq!(
            env.graph.delivered_to(&format!("155522{i:05}")),
            vec![format!("reply to: question {i}")],
            "user {i}"
        );
    }
    env.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_waiting_are_counted_by_reason() {
    use switchboard_domain::{now_ms, DeadLetter, DeadLetterReason};
    switchboard_telemetry::metrics::install();
    let env = TestEnv::new().await;
    let tenant = env.settings.namespace.clone(); // a label value unique to this test
    for reason in [DeadLetterReason::SendPermanent, DeadLetterReason::SendPermanent, DeadLetterReason::Expired] {
        let info = DeadLetter {
            reason,
            tenant_id: Some(tenant.clone()),
            error_code: None,
            last_error: "x".into(),
            attempts: 1,
            first_attempt_at_ms: now_ms(),
            dead_lettered_at_ms: now_ms(),
            source_queue: env.bus.topology().outbound.clone(),
        };
        env.bus.publish(env.bus.dead_letter(b"{}".to_vec(), Default::default(), &info)).await.unwrap();
    }
    switchboard_dispatcher::dlq_depth_by_reason(&env.bus).await;
    let text = switchboard_telemetry::metrics::render();
    let line = |reason: &str| format!("switchboard_dlq_messages{{reason=\"{reason}\",tenant=\"{tenant}\"}}");
    assert_eq!(series(&text, &line("send_permanent")), 2.0, "{text}");
    assert_eq!(series(&text, &line("expired")), 1.0);
    assert_eq!(env.bus.queue_depth(&env.bus.topology().dlq).await.unwrap(), 3, "counting leaves them in place");
    env.teardown().await;
}
