//! A supervised consumer: manual acks, bounded concurrency, reconnection, drain on shutdown.

use std::{future::Future, sync::Arc, time::Duration};

use futures_util::StreamExt;
use lapin::{
    options::{BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions},
    types::FieldTable,
    Acker, Channel, Consumer,
};
use tokio::{sync::Semaphore, task::JoinSet};
use tokio_util::sync::CancellationToken;

use crate::{headers::from_field_table, Bus, BusError, Headers};

/// What to consume and how.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    pub queue: String,
    /// Unacked deliveries the broker may push ahead (AMQP prefetch).
    pub prefetch: u16,
    /// Handlers running at once.
    pub concurrency: usize,
    /// On shutdown, how long in-flight handlers may run before they are abandoned (their
    /// deliveries go back to the queue when the channel closes).
    pub drain_timeout: Duration,
    /// Consumer tag prefix (a process-unique suffix is added).
    pub tag: String,
}

/// One message taken from a queue. It must be settled with [`Delivery::ack`],
/// [`Delivery::requeue`] or [`Delivery::reject`]; if it is not (crash, shutdown), the broker
/// redelivers it when the channel closes.
pub struct Delivery {
    pub body: Vec<u8>,
    pub headers: Headers,
    pub redelivered: bool,
    pub routing_key: String,
    pub message_id: Option<String>,
    pub queue: String,
    acker: Acker,
    /// Keeps the channel of a one-off `basic_get` open while the delivery is unsettled.
    _channel: Option<Channel>,
}

impl Delivery {
    fn new(d: lapin::message::Delivery, queue: &str) -> Self {
        Self {
            headers: from_field_table(d.properties.headers().as_ref()),
            message_id: d.properties.message_id().as_ref().map(|s| s.as_str().to_string()),
            redelivered: d.redelivered,
            routing_key: d.routing_key.as_str().to_string(),
            queue: queue.to_string(),
            body: d.data,
            acker: d.acker,
            _channel: None,
        }
    }

    pub(crate) fn from_get(m: lapin::message::BasicGetMessage, queue: &str, channel: Channel) -> Self {
        let mut d = Self::new(m.delivery, queue);
        d._channel = Some(channel);
        d
    }

    /// Seconds since the message was published (from its publish-time header), if known.
    pub fn lag(&self) -> Option<f64> {
        let at: i64 = self.headers.get(crate::publish::PUBLISHED_AT)?.parse().ok()?;
        Some(((switchboard_domain::now_ms() - at).max(0) as f64) / 1000.0)
    }

    /// Done with it: the broker forgets the message.
    pub async fn ack(&self) -> Result<(), BusError> {
        self.acker.ack(BasicAckOptions::default()).await?;
        Ok(())
    }

    /// Give it back for redelivery (to this or another consumer).
    pub async fn requeue(&self) -> Result<(), BusError> {
        self.acker.nack(BasicNackOptions { requeue: true, ..Default::default() }).await?;
        Ok(())
    }

    /// Refuse it: the queue dead-letters it to the DLQ.
    pub async fn reject(&self) -> Result<(), BusError> {
        self.acker.nack(BasicNackOptions { requeue: false, ..Default::default() }).await?;
        Ok(())
    }
}

/// Consumes `config.queue` until `shutdown` is cancelled, calling `handler` for every delivery
/// (at most `config.concurrency` at once). Survives broker restarts: on any channel or
/// connection failure it reconnects with capped exponential backoff, redeclaring the topology.
/// On shutdown it stops taking deliveries, lets in-flight handlers finish up to the drain
/// timeout, then closes its channel (unsettled deliveries return to the queue).
pub async fn run<H, F>(bus: Bus, config: ConsumerConfig, shutdown: CancellationToken, handler: H)
where
    H: Fn(Delivery) -> F + Send + Sync + 'static,
    F: Future<Output = ()> + Send + 'static,
{
    run_with_drain(bus, config, shutdown, handler, async {}).await
}

/// Like [`run`], for consumers that keep deliveries beyond their handler (settling them later):
/// on shutdown, after the handlers finish, `drain` runs (bounded by the drain timeout) while
/// the channel is still open, so the work it finishes can still be acknowledged.
pub async fn run_with_drain<H, F, D>(
    bus: Bus,
    config: ConsumerConfig,
    shutdown: CancellationToken,
    handler: H,
    drain: D,
) where
    H: Fn(Delivery) -> F + Send + Sync + 'static,
    F: Future<Output = ()> + Send + 'static,
    D: Future<Output = ()>,
{
    let handler = Arc::new(handler);
    let permits = Arc::new(Semaphore::new(config.concurrency));
    let mut tasks = JoinSet::new();
    let mut backoff = Duration::from_millis(100);
    let mut current: Option<(Channel, Consumer)> = None;

    'supervise: while !shutdown.is_cancelled() {
        let (channel, mut consumer) = match open(&bus, &config).await {
            Ok(c) => {
                backoff = Duration::from_millis(100);
                c
            }
            Err(error) => {
                tracing::warn!(queue = %config.queue, %error, retry_in = ?backoff, "cannot consume; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shutdown.cancelled() => break 'supervise,
                }
                backoff = (backoff * 2).min(Duration::from_secs(10));
                continue;
            }
        };
        tracing::info!(queue = %config.queue, "consuming");
        loop {
            while tasks.try_join_next().is_some() {}
            let permit = tokio::select! {
                p = permits.clone().acquire_owned() => p.expect("semaphore never closed"),
                _ = shutdown.cancelled() => {
                    current = Some((channel, consumer));
                    break 'supervise;
                }
            };
            let next = tokio::select! {
                n = consumer.next() => n,
                _ = shutdown.cancelled() => {
                    current = Some((channel, consumer));
                    break 'supervise;
                }
            };
            match next {
                Some(Ok(delivery)) => {
                    let handler = handler.clone();
                    let delivery = Delivery::new(delivery, &config.queue);
                    let queue = config.queue.clone();
                    if let Some(lag) = delivery.lag() {
                        metrics::histogram!("switchboard_queue_lag_seconds", "queue" => queue.clone()).record(lag);
                    }
                    tasks.spawn(async move {
                        let in_flight = metrics::gauge!("switchboard_in_flight", "queue" => queue);
                        in_flight.increment(1.0);
                        handler(delivery).await;
                        in_flight.decrement(1.0);
                        drop(permit);
                    });
                }
                Some(Err(error)) => {
                    tracing::warn!(queue = %config.queue, %error, "consumer failed; reconnecting");
                    break;
                }
                None => {
                    tracing::warn!(queue = %config.queue, "consumer cancelled by the broker; reconnecting");
                    break;
                }
            }
        }
    }

    // Drain: no new deliveries, let the running handlers finish (they still need the channel
    // to ack), then close the channel so anything unsettled is redelivered elsewhere.
    if let Some((channel, consumer)) = &current {
        let _ = tokio::time::timeout(
            Duration::from_secs(2),
            channel.basic_cancel(consumer.tag(), BasicCancelOptions::default()),
        )
        .await;
    }
    let drained = tokio::time::timeout(config.drain_timeout, async {
        while tasks.join_next().await.is_some() {}
        drain.await;
    })
    .await
    .is_ok();
    if !drained {
        tracing::warn!(queue = %config.queue, abandoned = tasks.len(), "drain deadline reached; requeueing the rest");
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
    }
    if let Some((channel, _)) = current {
        let _ = tokio::time::timeout(Duration::from_secs(2), channel.close(200, "shutdown".into())).await;
    }
    tracing::info!(queue = %config.queue, "consumer stopped");
}

async fn open(bus: &Bus, config: &ConsumerConfig) -> Result<(Channel, Consumer), BusError> {
    let channel = bus.channel().await?;
    channel.basic_qos(config.prefetch, BasicQosOptions::default()).await?;
    let tag = format!("{}-{}-{}", config.tag, std::process::id(), next_id());
    let consumer = channel
        .basic_consume(
            config.queue.as_str().into(),
            tag.into(),
            BasicConsumeOptions::default(), // manual acks
            FieldTable::default(),
        )
        .await?;
    Ok((channel, consumer))
}

fn next_id() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}
