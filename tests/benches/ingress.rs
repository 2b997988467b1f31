//! Ingress benchmark: signed webhook POSTs per second and the latency to the 200, which the
//! ingress only answers once RabbitMQ has confirmed every event of the body (publisher
//! confirms on the quorum queue). Meta expects a median ≤ 250 ms.
//!
//! The ingress runs in-process on the machine's real RabbitMQ and Redis; the load comes from
//! `concurrency` HTTP clients in the same process, each posting one webhook at a time.
//!
//! `cargo bench -p switchboard-tests --bench ingress` (needs RabbitMQ and Redis up).

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use switchboard_tests::{latency_summary, webhook, webhook::Text, TestEnv, APP_SECRET, PHONE_NUMBER_ID};

/// `requests` webhooks, each carrying `batch` text messages from different users.
fn bodies(requests: usize, batch: usize) -> Vec<(Vec<u8>, String)> {
    (0..requests)
        .map(|r| {
            let ids: Vec<(String, String)> =
                (0..batch).map(|m| (format!("1557{:07}", r * batch + m), format!("wamid.bench.{r}.{m}"))).collect();
            let texts: Vec<Text<'_>> = ids
                .iter()
                .map(|(from, wamid)| Text {
                    from,
                    wamid,
                    body: "How late are you open today?",
                    timestamp: webhook::now_s(),
                })
                .collect();
            let body = webhook::text_batch(PHONE_NUMBER_ID, &texts);
            let signature = webhook::sign(APP_SECRET, &body);
            (body, signature)
        })
        .collect()
}

async fn run(concurrency: usize, requests: usize, batch: usize) {
    let mut env = TestEnv::new().await;
    env.start_ingress().await;
    let url = format!("{}/webhooks/whatsapp", env.ingress_url());
    let client = reqwest::Client::builder().pool_max_idle_per_host(concurrency).build().unwrap();
    let bodies = Arc::new(bodies(requests, batch));
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let clients: Vec<_> = (0..concurrency)
        .map(|_| {
            let (client, url, bodies, next) = (client.clone(), url.clone(), bodies.clone(), next.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some((body, signature)) = bodies.get(i) else { return latencies };
                    let sent = Instant::now();
                    let res = client
                        .post(&url)
                        .header("content-type", "application/json")
                        .header("X-Hub-Signature-256", signature)
                        .body(body.clone())
                        .send()
                        .await
                        .expect("the ingress answers");
                    assert_eq!(res.status(), 200, "webhook {i}");
                    latencies.push(sent.elapsed());
                }
            })
        })
        .collect();
    let mut latencies: Vec<Duration> = Vec::with_capacity(requests);
    for c in clients {
        latencies.extend(c.await.unwrap());
    }
    let elapsed = started.elapsed().as_secs_f64();
    // Every event of every answered webhook is on the broker.
    let queued = env.bus.queue_depth(&env.bus.topology().inbound.clone()).await.unwrap() as usize;
    assert_eq!(queued, requests * batch, "confirmed events in the inbound queue");
    println!(
        "ingress/webhooks concurrency={concurrency} batch={batch} requests={requests} elapsed_s={elapsed:.2} \
         webhooks_per_s={:.0} events_per_s={:.0} latency_ms {}",
        requests as f64 / elapsed,
        (requests * batch) as f64 / elapsed,
        latency_summary(&mut latencies),
    );
    env.teardown().await;
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    run(1, 500, 1).await;
    run(16, 4_000, 1).await;
    run(64, 4_000, 1).await;
    run(64, 1_000, 10).await;
}
