//! Sending one reply: checks (pause, age, 24-hour window), then each part under its ledger
//! claim and the rate limits; failures go to the retry ladder, the held queue or the DLQ by
//! their WhatsApp error class.

use std::time::Duration;

use switchboard_bus::{headers::names, BusError, Delivery};
use switchboard_domain::{now_ms, split_message, DeadLetterReason, OutboundJob, ReplyKind, MAX_TEXT_CHARS};
use switchboard_store::{
    lease::{Acquired, Lease},
    persist, ClaimKey, Rate, StoreError,
};
use switchboard_whatsapp::{ErrorClass, GraphError, SendOk, TextMessage};
use tracing::Instrument;

use crate::{settle::Fate, Dispatcher};

/// WhatsApp's 24-hour customer service window.
const WINDOW_SECS: i64 = 24 * 3600;

/// Why a job goes back to the queue unfinished.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Requeue {
    #[error("broker: {0}")]
    Bus(#[from] BusError),
    #[error("redis: {0}")]
    Store(#[from] StoreError),
    #[error("another replica holds this part")]
    Busy,
    #[error("shutting down")]
    Shutdown,
}

/// Attempt bookkeeping carried in headers across the retry ladder.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Attempts {
    /// Send attempts already made before this delivery.
    pub before: u32,
    pub first_at_ms: i64,
}

impl Attempts {
    fn from_headers(delivery: &Delivery) -> Self {
        let h = &delivery.headers;
        Self {
            before: h.get(names::ATTEMPTS).and_then(|v| v.parse().ok()).unwrap_or(0),
            first_at_ms: h.get(names::FIRST_ATTEMPT_AT).and_then(|v| v.parse().ok()).unwrap_or_else(now_ms),
        }
    }
}

impl Dispatcher {
    pub(crate) async fn handle_outbound(&self, delivery: Delivery) {
        let job: OutboundJob = match serde_json::from_slice(&delivery.body) {
            Ok(job) => job,
            Err(error) => {
                tracing::error!(%error, "undecodable outbound job; dead-lettering");
                self.park_undecodable(&delivery).await;
                return;
            }
        };
        let attempts = Attempts::from_headers(&delivery);
        let span = tracing::info_span!(
            "send reply",
            otel.kind = "consumer",
            messaging.system = "rabbitmq",
            messaging.operation.type = "process",
            messaging.destination.name = %delivery.queue,
            messaging.message.id = %job.reply_id,
            tenant = %job.tenant_id,
            conversation = %job.conversation,
            reply.kind = ?job.kind,
            attempt = attempts.before + 1,
            outcome = tracing::field::Empty,
        );
        switchboard_telemetry::extract(&delivery.headers, &span);
        async {
            // Redis or broker trouble: retry here rather than give the job back, which would
            // count toward the queue's delivery limit.
            let infrastructure = |e: &Requeue| matches!(e, Requeue::Bus(_) | Requeue::Store(_));
            let stopping = || self.inner.shutdown.is_cancelled();
            let result = persist("sending a reply", infrastructure, stopping, || self.send_job(&job, &delivery, attempts)).await;
            match result {
                Ok(fate) => {
                    tracing::Span::current().record("outcome", fate.label());
                    metrics::counter!("switchboard_sends_total", "tenant" => job.tenant_id.clone(), "outcome" => fate.label())
                        .increment(1);
                    if let Err(error) = delivery.ack().await {
                        tracing::warn!(%error, "ack failed after the job was settled");
                    }
                    let store = &self.inner.store;
                    if let Err(error) = store.reply_settled(&job.tenant_id, &job.conversation, &job.reply_id).await {
                        tracing::warn!(%error, "could not let the conversation's next reply go; it waits its turn out");
                    }
                }
                Err(reason) => {
                    tracing::warn!(error = %reason, "reply not finished; requeueing");
                    if matches!(reason, Requeue::Busy) {
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                    let _ = delivery.requeue().await;
                }
            }
        }
        .instrument(span)
        .await
    }

    /// Waits until the replies committed before this one in its conversation are settled, so
    /// replies reach the user in order with any number of replicas (`SWITCHBOARD_REPLY_ORDER_WAIT_MS`
    /// at most; then they are skipped). Called once the reply was found not first in line. Redis
    /// trouble ends the wait: order is a courtesy, the send itself retries on Redis.
    async fn wait_for_earlier_replies(&self, job: &OutboundJob) -> Result<(), Requeue> {
        let limit = Duration::from_millis(self.inner.settings.reply_order_wait_ms);
        let (store, started) = (&self.inner.store, tokio::time::Instant::now());
        let mut pause = Duration::from_millis(2);
        loop {
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = self.inner.shutdown.cancelled() => return Err(Requeue::Shutdown),
            }
            pause = (pause * 2).min(Duration::from_millis(50));
            match store.reply_may_go(&job.tenant_id, &job.conversation, &job.reply_id).await {
                Ok(true) => break,
                Ok(false) if started.elapsed() >= limit => {
                    let skipped = store.skip_replies_before(&job.tenant_id, &job.conversation, &job.reply_id).await;
                    tracing::warn!(
                        skipped = skipped.unwrap_or(0),
                        "earlier replies of the conversation not settled in time; this one goes first"
                    );
                    break;
                }
                Ok(false) => {}
                Err(error) => {
                    tracing::warn!(%error, "reply order unknown; sending without waiting");
                    break;
                }
            }
        }
        metrics::histogram!("switchboard_reply_order_wait_seconds").record(started.elapsed().as_secs_f64());
        Ok(())
    }

    async fn send_job(&self, job: &OutboundJob, delivery: &Delivery, attempts: Attempts) -> Result<Fate, Requeue> {
        let s = &self.inner.settings;
        let store = &self.inner.store;
        let Some(tenant) = self.inner.tenants.current().get(&job.tenant_id).cloned() else {
            return self
                .dead_letter(job, delivery, attempts, DeadLetterReason::UnknownTenant, None, "unknown tenant")
                .await;
        };
        let Some(token) = tenant.access_token.clone() else {
            return self
                .dead_letter(job, delivery, attempts, DeadLetterReason::UnknownTenant, None, "no access token")
                .await;
        };
        // One read for every check below and for the reply's place in its conversation's line;
        // read again after waiting for the replies ahead of it.
        let mut checks = store.send_checks(&job.tenant_id, &job.conversation, &job.reply_id).await?;
        if !checks.may_go && s.reply_order_wait_ms > 0 {
            self.wait_for_earlier_replies(job).await?;
            checks = store.send_checks(&job.tenant_id, &job.conversation, &job.reply_id).await?;
        }
        // The user's rights first: nothing for an erased user that was prepared before the
        // erasure, nothing but the confirmation of their own command while restricted.
        if checks.erased_at.is_some_and(|at| job.created_at_ms <= at) {
            return Ok(Fate::Suppressed);
        }
        if job.kind != ReplyKind::Notice && checks.restricted {
            return Ok(Fate::Suppressed);
        }
        if checks.paused.is_some() {
            return self.hold(job, delivery).await;
        }
        let now = now_ms();
        let born = if job.last_received_at_ms > 0 { job.last_received_at_ms } else { job.created_at_ms };
        if now - born > s.reply_max_age_secs as i64 * 1000 {
            return self.dead_letter(job, delivery, attempts, DeadLetterReason::Expired, None, "reply too old").await;
        }
        let last_inbound = checks.last_inbound.unwrap_or(0).max(job.user_timestamp);
        if now / 1000 - last_inbound > WINDOW_SECS - s.window_margin_secs as i64 {
            return self
                .dead_letter(job, delivery, attempts, DeadLetterReason::WindowClosed, None, "24-hour window closed")
                .await;
        }

        let parts = split_message(&job.body, MAX_TEXT_CHARS);
        for (index, part) in parts.iter().enumerate() {
            let key = ClaimKey::send(&job.tenant_id, &job.reply_id, index);
            let wait = s.claim_lease() + s.claim_lease() / 2;
            let lease = match Lease::acquire(store, key, s.claim_lease(), wait).await? {
                Acquired::Done(_) => continue, // sent before a crash, or by a duplicate job
                Acquired::Busy => return Err(Requeue::Busy),
                Acquired::Lease(lease) => lease,
            };
            if let Err(stop) = self.wait_for_rate(job).await {
                let _ = lease.release().await;
                return Err(stop);
            }
            let message =
                TextMessage { to: &job.to, body: part, reply_to: None, biz_opaque_callback_data: Some(&job.reply_id) };
            let result = self
                .inner
                .graph
                .send_text(token.expose(), &job.phone_number_id, &message)
                .instrument(tracing::info_span!(
                    "POST /{phone_number_id}/messages",
                    otel.kind = "client",
                    http.request.method = "POST",
                    part = index
                ))
                .await;
            let result = match result {
                // Accepted, but the body was unreadable: the message was most likely sent, so it
                // is recorded as sent (wamid unknown) rather than dead-lettered and resent.
                Err(GraphError::Decode { http_status: 200..=299, .. }) => Ok(SendOk { wamid: "unknown".into() }),
                other => other,
            };
            match result {
                Ok(sent) => self.record_part(job, index, &sent.wamid, lease).await,
                Err(error) => {
                    let _ = lease.release().await;
                    return self.failed(job, delivery, attempts, &error).await;
                }
            }
        }
        tracing::info!(parts = parts.len(), "reply sent");
        Ok(Fate::Sent)
    }

    /// Waits for a slot of the phone number's rate and of the recipient's pair rate.
    async fn wait_for_rate(&self, job: &OutboundJob) -> Result<(), Requeue> {
        // The recipient's slot first, then the number's: a send held back by the pair rate must
        // not take a slot of the number's rate it would only use seconds later (several such
        // sends released together would exceed the number's rate).
        let pair_key = pair_bucket(&job.tenant_id, &job.conversation);
        let pair_wait = self.inner.store.reserve(&pair_key, self.pair_rate()).await?;
        metrics::histogram!("switchboard_rate_limit_wait_seconds", "bucket" => "pair").record(pair_wait.as_secs_f64());
        self.pause(pair_wait).await?;
        let number_wait =
            self.inner.store.reserve(&number_bucket(&job.phone_number_id), self.number_rate(&job.tenant_id)).await?;
        metrics::histogram!("switchboard_rate_limit_wait_seconds", "bucket" => "number")
            .record(number_wait.as_secs_f64());
        self.pause(number_wait).await
    }

    /// Sleeps `wait` unless shutdown begins meanwhile.
    async fn pause(&self, wait: Duration) -> Result<(), Requeue> {
        if wait > Duration::ZERO {
            tracing::debug!(?wait, "waiting for the rate limit");
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.inner.shutdown.cancelled() => return Err(Requeue::Shutdown),
            }
        }
        Ok(())
    }

    /// The phone number's rate: the tenant's own when set, else the default.
    pub(crate) fn number_rate(&self, tenant: &str) -> Rate {
        let s = &self.inner.settings;
        let per_second =
            self.inner.tenants.current().get(tenant).and_then(|t| t.rate_per_number).unwrap_or(s.rate_per_number);
        Rate { per_second, burst: s.rate_burst }
    }

    fn pair_rate(&self) -> Rate {
        let s = &self.inner.settings;
        Rate { per_second: 1000.0 / s.pair_interval_ms.max(1) as f64, burst: s.pair_burst }
    }

    /// The ledger write that makes a redelivery skip this part. A crash between Meta's 200
    /// and this write is the one window where a part can go out twice, so the write is retried
    /// here for as long as it takes.
    async fn record_part(&self, job: &OutboundJob, index: usize, wamid: &str, lease: Lease) {
        let s = &self.inner.settings;
        let store = &self.inner.store;
        let (key, token) = (ClaimKey::send(&job.tenant_id, &job.reply_id, index), lease.token().to_string());
        let ttl = self
            .inner
            .tenants
            .current()
            .get(&job.tenant_id)
            .map(|t| t.retention.ledger())
            .unwrap_or(Duration::from_secs(s.ledger_ttl_secs));
        if let Err(error) = lease.complete(wamid, ttl).await {
            tracing::warn!(%error, part = index, "cannot record a sent part yet; retrying");
            // Never gives up: the part went out, and only this record stops a second send.
            let _ =
                persist("recording a sent part", |_| true, || false, || store.complete(&key, &token, wamid, ttl)).await;
        }
        // Lets a later `failed` status with a retryable code send this part again.
        let keep = Duration::from_secs(s.reply_max_age_secs);
        if let Err(error) = store.record_sent(job, wamid, index, keep).await {
            tracing::warn!(%error, "cannot index the sent part (a later failed status will not be retried)");
        }
    }

    /// What a failed send leads to, by WhatsApp error class.
    async fn failed(
        &self,
        job: &OutboundJob,
        delivery: &Delivery,
        attempts: Attempts,
        error: &GraphError,
    ) -> Result<Fate, Requeue> {
        let s = &self.inner.settings;
        let store = &self.inner.store;
        let class = error.class();
        let made = attempts.before + 1;
        tracing::warn!(%error, %class, attempt = made, "send failed");
        let code = error
            .code()
            .map(|c| c.to_string())
            .unwrap_or_else(|| error.http_status().map(|s| format!("http_{s}")).unwrap_or_else(|| "network".into()));
        metrics::counter!("switchboard_send_errors_total", "tenant" => job.tenant_id.clone(), "class" => class.as_str(), "code" => code)
            .increment(1);
        match class {
            ErrorClass::TokenInvalid => {
                store.pause_tenant(&job.tenant_id, &format!("token_invalid:{}", error.code().unwrap_or(0))).await?;
                tracing::error!(
                    alert = "tenant_paused",
                    tenant = %job.tenant_id,
                    code = error.code(),
                    "the Graph API refused the tenant's access token; its sending is paused until resumed"
                );
                self.hold(job, delivery).await
            }
            ErrorClass::WindowClosed => {
                self.dead_letter(
                    job,
                    delivery,
                    Attempts { before: made, ..attempts },
                    DeadLetterReason::WindowClosed,
                    error.code(),
                    &error.to_string(),
                )
                .await
            }
            ErrorClass::Permanent => {
                self.dead_letter(
                    job,
                    delivery,
                    Attempts { before: made, ..attempts },
                    DeadLetterReason::SendPermanent,
                    error.code(),
                    &error.to_string(),
                )
                .await
            }
            ErrorClass::Transient | ErrorClass::Throughput | ErrorClass::PairRate => {
                if made >= s.send_max_attempts {
                    return self
                        .dead_letter(
                            job,
                            delivery,
                            Attempts { before: made, ..attempts },
                            DeadLetterReason::SendRetriesExhausted,
                            error.code(),
                            &error.to_string(),
                        )
                        .await;
                }
                // At least: what the error asks for, then exponential by attempt (with jitter).
                let mut at_least = match error {
                    GraphError::Api { retry_after: Some(after), .. } => *after,
                    _ => Duration::ZERO,
                };
                match class {
                    ErrorClass::Throughput => {
                        // Slow the whole phone number down, for every replica.
                        let penalty = Duration::from_millis(s.send_backoff_base_ms);
                        store
                            .penalize(&number_bucket(&job.phone_number_id), self.number_rate(&job.tenant_id), penalty)
                            .await?;
                        at_least = at_least.max(penalty);
                    }
                    ErrorClass::PairRate => {
                        // Only this recipient waits: ≥ 6 s, growing 4^n as Meta suggests, capped at
                        // the ladder's longest step.
                        let penalty = Duration::from_secs(6 * 4u64.pow(attempts.before.min(4)))
                            .min(Duration::from_millis(s.send_backoff_max_ms).max(Duration::from_secs(6)));
                        store
                            .penalize(&pair_bucket(&job.tenant_id, &job.conversation), self.pair_rate(), penalty)
                            .await?;
                        at_least = at_least.max(penalty);
                    }
                    _ => {}
                }
                self.retry_later(
                    job,
                    delivery,
                    Attempts { before: made, ..attempts },
                    at_least,
                    error.code(),
                    &error.to_string(),
                )
                .await
            }
        }
    }
}

/// The rate bucket of one business phone number.
pub(crate) fn number_bucket(phone_number_id: &str) -> String {
    format!("pn:{phone_number_id}")
}

/// The pair-rate bucket of one recipient (by pseudonymous conversation key).
pub(crate) fn pair_bucket(tenant: &str, conversation: &str) -> String {
    format!("pair:{tenant}:{conversation}")
}
