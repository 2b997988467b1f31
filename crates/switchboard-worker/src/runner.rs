//! Running a conversation's turns while holding its lease.

use std::{borrow::Cow, time::Duration};

use switchboard_bus::{topology::routing, BusError};
use switchboard_config::Tenant;
use switchboard_domain::{
    now_ms, turn_reply_id, ChatEntry, ChatRole, DeadLetterReason, InboundContent, InboundEvent, OutboundJob, ReplyKind,
};
use switchboard_store::{
    lease::{Acquired, Lease},
    ClaimKey, StoreError,
};
use tracing::Instrument;

use crate::{ConvKey, Worker};

/// Why a turn stopped before its reply was published.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TurnError {
    #[error("broker: {0}")]
    Bus(#[from] BusError),
    #[error("redis: {0}")]
    Store(#[from] StoreError),
    #[error("the conversation lease was lost to another replica")]
    LeaseLost,
    #[error("unknown tenant")]
    UnknownTenant,
    #[error("shutting down")]
    ShuttingDown,
}

/// What a runner did.
enum Ran {
    /// Nothing (more) to do, or someone else holds the conversation.
    Idle,
    /// One turn answered and more messages are pending: run again, at the back of the line.
    More,
}

/// Marks a conversation as running here; unmarks it when dropped, even if the runner panics.
struct Running {
    worker: Worker,
    conv: ConvKey,
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(mut running) = self.worker.inner.running.lock() {
            running.remove(&self.conv);
        }
    }
}

impl Worker {
    /// Runs the conversation in a task of its own unless it already runs here. Turns of
    /// different conversations run in parallel, at most `SWITCHBOARD_WORKER_CONCURRENCY` at once,
    /// first come first served.
    pub(crate) fn schedule(&self, conv: ConvKey) {
        if self.inner.shutdown.is_cancelled() {
            return;
        }
        if !self.inner.running.lock().expect("running lock").insert(conv.clone()) {
            return;
        }
        let worker = self.clone();
        self.inner.spawn(async move {
            let running = Running { worker: worker.clone(), conv: conv.clone() };
            let ran = worker.run_conversation(&conv).await;
            drop(running);
            match ran {
                Ok(Ran::More) => worker.schedule(conv),
                Ok(Ran::Idle) => {}
                Err(error) => tracing::warn!(conversation = %conv.1, %error, "turn not finished; it will be retried"),
            }
        });
    }

    async fn run_conversation(&self, conv: &ConvKey) -> Result<Ran, TurnError> {
        let s = &self.inner.settings;
        let store = &self.inner.store;
        let key = ClaimKey::conversation(&conv.0, &conv.1);
        let lease = match Lease::acquire(store, key, s.claim_lease(), Duration::ZERO).await? {
            Acquired::Lease(lease) => lease,
            Acquired::Done(_) | Acquired::Busy => return Ok(Ran::Idle),
        };
        let result = self.turns(conv, &lease).await;
        let _ = lease.release().await;
        // Acknowledge what this turn answered right away (the settler would, a little later).
        self.settle(conv, false).await;
        result
    }

    async fn turns(&self, conv: &ConvKey, lease: &Lease) -> Result<Ran, TurnError> {
        let store = &self.inner.store;
        let state_ttl = self.inner.retention(&conv.0).idempotency();
        // A previous holder may have died between committing a turn and publishing it: publish
        // it now, under the same reply id (the dispatcher sends a reply id at most once).
        for job in store.unpublished_turns(&conv.0, &conv.1).await? {
            tracing::info!(conversation = %conv.1, reply_id = %job.reply_id, "publishing a recovered turn");
            // Published under the trace of the turn that committed it (`job.trace`).
            let span = tracing::info_span!("recover turn", tenant = %conv.0, conversation = %conv.1);
            switchboard_telemetry::extract(&job.trace, &span);
            self.publish(&job).instrument(span).await?;
            store.finish_turn(&job, state_ttl).await?;
        }
        let Some(batch) = self.coalesce(conv, lease).await? else { return Ok(Ran::Idle) };
        // The coalescing wait costs nothing; the LLM call is what is bounded (and queued FIFO).
        let _permit = tokio::select! {
            p = self.inner.turn_permits.clone().acquire_owned() => p.expect("semaphore never closed"),
            _ = self.inner.shutdown.cancelled() => return Ok(Ran::Idle),
        };
        // Messages that arrived while waiting for the permit join this turn.
        let batch = if self.inner.settings.coalesce_window_ms > 0 {
            self.inner.store.pending_messages(&conv.0, &conv.1).await?
        } else {
            batch
        };
        if batch.is_empty() {
            return Ok(Ran::Idle);
        }
        let span = tracing::info_span!(
            "turn",
            tenant = %conv.0,
            conversation = %conv.1,
            messages = batch.len(),
            regenerations = tracing::field::Empty,
            reply.kind = tracing::field::Empty,
        );
        // One trace from the newest message's webhook to the send; the others are linked.
        if let Some((newest, older)) = batch.split_last() {
            switchboard_telemetry::extract(&newest.trace, &span);
            for event in older {
                switchboard_telemetry::link(&event.trace, &span);
            }
        }
        self.turn(conv, batch, lease).instrument(span).await?;
        let more = !store.pending_messages(&conv.0, &conv.1).await?.is_empty();
        Ok(if more { Ran::More } else { Ran::Idle })
    }

    /// Waits until the conversation has been quiet for the coalescing window (bounded by the
    /// turn's hard cap) and returns its pending messages in order; `None` when there are none,
    /// or on shutdown / lease loss (the messages stay pending for the next holder).
    async fn coalesce(&self, conv: &ConvKey, lease: &Lease) -> Result<Option<Vec<InboundEvent>>, TurnError> {
        let s = &self.inner.settings;
        loop {
            if self.inner.shutdown.is_cancelled() || lease.is_lost() {
                return Ok(None);
            }
            let mut pending = self.inner.store.pending_messages(&conv.0, &conv.1).await?;
            if pending.is_empty() {
                return Ok(None);
            }
            if s.coalesce_window_ms == 0 {
                pending.truncate(1); // coalescing off: one message per turn, in order
                return Ok(Some(pending));
            }
            let oldest = pending.iter().map(|e| e.received_at_ms).min().unwrap_or_default();
            let newest = pending.iter().map(|e| e.received_at_ms).max().unwrap_or_default();
            let deadline = (newest + s.coalesce_window_ms as i64).min(oldest + s.turn_max_delay_ms as i64);
            let wait = deadline - now_ms();
            if wait <= 0 {
                return Ok(Some(pending));
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(wait as u64)) => {}
                _ = self.inner.shutdown.cancelled() => {}
            }
        }
    }

    /// The tenant's system prompt, plus the user's profile name where the tenant keeps it: the
    /// newest name of the batch is stored (with the context window's retention), else the one
    /// stored before is used.
    async fn system_prompt<'t>(
        &self,
        tenant: &'t Tenant,
        conv: &ConvKey,
        batch: &[InboundEvent],
    ) -> Result<Cow<'t, str>, TurnError> {
        if !tenant.remember_profile_name {
            return Ok(Cow::Borrowed(&tenant.system_prompt));
        }
        let store = &self.inner.store;
        let name = match batch.iter().rev().find_map(|e| e.profile_name.as_ref()) {
            Some(name) => {
                store.set_profile_name(&conv.0, &conv.1, &name.0, tenant.retention.context()).await?;
                Some(name.0.clone())
            }
            None => store.profile_name(&conv.0, &conv.1).await?,
        };
        Ok(match name {
            Some(name) => {
                Cow::Owned(format!("{}\n\nThe user's WhatsApp profile name is {name:?}.", tenant.system_prompt))
            }
            None => Cow::Borrowed(&tenant.system_prompt),
        })
    }

    /// One turn: every message of `batch` enters the context window in order, the LLM answers
    /// them together; messages arriving meanwhile join and the answer is regenerated, until the
    /// hard cap. Then the turn is committed (fenced by the lease) and published.
    async fn turn(&self, conv: &ConvKey, mut batch: Vec<InboundEvent>, lease: &Lease) -> Result<(), TurnError> {
        let s = &self.inner.settings;
        let store = &self.inner.store;
        let tenant = self.inner.tenants.current().get(&conv.0).cloned().ok_or(TurnError::UnknownTenant)?;
        let ctx_ttl = tenant.retention.context();
        let oldest = batch.iter().map(|e| e.received_at_ms).min().unwrap_or_else(now_ms);
        let system_prompt = self.system_prompt(&tenant, conv, &batch).await?;
        let mut appended = 0usize;
        let mut regenerations = 0u32;
        let (kind, body) = loop {
            let mut window = None;
            for event in &batch[appended..] {
                if let InboundContent::Text { body } = &event.content {
                    let entry = ChatEntry {
                        id: event.wamid.clone(),
                        role: ChatRole::User,
                        content: body.clone(),
                        at: event.timestamp,
                    };
                    window = Some(store.append_context(&conv.0, &conv.1, &entry, ctx_ttl).await?);
                }
            }
            appended = batch.len();
            if !batch.iter().any(|e| matches!(e.content, InboundContent::Text { .. })) {
                break (ReplyKind::Unsupported, s.unsupported_reply.clone());
            }
            let window = match window {
                Some(w) => w,
                None => store.context(&conv.0, &conv.1).await?,
            };
            let reply = match self.generate(&tenant, &tenant.llm_model, &system_prompt, &window).await {
                (Ok(completion), _) => (ReplyKind::Assistant, completion.content),
                (Err(_), _) if self.inner.shutdown.is_cancelled() => {
                    // Retries stop at shutdown: leave the messages pending for another replica
                    // rather than apologise for an LLM that may be fine.
                    return Err(TurnError::ShuttingDown);
                }
                (Err(error), attempts) => {
                    tracing::error!(error = %error.label(), attempts, "LLM failed on every attempt; sending the apology");
                    self.dead_letter_batch(&batch, error.label(), attempts).await?;
                    break (ReplyKind::Apology, s.llm_failure_reply.clone());
                }
            };
            if lease.is_lost() {
                return Err(TurnError::LeaseLost);
            }
            // Newer messages arrived while the reply was generated: do not send a stale answer.
            if s.coalesce_window_ms > 0 && now_ms() - oldest < s.turn_max_delay_ms as i64 {
                let newer: Vec<InboundEvent> = store
                    .pending_messages(&conv.0, &conv.1)
                    .await?
                    .into_iter()
                    .filter(|p| !batch.iter().any(|b| b.wamid == p.wamid))
                    .collect();
                if !newer.is_empty() && !self.inner.shutdown.is_cancelled() {
                    batch.extend(newer);
                    regenerations += 1;
                    continue;
                }
            }
            break reply;
        };
        let span = tracing::Span::current();
        span.record("regenerations", regenerations);
        span.record("reply.kind", format!("{kind:?}").as_str());

        let wamids: Vec<String> = batch.iter().map(|e| e.wamid.clone()).collect();
        let reply_id = turn_reply_id(&conv.0, &wamids);
        let last = batch.last().expect("a turn has at least one message");
        let mut job = OutboundJob {
            tenant_id: conv.0.clone(),
            phone_number_id: last.phone_number_id.clone(),
            reply_id: reply_id.clone(),
            to: last.from.clone(),
            conversation: conv.1.clone(),
            in_reply_to: last.wamid.clone(),
            wamids,
            kind,
            body,
            user_timestamp: batch.iter().map(|e| e.timestamp).max().unwrap_or_default(),
            created_at_ms: now_ms(),
            last_received_at_ms: batch.iter().map(|e| e.received_at_ms).max().unwrap_or_default(),
            trace: Default::default(),
        };
        switchboard_telemetry::inject(&mut job.trace);
        let assistant = (kind == ReplyKind::Assistant).then(|| ChatEntry {
            id: reply_id,
            role: ChatRole::Assistant,
            content: job.body.clone(),
            at: now_ms() / 1000,
        });
        let state_ttl = self.inner.retention(&conv.0).idempotency();
        if !store.commit_turn(lease.token(), &job, assistant.as_ref(), state_ttl, ctx_ttl).await? {
            return Err(TurnError::LeaseLost);
        }
        self.publish(&job).await?;
        store.finish_turn(&job, state_ttl).await?;
        tracing::info!(messages = job.wamids.len(), "turn answered");
        let kind_label = match job.kind {
            ReplyKind::Assistant => "assistant",
            ReplyKind::Apology => "apology",
            ReplyKind::Unsupported => "unsupported",
            ReplyKind::Notice => "notice",
        };
        metrics::counter!("switchboard_turns_total", "tenant" => conv.0.clone(), "kind" => kind_label).increment(1);
        metrics::histogram!("switchboard_turn_messages").record(job.wamids.len() as f64);
        if regenerations > 0 {
            metrics::counter!("switchboard_turn_regenerations_total", "tenant" => conv.0.clone())
                .increment(u64::from(regenerations));
        }
        Ok(())
    }

    pub(crate) async fn publish(&self, job: &OutboundJob) -> Result<(), BusError> {
        let bus = &self.inner.bus;
        let mut message = bus.event(routing::OUTBOUND, job)?;
        message.message_id = Some(job.reply_id.clone());
        bus.publish(message).await
    }

    async fn dead_letter_batch(&self, batch: &[InboundEvent], error: String, attempts: u32) -> Result<(), BusError> {
        let queue = self.inner.bus.topology().inbound.clone();
        for event in batch {
            let body = serde_json::to_vec(event).map_err(|e| BusError::Encode(e.to_string()))?;
            self.dead_letter_body(
                body,
                Default::default(),
                &queue,
                Some(event),
                DeadLetterReason::LlmFailed,
                error.clone(),
                attempts,
            )
            .await?;
        }
        Ok(())
    }
}
