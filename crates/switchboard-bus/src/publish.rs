//! Confirmed publishing.

use lapin::{options::BasicPublishOptions, BasicProperties, Confirmation};
use switchboard_domain::DeadLetter;
use tracing::Instrument;

use crate::{
    headers::{dead_letter_headers, to_field_table, Headers},
    topology::routing,
    Bus, BusError,
};

/// Header holding the publish time (Unix ms), set on every message.
pub const PUBLISHED_AT: &str = "x-sb-published-at";

/// One message to publish.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub exchange: String,
    pub routing_key: String,
    pub body: Vec<u8>,
    pub headers: Headers,
    pub message_id: Option<String>,
    pub content_type: &'static str,
}

impl Bus {
    /// A JSON message for the events exchange.
    pub fn event<T: serde::Serialize>(&self, routing_key: &str, value: &T) -> Result<Outgoing, BusError> {
        let body = serde_json::to_vec(value).map_err(|e| BusError::Encode(e.to_string()))?;
        Ok(Outgoing {
            exchange: self.topology().events_exchange.clone(),
            routing_key: routing_key.to_string(),
            body,
            headers: Headers::new(),
            message_id: None,
            content_type: "application/json",
        })
    }

    /// A dead letter: the original body with the reason and counters as headers. The original
    /// headers (e.g. trace context) are kept.
    pub fn dead_letter(&self, body: Vec<u8>, mut headers: Headers, info: &DeadLetter) -> Outgoing {
        headers.extend(dead_letter_headers(info));
        Outgoing {
            exchange: self.topology().dead_letter_exchange.clone(),
            routing_key: routing::DEAD.to_string(),
            body,
            headers,
            message_id: None,
            content_type: "application/json",
        }
    }

    /// Publishes one message and waits for the broker's confirm.
    pub async fn publish(&self, message: Outgoing) -> Result<(), BusError> {
        self.publish_all(std::slice::from_ref(&message)).await
    }

    /// Publishes several messages pipelined (all sent, then all confirms awaited) and succeeds
    /// only if the broker confirmed every one of them. On error some may have been stored:
    /// callers rely on downstream idempotency when they retry.
    ///
    /// Runs in a `PRODUCER` span, `publish {exchange}`. A message without trace context gets
    /// this span's (`traceparent`), so its consumer continues the trace as the span's child; a
    /// message that carries one (a republished job, a dead letter) keeps it.
    pub async fn publish_all(&self, messages: &[Outgoing]) -> Result<(), BusError> {
        let Some(first) = messages.first() else { return Ok(()) };
        let span = tracing::info_span!(
            "publish",
            otel.name = %format!("publish {}", first.exchange),
            otel.kind = "producer",
            otel.status_code = tracing::field::Empty,
            messaging.system = "rabbitmq",
            messaging.operation.type = "send",
            messaging.operation.name = "publish",
            messaging.destination.name = %first.exchange,
            messaging.batch.message_count = messages.len(),
        );
        let result = self.publish_confirmed(messages).instrument(span.clone()).await;
        if result.is_err() {
            span.record("otel.status_code", "ERROR");
        }
        result
    }

    async fn publish_confirmed(&self, messages: &[Outgoing]) -> Result<(), BusError> {
        let (channel, generation) = self.publisher().await?;
        let started = std::time::Instant::now();
        let published_at = switchboard_domain::now_ms().to_string();
        let result = tokio::time::timeout(self.timeout(), async {
            let mut pending = Vec::with_capacity(messages.len());
            for m in messages {
                let mut props = BasicProperties::default()
                    .with_delivery_mode(2) // persistent: survives a broker restart
                    .with_content_type(m.content_type.into())
                    .with_timestamp(switchboard_domain::now_ms().max(0) as u64 / 1000)
                    .with_app_id("switchboard".into());
                // The publish time, for the consumer's queue-lag metric.
                let mut headers = m.headers.clone();
                headers.insert(PUBLISHED_AT.into(), published_at.clone());
                if !headers.contains_key(switchboard_telemetry::TRACEPARENT) {
                    switchboard_telemetry::inject(&mut headers); // the publish span's context
                }
                props = props.with_headers(to_field_table(&headers));
                if let Some(id) = &m.message_id {
                    props = props.with_message_id(id.as_str().into());
                }
                // `mandatory`: an unroutable message comes back instead of vanishing silently.
                let options = BasicPublishOptions { mandatory: true, ..Default::default() };
                let confirm = channel
                    .basic_publish(m.exchange.as_str().into(), m.routing_key.as_str().into(), options, &m.body, props)
                    .await?;
                pending.push((confirm, &m.routing_key));
            }
            for (confirm, key) in pending {
                match confirm.await? {
                    Confirmation::Ack(None) => {}
                    Confirmation::Ack(Some(_)) => return Err(BusError::Unroutable(key.clone())),
                    Confirmation::Nack(_) => return Err(BusError::Nacked),
                    // Never treat an unconfirmed publish as success.
                    Confirmation::NotRequested => return Err(BusError::Amqp("publisher confirms not enabled".into())),
                }
            }
            Ok(())
        })
        .await
        .unwrap_or(Err(BusError::Timeout(self.timeout())));
        match &result {
            Ok(()) => {
                metrics::histogram!("switchboard_publish_confirm_seconds").record(started.elapsed().as_secs_f64())
            }
            Err(e) => {
                metrics::counter!("switchboard_publish_failures_total").increment(1);
                if matches!(e, BusError::Amqp(_) | BusError::Timeout(_)) {
                    self.invalidate(generation).await;
                }
            }
        }
        result
    }
}
