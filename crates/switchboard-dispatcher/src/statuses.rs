//! Delivery statuses: deduplicated, monotonic, linked to the reply id.

use std::time::Duration;

use switchboard_bus::Delivery;
use switchboard_bus::{headers::names, topology::routing};
use switchboard_domain::{now_ms, StatusEvent};
use switchboard_store::{persist, StatusUpdate};
use switchboard_whatsapp::classify;
use tracing::Instrument;

use crate::Dispatcher;

impl Dispatcher {
    /// A `failed` status with a retryable code (e.g. 131000, 131016, 130429) sends the part
    /// again through the retry ladder; a permanent one stays recorded. Only while the sent job
    /// is still remembered (`SWITCHBOARD_REPLY_MAX_AGE_SECS`).
    async fn retry_failed(&self, event: &StatusEvent) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let retryable = event.error_codes.iter().any(|c| classify(None, Some(*c)).is_retryable());
        if !retryable {
            return Ok(());
        }
        let store = &self.inner.store;
        let Some((job, part)) = store.sent_part(&event.tenant_id, &event.wamid).await? else { return Ok(()) };
        let keep = std::time::Duration::from_secs(self.inner.settings.reply_max_age_secs);
        let resends = store.count_resend(&job.tenant_id, &job.reply_id, keep).await?;
        if resends > self.inner.settings.send_max_attempts {
            tracing::warn!(reply_id = %job.reply_id, resends, "failed again after the last allowed resend; recorded only");
            return Ok(());
        }
        store.unsend_part(&job.tenant_id, &job.reply_id, part).await?;
        let topology = self.inner.bus.topology();
        let delay = topology.retry_steps.first().map(|s| s.0).unwrap_or(1_000);
        let mut message = self.inner.bus.event(&routing::retry(delay), &job)?;
        message.message_id = Some(job.reply_id.clone());
        message.headers.insert(names::ATTEMPTS.into(), "1".into());
        message.headers.insert(names::FIRST_ATTEMPT_AT.into(), now_ms().to_string());
        if let Some(code) = event.error_codes.first() {
            message.headers.insert(names::ERROR_CODE.into(), code.to_string());
        }
        self.inner.bus.publish(message).await?;
        tracing::info!(reply_id = %job.reply_id, part, "failed message scheduled to be sent again");
        Ok(())
    }

    pub(crate) async fn handle_status(&self, delivery: Delivery) {
        let event: StatusEvent = match serde_json::from_slice(&delivery.body) {
            Ok(ev) => ev,
            Err(error) => {
                tracing::error!(%error, "undecodable status event; rejecting to the DLQ");
                let _ = delivery.reject().await;
                return;
            }
        };
        let span = tracing::info_span!(
            "record status",
            otel.kind = "consumer",
            messaging.system = "rabbitmq",
            messaging.operation.type = "process",
            messaging.destination.name = %delivery.queue,
            tenant = %event.tenant_id,
            status = %event.status,
        );
        switchboard_telemetry::extract(&delivery.headers, &span);
        self.record(&event, &delivery).instrument(span).await
    }

    async fn record(&self, event: &StatusEvent, delivery: &Delivery) {
        // Link the status to the trace of the reply it is about, while the reply is remembered.
        if let Ok(Some((job, _))) = self.inner.store.sent_part(&event.tenant_id, &event.wamid).await {
            switchboard_telemetry::link(&job.trace, &tracing::Span::current());
        }
        let update = StatusUpdate {
            wamid: &event.wamid,
            status: &event.status,
            timestamp: event.timestamp,
            error_codes: &event.error_codes,
            reply_id: event.reply_id.as_deref(),
        };
        let ttl = self
            .inner
            .tenants
            .current()
            .get(&event.tenant_id)
            .map(|t| t.retention.status())
            .unwrap_or(Duration::from_secs(self.inner.settings.status_ttl_secs));
        // Redis trouble is retried here: giving the delivery back would count toward the
        // queue's delivery limit.
        let stopping = || self.inner.shutdown.is_cancelled();
        let recorded = persist(
            "recording a status",
            |_| true,
            stopping,
            || self.inner.store.record_status(&event.tenant_id, &update, ttl),
        )
        .await;
        match recorded {
            Ok(record) => {
                metrics::counter!("switchboard_statuses_total", "status" => status_label(&event.status)).increment(1);
                if event.status == "failed" {
                    tracing::warn!(codes = ?event.error_codes, reply_id = ?event.reply_id, "outbound message failed");
                    // Only when newly recorded: a repeated `failed` must not resend again.
                    if record.regressed_ignored {
                        tracing::debug!("repeated failed status ignored");
                    } else if let Err(error) = self.retry_failed(event).await {
                        tracing::warn!(%error, "cannot schedule the failed message for a retry");
                    }
                } else {
                    tracing::debug!(current = %record.status, ignored = record.regressed_ignored, "status recorded");
                }
                let _ = delivery.ack().await;
            }
            Err(error) => {
                tracing::warn!(%error, "shutting down with the status unrecorded; requeueing");
                let _ = delivery.requeue().await;
            }
        }
    }
}

/// Known statuses as themselves, anything new as `other` (bounded label values).
fn status_label(status: &str) -> &'static str {
    match status {
        "sent" => "sent",
        "delivered" => "delivered",
        "read" => "read",
        "played" => "played",
        "failed" => "failed",
        _ => "other",
    }
}
