//! Sequencing benchmark (issue #3): turns per second and the delay sequencing adds.
//!
//! Runs the real worker(s) in-process against the machine's RabbitMQ and Redis, with the fake
//! LLM answering after 0 ms or 1 s. Inbound events are published straight onto the bus (as the
//! ingress would) and the outbound jobs are read off the outbound queue (no dispatcher).
//!
//! * capacity: coalescing off, C conversations × 1 message published at once; turns/s =
//!   turns / (last reply published − first message published);
//! * latency: coalescing window 1500 ms; conversations arrive at a steady rate, each sending 3
//!   messages 50 ms apart; added delay = reply published − newest message received − window −
//!   LLM latency (p50/p99).
//!
//! `cargo bench -p switchboard-tests --bench sequencing` (needs RabbitMQ and Redis up).

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use switchboard_bus::{consume, topology::routing, ConsumerConfig};
use switchboard_domain::{now_ms, InboundContent, InboundEvent, OutboundJob, UserRef};
use switchboard_tests::{LlmReply, RoleHandle, TestEnv, PHONE_NUMBER_ID};
use tokio_util::sync::CancellationToken;

struct Run {
    llm: Duration,
    workers: usize,
}

fn event(conv: usize, msg: usize, received_at_ms: i64) -> InboundEvent {
    InboundEvent {
        tenant_id: "default".into(),
        phone_number_id: PHONE_NUMBER_ID.into(),
        wamid: format!("wamid.bench.{conv}.{msg}"),
        from: UserRef { wa_id: Some(format!("1555{conv:07}")), user_id: None },
        conversation: format!("bench{conv:06}"),
        timestamp: received_at_ms / 1000,
        received_at_ms,
        content: InboundContent::Text { body: format!("message {msg}") },
        profile_name: None,
        trace: Default::default(),
    }
}

/// Collects (receive time, job) for every outbound job.
async fn collect(env: &TestEnv, stop: CancellationToken) -> Seen {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let config = ConsumerConfig {
        queue: env.bus.topology().outbound.clone(),
        prefetch: 500,
        concurrency: 64,
        drain_timeout: Duration::from_secs(5),
        tag: "bench".into(),
    };
    let sink = seen.clone();
    tokio::spawn(consume::run(env.bus.clone(), config, stop, move |d| {
        let sink = sink.clone();
        async move {
            let at = now_ms();
            if let Ok(job) = serde_json::from_slice::<OutboundJob>(&d.body) {
                sink.lock().unwrap().push((at, job));
            }
            let _ = d.ack().await;
        }
    }));
    seen
}

async fn wait_for(seen: &Mutex<Vec<(i64, OutboundJob)>>, want: usize) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(180);
    while seen.lock().unwrap().len() < want {
        assert!(
            tokio::time::Instant::now() < deadline,
            "benchmark stalled at {} of {want}",
            seen.lock().unwrap().len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

type Seen = Arc<Mutex<Vec<(i64, OutboundJob)>>>;

/// A fresh environment with `run.workers` workers (64 turns each, prefetch 512), the fake LLM
/// echoing after `run.llm`, and the outbound collector.
async fn start(run: &Run, coalesce_window_ms: u64) -> (TestEnv, Vec<RoleHandle>, CancellationToken, Seen) {
    let env = TestEnv::with(|s| {
        s.coalesce_window_ms = coalesce_window_ms;
        s.turn_max_delay_ms = 10_000;
        s.worker_concurrency = 64;
        s.worker_prefetch = 512;
        s.llm_timeout_ms = 10_000;
    })
    .await;
    env.llm.set_fallback(LlmReply::Delayed(run.llm, Box::new(LlmReply::Echo)));
    let workers: Vec<_> = (0..run.workers).map(|_| env.start_worker()).collect();
    let stop = CancellationToken::new();
    let seen = collect(&env, stop.clone()).await;
    (env, workers, stop, seen)
}

async fn capacity(run: &Run, conversations: usize) {
    let (env, workers, stop, seen) = start(run, 0).await;
    let start = now_ms();
    for chunk in (0..conversations).collect::<Vec<_>>().chunks(100) {
        let msgs: Vec<_> = chunk
            .iter()
            .map(|&c| {
                let mut m = env.bus.event(routing::INBOUND, &event(c, 0, now_ms())).unwrap();
                m.message_id = Some(format!("bench-{c}"));
                m
            })
            .collect();
        env.bus.publish_all(&msgs).await.unwrap();
    }
    wait_for(&seen, conversations).await;
    let last = seen.lock().unwrap().iter().map(|(at, _)| *at).max().unwrap();
    let secs = (last - start) as f64 / 1000.0;
    println!(
        "sequencing/capacity llm={}ms workers={} turns={} elapsed_s={:.2} turns_per_s={:.0}",
        run.llm.as_millis(),
        run.workers,
        conversations,
        secs,
        conversations as f64 / secs
    );
    stop.cancel();
    for w in workers {
        w.stop().await;
    }
    env.teardown().await;
}

async fn latency(run: &Run, conversations: usize, per_second: usize) {
    const WINDOW_MS: u64 = 1_500;
    let (env, workers, stop, seen) = start(run, WINDOW_MS).await;
    let gap = Duration::from_secs_f64(1.0 / per_second as f64);
    let mut senders = Vec::new();
    for c in 0..conversations {
        let bus = env.bus.clone();
        senders.push(tokio::spawn(async move {
            for m in 0..3 {
                let mut msg = bus.event(routing::INBOUND, &event(c, m, now_ms())).unwrap();
                msg.message_id = Some(format!("bench-{c}-{m}"));
                bus.publish(msg).await.unwrap();
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }));
        tokio::time::sleep(gap).await;
    }
    for s in senders {
        s.await.unwrap();
    }
    wait_for(&seen, conversations).await;
    let seen = std::mem::take(&mut *seen.lock().unwrap());
    let mut added: Vec<i64> = seen
        .iter()
        .map(|(at, job)| at - job.last_received_at_ms - WINDOW_MS as i64 - run.llm.as_millis() as i64)
        .collect();
    added.sort_unstable();
    let pct = |p: f64| added[((added.len() - 1) as f64 * p).round() as usize];
    let multi = seen.iter().filter(|(_, j)| j.wamids.len() == 3).count();
    println!(
        "sequencing/latency llm={}ms workers={} turns={} coalesced_3of3={} added_delay_ms p50={} p99={} max={}",
        run.llm.as_millis(),
        run.workers,
        seen.len(),
        multi,
        pct(0.5),
        pct(0.99),
        added.last().unwrap()
    );
    stop.cancel();
    for w in workers {
        w.stop().await;
    }
    env.teardown().await;
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // `cargo bench … -- capacity` (or `latency`) runs only the lines of that name; `cargo bench`
    // itself passes `--bench`, which is not a filter.
    let filter: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let wanted = |name: &str| filter.is_empty() || filter.iter().any(|f| name.contains(f.as_str()));
    if wanted("capacity") {
        for (llm, conversations) in [(Duration::ZERO, 1_000), (Duration::from_secs(1), 400)] {
            for workers in [1, 2] {
                capacity(&Run { llm, workers }, conversations).await;
            }
        }
    }
    if wanted("latency") {
        for llm in [Duration::ZERO, Duration::from_secs(1)] {
            for workers in [1, 2] {
                latency(&Run { llm, workers }, 100, 20).await;
            }
        }
    }
}
