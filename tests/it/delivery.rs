//! Delivery WhatsApp accepts (issue #4): error classes, the retry ladder, pauses, limits,
//! the 24-hour window, statuses, redrive, read receipts.

use std::time::{Duration, Instant};

use switchboard_bus::parked::Filter;
use switchboard_tests::{wait_until, webhook, webhook::Text, GraphReply, LlmReply, TestEnv, PHONE_NUMBER_ID};

use crate::DEADLINE;

fn msg(from: &str, wamid: &str, body: &str) -> Vec<u8> {
    webhook::text_batch(PHONE_NUMBER_ID, &[Text { from, wamid, body, timestamp: webhook::now_s() }])
}

async fn drained(env: &TestEnv, queue: &str) {
    wait_until(DEADLINE, "queue drained", || async { (env.bus.queue_depth(queue).await.ok()? == 0).then_some(()) })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pair_rate_for_one_recipient_does_not_slow_the_others() {
    let mut env = TestEnv::new().await;
    env.graph.script_for("15552000001", [GraphReply::Fixture("131056_pair_rate.json")]);
    env.start_all().await;
    let start = Instant::now();
    for (i, user) in ["15552000001", "15552000002", "15552000003"].iter().enumerate() {
        assert_eq!(env.post_webhook(msg(user, &format!("wamid.pr.{i}"), "hi"), None).await.status(), 200);
    }
    wait_until(DEADLINE, "the two others", || async {
        (env.graph.delivered_to("15552000002").len() == 1 && env.graph.delivered_to("15552000003").len() == 1)
            .then_some(())
    })
    .await;
    let others_done = start.elapsed();
    let slowed = wait_until(DEADLINE, "the throttled recipient", || async {
        env.graph.delivered().into_iter().find(|s| s.to.as_deref() == Some("15552000001"))
    })
    .await;
    assert!(others_done < Duration::from_secs(3), "others took {others_done:?}");
    let first_try = env.graph.sends().into_iter().find(|s| s.to.as_deref() == Some("15552000001")).unwrap();
    assert!(slowed.at - first_try.at >= Duration::from_millis(5_500), "the recipient waited the pair-rate penalty");
    assert_eq!(env.graph.delivered().len(), 3, "nothing lost, nothing doubled");
    env.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throughput_errors_slow_the_number_and_lose_nothing() {
    // One send at a time: a send already on the wire when the 130429 comes back cannot be
    // recalled, and the test is about the sends that reserve their slot after it.
    let mut env = TestEnv::with(|s| {
        s.send_backoff_base_ms = 400;
        s.dispatcher_concurrency = 1;
    })
    .await;
    env.graph.script([GraphReply::Fixture("130429_throughput.json")]);
    env.start_all().await;
    for i in 0..5 {
        let user = format!("1555300000{i}");
        assert_eq!(env.post_webhook(msg(&user, &format!("wamid.tp.{i}"), "hi"), None).await.status(), 200);
    }
    wait_until(DEADLINE, "all five", || async { (env.graph.delivered().len() >= 5).then_some(()) }).await;
    let sends = env.graph.sends();
    let error_at = sends[0].at;
    assert!(sends[0].accepted.is_none());
    // Every send after the throughput error waited the phone number's penalty.
    for s in &sends[1..] {
        assert!(
            s.at - error_at >= Duration::from_millis(380),
            "a send {:?} after the 130429 came too soon",
            s.at - error_at
        );
    }
    assert_eq!(env.graph.delivered().len(), 5);
    env.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_token_pauses_the_tenant_keeps_its_replies_and_resumes() {
    let mut env = TestEnv::new().await;
    env.graph.script([GraphReply::Fixture("190_token_expired.json")]);
    env.start_all().await;
    assert_eq!(env.post_webhook(msg("15554000001", "wamid.tok.1", "first"), None).await.status(), 200);
    let paused =
        wait_until(DEADLINE, "tenant paused", || async { env.store.tenant_paused("default").await.ok().flatten() })
            .await;
    assert!(paused.starts_with("token_invalid"), "{paused}");
    assert_eq!(env.post_webhook(msg("15554000002", "wamid.tok.2", "second"), None).await.status(), 200);
    let held = env.bus.topology().held.clone();
    wait_until(DEADLINE, "both replies held", || async { (env.bus.queue_depth(&held).await.ok()? == 2).then_some(()) })
        .await;
    assert!(env.graph.delivered().is_empty(), "nothing sent while paused");
    assert_eq!(env.graph.sends().len(), 1, "one refused attempt, then no more calls");

    let released = switchboard_dispatcher::resume_tenant(&env.bus, &env.store, "default").await.unwrap();
    assert_eq!(released, 2);
    wait_until(DEADLINE, "both delivered", || async { (env.graph.delivered().len() >= 2).then_some(()) }).await;
    assert_eq!(env.graph.delivered_to("15554000001"), vec!["reply to: first"]);
    assert_eq!(env.graph.delivered_to("15554000002"), vec!["reply to: second"]);
    env.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dispatcher_killed_while_the_reply_waits_in_the_ladder_still_delivers_once() {
    let mut env = TestEnv::with(|s| {
        s.send_backoff_base_ms = 1_000; // the reply sits in the ladder for a second or two
        s.send_backoff_max_ms = 2_000;
    })
    .await;
    env.graph.script([GraphReply::Error { status: 503, code: 131016 }]);
    env.start_ingress().await;
    let worker = env.start_worker();
    let doomed = env.start_dispatcher();
    assert_eq!(env.post_webhook(msg("15555000001", "wamid.lad.1", "hello"), None).await.status(), 200);
    wait_until(DEADLINE, "the failed attempt", || async { (!env.graph.sends().is_empty()).then_some(()) }).await;
    let ladder: Vec<String> = env.bus.topology().retry_steps.iter().map(|(_, q)| q.clone()).collect();
    wait_until(DEADLINE, "the reply on the ladder", || async {
        for q in &ladder {
            if env.bus.queue_depth(q).await.ok()? > 0 {
                return Some(());
            }
        }
        None
    })
    .await;
    doomed.kill().await;
    let dispatcher = env.start_dispatcher();
    wait_until(DEADLINE, "delivery after restart", || async { env.graph.delivered().into_iter().next() }).await;
    drained(&env, &env.bus.topology().outbound).await;
    dispatcher.stop().await;
    worker.stop().await;
    assert_eq!(env.graph.delivered().len(), 1);
    env.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redrive_resumes_at_the_unsent_part_and_never_sends_twice() {
    let mut env = TestEnv::new().await;
    let sentence = "This answer is long enough to need two messages. ";
    let long = sentence.repeat(5000 / sentence.len() + 1);
    env.llm.script([LlmReply::Text(long.clone())]);
    // Part one goes out, part two is refused permanently.
    env.graph.script([GraphReply::Ok, GraphReply::Fixture("131009_param_value.json")]);
    env.start_all().await;
    assert_eq!(env.post_webhook(msg("15556000001", "wamid.rd.1", "tell me all"), None).await.status(), 200);
    let dlq = env.bus.topology().dlq.clone();
    wait_until(DEADLINE, "dead letter", || async { (env.bus.queue_depth(&dlq).await.ok()? == 1).then_some(()) }).await;
    assert_eq!(env.graph.delivered().len(), 1);

    let parked = env.bus.peek(&dlq, &Filter::default(), 10).await.unwrap();
    assert_eq!(parked.len(), 1);
    assert_eq!(parked[0].headers["x-sb-reason"], "send_permanent");
    assert_eq!(parked[0].headers["x-sb-error-code"], "131009");
    let moved = env
        .bus
        .redrive(&dlq, &Filter { reason: Some("send_permanent".into()), tenant: Some("default".into()) })
        .await
        .unwrap();
    assert_eq!(moved, 1);
    wait_until(DEADLINE, "part two", || async { (env.graph.delivered().len() >= 2).then_some(()) }).await;
    drained(&env, &env.bus.topology().outbound).await;
    let parts = env.graph.delivered_to("15556000001");
    assert_eq!(parts.len(), 2, "part one was not sent again");
    assert_eq!(parts.join(" "), long.trim());
    assert_eq!(env.bus.queue_depth(&dlq).await.unwrap(), 0);
    env.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn walks_of_one_parking_queue_take_turns_across_connections() {
    use switchboard_domain::{DeadLetter, DeadLetterReason};
    let env = TestEnv::new().await;
    let topology = env.bus.topology().clone();
    const N: usize = 30;
    for i in 0..N {
        let info = DeadLetter {
            reason: if i % 2 == 0 { DeadLetterReason::SendPermanent } else { DeadLetterReason::Expired },
            tenant_id: Some("default".into()),
            error_code: None,
            last_error: "x".into(),
            attempts: 1,
            first_attempt_at_ms: 1,
            dead_lettered_at_ms: 1,
            source_queue: topology.outbound.clone(),
        };
        env.bus.publish(env.bus.dead_letter(b"{}".to_vec(), Default::default(), &info)).await.unwrap();
    }
    // Two processes' worth of readers (two connections), two walks each, all at once: an
    // operator listing while dispatchers count by reason. Each sees the whole queue.
    let other = env.role_bus("other-process");
    let all = Filter::default();
    let (dlq, all) = (&topology.dlq, &all);
    let (a, b, c, d) = tokio::join!(
        env.bus.peek(dlq, all, 1000),
        other.peek(dlq, all, 1000),
        env.bus.peek(dlq, all, 1000),
        other.peek(dlq, all, 1000)
    );
    for seen in [a, b, c, d] {
        assert_eq!(seen.unwrap().len(), N);
    }
    // A redrive alongside a listing: the listing sees either all of them or none.
    let expired = Filter { reason: Some("expired".into()), tenant: None };
    let redrive = env.bus.redrive(&topology.dlq, &expired);
    let listing = other.peek(dlq, all, 1000);
    let (moved, listed) = tokio::join!(redrive, listing);
    assert_eq!(moved.unwrap(), N / 2);
    assert!([N, N / 2].contains(&listed.unwrap().len()));
    assert_eq!(env.bus.queue_depth(&topology.dlq).await.unwrap() as usize, N / 2);
    other.close().await;
    env.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statuses_out_of_order_end_as_read() {
    let mut env = TestEnv::new().await;
    env.start_all().await;
    let status = |wamid: &str, status: &str, ts: i64| {
        format!(
            r#"{{"object":"whatsapp_business_account","entry":[{{"id":"1","changes":[{{"field":"messages","value":{{"messaging_product":"whatsapp","metadata":{{"display_phone_number":"1","phone_number_id":"{PHONE_NUMBER_ID}"}},"statuses":[{{"id":"{wamid}","status":"{status}","timestamp":"{ts}","recipient_id":"15557000001","biz_opaque_callback_data":"rp_x"}}]}}}}]}}]}}"#
        )
        .into_bytes()
    };
    let now = webhook::now_s();
    for (st, ts) in [("sent", now), ("read", now + 2), ("delivered", now + 1), ("sent", now)] {
        assert_eq!(env.post_webhook(status("wamid.out.1", st, ts), None).await.status(), 200);
    }
    drained(&env, &env.bus.topology().statuses).await;
    let record = wait_until(DEADLINE, "status", || async {
        env.store.status("default", "wamid.out.1").await.ok().flatten().filter(|r| r.status == "read")
    })
    .await;
    assert_eq!(record.reply_id.as_deref(), Some("rp_x"));
    env.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_status_with_a_retryable_code_sends_the_message_again() {
    let mut env = TestEnv::new().await;
    env.start_all().await;
    assert_eq!(env.post_webhook(msg("15558000001", "wamid.fs.1", "hello"), None).await.status(), 200);
    let first = wait_until(DEADLINE, "first delivery", || async { env.graph.delivered().into_iter().next() }).await;
    let failed = |code: i64| {
        format!(
            r#"{{"object":"whatsapp_business_account","entry":[{{"id":"1","changes":[{{"field":"messages","value":{{"messaging_product":"whatsapp","metadata":{{"display_phone_number":"1","phone_number_id":"{PHONE_NUMBER_ID}"}},"statuses":[{{"id":"{}","status":"failed","timestamp":"{}","recipient_id":"15558000001","biz_opaque_callback_data":"{}","errors":[{{"code":{code},"title":"x"}}]}}]}}}}]}}]}}"#,
            first.accepted.clone().unwrap(),
            webhook::now_s(),
            first.biz_opaque_callback_data.clone().unwrap()
        )
        .into_bytes()
    };
    assert_eq!(env.post_webhook(failed(131000), None).await.status(), 200);
    let resent = wait_until(DEADLINE, "the resend", || async {
        let d = env.graph.delivered_to("15558000001");
        (d.len() >= 2).then_some(d)
    })
    .await;
    assert_eq!(resent, vec!["reply to: hello", "reply to: hello"]);
    // A permanent failure of the resent message is only recorded.
    let second = env.graph.delivered().into_iter().nth(1).unwrap();
    let permanent = String::from_utf8(failed(131026))
        .unwrap()
        .replace(first.accepted.as_deref().unwrap(), second.accepted.as_deref().unwrap());
    assert_eq!(env.post_webhook(permanent.into_bytes(), None).await.status(), 200);
    let rec = wait_until(DEADLINE, "failure recorded", || async {
        env.store.status("default", second.accepted.as_deref().unwrap()).await.ok().flatten()
    })
    .await;
    assert_eq!((rec.status.as_str(), rec.error_codes.clone()), ("failed", vec![131026]));
    drained(&env, &env.bus.topology().statuses).await;
    assert_eq!(env.graph.delivered().len(), 2);
    env.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_outside_the_24_hour_window_are_dead_lettered_not_sent() {
    let mut env = TestEnv::new().await;
    env.start_all().await;
    let old = webhook::now_s() - 25 * 3600;
    let body = webhook::text_batch(
        PHONE_NUMBER_ID,
        &[Text { from: "15559000001", wamid: "wamid.win.1", body: "late", timestamp: old }],
    );
    assert_eq!(env.post_webhook(body, None).await.status(), 200);
    let dlq = env.bus.topology().dlq.clone();
    let dead = wait_until(DEADLINE, "dead letter", || async { env.bus.get(&dlq).await.ok().flatten() }).await;
    assert_eq!(dead.headers["x-sb-reason"], "window_closed");
    dead.ack().await.unwrap();
    assert!(env.graph.sends().is_empty(), "no 131047 earned");
    env.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_older_than_the_max_age_is_not_sent() {
    let mut env = TestEnv::with(|s| s.reply_max_age_secs = 1).await;
    env.llm.set_fallback(LlmReply::Delayed(Duration::from_millis(1_300), Box::new(LlmReply::Echo)));
    env.start_all().await;
    assert_eq!(env.post_webhook(msg("15559000002", "wamid.age.1", "slow"), None).await.status(), 200);
    let dlq = env.bus.topology().dlq.clone();
    let dead = wait_until(DEADLINE, "dead letter", || async { env.bus.get(&dlq).await.ok().flatten() }).await;
    assert_eq!(dead.headers["x-sb-reason"], "expired");
    dead.ack().await.unwrap();
    assert!(env.graph.delivered().is_empty());
    env.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limit_of_five_per_second_paces_a_burst_of_fifty_and_loses_none() {
    let mut env = TestEnv::with(|s| {
        s.rate_per_number = 5.0;
        s.rate_burst = 1;
    })
    .await;
    env.start_all().await;
    let msgs: Vec<(String, String)> = (0..50).map(|i| (format!("155510{i:05}"), format!("wamid.rl.{i}"))).collect();
    let texts: Vec<Text<'_>> =
        msgs.iter().map(|(u, w)| Text { from: u, wamid: w, body: "hi", timestamp: webhook::now_s() }).collect();
    assert_eq!(env.post_webhook(webhook::text_batch(PHONE_NUMBER_ID, &texts), None).await.status(), 200);
    wait_until(Duration::from_secs(60), "all fifty", || async { (env.graph.delivered().len() >= 50).then_some(()) })
        .await;
    let sends = env.graph.delivered();
    let span = sends.last().unwrap().at - sends.first().unwrap().at;
    assert!(span >= Duration::from_secs(9), "50 messages at 5/s went out in {span:?}");
    assert_eq!(sends.len(), 50);
    env.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_are_marked_read_with_typing_and_a_failing_receipt_never_blocks_the_reply() {
    let mut env = TestEnv::with(|s| s.mark_read = true).await;
    env.start_all().await;
    assert_eq!(env.post_webhook(msg("15559100001", "wamid.mr.1", "hello"), None).await.status(), 200);
    let receipt = wait_until(DEADLINE, "read receipt", || async { env.graph.receipts().into_iter().next() }).await;
    assert_eq!(receipt.raw["message_id"], "wamid.mr.1");
    assert_eq!(receipt.raw["typing_indicator"]["type"], "text");
    wait_until(DEADLINE, "reply", || async { env.graph.delivered().into_iter().next() }).await;

    env.graph.fail_receipts();
    assert_eq!(env.post_webhook(msg("15559100002", "wamid.mr.2", "again"), None).await.status(), 200);
    wait_until(DEADLINE, "second reply despite the failing receipt", || async {
        env.graph.delivered_to("15559100002").into_iter().next()
    })
    .await;
    assert_eq!(env.graph.receipts().len(), 2);
    env.teardown().await;
}
