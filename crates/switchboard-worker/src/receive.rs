//! Taking an inbound delivery: queue its message for the conversation's next turn, hold it.

use std::time::Duration;

use switchboard_bus::{topology::routing, BusError, Delivery};
use switchboard_config::{Tenant, UserCommand};
use switchboard_domain::{
    message_ref, now_ms, DeadLetter, DeadLetterReason, InboundContent, InboundEvent, ReadReceipt,
};
use switchboard_store::{persist, AuditRecord, MessageState};

use crate::runner::TurnError;

/// What to do with an inbound message after the rights check.
enum Rights {
    /// Queue it for a turn.
    Process,
    /// Settled already (a command carried out, a restricted user, an erased message).
    Done(&'static str),
}

/// The confirmation of a user's command: answers that one message, sent even while restricted.
fn notice_job(event: &InboundEvent, body: String) -> switchboard_domain::OutboundJob {
    switchboard_domain::OutboundJob {
        tenant_id: event.tenant_id.clone(),
        phone_number_id: event.phone_number_id.clone(),
        reply_id: switchboard_domain::reply_id(&event.tenant_id, &event.wamid),
        to: event.from.clone(),
        conversation: event.conversation.clone(),
        in_reply_to: event.wamid.clone(),
        wamids: vec![event.wamid.clone()],
        kind: switchboard_domain::ReplyKind::Notice,
        body,
        user_timestamp: event.timestamp,
        created_at_ms: now_ms(),
        last_received_at_ms: event.received_at_ms,
        trace: Default::default(),
    }
}
use tracing::Instrument;

use crate::Worker;

/// Pause before giving a delivery back when the rights check cannot reach Redis.
const REQUEUE_PAUSE: Duration = Duration::from_millis(500);

impl Worker {
    pub(crate) async fn receive(&self, delivery: Delivery) {
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
            "receive inbound",
            otel.kind = "consumer",
            messaging.system = "rabbitmq",
            messaging.operation.type = "receive",
            messaging.destination.name = %delivery.queue,
            messaging.message.id = %message_ref(&event.wamid),
            tenant = %event.tenant_id,
            conversation = %event.conversation,
            redelivered = delivery.redelivered,
        );
        switchboard_telemetry::extract(&delivery.headers, &span);
        self.take(event, delivery).instrument(span).await
    }

    /// Queues the message for its turn and holds the delivery (inside the receive span).
    async fn take(&self, mut event: InboundEvent, delivery: Delivery) {
        let Some(tenant) = self.inner.tenants.current().get(&event.tenant_id).cloned() else {
            tracing::error!("message for an unknown tenant; dead-lettering");
            let parked = self
                .dead_letter(&delivery, Some(&event), DeadLetterReason::UnknownTenant, "unknown tenant".into(), 1)
                .await;
            let _ = if parked.is_ok() { delivery.ack().await } else { delivery.requeue().await };
            return;
        };
        match self.rights(&tenant, &event).await {
            Ok(Rights::Process) => {}
            Ok(Rights::Done(what)) => {
                tracing::info!(what, "message settled without a turn");
                let _ = delivery.ack().await;
                return;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot check the user's rights yet; requeueing");
                tokio::time::sleep(REQUEUE_PAUSE).await;
                let _ = delivery.requeue().await;
                return;
            }
        }
        // The webhook's trace context waits with the message, so its turn joins that trace.
        event.trace = delivery
            .headers
            .iter()
            .filter(|(k, _)| *k == "traceparent" || *k == "tracestate")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let ttl = tenant.retention.idempotency();
        let store = &self.inner.store;
        // Redis trouble is retried here, holding the delivery: giving it back would count
        // toward the queue's delivery limit and, in a long outage, dead-letter good messages.
        let stopping = || self.inner.shutdown.is_cancelled();
        let result = persist(
            "queueing the message",
            |_| true,
            stopping,
            || async {
                match event.content {
                    InboundContent::NoReply { .. } => {
                        store.mark_no_reply(&event, ttl).await.map(|()| MessageState::NoReply)
                    }
                    _ => store.enqueue_message(&event, ttl).await,
                }
            },
        )
        .await;
        match result {
            Ok(state) if state.is_settled() => {
                tracing::debug!(?state, "already handled");
                let _ = delivery.ack().await;
            }
            Ok(state) => {
                if state == MessageState::Open {
                    self.send_read_receipt(&event);
                }
                let conv = (event.tenant_id.clone(), event.conversation.clone());
                self.inner.held.hold(conv.clone(), event, delivery);
                self.schedule(conv);
            }
            Err(error) => {
                tracing::warn!(%error, "shutting down with the message unqueued; requeueing");
                let _ = delivery.requeue().await;
            }
        }
    }

    /// What the user's rights and commands say about this message, before anything is stored:
    /// messages that arrived before an erasure are dropped; STOP / START / forget words are
    /// carried out (with one confirmation); a restricted user's messages are acknowledged and
    /// nothing more.
    async fn rights(&self, tenant: &Tenant, event: &InboundEvent) -> Result<Rights, TurnError> {
        let store = &self.inner.store;
        let (t, c) = (&event.tenant_id, &event.conversation);
        if store.erased_at(t, c).await?.is_some_and(|at| event.received_at_ms <= at) {
            return Ok(Rights::Done("erased"));
        }
        let command = match &event.content {
            InboundContent::Text { body } => tenant.user_command(body),
            _ => None,
        };
        let s = &self.inner.settings;
        let (action, notice) = match command {
            Some(UserCommand::Stop) => ("stop", store.restrict(t, c, true).await?.then(|| s.stop_reply.clone())),
            Some(UserCommand::Start) => ("start", store.restrict(t, c, false).await?.then(|| s.start_reply.clone())),
            Some(UserCommand::Forget) => {
                store.forget_context(t, c).await?;
                ("forget", Some(s.forget_reply.clone()))
            }
            None if store.is_restricted(t, c).await? => return Ok(Rights::Done("restricted")),
            None => return Ok(Rights::Process),
        };
        if let Some(body) = notice {
            self.publish(&notice_job(event, body)).await?;
        }
        let record = AuditRecord {
            at_ms: now_ms(),
            actor: "user".into(),
            action: action.into(),
            subject_ref: Some(c.clone()),
            detail: "end-user command".into(),
        };
        store.audit(t, &record, tenant.retention.audit()).await?;
        Ok(Rights::Done(action))
    }

    /// Asks the dispatcher to mark the message read (and show "typing…"), if the tenant wants
    /// it. Best effort and in the background: it never delays or blocks the reply.
    fn send_read_receipt(&self, event: &InboundEvent) {
        let Some(tenant) = self.inner.tenants.current().get(&event.tenant_id).cloned() else { return };
        if !tenant.mark_read {
            return;
        }
        let receipt = ReadReceipt {
            tenant_id: event.tenant_id.clone(),
            phone_number_id: event.phone_number_id.clone(),
            wamid: event.wamid.clone(),
            typing: tenant.typing_indicator,
        };
        let bus = self.inner.bus.clone();
        // Published in the background, still under `receive inbound`: `mark read` joins the trace.
        let publish = async move {
            if let Ok(message) = bus.event(routing::RECEIPT, &receipt) {
                if let Err(error) = bus.publish(message).await {
                    tracing::debug!(%error, "read receipt not queued (ignored)");
                }
            }
        };
        self.inner.spawn(publish.instrument(tracing::Span::current()));
    }

    /// Parks a delivery's body in the DLQ with the reason and counters as headers.
    pub(crate) async fn dead_letter(
        &self,
        delivery: &Delivery,
        event: Option<&InboundEvent>,
        reason: DeadLetterReason,
        last_error: String,
        attempts: u32,
    ) -> Result<(), BusError> {
        self.dead_letter_body(
            delivery.body.clone(),
            delivery.headers.clone(),
            &delivery.queue,
            event,
            reason,
            last_error,
            attempts,
        )
        .await
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn dead_letter_body(
        &self,
        body: Vec<u8>,
        headers: switchboard_bus::Headers,
        source_queue: &str,
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
            source_queue: source_queue.to_string(),
        };
        let bus = &self.inner.bus;
        bus.publish(bus.dead_letter(body, headers, &info)).await?;
        let tenant = event.map(|e| e.tenant_id.clone()).unwrap_or_default();
        metrics::counter!("switchboard_dead_letters_total", "tenant" => tenant, "reason" => reason.as_str())
            .increment(1);
        Ok(())
    }
}
