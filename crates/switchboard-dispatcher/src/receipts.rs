//! Read receipts and the typing indicator: best effort, never in the way of a reply.

use switchboard_bus::Delivery;
use switchboard_domain::ReadReceipt;

use tracing::Instrument;

use crate::{send::number_bucket, Dispatcher};

impl Dispatcher {
    pub(crate) async fn handle_receipt(&self, delivery: Delivery) {
        if let Ok(receipt) = serde_json::from_slice::<ReadReceipt>(&delivery.body) {
            let span = tracing::info_span!(
                "mark read",
                otel.kind = "consumer",
                messaging.system = "rabbitmq",
                messaging.operation.type = "process",
                messaging.destination.name = %delivery.queue,
                tenant = %receipt.tenant_id,
            );
            switchboard_telemetry::extract(&delivery.headers, &span);
            self.send_receipt(&receipt).instrument(span).await;
        }
        // Whatever happened: a receipt is never retried (a late one is worse than none).
        let _ = delivery.ack().await;
    }

    async fn send_receipt(&self, r: &ReadReceipt) {
        let Some(token) = self.inner.tenants.current().get(&r.tenant_id).and_then(|t| t.access_token.clone()) else {
            return;
        };
        if matches!(self.inner.store.tenant_paused(&r.tenant_id).await, Ok(Some(_))) {
            return;
        }
        // Receipts count toward the phone number's throughput like any message.
        if let Ok(wait) =
            self.inner.store.reserve(&number_bucket(&r.phone_number_id), self.number_rate(&r.tenant_id)).await
        {
            tokio::time::sleep(wait).await;
        }
        match self.inner.graph.mark_read(token.expose(), &r.phone_number_id, &r.wamid, r.typing).await {
            Ok(()) => tracing::debug!(tenant = %r.tenant_id, typing = r.typing, "marked read"),
            Err(error) => tracing::info!(tenant = %r.tenant_id, %error, "read receipt failed (ignored)"),
        }
    }
}
