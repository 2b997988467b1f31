//! End-to-end benchmark: the latency from a signed webhook POST to the Graph API call that
//! answers it, with every role running (ingress → RabbitMQ → worker → fake LLM → RabbitMQ →
//! dispatcher → fake Graph API), under a steady arrival rate.
//!
//! Each message comes from a different user, so neither sequencing nor the pair rate makes one
//! wait for another; the number's rate limit is set out of reach. With the coalescing window at
//! 0 the figure is the pipeline's own latency; with the default 1500 ms window, that window is
//! part of every reply's latency by design.
//!
//! `cargo bench -p switchboard-tests --bench end_to_end` (needs RabbitMQ and Redis up).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use switchboard_tests::{latency_summary, webhook, webhook::Text, LlmReply, TestEnv, APP_SECRET, PHONE_NUMBER_ID};

async fn run(rate_per_s: u32, seconds: u32, coalesce_window_ms: u64, llm_ms: u64) {
    let mut env = TestEnv::with(|s| {
        s.coalesce_window_ms = coalesce_window_ms;
        s.rate_per_number = 100_000.0;
        s.rate_burst = 100;
        s.worker_concurrency = 64;
        s.dispatcher_concurrency = 64;
    })
    .await;
    if llm_ms > 0 {
        env.llm.set_fallback(LlmReply::Delayed(Duration::from_millis(llm_ms), Box::new(LlmReply::Echo)));
    }
    env.start_all().await;
    let url = format!("{}/webhooks/whatsapp", env.ingress_url());
    let client = reqwest::Client::new();
    let messages = (rate_per_s * seconds) as usize;
    let posted: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let mut ticks = tokio::time::interval(Duration::from_secs(1) / rate_per_s);
    let mut requests = Vec::with_capacity(messages);
    for i in 0..messages {
        ticks.tick().await;
        let user = format!("1558{i:07}");
        let wamid = format!("wamid.e2e.{i}");
        let body = webhook::text_batch(
            PHONE_NUMBER_ID,
            &[Text { from: &user, wamid: &wamid, body: "Are you open on Sunday?", timestamp: webhook::now_s() }],
        );
        let signature = webhook::sign(APP_SECRET, &body);
        let (client, url, posted) = (client.clone(), url.clone(), posted.clone());
        // Posted on schedule, whatever earlier requests are doing.
        requests.push(tokio::spawn(async move {
            posted.lock().unwrap().insert(user, Instant::now());
            let res = client.post(url).header("X-Hub-Signature-256", signature).body(body).send().await;
            assert_eq!(res.expect("the ingress answers").status(), 200);
        }));
    }
    for r in requests {
        r.await.unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while env.graph.delivered().len() < messages {
        assert!(Instant::now() < deadline, "stalled at {} of {messages} replies", env.graph.delivered().len());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let posted = std::mem::take(&mut *posted.lock().unwrap());
    let mut latencies: Vec<Duration> =
        env.graph.delivered().iter().map(|send| send.at - posted[send.to.as_deref().expect("a recipient")]).collect();
    assert_eq!(latencies.len(), messages, "one reply per message");
    println!(
        "end_to_end/latency rate_per_s={rate_per_s} messages={messages} coalesce_window_ms={coalesce_window_ms} llm_ms={llm_ms} \
         latency_ms {}",
        latency_summary(&mut latencies)
    );
    env.teardown().await;
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    run(50, 10, 0, 0).await;
    run(200, 10, 0, 0).await;
    run(50, 10, 1_500, 0).await;
    // A model answering in 1 s: about 50 turns in flight at once, within the 64 permits.
    run(50, 10, 0, 1_000).await;
}
