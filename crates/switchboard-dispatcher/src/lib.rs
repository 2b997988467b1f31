//! The dispatcher role: sends replies through the Graph API, at most once per reply part, and
//! records delivery statuses.
//!
//! * [`send`]: consumes `{ns}.outbound`; splits a reply into ≤ 4096-character parts and sends
//!   them in order, each under a send-ledger claim keyed by (reply id, part) so a redelivered
//!   job resumes at the first unsent part and never sends a part twice; transient failures are
//!   retried with capped exponential backoff plus random jitter, classified by WhatsApp code;
//!   permanent failures and exhausted retries go to the DLQ with code and attempt count.
//! * [`statuses`]: consumes `{ns}.statuses` and keeps a monotonic status per outbound message.

mod receipts;
pub mod retention;
mod send;
mod settle;
mod statuses;

use std::sync::Arc;

use switchboard_bus::{consume, Bus, ConsumerConfig};
use switchboard_config::{Settings, TenantDirectory};
use switchboard_store::Store;
use switchboard_whatsapp::GraphClient;
use tokio_util::sync::CancellationToken;

#[derive(Clone)]
pub struct Dispatcher {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub bus: Bus,
    pub store: Store,
    pub graph: GraphClient,
    pub tenants: TenantDirectory,
    pub settings: Settings,
    pub shutdown: CancellationToken,
}

/// Consumes the outbound and status queues until `shutdown` is cancelled, then drains.
pub async fn run(
    settings: &Settings,
    bus: Bus,
    store: Store,
    graph: GraphClient,
    tenants: TenantDirectory,
    shutdown: CancellationToken,
) {
    let dispatcher = Dispatcher {
        inner: Arc::new(Inner {
            bus: bus.clone(),
            store,
            graph,
            tenants,
            settings: settings.clone(),
            shutdown: shutdown.clone(),
        }),
    };
    let concurrency = settings.dispatcher_concurrency;
    let topology = bus.topology().clone();
    let outbound = ConsumerConfig {
        queue: topology.outbound.clone(),
        prefetch: concurrency.clamp(1, u16::MAX as usize) as u16,
        concurrency,
        drain_timeout: settings.shutdown_timeout(),
        tag: "dispatcher".into(),
    };
    let statuses = ConsumerConfig {
        queue: topology.statuses.clone(),
        prefetch: 64,
        concurrency: 16,
        drain_timeout: settings.shutdown_timeout(),
        tag: "statuses".into(),
    };
    let receipts = ConsumerConfig {
        queue: topology.receipts.clone(),
        prefetch: 64,
        concurrency: 16,
        drain_timeout: settings.shutdown_timeout(),
        tag: "receipts".into(),
    };
    // Queue depths for the dashboards (DLQ, held, ladder, work queues): cheap passive declares.
    let depths = {
        let (bus, shutdown) = (bus.clone(), shutdown.clone());
        tokio::spawn(async move {
            loop {
                let queues: Vec<String> = bus.topology().queues().into_iter().map(String::from).collect();
                for q in queues {
                    if let Ok(n) = bus.queue_depth(&q).await {
                        metrics::gauge!("switchboard_queue_depth", "queue" => q).set(f64::from(n));
                    }
                }
                dlq_depth_by_reason(&bus).await;
                tokio::select! {
                    _ = tokio::time::sleep(std::time::Duration::from_secs(15)) => {}
                    _ = shutdown.cancelled() => return,
                }
            }
        })
    };
    // Parked messages past their retention: once at start-up, then hourly.
    let sweeper = {
        let (bus, settings, tenants, shutdown) =
            (bus.clone(), settings.clone(), dispatcher.inner.tenants.clone(), shutdown.clone());
        tokio::spawn(async move {
            loop {
                let now = switchboard_domain::now_ms();
                let next =
                    match retention::expire_parked(&bus, &settings, &tenants.current(), now, retention::SWEEP_LIMIT)
                        .await
                    {
                        Ok(sweep) if retention::incomplete(&sweep) => {
                            tracing::info!(
                                "parked-message retention sweep did not see every message; again in a minute"
                            );
                            retention::SWEEP_AGAIN
                        }
                        Ok(_) => retention::SWEEP_INTERVAL,
                        Err(e) => {
                            tracing::warn!(error = %e, "parked-message retention sweep failed; next try in an hour");
                            retention::SWEEP_INTERVAL
                        }
                    };
                tokio::select! {
                    _ = tokio::time::sleep(next) => {}
                    _ = shutdown.cancelled() => return,
                }
            }
        })
    };
    let d1 = dispatcher.clone();
    let d2 = dispatcher.clone();
    let d3 = dispatcher;
    tokio::join!(
        consume::run(bus.clone(), outbound, shutdown.clone(), move |delivery| {
            let d = d1.clone();
            async move { d.handle_outbound(delivery).await }
        }),
        consume::run(bus.clone(), statuses, shutdown.clone(), move |delivery| {
            let d = d2.clone();
            async move { d.handle_status(delivery).await }
        }),
        consume::run(bus, receipts, shutdown, move |delivery| {
            let d = d3.clone();
            async move { d.handle_receipt(delivery).await }
        }),
    );
    depths.abort();
    sweeper.abort();
}

/// Lifts a tenant's pause and sends its held replies back to the outbound queue (oldest
/// first). Returns how many were released. Replies that grew too old meanwhile are then
/// dead-lettered as `expired` by the dispatcher; none is sent twice (send ledger).
pub async fn resume_tenant(
    bus: &Bus,
    store: &Store,
    tenant: &str,
) -> Result<usize, Box<dyn std::error::Error + Send + Sync>> {
    store.resume_tenant(tenant).await?;
    let filter = switchboard_bus::parked::Filter { reason: None, tenant: Some(tenant.to_string()) };
    let released = bus.redrive(&bus.topology().held.clone(), &filter).await?;
    tracing::info!(tenant, released, "tenant resumed");
    Ok(released)
}

/// How many dead letters wait, by reason and tenant (`switchboard_dlq_messages`): one look at the
/// first [`DLQ_SCAN_LIMIT`] messages, left in place. Reasons seen before and now absent go to 0.
pub async fn dlq_depth_by_reason(bus: &Bus) {
    use std::collections::BTreeMap;
    static SEEN: std::sync::Mutex<BTreeMap<(String, String), f64>> = std::sync::Mutex::new(BTreeMap::new());
    let dlq = bus.topology().dlq.clone();
    let Ok(parked) = bus.peek(&dlq, &switchboard_bus::parked::Filter::default(), DLQ_SCAN_LIMIT).await else { return };
    let mut counts: BTreeMap<(String, String), f64> = BTreeMap::new();
    for m in &parked {
        let reason = switchboard_bus::parked::reason(&m.headers).unwrap_or("unknown").to_string();
        let tenant = m.headers.get(switchboard_bus::headers::names::TENANT).cloned().unwrap_or_default();
        *counts.entry((reason, tenant)).or_default() += 1.0;
    }
    let Ok(mut seen) = SEEN.lock() else { return };
    for key in seen.keys() {
        counts.entry(key.clone()).or_insert(0.0);
    }
    for ((reason, tenant), n) in &counts {
        metrics::gauge!("switchboard_dlq_messages", "reason" => reason.clone(), "tenant" => tenant.clone()).set(*n);
    }
    *seen = counts;
}

/// Dead letters looked at per scan for the by-reason gauge (the total is `switchboard_queue_depth`).
const DLQ_SCAN_LIMIT: usize = 1_000;
