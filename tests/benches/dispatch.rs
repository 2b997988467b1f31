//! Dispatcher benchmark (issue #4): sends per second against a zero-latency fake Graph API
//! with the rate limiter on but set high, the limiter's accuracy at 80 msg/s (one and two
//! dispatcher replicas sharing the limit through Redis), and what one throughput error
//! (`130429`) in the middle of such a stream costs.
//!
//! Outbound jobs are published straight onto the outbound queue (as workers would), each to a
//! different user; the figures come from the times the fake Graph API received the sends.
//!
//! `cargo bench -p switchboard-tests --bench dispatch` (needs RabbitMQ and Redis up).

use std::time::Duration;

use switchboard_bus::topology::routing;
use switchboard_domain::{now_ms, OutboundJob, ReplyKind, UserRef};
use switchboard_tests::{GraphReply, RoleHandle, TestEnv, PHONE_NUMBER_ID};

fn job(i: usize) -> OutboundJob {
    let now = now_ms();
    OutboundJob {
        tenant_id: "default".into(),
        phone_number_id: PHONE_NUMBER_ID.into(),
        reply_id: format!("rp_bench_{i}"),
        to: UserRef { wa_id: Some(format!("1556{i:07}")), user_id: None },
        conversation: format!("bench{i:07}"),
        in_reply_to: format!("wamid.bench.{i}"),
        wamids: vec![format!("wamid.bench.{i}")],
        kind: ReplyKind::Assistant,
        body: "A short benchmark reply.".into(),
        user_timestamp: now / 1000,
        created_at_ms: now,
        last_received_at_ms: now,
        trace: Default::default(),
    }
}

/// Publishes `jobs` replies onto the outbound queue, starts `dispatchers` and waits until the
/// fake Graph API has accepted that many sends. Returns the running dispatchers.
async fn publish_and_send(env: &TestEnv, jobs: usize, dispatchers: usize) -> Vec<RoleHandle> {
    for chunk in (0..jobs).collect::<Vec<_>>().chunks(200) {
        let msgs: Vec<_> = chunk.iter().map(|&i| env.bus.event(routing::OUTBOUND, &job(i)).unwrap()).collect();
        env.bus.publish_all(&msgs).await.unwrap();
    }
    let roles: Vec<_> = (0..dispatchers).map(|_| env.start_dispatcher()).collect();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
    while env.graph.delivered().len() < jobs {
        assert!(tokio::time::Instant::now() < deadline, "benchmark stalled");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    roles
}

async fn run(label: &str, jobs: usize, rate: f64, burst: u32, dispatchers: usize) {
    let env = TestEnv::with(|s| {
        s.rate_per_number = rate;
        s.rate_burst = burst;
        s.dispatcher_concurrency = 64;
    })
    .await;
    let roles = publish_and_send(&env, jobs, dispatchers).await;
    let sends = env.graph.delivered();
    let mut times: Vec<_> = sends.iter().map(|s| s.at).collect();
    times.sort();
    let secs = (*times.last().unwrap() - times[0]).as_secs_f64();
    // Steady state: skip the initial burst allowance.
    let skip = (burst as usize).min(jobs / 10);
    let steady = (times.len() - 1 - skip) as f64 / (*times.last().unwrap() - times[skip]).as_secs_f64();
    let accuracy = if rate < 10_000.0 {
        format!(" configured_per_s={rate} steady_per_s={steady:.1} error_pct={:+.2}", (steady - rate) / rate * 100.0)
    } else {
        String::new()
    };
    println!(
        "dispatch/{label} dispatchers={dispatchers} sends={} elapsed_s={secs:.2} sends_per_s={:.0}{accuracy}",
        sends.len(),
        (sends.len() - 1) as f64 / secs,
    );
    for r in roles {
        r.stop().await;
    }
    env.teardown().await;
}

/// 800 replies at 80/s; Graph answers the 200th send with `130429`. With the production backoff
/// base (1 s), the number's bucket is penalised by 1 s and the failed reply goes round the retry
/// ladder's first step. Prints the longest gap between accepted sends, the rate after it, and when
/// the failed reply was delivered after its error.
async fn throughput_error(dispatchers: usize) {
    const JOBS: usize = 800;
    const ERROR_AT: usize = 200;
    let env = TestEnv::with(|s| {
        s.rate_per_number = 80.0;
        s.rate_burst = 8;
        s.dispatcher_concurrency = 64;
        s.send_backoff_base_ms = 1_000;
        s.send_backoff_max_ms = 300_000;
    })
    .await;
    let mut script = vec![GraphReply::Ok; ERROR_AT - 1];
    script.push(GraphReply::Fixture("130429_throughput.json"));
    env.graph.script(script);
    let roles = publish_and_send(&env, JOBS, dispatchers).await;
    let all = env.graph.sends();
    let failed = all.iter().find(|s| s.accepted.is_none()).expect("the scripted 130429");
    let (error_at, failed_to) = (failed.at, failed.to.clone());
    let mut times: Vec<_> = env.graph.delivered().iter().map(|s| s.at).collect();
    times.sort();
    let (gap_index, gap) = times.windows(2).enumerate().map(|(i, w)| (i, w[1] - w[0])).max_by_key(|(_, d)| *d).unwrap();
    let after = &times[gap_index + 1..];
    let steady_after = (after.len() - 1) as f64 / (*after.last().unwrap() - after[0]).as_secs_f64();
    let retried = env.graph.delivered().into_iter().find(|s| s.to == failed_to).expect("the failed reply delivered");
    let distinct: std::collections::HashSet<_> = env.graph.delivered().into_iter().filter_map(|s| s.to).collect();
    assert_eq!(times.len(), JOBS, "each reply sent once");
    println!(
        "dispatch/throughput_error dispatchers={dispatchers} sends={} error_at={ERROR_AT} penalty_ms=1000 \
         longest_gap_ms={:.0} steady_after_per_s={steady_after:.1} failed_reply_delivered_after_ms={:.0} lost={}",
        times.len(),
        gap.as_secs_f64() * 1000.0,
        (retried.at - error_at).as_secs_f64() * 1000.0,
        JOBS - distinct.len(),
    );
    for r in roles {
        r.stop().await;
    }
    env.teardown().await;
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    run("throughput", 3_000, 100_000.0, 100, 1).await;
    run("throughput", 3_000, 100_000.0, 100, 2).await;
    run("limiter", 800, 80.0, 8, 1).await;
    run("limiter", 800, 80.0, 8, 2).await;
    throughput_error(1).await;
    throughput_error(2).await;
}
