//! Recovery benchmark: how long Switchboard takes to answer again after a fault, with the
//! production timings (`SWITCHBOARD_CLAIM_LEASE_MS` 30 s, `SWITCHBOARD_PUBLISH_TIMEOUT_MS` 5 s).
//!
//! * `recovery/broker` and `recovery/redis`: every role reaches RabbitMQ (or Redis) through a
//!   fault-injecting TCP proxy, which cuts every connection and refuses new ones for `outage_s`,
//!   as a restart would. Webhooks keep arriving (one every 100 ms, each from a new user) and are
//!   posted again until accepted, like Meta does. Measured from the end of the outage: when the
//!   ingress accepted a webhook again, and when the first reply to a webhook accepted after the
//!   outage reached the Graph API. Every accepted webhook must be answered exactly once.
//! * `recovery/worker_kill`: two workers; one is killed while its LLM calls are in flight. Its
//!   conversations wait out their lease, then the other worker answers them. Measured: the time
//!   from the kill to the last of those replies.
//!
//! The shared RabbitMQ and Redis are never stopped (see the testing notes).
//! `cargo bench -p switchboard-tests --bench recovery` (needs RabbitMQ and Redis up).

use std::{
    net::ToSocketAddrs,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use switchboard_store::Store;
use switchboard_tests::{webhook, webhook::Text, LlmReply, TcpProxy, TestEnv, PHONE_NUMBER_ID};

const CLAIM_LEASE_MS: u64 = 30_000;

async fn production_timings() -> TestEnv {
    TestEnv::with(|s| {
        s.claim_lease_ms = CLAIM_LEASE_MS;
        s.publish_timeout_ms = 5_000;
        s.coalesce_window_ms = 0;
    })
    .await
}

fn socket(host_port: &str) -> std::net::SocketAddr {
    host_port.to_socket_addrs().expect("resolvable").next().expect("an address")
}

fn message(user: &str, i: usize) -> Vec<u8> {
    webhook::text_batch(
        PHONE_NUMBER_ID,
        &[Text {
            from: user,
            wamid: &format!("wamid.rec.{user}"),
            body: &format!("q{i}"),
            timestamp: webhook::now_s(),
        }],
    )
}

/// Polls `done` every 10 ms for up to `limit`; panics with `what` otherwise.
async fn poll(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Outage {
    Broker,
    Redis,
}

async fn outage(kind: Outage, outage_s: u64) {
    let mut env = production_timings().await;
    let proxy = match kind {
        Outage::Broker => {
            let url = env.settings.amqp_url.expose().to_string();
            let proxy = TcpProxy::start(socket(url.split('@').nth(1).unwrap().split('/').next().unwrap())).await;
            env.role_amqp_url = Some(format!("amqp://guest:guest@{}/%2f", proxy.addr()));
            proxy
        }
        Outage::Redis => {
            let url = env.settings.redis_url.expose().to_string();
            let proxy = TcpProxy::start(socket(url.trim_start_matches("redis://").split('/').next().unwrap())).await;
            let store = Store::connect(&format!("redis://{}/0", proxy.addr()), &env.settings.namespace, 16).await;
            env.role_store = Some(store.expect("redis through the proxy"));
            proxy
        }
    };
    env.start_all().await;
    let env = Arc::new(env);
    // (user, when its webhook was first accepted)
    let accepted: Arc<Mutex<Vec<(String, Instant)>>> = Arc::default();
    let stop = tokio_util::sync::CancellationToken::new();
    let load = {
        let (env, accepted, stop) = (env.clone(), accepted.clone(), stop.clone());
        tokio::spawn(async move {
            let mut senders = Vec::new();
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            let mut i = 0;
            while !stop.is_cancelled() {
                tick.tick().await;
                let (env, accepted, user) = (env.clone(), accepted.clone(), format!("1557{i:07}"));
                let body = message(&user, i);
                senders.push(tokio::spawn(async move {
                    // Like Meta: sent again until it gets a 200.
                    loop {
                        if env.post_webhook(body.clone(), None).await.status() == 200 {
                            accepted.lock().unwrap().push((user, Instant::now()));
                            return;
                        }
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }));
                i += 1;
            }
            for s in senders {
                s.await.unwrap();
            }
            i
        })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    proxy.down();
    tokio::time::sleep(Duration::from_secs(outage_s)).await;
    proxy.up();
    let up = Instant::now();
    let accepted_after = |a: &Vec<(String, Instant)>| a.iter().find(|(_, at)| *at >= up).cloned();
    poll(Duration::from_secs(120), "a webhook accepted after the outage", || {
        accepted_after(&accepted.lock().unwrap()).is_some()
    })
    .await;
    let (first_user, first_accepted) = accepted_after(&accepted.lock().unwrap()).unwrap();
    poll(Duration::from_secs(120), "its reply", || !env.graph.delivered_to(&first_user).is_empty()).await;
    let first_reply = env.graph.delivered().into_iter().find(|s| s.to.as_deref() == Some(&first_user)).unwrap().at;
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.cancel();
    let posted = load.await.unwrap();
    poll(Duration::from_secs(120), "every reply", || env.graph.delivered().len() >= posted).await;
    let accepted = accepted.lock().unwrap().clone();
    assert_eq!(accepted.len(), posted, "every webhook accepted in the end");
    for (user, _) in &accepted {
        assert_eq!(env.graph.delivered_to(user).len(), 1, "one reply per message");
    }
    let name = if kind == Outage::Broker { "broker" } else { "redis" };
    println!(
        "recovery/{name} outage_s={outage_s} messages={posted} answered={} accepted_again_ms={} \
         first_reply_after_outage_ms={}",
        env.graph.delivered().len(),
        (first_accepted - up).as_millis(),
        (first_reply - up).as_millis(),
    );
    Arc::into_inner(env).expect("the load is done").teardown().await;
}

async fn worker_kill(conversations: usize, llm_ms: u64) {
    let mut env = production_timings().await;
    env.llm.set_fallback(LlmReply::Delayed(Duration::from_millis(llm_ms), Box::new(LlmReply::Echo)));
    env.start_ingress().await;
    let (dispatcher, doomed, survivor) = (env.start_dispatcher(), env.start_worker(), env.start_worker());
    for i in 0..conversations {
        assert_eq!(env.post_webhook(message(&format!("1556{i:07}"), i), None).await.status(), 200);
    }
    poll(Duration::from_secs(30), "every LLM call started", || env.llm.calls().len() >= conversations).await;
    let killed = Instant::now();
    doomed.kill().await;
    poll(Duration::from_secs(120), "every reply", || env.graph.delivered().len() >= conversations).await;
    let sends = env.graph.delivered();
    // Replies of the survivor's own turns arrive about one LLM call after the kill; the
    // orphaned ones wait for the dead worker's lease first.
    let orphaned: Vec<Duration> = sends
        .iter()
        .map(|s| s.at.saturating_duration_since(killed))
        .filter(|d| d.as_millis() > 2 * llm_ms as u128)
        .collect();
    let last = sends.iter().map(|s| s.at.saturating_duration_since(killed)).max().unwrap();
    println!(
        "recovery/worker_kill claim_lease_ms={CLAIM_LEASE_MS} llm_ms={llm_ms} conversations={conversations} \
         orphaned={} answered={} last_reply_after_kill_ms={}",
        orphaned.len(),
        sends.len(),
        last.as_millis()
    );
    survivor.stop().await;
    dispatcher.stop().await;
    env.teardown().await;
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    outage(Outage::Broker, 5).await;
    outage(Outage::Redis, 5).await;
    worker_kill(20, 1_000).await;
}
