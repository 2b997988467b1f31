//! Where a job goes when it is not sent now: the retry ladder, the held queue (paused tenant)
//! or the dead-letter queue. Each is a confirmed publish; the caller acks the original after.

use std::time::Duration;

use rand::Rng;
use switchboard_bus::{headers::names, topology::routing, Delivery, Outgoing};
use switchboard_domain::{now_ms, DeadLetter, DeadLetterReason, OutboundJob};

use crate::{
    send::{Attempts, Requeue},
    Dispatcher,
};

/// How a job was settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fate {
    Sent,
    Retrying,
    Held,
    DeadLettered,
    /// Not sent: the user is restricted, or was erased after the reply was prepared.
    Suppressed,
}

impl Fate {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Fate::Sent => "sent",
            Fate::Retrying => "retrying",
            Fate::Held => "held",
            Fate::DeadLettered => "dead_lettered",
            Fate::Suppressed => "suppressed",
        }
    }
}

/// A delivery's headers without the broker's own dead-lettering bookkeeping (`x-death`,
/// `x-first-death-*`, `x-last-death-*`, `x-delivery-count`), which must not travel with a
/// message we publish again.
fn own_headers(delivery: &Delivery) -> switchboard_bus::Headers {
    let mut headers = delivery.headers.clone();
    headers.retain(|k, _| {
        !(k.starts_with("x-death")
            || k.starts_with("x-first-death")
            || k.starts_with("x-last-death")
            || k == "x-delivery-count")
    });
    headers
}

impl Dispatcher {
    /// Puts the job on the retry ladder: the step for its attempt count (exponential), picked
    /// at random between that step and the next (jitter), and at least `at_least`.
    pub(crate) async fn retry_later(
        &self,
        job: &OutboundJob,
        delivery: &Delivery,
        attempts: Attempts,
        at_least: Duration,
        error_code: Option<i64>,
        last_error: &str,
    ) -> Result<Fate, Requeue> {
        let topology = self.inner.bus.topology();
        let steps = &topology.retry_steps;
        let exp = (attempts.before.saturating_sub(1) as usize).min(steps.len() - 1);
        let jittered = (exp + rand::rng().random_range(0..=1)).min(steps.len() - 1);
        let delay = steps[jittered].0.max(topology.retry_step_at_least(at_least.as_millis() as u64));
        let mut headers = own_headers(delivery);
        headers.insert(names::ATTEMPTS.into(), attempts.before.to_string());
        headers.insert(names::FIRST_ATTEMPT_AT.into(), attempts.first_at_ms.to_string());
        headers.insert(names::LAST_ERROR.into(), last_error.to_string());
        match error_code {
            Some(code) => headers.insert(names::ERROR_CODE.into(), code.to_string()),
            None => headers.remove(names::ERROR_CODE),
        };
        self.inner
            .bus
            .publish(Outgoing {
                exchange: topology.events_exchange.clone(),
                routing_key: routing::retry(delay),
                body: delivery.body.clone(),
                headers,
                message_id: Some(job.reply_id.clone()),
                content_type: "application/json",
            })
            .await?;
        tracing::info!(delay_ms = delay, attempts = attempts.before, "reply scheduled for a retry");
        metrics::counter!("switchboard_send_retries_total", "tenant" => job.tenant_id.clone()).increment(1);
        Ok(Fate::Retrying)
    }

    /// Parks the job of a paused tenant until an operator resumes the tenant.
    pub(crate) async fn hold(&self, job: &OutboundJob, delivery: &Delivery) -> Result<Fate, Requeue> {
        let topology = self.inner.bus.topology();
        let mut headers = own_headers(delivery);
        headers.insert(names::TENANT.into(), job.tenant_id.clone());
        headers.insert(names::REASON.into(), "tenant_paused".into());
        headers.insert(names::SOURCE_QUEUE.into(), topology.outbound.clone());
        self.inner
            .bus
            .publish(Outgoing {
                exchange: topology.events_exchange.clone(),
                routing_key: routing::HELD.into(),
                body: delivery.body.clone(),
                headers,
                message_id: Some(job.reply_id.clone()),
                content_type: "application/json",
            })
            .await?;
        tracing::warn!("tenant paused; reply held");
        Ok(Fate::Held)
    }

    pub(crate) async fn dead_letter(
        &self,
        job: &OutboundJob,
        delivery: &Delivery,
        attempts: Attempts,
        reason: DeadLetterReason,
        error_code: Option<i64>,
        last_error: &str,
    ) -> Result<Fate, Requeue> {
        let info = DeadLetter {
            reason,
            tenant_id: Some(job.tenant_id.clone()),
            error_code,
            last_error: last_error.to_string(),
            attempts: attempts.before,
            first_attempt_at_ms: attempts.first_at_ms,
            dead_lettered_at_ms: now_ms(),
            source_queue: self.inner.bus.topology().outbound.clone(),
        };
        let bus = &self.inner.bus;
        bus.publish(bus.dead_letter(delivery.body.clone(), delivery.headers.clone(), &info)).await?;
        tracing::error!(%reason, code = error_code, attempts = attempts.before, "reply dead-lettered");
        metrics::counter!("switchboard_dead_letters_total", "tenant" => job.tenant_id.clone(), "reason" => reason.as_str())
            .increment(1);
        Ok(Fate::DeadLettered)
    }

    /// An outbound job that cannot even be decoded.
    pub(crate) async fn park_undecodable(&self, delivery: &Delivery) {
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
        let bus = &self.inner.bus;
        // If even the DLQ is unreachable, reject: the queue dead-letters it natively.
        let _ = match bus.publish(bus.dead_letter(delivery.body.clone(), delivery.headers.clone(), &info)).await {
            Ok(()) => delivery.ack().await,
            Err(_) => delivery.reject().await,
        };
    }
}
