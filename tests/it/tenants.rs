//! Tenants and their users' rights (issue #6), end to end.

use std::time::Duration;

use switchboard_config::{sha256_hex, Secret, Tenant, TenantDirectory, Tenants};
use switchboard_domain::Pseudonymizer;
use switchboard_tests::{wait_until, webhook, webhook::Text, TestEnv, APP_SECRET, PHONE_NUMBER_ID};
use tokio_util::sync::CancellationToken;

use crate::{observability::series, DEADLINE};

const GLOBEX_NUMBER: &str = "300000000000003";

fn tenant(env: &TestEnv, id: &str, number: &str, prompt: &str, token: &str) -> Tenant {
    let mut t = Tenant::with_defaults(id, &env.settings);
    t.phone_number_ids = vec![number.into()];
    t.app_secrets = vec![Secret::new(APP_SECRET)];
    t.access_token = Some(Secret::new(token));
    t.system_prompt = prompt.into();
    t
}

fn msg(number: &str, from: &str, wamid: &str, body: &str) -> Vec<u8> {
    webhook::text_batch(number, &[Text { from, wamid, body, timestamp: webhook::now_s() }])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_tenants_on_two_numbers_each_answer_with_their_own_assistant() {
    let mut env = TestEnv::new().await;
    env.tenants = TenantDirectory::new(Tenants::new(vec![
        tenant(&env, "acme", PHONE_NUMBER_ID, "You are Acme's assistant.", "acme-token"),
        tenant(&env, "globex", GLOBEX_NUMBER, "You are Globex's assistant.", "globex-token"),
    ]));
    env.start_all().await;
    assert_eq!(
        env.post_webhook(msg(PHONE_NUMBER_ID, "15553330001", "wamid.ten.1", "hello acme"), None).await.status(),
        200
    );
    assert_eq!(
        env.post_webhook(msg(GLOBEX_NUMBER, "15553330002", "wamid.ten.2", "hello globex"), None).await.status(),
        200
    );
    wait_until(DEADLINE, "both replies", || async { (env.graph.delivered().len() >= 2).then_some(()) }).await;
    let calls = env.llm.calls();
    let prompt_for = |text: &str| {
        calls
            .iter()
            .find(|c| c.user_messages().last().map(String::as_str) == Some(text))
            .and_then(|c| c.system_prompt().map(String::from))
    };
    assert_eq!(prompt_for("hello acme").as_deref(), Some("You are Acme's assistant."));
    assert_eq!(prompt_for("hello globex").as_deref(), Some("You are Globex's assistant."));
    let sends = env.graph.delivered();
    let acme = sends.iter().find(|s| s.to.as_deref() == Some("15553330001")).unwrap();
    let globex = sends.iter().find(|s| s.to.as_deref() == Some("15553330002")).unwrap();
    assert_eq!(
        (acme.phone_number_id.as_str(), acme.authorization.as_deref()),
        (PHONE_NUMBER_ID, Some("Bearer acme-token"))
    );
    assert_eq!(
        (globex.phone_number_id.as_str(), globex.authorization.as_deref()),
        (GLOBEX_NUMBER, Some("Bearer globex-token"))
    );
    env.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_restricts_with_one_confirmation_and_start_restores() {
    let mut env = TestEnv::new().await;
    env.start_all().await;
    let user = "15553330003";
    assert_eq!(env.post_webhook(msg(PHONE_NUMBER_ID, user, "wamid.stop.1", "STOP"), None).await.status(), 200);
    let confirmation =
        wait_until(DEADLINE, "the confirmation", || async { env.graph.delivered_to(user).into_iter().next() }).await;
    assert_eq!(confirmation, env.settings.stop_reply);
    // While restricted: acknowledged, not answered, no LLM call; a repeated STOP says nothing.
    assert_eq!(
        env.post_webhook(msg(PHONE_NUMBER_ID, user, "wamid.stop.2", "are you there?"), None).await.status(),
        200
    );
    assert_eq!(env.post_webhook(msg(PHONE_NUMBER_ID, user, "wamid.stop.3", "stop"), None).await.status(), 200);
    let inbound = env.bus.topology().inbound.clone();
    wait_until(DEADLINE, "inbound settled", || async {
        (env.bus.queue_depth(&inbound).await.ok()? == 0).then_some(())
    })
    .await;
    let outbound = env.bus.topology().outbound.clone();
    wait_until(DEADLINE, "outbound settled", || async {
        (env.bus.queue_depth(&outbound).await.ok()? == 0).then_some(())
    })
    .await;
    assert!(env.llm.calls().is_empty(), "no LLM call for a restricted user");
    assert_eq!(env.graph.delivered_to(user).len(), 1, "one confirmation only");

    assert_eq!(env.post_webhook(msg(PHONE_NUMBER_ID, user, "wamid.stop.4", "START"), None).await.status(), 200);
    wait_until(DEADLINE, "welcome back", || async { (env.graph.delivered_to(user).len() >= 2).then_some(()) }).await;
    assert_eq!(
        env.post_webhook(msg(PHONE_NUMBER_ID, user, "wamid.stop.5", "what are your hours?"), None).await.status(),
        200
    );
    let replies = wait_until(DEADLINE, "an answer again", || async {
        let d = env.graph.delivered_to(user);
        (d.len() >= 3).then_some(d)
    })
    .await;
    assert_eq!(
        replies,
        vec![
            env.settings.stop_reply.clone(),
            env.settings.start_reply.clone(),
            "reply to: what are your hours?".into()
        ]
    );
    // The user's own commands are audited.
    let conv = Pseudonymizer::new(env.settings.pseudonym_key()).conversation("default", user);
    let log = env.store.audit_log("default", 0, Duration::from_secs(3600), 100).await.unwrap();
    let actions: Vec<&str> =
        log.iter().filter(|r| r.subject_ref.as_deref() == Some(conv.as_str())).map(|r| r.action.as_str()).collect();
    assert!(actions.contains(&"stop") && actions.contains(&"start"), "{actions:?}");
    env.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forget_erases_the_context_and_confirms() {
    let mut env = TestEnv::new().await;
    env.start_all().await;
    let user = "15553330004";
    assert_eq!(
        env.post_webhook(msg(PHONE_NUMBER_ID, user, "wamid.fg.1", "remember my order 42"), None).await.status(),
        200
    );
    wait_until(DEADLINE, "reply", || async { env.graph.delivered_to(user).into_iter().next() }).await;
    let conv = Pseudonymizer::new(env.settings.pseudonym_key()).conversation("default", user);
    assert!(!env.store.context("default", &conv).await.unwrap().is_empty());
    assert_eq!(env.post_webhook(msg(PHONE_NUMBER_ID, user, "wamid.fg.2", "/forget"), None).await.status(), 200);
    wait_until(DEADLINE, "confirmation", || async { (env.graph.delivered_to(user).len() >= 2).then_some(()) }).await;
    assert!(env.store.context("default", &conv).await.unwrap().is_empty(), "context erased");
    assert_eq!(env.graph.delivered_to(user)[1], env.settings.forget_reply);
    env.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_expires_with_the_tenants_retention() {
    let mut env = TestEnv::new().await;
    let mut t = tenant(&env, "brief", PHONE_NUMBER_ID, "Brief.", "brief-token");
    t.retention.context_secs = 2;
    t.retention.idempotency_secs = 2;
    t.retention.ledger_secs = 2;
    t.retention.status_secs = 2;
    env.tenants = TenantDirectory::new(Tenants::new(vec![t]));
    env.settings.reply_max_age_secs = 2; // the sent-job copy follows the reply's max age
    env.start_all().await;
    let user = "15553330005";
    assert_eq!(
        env.post_webhook(msg(PHONE_NUMBER_ID, user, "wamid.ret.1", "short-lived words"), None).await.status(),
        200
    );
    wait_until(DEADLINE, "reply", || async { env.graph.delivered_to(user).into_iter().next() }).await;
    let conv = Pseudonymizer::new(env.settings.pseudonym_key()).conversation("brief", user);
    assert!(!keys_with(&env, &conv).await.is_empty(), "the conversation is stored at first");
    wait_until(Duration::from_secs(15), "every key of the conversation expired", || async {
        keys_with(&env, &conv).await.is_empty().then_some(())
    })
    .await;
    env.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn during_a_secret_rotation_both_secrets_are_accepted() {
    let mut env = TestEnv::new().await;
    let mut t = tenant(&env, "rot", PHONE_NUMBER_ID, "x", "rot-token");
    t.app_secrets = vec![Secret::new("new-secret"), Secret::new("old-secret")];
    env.tenants = TenantDirectory::new(Tenants::new(vec![t]));
    env.start_ingress().await;
    for (i, secret) in ["new-secret", "old-secret"].iter().enumerate() {
        let body = msg(PHONE_NUMBER_ID, "15553330006", &format!("wamid.rot.{i}"), "hi");
        let sig = webhook::sign(secret, &body);
        assert_eq!(env.post_webhook(body, Some(Some(sig))).await.status(), 200, "{secret}");
    }
    let body = msg(PHONE_NUMBER_ID, "15553330006", "wamid.rot.x", "hi");
    let sig = webhook::sign("retired-secret", &body);
    assert_eq!(env.post_webhook(body, Some(Some(sig))).await.status(), 401);
    assert_eq!(env.bus.queue_depth(&env.bus.topology().inbound).await.unwrap(), 2);
    env.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erasure_through_the_admin_api_leaves_no_trace_in_redis_or_the_queues() {
    let mut env = TestEnv::with(|s| {
        s.operator_token_sha256 = Some(sha256_hex("op-token"));
        s.remember_profile_name = true;
    })
    .await;
    env.start_all().await;
    let user = "15553330007";
    let words = "my secret address is 1 Elm Street";
    assert_eq!(env.post_webhook(msg(PHONE_NUMBER_ID, user, "wamid.er.1", words), None).await.status(), 200);
    let sent = wait_until(DEADLINE, "reply", || async { env.graph.delivered_to(user).into_iter().next() }).await;
    assert!(sent.contains("1 Elm Street"));
    assert!(all_redis(&env).await.iter().any(|(_, v)| v == "Test User"), "the profile name is stored");

    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let admin = format!("http://{}", listener.local_addr().unwrap());
    let stop = CancellationToken::new();
    let server = {
        let (s, store, bus, tenants, stop) =
            (env.settings.clone(), env.store.clone(), env.bus.clone(), env.tenants.clone(), stop.clone());
        let p = Pseudonymizer::new(s.pseudonym_key());
        tokio::spawn(async move { switchboard_admin::run(&s, listener, store, bus, tenants, p, stop).await })
    };
    let client = reqwest::Client::new();
    let url = format!("{admin}/admin/tenants/default/users/{user}");
    let res = wait_until(DEADLINE, "admin API up", || async {
        client.delete(&url).bearer_auth("op-token").send().await.ok().filter(|r| r.status().is_success())
    })
    .await;
    assert!(res.status().is_success());

    let needles = [user, "Elm Street", "Test User"];
    for (key, value) in all_redis(&env).await {
        for n in needles {
            assert!(!key.contains(n) && !value.contains(n), "{n} left in {key}");
        }
    }
    for queue in env.bus.topology().queues() {
        for m in env.bus.peek(queue, &Default::default(), 1_000).await.unwrap() {
            let body = String::from_utf8_lossy(&m.body);
            assert!(!needles.iter().any(|n| body.contains(n)), "{queue} still holds the user's data");
        }
    }
    stop.cancel();
    let _ = server.await;
    env.teardown().await;
}

/// Keys of the namespace mentioning `needle` (SCAN, never KEYS).
async fn keys_with(env: &TestEnv, needle: &str) -> Vec<String> {
    all_redis(env).await.into_iter().map(|(k, _)| k).filter(|k| k.contains(needle)).collect()
}

/// Every key of the test's namespace with a dump of its value.
async fn all_redis(env: &TestEnv) -> Vec<(String, String)> {
    let client = redis::Client::open(env.settings.redis_url.expose()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let mut out = Vec::new();
    let mut cursor: u64 = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{}:*", env.settings.namespace))
            .arg("COUNT")
            .arg(500)
            .query_async(&mut conn)
            .await
            .unwrap();
        for k in keys {
            let kind: String = redis::cmd("TYPE").arg(&k).query_async(&mut conn).await.unwrap();
            let value: Vec<String> = match kind.as_str() {
                "string" => redis::cmd("GET")
                    .arg(&k)
                    .query_async::<Option<String>>(&mut conn)
                    .await
                    .unwrap()
                    .into_iter()
                    .collect(),
                "list" => redis::cmd("LRANGE").arg(&k).arg(0).arg(-1).query_async(&mut conn).await.unwrap(),
                "hash" => redis::cmd("HGETALL").arg(&k).query_async(&mut conn).await.unwrap(),
                "zset" => redis::cmd("ZRANGE").arg(&k).arg(0).arg(-1).query_async(&mut conn).await.unwrap(),
                "set" => redis::cmd("SMEMBERS").arg(&k).query_async(&mut conn).await.unwrap(),
                "stream" => {
                    let v: redis::Value =
                        redis::cmd("XRANGE").arg(&k).arg("-").arg("+").query_async(&mut conn).await.unwrap();
                    vec![format!("{v:?}")]
                }
                _ => Vec::new(),
            };
            out.push((k, value.join("\n")));
        }
        if next == 0 {
            return out;
        }
        cursor = next;
    }
}

/// Publishes `body` to a parking queue the way the roles do, with `headers`.
async fn park(env: &TestEnv, routing_key: &str, id: &str, headers: &[(&str, String)]) {
    let headers = headers.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
    let outgoing = switchboard_bus::Outgoing {
        exchange: env.bus.topology().events_exchange.clone(),
        routing_key: routing_key.into(),
        body: b"{}".to_vec(),
        headers,
        message_id: Some(id.into()),
        content_type: "application/octet-stream",
    };
    env.bus.publish(outgoing).await.unwrap();
}

async fn parked_ids(env: &TestEnv, queue: &str) -> Vec<String> {
    let all = env.bus.peek(queue, &Default::default(), 100).await.unwrap();
    all.into_iter().filter_map(|m| m.message_id).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parked_messages_are_deleted_after_their_retention() {
    use switchboard_bus::{headers::names, topology::routing};
    use switchboard_dispatcher::retention::{expire_parked, SWEEP_LIMIT};
    use switchboard_domain::{now_ms, DeadLetter, DeadLetterReason};
    switchboard_telemetry::metrics::install();
    let mut env = TestEnv::new().await;
    let mut t = tenant(&env, "brief", PHONE_NUMBER_ID, "x", "brief-token");
    t.retention.parked_secs = 1;
    env.tenants = TenantDirectory::new(Tenants::new(vec![t]));
    let topology = env.bus.topology().clone();
    // A held reply of "brief", parked (published) now.
    park(&env, routing::HELD, "held-old", &[(names::TENANT, "brief".into()), (names::REASON, "tenant_paused".into())])
        .await;
    // The sweep runs on a virtual clock a little over "brief"'s second later.
    let sweep_at = now_ms() + 1_100;
    let dead_letter = |id: &str, tenant: &str, at: i64| {
        let info = DeadLetter {
            reason: DeadLetterReason::SendPermanent,
            tenant_id: Some(tenant.into()),
            error_code: Some(131026),
            last_error: "x".into(),
            attempts: 1,
            first_attempt_at_ms: at,
            dead_lettered_at_ms: at,
            source_queue: topology.outbound.clone(),
        };
        let mut out = env.bus.dead_letter(b"{}".to_vec(), Default::default(), &info);
        out.message_id = Some(id.into());
        out
    };
    for out in [
        dead_letter("dl-brief-old", "brief", sweep_at - 1_000),
        dead_letter("dl-brief-new", "brief", sweep_at - 999),
        // No such tenant (removed since): the deployment default, 14 days.
        dead_letter("dl-gone-tenant", "gone", sweep_at - 13 * 86_400_000),
    ] {
        env.bus.publish(out).await.unwrap();
    }
    let fifteen_days_ago = (sweep_at - 15 * 86_400_000).to_string();
    park(&env, routing::REJECTED, "rejected-old", &[(names::RECEIVED_AT, fifteen_days_ago)]).await;
    park(&env, routing::REJECTED, "rejected-new", &[(names::RECEIVED_AT, sweep_at.to_string())]).await;

    let swept = expire_parked(&env.bus, &env.settings, &env.tenants.current(), sweep_at, SWEEP_LIMIT).await.unwrap();
    let by_queue = |swept: &[switchboard_dispatcher::retention::Expired], q: &str| {
        swept.iter().find(|e| e.queue == q).map(|e| (e.deleted, e.examined, e.unseen))
    };
    assert_eq!(by_queue(&swept, &topology.dlq), Some((1, 3, 0)));
    assert_eq!(by_queue(&swept, &topology.held), Some((1, 1, 0)));
    assert_eq!(by_queue(&swept, &topology.rejected), Some((1, 2, 0)));
    assert!(!switchboard_dispatcher::retention::incomplete(&swept));
    assert_eq!(parked_ids(&env, &topology.dlq).await, ["dl-brief-new", "dl-gone-tenant"]);
    assert!(parked_ids(&env, &topology.held).await.is_empty());
    assert_eq!(parked_ids(&env, &topology.rejected).await, ["rejected-new"]);

    // A sweep that could not see every message (here: past its limit) says so, and the dispatcher
    // repeats it a minute later instead of an hour.
    let swept = expire_parked(&env.bus, &env.settings, &env.tenants.current(), sweep_at, 1).await.unwrap();
    assert_eq!(by_queue(&swept, &topology.dlq), Some((0, 1, 1)));
    assert!(switchboard_dispatcher::retention::incomplete(&swept));
    wait_until(DEADLINE, "the dead letters back", || async {
        (env.bus.queue_depth(&topology.dlq).await.unwrap() == 2).then_some(())
    })
    .await;

    // A running dispatcher sweeps at start-up too. Its deletion is awaited on the metric, not by
    // peeking: a peek holds the messages it shows, out of the sweep's sight (such a sweep is
    // repeated a minute later, past this test's deadline).
    park(&env, routing::REJECTED, "rejected-ancient", &[(names::RECEIVED_AT, "1".into())]).await;
    let expired = format!("switchboard_parked_expired_total{{queue=\"{}\"}}", topology.rejected);
    assert_eq!(series(&switchboard_telemetry::metrics::render(), &expired), 1.0, "the direct sweep's deletion");
    env.start_all().await;
    wait_until(DEADLINE, "the dispatcher's sweep", || async {
        (series(&switchboard_telemetry::metrics::render(), &expired) >= 2.0).then_some(())
    })
    .await;
    assert_eq!(parked_ids(&env, &topology.rejected).await, ["rejected-new"]);
    env.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_profile_name_reaches_the_assistant_only_where_the_tenant_keeps_it() {
    let mut env = TestEnv::new().await;
    let mut keeps = tenant(&env, "keeps", PHONE_NUMBER_ID, "Keeps names.", "keeps-token");
    keeps.remember_profile_name = true;
    let forgets = tenant(&env, "forgets", GLOBEX_NUMBER, "Forgets names.", "forgets-token");
    env.tenants = TenantDirectory::new(Tenants::new(vec![keeps, forgets]));
    env.start_all().await;
    let pseudo = Pseudonymizer::new(env.settings.pseudonym_key());
    for (number, user, tenant_id) in
        [(PHONE_NUMBER_ID, "15553330021", "keeps"), (GLOBEX_NUMBER, "15553330022", "forgets")]
    {
        assert_eq!(env.post_webhook(msg(number, user, &format!("wamid.pn.{user}"), "hello"), None).await.status(), 200);
        wait_until(DEADLINE, "reply", || async { env.graph.delivered_to(user).into_iter().next() }).await;
        let conv = pseudo.conversation(tenant_id, user);
        let stored = env.store.profile_name(tenant_id, &conv).await.unwrap();
        let prompt = env
            .llm
            .calls()
            .into_iter()
            .find(|c| {
                c.user_messages().iter().any(|m| m == "hello")
                    && c.system_prompt()
                        .is_some_and(|p| p.starts_with(if tenant_id == "keeps" { "Keeps" } else { "Forgets" }))
            })
            .and_then(|c| c.system_prompt().map(str::to_owned))
            .unwrap();
        if tenant_id == "keeps" {
            assert_eq!(stored.as_deref(), Some("Test User"));
            assert_eq!(prompt, "Keeps names.\n\nThe user's WhatsApp profile name is \"Test User\".");
        } else {
            assert_eq!(stored, None, "not stored");
            assert_eq!(prompt, "Forgets names.");
            assert!(!all_redis(&env).await.iter().any(|(k, v)| k.contains(&conv) && v.contains("Test User")));
        }
    }
    env.teardown().await;
}
