//! Delivery statuses: deduplicated, monotonic, linked to the reply id.

use std::time::Duration;

use switchboard_bus::Delivery;
use switchboard_domain::StatusEvent;
use switchboard_store::StatusUpdate;
use tracing::Instrument;

use crate::Dispatcher;

impl Dispatcher {
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
        let update = StatusUpdate {
            wamid: &event.wamid,
            status: &event.status,
            timestamp: event.timestamp,
            error_codes: &event.error_codes,
            reply_id: event.reply_id.as_deref(),
        };
        let ttl = Duration::from_secs(self.inner.settings.status_ttl_secs);
        // Redis trouble is retried here: giving the delivery back would count toward the
        // queue's delivery limit.
        let mut pause = Duration::from_millis(100);
        let recorded = loop {
            match self.inner.store.record_status(&event.tenant_id, &update, ttl).await {
                Err(error) if !self.inner.shutdown.is_cancelled() => {
                    tracing::warn!(%error, retry_in = ?pause, "cannot record status yet; retrying");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(5));
                }
                other => break other,
            }
        };
        match recorded {
            Ok(record) => {
                if event.status == "failed" {
                    tracing::warn!(codes = ?event.error_codes, reply_id = ?event.reply_id, "outbound message failed");
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
