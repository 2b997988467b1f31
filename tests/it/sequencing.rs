//! Conversation sequencing: one conversation, one turn at a time, in order, across replicas.

use std::{collections::BTreeMap, time::Duration};

use switchboard_bus::topology::routing;
use switchboard_domain::{turn_reply_id, OutboundJob, Pseudonymizer, ReplyKind, UserRef};
use switchboard_store::{
    lease::{Acquired, Lease},
    ClaimKey,
};
use switchboard_tests::{wait_until, webhook, webhook::Text, LlmReply, TestEnv, PHONE_NUMBER_ID};

use crate::DEADLINE;

fn one(from: &str, wamid: &str, body: &str, timestamp: i64) -> Vec<u8> {
    webhook::text_batch(PHONE_NUMBER_ID, &[Text { from, wamid, body, timestamp }])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_messages_within_the_window_become_one_turn_and_one_reply() {
    let mut env = TestEnv::with(|s| s.coalesce_window_ms = 600).await;
    env.start_ingress().await;
    let (w1, w2, d) = (env.start_worker(), env.start_worker(), env.start_dispatcher());
    for (i, text) in ["hi", "I have a question", "about my order"].iter().enumerate() {
        let res = env
            .post_webhook(one("15551230001", &format!("wamid.co.{i}"), text, webhook::now_s() + i as i64), None)
            .await;
        assert_eq!(res.status(), 200);
    }
    let reply = wait_until(DEADLINE, "the reply", || async { env.graph.delivered().into_iter().next() }).await;
    assert_eq!(reply.body, "reply to: about my order");
    let calls = env.llm.calls();
    assert_eq!(calls.len(), 1, "one LLM call for the three messages");
    assert_eq!(calls[0].user_messages(), vec!["hi", "I have a question", "about my order"]);
    for role in [w1, w2, d] {
        role.stop().await;
    }
    assert_eq!(env.graph.delivered().len(), 1, "one reply");
    env.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_arriving_during_generation_supersedes_the_stale_reply() {
    let mut env = TestEnv::with(|s| s.coalesce_window_ms = 100).await;
    env.llm.set_fallback(LlmReply::Delayed(Duration::from_millis(800), Box::new(LlmReply::Echo)));
    env.start_all().await;
    assert_eq!(
        env.post_webhook(one("15551230002", "wamid.st.1", "what is the price", webhook::now_s()), None).await.status(),
        200
    );
    wait_until(DEADLINE, "first LLM call in flight", || async { (!env.llm.calls().is_empty()).then_some(()) }).await;
    assert_eq!(
        env.post_webhook(one("15551230002", "wamid.st.2", "of the blue one", 1_760_000_001), None).await.status(),
        200
    );
    let reply = wait_until(DEADLINE, "the reply", || async { env.graph.delivered().into_iter().next() }).await;
    assert_eq!(reply.body, "reply to: of the blue one", "the reply covers the newer message");
    let calls = env.llm.calls();
    assert_eq!(calls.len(), 2, "regenerated once");
    assert_eq!(calls[1].user_messages(), vec!["what is the price", "of the blue one"]);
    assert!(calls[1].at >= calls[0].ends, "never two calls at once for one conversation");
    // Settle and make sure the stale reply never goes out.
    let outbound = env.bus.topology().outbound.clone();
    wait_until(DEADLINE, "outbound drained", || async {
        (env.bus.queue_depth(&outbound).await.ok()? == 0).then_some(())
    })
    .await;
    assert_eq!(env.graph.delivered().len(), 1);
    env.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_conversations_interleaved_on_two_workers_stay_ordered_and_exclusive() {
    let mut env = TestEnv::with(|s| {
        s.coalesce_window_ms = 150;
        s.worker_concurrency = 32;
    })
    .await;
    env.llm.set_fallback(LlmReply::Delayed(Duration::from_millis(40), Box::new(LlmReply::Echo)));
    env.start_ingress().await;
    let (w1, w2, d) = (env.start_worker(), env.start_worker(), env.start_dispatcher());
    const CONVS: usize = 50;
    const MSGS: usize = 5;
    for m in 0..MSGS {
        for c in 0..CONVS {
            let from = format!("1555{c:07}");
            let body = format!("c{c} m{m}");
            let res = env
                .post_webhook(one(&from, &format!("wamid.il.{c}.{m}"), &body, webhook::now_s() + m as i64), None)
                .await;
            assert_eq!(res.status(), 200);
        }
    }
    // Every conversation's last message is answered.
    wait_until(Duration::from_secs(60), "every conversation answered", || async {
        let calls = env.llm.calls();
        let done = (0..CONVS)
            .all(|c| calls.iter().any(|call| call.user_messages().last() == Some(&format!("c{c} m{}", MSGS - 1))));
        let inbound_empty = env.bus.queue_depth(&env.bus.topology().inbound).await.ok()? == 0;
        (done && inbound_empty).then_some(())
    })
    .await;
    let outbound = env.bus.topology().outbound.clone();
    wait_until(DEADLINE, "outbound drained", || async {
        (env.bus.queue_depth(&outbound).await.ok()? == 0).then_some(())
    })
    .await;
    for role in [w1, w2, d] {
        role.stop().await;
    }

    let mut by_conv: BTreeMap<usize, Vec<switchboard_tests::LlmCall>> = BTreeMap::new();
    for call in env.llm.calls() {
        let users = call.user_messages();
        let c: usize = users[0].split(' ').next().unwrap()[1..].parse().unwrap();
        assert!(users.iter().all(|u| u.starts_with(&format!("c{c} "))), "one conversation per prompt: {users:?}");
        let order: Vec<usize> = users.iter().map(|u| u.split(" m").nth(1).unwrap().parse().unwrap()).collect();
        assert!(order.windows(2).all(|w| w[0] < w[1]), "conversation {c}: messages out of order {order:?}");
        by_conv.entry(c).or_default().push(call);
    }
    assert_eq!(by_conv.len(), CONVS);
    for (c, mut calls) in by_conv {
        calls.sort_by_key(|call| call.at);
        for pair in calls.windows(2) {
            assert!(pair[1].at >= pair[0].ends, "conversation {c}: two LLM calls overlapped");
        }
        let replies = env.graph.delivered_to(&format!("1555{c:07}"));
        assert!(!replies.is_empty() && replies.len() <= MSGS, "conversation {c} got {} replies", replies.len());
        assert_eq!(replies.last().unwrap(), &format!("reply to: c{c} m{}", MSGS - 1));
    }
    env.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_worker_mid_turn_lets_the_other_finish_with_exactly_one_reply() {
    let mut env = TestEnv::new().await;
    env.llm.set_fallback(LlmReply::Delayed(Duration::from_millis(1_000), Box::new(LlmReply::Echo)));
    env.start_ingress().await;
    let dispatcher = env.start_dispatcher();
    let first = env.start_worker();
    assert_eq!(
        env.post_webhook(one("15551230004", "wamid.kill.1", "are you there", webhook::now_s()), None).await.status(),
        200
    );
    wait_until(DEADLINE, "LLM call in flight", || async { (!env.llm.calls().is_empty()).then_some(()) }).await;
    let second = env.start_worker();
    first.kill().await;
    let reply = wait_until(DEADLINE, "the reply", || async { env.graph.delivered().into_iter().next() }).await;
    assert_eq!(reply.body, "reply to: are you there");
    let inbound = env.bus.topology().inbound.clone();
    wait_until(DEADLINE, "inbound settled", || async {
        (env.bus.queue_depth(&inbound).await.ok()? == 0).then_some(())
    })
    .await;
    second.stop().await;
    dispatcher.stop().await;
    assert_eq!(env.graph.delivered().len(), 1, "exactly one reply");
    assert_eq!(env.llm.calls().len(), 2, "the killed worker's call was abandoned and redone");
    env.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_coalescing_off_sequential_messages_get_one_reply_each_in_order() {
    let mut env = TestEnv::with(|s| s.coalesce_window_ms = 0).await;
    env.start_all().await;
    for i in 0..3 {
        let res = env
            .post_webhook(one("15551230005", &format!("wamid.off.{i}"), &format!("q{i}"), webhook::now_s() + i), None)
            .await;
        assert_eq!(res.status(), 200);
    }
    let replies = wait_until(DEADLINE, "three replies", || async {
        let d = env.graph.delivered_to("15551230005");
        (d.len() >= 3).then_some(d)
    })
    .await;
    assert_eq!(replies, vec!["reply to: q0", "reply to: q1", "reply to: q2"]);
    assert_eq!(env.llm.calls().len(), 3);
    env.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chatty_conversation_does_not_starve_the_others() {
    let mut env = TestEnv::with(|s| {
        s.coalesce_window_ms = 0; // every message its own turn: the worst case for fairness
        s.worker_concurrency = 1;
    })
    .await;
    env.llm.set_fallback(LlmReply::Delayed(Duration::from_millis(100), Box::new(LlmReply::Echo)));
    env.start_all().await;
    // Twenty messages of one user and then one of another, all in one webhook: they reach the
    // worker together, the chatty conversation first.
    let wamids: Vec<String> = (0..20).map(|i| format!("wamid.chat.{i}")).collect();
    let bodies: Vec<String> = (0..20).map(|i| format!("spam {i}")).collect();
    let mut batch: Vec<Text<'_>> = (0..20)
        .map(|i| Text {
            from: "15551230006",
            wamid: &wamids[i],
            body: &bodies[i],
            timestamp: webhook::now_s() + i as i64,
        })
        .collect();
    batch.push(Text {
        from: "15551230007",
        wamid: "wamid.quiet.1",
        body: "just one question",
        timestamp: webhook::now_s(),
    });
    assert_eq!(env.post_webhook(webhook::text_batch(PHONE_NUMBER_ID, &batch), None).await.status(), 200);
    wait_until(DEADLINE, "the quiet user's reply", || async {
        env.graph.delivered_to("15551230007").into_iter().next()
    })
    .await;
    // After each turn the chatty conversation goes to the back of the line: the quiet user
    // waits for a turn or two of it, not for all twenty.
    let chatty_done = env.graph.delivered_to("15551230006").len();
    assert!(chatty_done <= 3, "the quiet user waited for {chatty_done} of the chatty user's turns");
    wait_until(DEADLINE, "all chatty replies", || async {
        (env.graph.delivered_to("15551230006").len() >= 20).then_some(())
    })
    .await;
    env.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_turn_committed_by_a_holder_that_died_before_publishing_is_published_once() {
    let mut env = TestEnv::new().await;
    env.start_ingress().await;
    assert_eq!(
        env.post_webhook(one("15551230008", "wamid.rec.1", "hello?", webhook::now_s()), None).await.status(),
        200
    );
    // Play the dead holder: queue the message, commit a turn for it under the lease, never publish.
    let inbound = env.bus.topology().inbound.clone();
    let delivery =
        wait_until(DEADLINE, "the inbound event", || async { env.bus.get(&inbound).await.ok().flatten() }).await;
    let event: switchboard_domain::InboundEvent = serde_json::from_slice(&delivery.body).unwrap();
    delivery.requeue().await.unwrap();
    let ttl = Duration::from_secs(60);
    env.store.enqueue_message(&event, ttl).await.unwrap();
    let key = ClaimKey::conversation(&event.tenant_id, &event.conversation);
    let Acquired::Lease(lease) = Lease::acquire(&env.store, key, Duration::from_secs(5), Duration::ZERO).await.unwrap()
    else {
        panic!("lease free")
    };
    let wamids = vec![event.wamid.clone()];
    let job = OutboundJob {
        tenant_id: event.tenant_id.clone(),
        phone_number_id: event.phone_number_id.clone(),
        reply_id: turn_reply_id(&event.tenant_id, &wamids),
        to: event.from.clone(),
        conversation: event.conversation.clone(),
        in_reply_to: event.wamid.clone(),
        wamids,
        kind: ReplyKind::Assistant,
        body: "answer from the holder that died".into(),
        user_timestamp: event.timestamp,
        created_at_ms: 0,
        last_received_at_ms: event.received_at_ms,
        trace: Default::default(),
    };
    assert!(env.store.commit_turn(lease.token(), &job, None, ttl, ttl).await.unwrap());
    lease.release().await.unwrap(); // (a dead holder's lease would simply expire)

    let (worker, dispatcher) = (env.start_worker(), env.start_dispatcher());
    let reply =
        wait_until(DEADLINE, "the recovered reply", || async { env.graph.delivered().into_iter().next() }).await;
    assert_eq!(reply.body, "answer from the holder that died");
    wait_until(DEADLINE, "inbound settled", || async {
        (env.bus.queue_depth(&inbound).await.ok()? == 0).then_some(())
    })
    .await;
    worker.stop().await;
    dispatcher.stop().await;
    assert!(env.llm.calls().is_empty(), "the committed answer is not generated again");
    assert_eq!(env.graph.delivered().len(), 1);
    env.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_of_messages_with_one_timestamp_is_answered_in_the_batchs_order() {
    // One webhook, twelve messages in the same second, no coalescing, an instant model: the
    // turns follow the batch's order (not the wamids' sort order), and their replies, published
    // milliseconds apart and taken by two dispatchers at once, reach the user in that order.
    let mut env = TestEnv::with(|s| s.coalesce_window_ms = 0).await;
    env.start_ingress().await;
    let (w, d1, d2) = (env.start_worker(), env.start_dispatcher(), env.start_dispatcher());
    const N: usize = 12;
    let (bodies, wamids): (Vec<String>, Vec<String>) =
        (0..N).map(|i| (format!("m{i}"), format!("wamid.ord.{i}"))).unzip();
    let now = webhook::now_s();
    let texts: Vec<Text<'_>> =
        (0..N).map(|i| Text { from: "15551230077", wamid: &wamids[i], body: &bodies[i], timestamp: now }).collect();
    assert_eq!(env.post_webhook(webhook::text_batch(PHONE_NUMBER_ID, &texts), None).await.status(), 200);
    let replies = wait_until(DEADLINE, "every reply", || async {
        let d = env.graph.delivered_to("15551230077");
        (d.len() >= N).then_some(d)
    })
    .await;
    let expected: Vec<String> = bodies.iter().map(|b| format!("reply to: {b}")).collect();
    assert_eq!(replies, expected);
    for role in [w, d1, d2] {
        role.stop().await;
    }
    env.teardown().await;
}

/// A committed turn's reply for `user`, as the worker would publish it.
async fn committed_reply(env: &TestEnv, user: &str, body: &str) -> OutboundJob {
    let tenant = env.settings.tenant_id.clone();
    let conversation = Pseudonymizer::new(env.settings.pseudonym_key()).conversation(&tenant, user);
    let wamids = vec![format!("wamid.{user}.{body}")];
    let job = OutboundJob {
        reply_id: turn_reply_id(&tenant, &wamids),
        tenant_id: tenant,
        phone_number_id: PHONE_NUMBER_ID.into(),
        to: UserRef { wa_id: Some(user.into()), user_id: None },
        conversation,
        in_reply_to: wamids[0].clone(),
        wamids,
        kind: ReplyKind::Assistant,
        body: body.into(),
        user_timestamp: webhook::now_s(),
        created_at_ms: switchboard_domain::now_ms(),
        last_received_at_ms: switchboard_domain::now_ms(),
        trace: Default::default(),
    };
    let key = ClaimKey::conversation(&job.tenant_id, &job.conversation);
    let Acquired::Lease(lease) = Lease::acquire(&env.store, key, Duration::from_secs(5), Duration::ZERO).await.unwrap()
    else {
        panic!("lease free")
    };
    let ttl = Duration::from_secs(60);
    assert!(env.store.commit_turn(lease.token(), &job, None, ttl, ttl).await.unwrap());
    lease.release().await.unwrap();
    job
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_waits_for_the_earlier_replies_of_its_conversation_and_skips_a_lost_one() {
    let env = TestEnv::with(|s| s.reply_order_wait_ms = 400).await;
    let user = "15551230078";
    let mut jobs = Vec::new();
    for body in ["first", "second", "third"] {
        jobs.push(committed_reply(&env, user, body).await);
    }
    // The broker hands them out newest first: two dispatchers still send them in commit order.
    for job in jobs.iter().rev() {
        env.bus.publish(env.bus.event(routing::OUTBOUND, job).unwrap()).await.unwrap();
    }
    let (d1, d2) = (env.start_dispatcher(), env.start_dispatcher());
    let sent = wait_until(DEADLINE, "three replies", || async {
        let d = env.graph.delivered_to(user);
        (d.len() >= 3).then_some(d)
    })
    .await;
    assert_eq!(sent, ["first", "second", "third"]);

    // A committed reply whose job never reaches a dispatcher holds the next one back for
    // REPLY_ORDER_WAIT_MS only.
    let _lost = committed_reply(&env, user, "lost").await;
    let after = committed_reply(&env, user, "after").await;
    let published = std::time::Instant::now();
    env.bus.publish(env.bus.event(routing::OUTBOUND, &after).unwrap()).await.unwrap();
    wait_until(DEADLINE, "the reply after the lost one", || async {
        (env.graph.delivered_to(user).len() == 4).then_some(())
    })
    .await;
    assert!(published.elapsed() >= Duration::from_millis(400), "it waited for the lost one first");
    assert_eq!(env.graph.delivered_to(user)[3], "after");
    for role in [d1, d2] {
        role.stop().await;
    }
    env.teardown().await;
}
