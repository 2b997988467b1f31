//! One turn: an inbound message in, at most one reply out.

use std::time::Duration;

use switchboard_bus::{topology::routing, BusError, Delivery};
use switchboard_domain::{
    now_ms, reply_id, ChatEntry, ChatRole, DeadLetter, DeadLetterReason, InboundContent, InboundEvent, OutboundJob,
    ReplyKind,
};
use switchboard_store::{
    lease::{Acquired, Lease},
    ClaimKey, StoreError,
};
use tracing::Instrument;

use crate::{claim_wait, Worker};

/// Why a turn could not finish now; the delivery goes back to the queue.
#[derive(Debug, thiserror::Error)]
enum Retry {
    #[error("broker: {0}")]
    Bus(#[from] BusError),
    #[error("redis: {0}")]
    Store(#[from] StoreError),
    #[error("lease lost to another replica")]
    LeaseLost,
    #[error("claim still held by another replica")]
    Busy,
}

/// Pause before giving a delivery back after an infrastructure error, so a broken dependency
/// does not turn into a hot redelivery loop.
const REQUEUE_PAUSE: Duration = Duration::from_millis(500);

impl Worker {
    pub(crate) async fn handle(&self, delivery: Delivery) {
        let event: InboundEvent = match serde_json::from_slice(&delivery.body) {
            Ok(ev) => ev,
            Err(error) => {
                tracing::error!(%error, "undecodable inbound event; dead-lettering");
                let parked = self
                    .dead_letter(&delivery, None, DeadLetterReason::Undecodable, "undecodable json".into(), 1)
                    .await;
                // If even the DLQ is unreachable, reject: the queue dead-letters it natively.
                let _ = match parked {
                    Ok(()) => delivery.ack().await,
                    Err(_) => delivery.reject().await,
                };
                return;
            }
        };
        let span = tracing::info_span!(
            "process inbound",
            messaging.system = "rabbitmq",
            messaging.operation.type = "process",
            messaging.destination.name = %delivery.queue,
            messaging.message.id = %event.wamid,
            tenant = %event.tenant_id,
            conversation = %event.conversation,
            redelivered = delivery.redelivered,
            outcome = tracing::field::Empty,
        );
        switchboard_telemetry::extract(&delivery.headers, &span);
        async {
            match self.turn(&event, &delivery).await {
                Ok(outcome) => {
                    tracing::Span::current().record("outcome", outcome);
                    if let Err(error) = delivery.ack().await {
                        // The work is recorded as done: a redelivery will be recognised.
                        tracing::warn!(%error, "ack failed after a completed turn");
                    }
                }
                Err(retry) => {
                    tracing::warn!(error = %retry, "turn not finished; requeueing");
                    tokio::time::sleep(REQUEUE_PAUSE).await;
                    let _ = delivery.requeue().await;
                }
            }
        }
        .instrument(span)
        .await
    }

    async fn turn(&self, event: &InboundEvent, delivery: &Delivery) -> Result<&'static str, Retry> {
        let s = &self.inner.settings;
        let Some(tenant) = self.inner.tenants.get(&event.tenant_id).cloned() else {
            self.dead_letter(delivery, Some(event), DeadLetterReason::UnknownTenant, "unknown tenant".into(), 1)
                .await?;
            return Ok("unknown_tenant");
        };
        if let InboundContent::NoReply { .. } = event.content {
            return Ok("no_reply");
        }

        let key = ClaimKey::inbound(&event.tenant_id, &event.wamid);
        let lease = match Lease::acquire(&self.inner.store, key, s.claim_lease(), claim_wait(s)).await? {
            Acquired::Lease(lease) => lease,
            Acquired::Done(_) => return Ok("duplicate"),
            Acquired::Busy => return Err(Retry::Busy),
        };
        match self.answer(event, delivery, &tenant, &lease).await {
            Ok(outcome) => {
                let ttl = Duration::from_secs(s.idempotency_ttl_secs);
                lease.complete(&reply_id(&event.tenant_id, &event.wamid), ttl).await?;
                Ok(outcome)
            }
            Err(e) => {
                // Let the redelivery take over at once instead of waiting for the lease to expire.
                let _ = lease.release().await;
                Err(e)
            }
        }
    }

    /// Builds and publishes the reply. Everything before the publish is idempotent.
    async fn answer(
        &self,
        event: &InboundEvent,
        delivery: &Delivery,
        tenant: &switchboard_config::Tenant,
        lease: &Lease,
    ) -> Result<&'static str, Retry> {
        let s = &self.inner.settings;
        let store = &self.inner.store;
        let rid = reply_id(&event.tenant_id, &event.wamid);
        let ctx_ttl = Duration::from_secs(s.context_ttl_secs);

        let (kind, body) = match &event.content {
            InboundContent::NoReply { .. } => return Ok("no_reply"),
            InboundContent::Unsupported { .. } => (ReplyKind::Unsupported, s.unsupported_reply.clone()),
            InboundContent::Text { body } => {
                let user = ChatEntry {
                    id: event.wamid.clone(),
                    role: ChatRole::User,
                    content: body.clone(),
                    at: event.timestamp,
                };
                let window = store.append_context(&event.tenant_id, &event.conversation, &user, ctx_ttl).await?;
                if let Some(done) = window.iter().find(|e| e.id == rid) {
                    // A replay after a crash: the reply was generated already.
                    (ReplyKind::Assistant, done.content.clone())
                } else {
                    match self.generate(&tenant.llm_model, &tenant.system_prompt, &window).await {
                        Ok(completion) => {
                            let reply = ChatEntry {
                                id: rid.clone(),
                                role: ChatRole::Assistant,
                                content: completion.content,
                                at: now_ms() / 1000,
                            };
                            if lease.is_lost() {
                                return Err(Retry::LeaseLost);
                            }
                            store.append_context(&event.tenant_id, &event.conversation, &reply, ctx_ttl).await?;
                            (ReplyKind::Assistant, reply.content)
                        }
                        Err(error) => {
                            tracing::error!(%error, "LLM failed on every attempt; sending the apology");
                            let attempts = s.llm_max_attempts;
                            self.dead_letter(
                                delivery,
                                Some(event),
                                DeadLetterReason::LlmFailed,
                                error.to_string(),
                                attempts,
                            )
                            .await?;
                            (ReplyKind::Apology, s.llm_failure_reply.clone())
                        }
                    }
                }
            }
        };
        if lease.is_lost() {
            return Err(Retry::LeaseLost);
        }
        let job = OutboundJob {
            tenant_id: event.tenant_id.clone(),
            phone_number_id: event.phone_number_id.clone(),
            reply_id: rid.clone(),
            to: event.from.clone(),
            conversation: event.conversation.clone(),
            in_reply_to: event.wamid.clone(),
            kind,
            body,
            user_timestamp: event.timestamp,
            created_at_ms: now_ms(),
        };
        let bus = &self.inner.bus;
        let mut message = bus.event(routing::OUTBOUND, &job)?;
        message.message_id = Some(rid);
        switchboard_telemetry::inject(&mut message.headers);
        bus.publish(message).await?;
        Ok(match kind {
            ReplyKind::Assistant => "replied",
            ReplyKind::Apology => "apologised",
            ReplyKind::Unsupported => "unsupported",
        })
    }

    /// Parks the delivery's body in the DLQ with the reason and counters as headers.
    async fn dead_letter(
        &self,
        delivery: &Delivery,
        event: Option<&InboundEvent>,
        reason: DeadLetterReason,
        last_error: String,
        attempts: u32,
    ) -> Result<(), BusError> {
        let now = now_ms();
        let info = DeadLetter {
            reason,
            tenant_id: event.map(|e| e.tenant_id.clone()),
            error_code: None,
            last_error,
            attempts,
            first_attempt_at_ms: event.map(|e| e.received_at_ms).unwrap_or(now),
            dead_lettered_at_ms: now,
            source_queue: delivery.queue.clone(),
        };
        let bus = &self.inner.bus;
        bus.publish(bus.dead_letter(delivery.body.clone(), delivery.headers.clone(), &info)).await
    }
}
