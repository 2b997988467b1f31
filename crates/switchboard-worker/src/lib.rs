//! The worker role: turns one inbound user message into one outbound reply, exactly once.
//!
//! For each delivery from `{ns}.inbound` ([`turn`]):
//! 1. claim the wamid in Redis (a renewed lease; a duplicate waits or sees it done);
//! 2. append the user message to the conversation's context window (last 10, one Lua script);
//! 3. call the LLM with the tenant's system prompt and the window (retries with backoff;
//!    on exhaustion: the configured apology, and the failure goes to the DLQ with its reason);
//! 4. append the reply to the window, publish the outbound job with a confirm;
//! 5. mark the claim done, then ack the delivery.
//!
//! A crash anywhere leaves the delivery unacked: it is redelivered, the claim's lease expires,
//! and the replay reuses whatever was already stored (the window is idempotent per message id,
//! a reply already in the window is not generated again, the outbound job carries a
//! deterministic reply id the dispatcher sends at most once).

mod llm;
mod turn;

use std::{sync::Arc, time::Duration};

use switchboard_bus::{consume, Bus, ConsumerConfig};
use switchboard_config::{Settings, Tenants};
use switchboard_llm::LlmClient;
use switchboard_store::Store;
use tokio_util::sync::CancellationToken;

/// What a worker needs, built once by the binary (or a test).
#[derive(Clone)]
pub struct Worker {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub bus: Bus,
    pub store: Store,
    pub llm: LlmClient,
    pub tenants: Arc<Tenants>,
    pub settings: Settings,
    pub shutdown: CancellationToken,
}

/// Consumes `{ns}.inbound` until `shutdown` is cancelled, then drains in-flight turns up to
/// `SWITCHBOARD_SHUTDOWN_TIMEOUT_MS` (the rest are redelivered to another replica).
pub async fn run(
    settings: &Settings,
    bus: Bus,
    store: Store,
    llm: LlmClient,
    tenants: Arc<Tenants>,
    shutdown: CancellationToken,
) {
    let worker = Worker {
        inner: Arc::new(Inner {
            bus: bus.clone(),
            store,
            llm,
            tenants,
            settings: settings.clone(),
            shutdown: shutdown.clone(),
        }),
    };
    let concurrency = settings.worker_concurrency;
    let config = ConsumerConfig {
        queue: bus.topology().inbound.clone(),
        // Prefetch a little beyond what runs, so a finished slot is refilled without a
        // round trip, but not so much that one replica hoards the queue.
        prefetch: (concurrency + concurrency / 4).clamp(1, u16::MAX as usize) as u16,
        concurrency,
        drain_timeout: settings.shutdown_timeout(),
        tag: "worker".into(),
    };
    consume::run(bus, config, shutdown, move |delivery| {
        let worker = worker.clone();
        async move { worker.handle(delivery).await }
    })
    .await;
}

/// How long a duplicate delivery waits for the holder of a claim before giving the delivery
/// back: a little more than one lease, so a crashed holder's lease expires within the wait.
pub(crate) fn claim_wait(settings: &Settings) -> Duration {
    settings.claim_lease() + settings.claim_lease() / 2
}
