//! The retention limit of parked messages: dead letters (`{ns}.dlq`), held replies
//! (`{ns}.held`) and unreadable webhooks (`{ns}.rejected`) hold message text and numbers, so
//! they are deleted once older than their tenant's `retention.parked_secs`
//! (`SWITCHBOARD_PARKED_TTL_SECS` for messages of no known tenant), wherever an operator has
//! not handled them first.

use std::time::Duration;

use switchboard_bus::{headers::names, parked, Bus, BusError, Headers};
use switchboard_config::{Retention, Settings, Tenants};

/// Messages looked at per queue in one sweep (each walk holds them unacknowledged meanwhile).
pub const SWEEP_LIMIT: usize = 100_000;

/// How often each dispatcher replica sweeps (also once at start-up).
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(3600);

/// How soon a sweep that saw fewer messages than were ready when it began (it met its limit) is
/// repeated.
pub const SWEEP_AGAIN: Duration = Duration::from_secs(60);

/// What one sweep of one queue did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expired {
    pub queue: String,
    /// Messages deleted for being older than their retention.
    pub deleted: usize,
    /// Messages looked at (deleted or not).
    pub examined: usize,
    /// Messages that were ready when the sweep began but that it did not look at (past its
    /// limit); a lower bound.
    pub unseen: usize,
}

/// Whether some queue of a sweep holds messages it did not look at, so the next sweep should
/// come after [`SWEEP_AGAIN`] rather than [`SWEEP_INTERVAL`].
pub fn incomplete(sweep: &[Expired]) -> bool {
    sweep.iter().any(|e| e.unseen > 0)
}

/// Deletes the parked messages older than their retention, at `now_ms`, looking at no more than
/// `limit` messages per queue (the dispatcher uses [`SWEEP_LIMIT`]). Messages with no readable
/// parking time are kept (and counted as examined).
pub async fn expire_parked(
    bus: &Bus,
    settings: &Settings,
    tenants: &Tenants,
    now_ms: i64,
    limit: usize,
) -> Result<Vec<Expired>, BusError> {
    let default = Retention::from_settings(settings).parked();
    let retention = |headers: &Headers| {
        headers.get(names::TENANT).and_then(|id| tenants.get(id)).map_or(default, |t| t.retention.parked())
    };
    let t = bus.topology();
    let mut out = Vec::new();
    for queue in [t.dlq.clone(), t.held.clone(), t.rejected.clone()] {
        let ready = bus.queue_depth(&queue).await? as usize;
        let (deleted, examined) =
            bus.purge_where(&queue, limit, |headers, _| is_expired(headers, retention(headers), now_ms)).await?;
        if deleted > 0 {
            metrics::counter!("switchboard_parked_expired_total", "queue" => queue.clone()).increment(deleted as u64);
            tracing::info!(queue, deleted, examined, "parked messages past their retention deleted");
        }
        out.push(Expired { queue, deleted, examined, unseen: ready.saturating_sub(examined) });
    }
    Ok(out)
}

fn is_expired(headers: &Headers, retention: Duration, now_ms: i64) -> bool {
    let keep_ms = i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
    parked::parked_at_ms(headers).is_some_and(|at| now_ms.saturating_sub(at) >= keep_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> Headers {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn age_is_measured_from_parking() {
        let day = Duration::from_secs(86_400);
        let dl = headers(&[(names::DEAD_LETTERED_AT, "1000"), ("x-sb-published-at", "0")]);
        assert!(!is_expired(&dl, day, 1000 + 86_399_999));
        assert!(is_expired(&dl, day, 1000 + 86_400_000));
        let rejected = headers(&[(names::RECEIVED_AT, "5")]);
        assert!(is_expired(&rejected, Duration::from_millis(10), 15));
        let held = headers(&[("x-sb-published-at", "7")]);
        assert!(!is_expired(&held, Duration::from_millis(10), 16));
        assert!(!is_expired(&headers(&[]), Duration::ZERO, i64::MAX), "no parking time: kept");
        assert!(!is_expired(&headers(&[(names::DEAD_LETTERED_AT, "soon")]), Duration::ZERO, 1));
    }
}
