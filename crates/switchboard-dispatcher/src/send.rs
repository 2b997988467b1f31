//! Sending one reply: split, claim each part, send with retries, record, or dead-letter.

use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use switchboard_bus::{BusError, Delivery};
use switchboard_domain::{now_ms, split_message, DeadLetter, DeadLetterReason, OutboundJob, MAX_TEXT_CHARS};
use switchboard_store::{
    lease::{Acquired, Lease},
    ClaimKey, StoreError,
};
use switchboard_whatsapp::{GraphError, SendOk, TextMessage};
use tracing::Instrument;

use crate::Dispatcher;

/// Longest wait between send attempts asked by a `Retry-After`.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// Why a job goes back to the queue unfinished.
#[derive(Debug, thiserror::Error)]
enum Requeue {
    #[error("broker: {0}")]
    Bus(#[from] BusError),
    #[error("redis: {0}")]
    Store(#[from] StoreError),
    #[error("another replica holds this part")]
    Busy,
    #[error("shutting down")]
    Shutdown,
}

/// The end of a send attempt that does not requeue.
enum Outcome {
    Sent { parts: usize },
    DeadLettered,
}

impl Dispatcher {
    pub(crate) async fn handle_outbound(&self, delivery: Delivery) {
        let job: OutboundJob = match serde_json::from_slice(&delivery.body) {
            Ok(job) => job,
            Err(error) => {
                tracing::error!(%error, "undecodable outbound job; dead-lettering");
                let info = DeadLetter {
                    reason: DeadLetterReason::Undecodable,
                    tenant_id: None,
                    error_code: None,
                    last_error: "undecodable json".into(),
                    attempts: 0,
                    first_attempt_at_ms: now_ms(),
                    dead_lettered_at_ms: now_ms(),
                    source_queue: delivery.queue.clone(),
                };
                // If even the DLQ is unreachable, reject: the queue dead-letters it natively.
                let _ = match self.park(&delivery, &info).await {
                    Ok(()) => delivery.ack().await,
                    Err(_) => delivery.reject().await,
                };
                return;
            }
        };
        let span = tracing::info_span!(
            "send reply",
            messaging.system = "rabbitmq",
            messaging.operation.type = "process",
            messaging.destination.name = %delivery.queue,
            messaging.message.id = %job.reply_id,
            tenant = %job.tenant_id,
            conversation = %job.conversation,
            reply.kind = ?job.kind,
            outcome = tracing::field::Empty,
        );
        switchboard_telemetry::extract(&delivery.headers, &span);
        async {
            let mut pause = Duration::from_millis(100);
            let result = loop {
                match self.send_job(&job, &delivery).await {
                    // Redis or broker trouble: retry here rather than give the job back, which
                    // would count toward the queue's delivery limit.
                    Err(e @ (Requeue::Bus(_) | Requeue::Store(_))) if !self.inner.shutdown.is_cancelled() => {
                        tracing::warn!(error = %e, retry_in = ?pause, "reply not finished; retrying");
                        tokio::time::sleep(pause).await;
                        pause = (pause * 2).min(Duration::from_secs(5));
                    }
                    other => break other,
                }
            };
            match result {
                Ok(outcome) => {
                    let label = match outcome {
                        Outcome::Sent { parts } => {
                            tracing::info!(parts, "reply sent");
                            "sent"
                        }
                        Outcome::DeadLettered => "dead_lettered",
                    };
                    tracing::Span::current().record("outcome", label);
                    if let Err(error) = delivery.ack().await {
                        tracing::warn!(%error, "ack failed after the job was settled");
                    }
                }
                Err(reason) => {
                    tracing::warn!(error = %reason, "reply not finished; requeueing");
                    if !matches!(reason, Requeue::Shutdown) {
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                    let _ = delivery.requeue().await;
                }
            }
        }
        .instrument(span)
        .await
    }

    async fn send_job(&self, job: &OutboundJob, delivery: &Delivery) -> Result<Outcome, Requeue> {
        let s = &self.inner.settings;
        let Some(token) = self.inner.tenants.get(&job.tenant_id).and_then(|t| t.access_token.clone()) else {
            let info = self.dead_letter_info(
                job,
                delivery,
                DeadLetterReason::UnknownTenant,
                None,
                "no access token for tenant".into(),
                0,
            );
            self.park(delivery, &info).await?;
            return Ok(Outcome::DeadLettered);
        };
        let parts = split_message(&job.body, MAX_TEXT_CHARS);
        let first_attempt_at = now_ms();
        for (index, part) in parts.iter().enumerate() {
            let key = ClaimKey::send(&job.tenant_id, &job.reply_id, index);
            let lease =
                match Lease::acquire(&self.inner.store, key, s.claim_lease(), s.claim_lease() + s.claim_lease() / 2)
                    .await?
                {
                    Acquired::Done(_) => continue, // sent before a crash or by a duplicate job
                    Acquired::Busy => return Err(Requeue::Busy),
                    Acquired::Lease(lease) => lease,
                };
            if self.inner.shutdown.is_cancelled() {
                let _ = lease.release().await;
                return Err(Requeue::Shutdown);
            }
            let (result, attempts) = self.send_part(token.expose(), job, part, &lease).await;
            let result = match result {
                // Accepted, but the body was unreadable: the message was most likely sent, so it
                // is recorded as sent (wamid unknown) rather than dead-lettered and resent.
                Err(GraphError::Decode { http_status: 200..=299, .. }) => Ok(SendOk { wamid: "unknown".into() }),
                other => other,
            };
            match result {
                Ok(sent) => {
                    // The ledger write that makes a redelivery skip this part. A crash between
                    // Meta's 200 and this write is the one window where a part can go out twice,
                    // so the write is retried here for as long as it takes.
                    let (key, token) =
                        (ClaimKey::send(&job.tenant_id, &job.reply_id, index), lease.token().to_string());
                    let ttl = Duration::from_secs(s.ledger_ttl_secs);
                    let mut written = lease.complete(&sent.wamid, ttl).await.map(|_| ());
                    let mut pause = Duration::from_millis(100);
                    while let Err(error) = written {
                        tracing::warn!(%error, part = index, "cannot record a sent part yet; retrying");
                        tokio::time::sleep(pause).await;
                        pause = (pause * 2).min(Duration::from_secs(5));
                        written = self.inner.store.complete(&key, &token, &sent.wamid, ttl).await.map(|_| ());
                    }
                }
                Err(error) => {
                    let lost = lease.is_lost();
                    let _ = lease.release().await;
                    if lost {
                        // Another replica owns this part now; it decides its fate.
                        return Err(Requeue::Busy);
                    }
                    if self.inner.shutdown.is_cancelled() && error.class().is_retryable() {
                        return Err(Requeue::Shutdown);
                    }
                    let reason = if error.class().is_retryable() {
                        DeadLetterReason::SendRetriesExhausted
                    } else {
                        DeadLetterReason::SendPermanent
                    };
                    tracing::error!(%error, class = ?error.class(), attempts, part = index, "send failed; dead-lettering");
                    let mut info =
                        self.dead_letter_info(job, delivery, reason, error.code(), error.to_string(), attempts);
                    info.first_attempt_at_ms = first_attempt_at;
                    self.park(delivery, &info).await?;
                    return Ok(Outcome::DeadLettered);
                }
            }
        }
        Ok(Outcome::Sent { parts: parts.len() })
    }

    /// One part, with retries of transient failures. Returns the result and the attempts made.
    async fn send_part(
        &self,
        token: &str,
        job: &OutboundJob,
        body: &str,
        lease: &Lease,
    ) -> (Result<SendOk, GraphError>, u32) {
        let s = &self.inner.settings;
        let backoff = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(s.send_backoff_base_ms))
            .with_max_delay(Duration::from_millis(s.send_backoff_max_ms))
            .with_max_times(s.send_max_attempts.saturating_sub(1) as usize)
            .with_jitter();
        let message = TextMessage { to: &job.to, body, reply_to: None, biz_opaque_callback_data: Some(&job.reply_id) };
        let shutdown = self.inner.shutdown.clone();
        let mut attempts = 0u32;
        let result = (|| {
            attempts += 1;
            self.inner
                .graph
                .send_text(token, &job.phone_number_id, &message)
                .instrument(tracing::info_span!("POST /{phone_number_id}/messages", http.request.method = "POST"))
        })
        .retry(backoff)
        .when(|e: &GraphError| e.class().is_retryable() && !shutdown.is_cancelled() && !lease.is_lost())
        .adjust(|e, planned| match e {
            GraphError::Api { retry_after: Some(after), .. } => Some((*after).min(MAX_RETRY_AFTER)),
            _ => planned,
        })
        .notify(|error, delay| tracing::warn!(%error, ?delay, "send failed; retrying"))
        .await;
        (result, attempts)
    }

    fn dead_letter_info(
        &self,
        job: &OutboundJob,
        delivery: &Delivery,
        reason: DeadLetterReason,
        error_code: Option<i64>,
        last_error: String,
        attempts: u32,
    ) -> DeadLetter {
        DeadLetter {
            reason,
            tenant_id: Some(job.tenant_id.clone()),
            error_code,
            last_error,
            attempts,
            first_attempt_at_ms: job.created_at_ms,
            dead_lettered_at_ms: now_ms(),
            source_queue: delivery.queue.clone(),
        }
    }

    async fn park(&self, delivery: &Delivery, info: &DeadLetter) -> Result<(), Requeue> {
        let bus = &self.inner.bus;
        bus.publish(bus.dead_letter(delivery.body.clone(), delivery.headers.clone(), info)).await?;
        Ok(())
    }
}
