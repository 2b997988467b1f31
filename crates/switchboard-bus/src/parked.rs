//! Parked messages (dead letters, held jobs): list, show, redrive, purge — safely, with
//! filters by reason and tenant. The operator commands (`switchboard dlq …`) and the tenant
//! resume use these.
//!
//! Each operation walks the queue once with `basic.get` on a channel of its own, settling only
//! the messages it acts on; everything else stays unacknowledged until the channel closes and
//! goes back to the queue untouched.
//!
//! A message held by one walk is out of every other walk's sight, so walks of one queue take
//! turns, across processes: an operator's `dlq list`, a dispatcher's by-reason gauge and its
//! retention sweep would otherwise each see part of the queue. The turn is an exclusive queue
//! `{queue}.walking` (RabbitMQ lets one connection at a time declare it; it vanishes with that
//! connection if the process dies), plus a mutex within the process, whose walks share one
//! connection.

use std::{
    collections::HashMap,
    sync::{Arc, LazyLock, Mutex},
    time::Duration,
};

use lapin::{
    options::{BasicGetOptions, QueueDeclareOptions, QueueDeleteOptions},
    types::FieldTable,
};

use crate::{
    headers::{names, Headers},
    topology::routing,
    Bus, BusError, Outgoing,
};

/// Which parked messages an operation applies to.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// `x-sb-reason` (or RabbitMQ's own `x-first-death-reason` for natively dead-lettered ones).
    pub reason: Option<String>,
    pub tenant: Option<String>,
}

impl Filter {
    pub fn matches(&self, headers: &Headers) -> bool {
        let reason_ok = self.reason.as_deref().is_none_or(|want| reason(headers) == Some(want));
        let tenant_ok =
            self.tenant.as_deref().is_none_or(|want| headers.get(names::TENANT).map(String::as_str) == Some(want));
        reason_ok && tenant_ok
    }
}

/// When a message was parked (Unix ms): `x-sb-dead-lettered-at` for dead letters,
/// `x-sb-received-at` for unreadable webhooks, otherwise the time of its last publish
/// (`x-sb-published-at`: the hold of a held reply; for a message dead-lettered by RabbitMQ itself,
/// its publish before it failed, so a little earlier than it was parked).
pub fn parked_at_ms(headers: &Headers) -> Option<i64> {
    [names::DEAD_LETTERED_AT, names::RECEIVED_AT, crate::publish::PUBLISHED_AT]
        .iter()
        .find_map(|name| headers.get(*name).and_then(|v| v.parse().ok()))
}

/// The reason a message was parked.
pub fn reason(headers: &Headers) -> Option<&str> {
    headers.get(names::REASON).or_else(|| headers.get("x-first-death-reason")).map(String::as_str)
}

/// How long a walk waits for the messages it handed back to be ready in the queue again.
const SETTLE_DEADLINE: Duration = Duration::from_secs(5);

/// How long a walk waits for another walk of the same queue to finish.
pub const WALK_TURN_WAIT: Duration = Duration::from_secs(30);

/// This process's walks, one mutex per queue (they share one connection, which RabbitMQ's
/// exclusive queue cannot tell apart).
static LOCAL_TURNS: LazyLock<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>> = LazyLock::new(Default::default);

/// The name of the exclusive queue that marks a walk of `queue` in progress.
pub fn walking_marker(queue: &str) -> String {
    format!("{queue}.walking")
}

/// One parked message as seen by a listing.
#[derive(Debug, Clone)]
pub struct Parked {
    /// Position in the walk (1-based), for `show`.
    pub position: usize,
    pub message_id: Option<String>,
    pub headers: Headers,
    pub body: Vec<u8>,
}

impl Bus {
    /// Up to `limit` messages of `queue` matching `filter`, left in place.
    pub async fn peek(&self, queue: &str, filter: &Filter, limit: usize) -> Result<Vec<Parked>, BusError> {
        self.in_turn(queue, self.peek_walk(queue, filter, limit)).await
    }

    async fn peek_walk(&self, queue: &str, filter: &Filter, limit: usize) -> Result<Vec<Parked>, BusError> {
        let channel = self.channel().await?;
        let mut out = Vec::new();
        let mut position = 0;
        while out.len() < limit {
            let Some(got) = channel.basic_get(queue.into(), BasicGetOptions::default()).await? else { break };
            position += 1;
            let d = crate::Delivery::from_get(got, queue, channel.clone());
            if filter.matches(&d.headers) {
                out.push(Parked {
                    position,
                    message_id: d.message_id.clone(),
                    headers: d.headers.clone(),
                    body: d.body.clone(),
                });
            }
        }
        // Closing the channel returns every message we looked at, in order.
        self.close_and_settle(channel, queue, position).await;
        Ok(out)
    }

    /// Moves the messages of `queue` matching `filter` back to the queue they came from (the
    /// outbound queue for held jobs), without their dead-letter headers and with their attempt
    /// count reset. Each is published with a confirm before it is removed here, so a crash
    /// mid-way duplicates at most one message, which downstream idempotency absorbs. Returns
    /// how many were moved.
    pub async fn redrive(&self, queue: &str, filter: &Filter) -> Result<usize, BusError> {
        self.walk(queue, filter, true).await
    }

    /// Deletes the messages of `queue` matching `filter`. Returns how many.
    pub async fn purge_matching(&self, queue: &str, filter: &Filter) -> Result<usize, BusError> {
        self.walk(queue, filter, false).await
    }

    /// Deletes the messages of `queue` for which `doomed(headers, body)` holds, looking at
    /// `limit` messages at most (one walk on one channel; the others go back untouched).
    /// Returns (deleted, examined).
    pub async fn purge_where(
        &self,
        queue: &str,
        limit: usize,
        doomed: impl Fn(&Headers, &[u8]) -> bool,
    ) -> Result<(usize, usize), BusError> {
        self.in_turn(queue, self.purge_where_walk(queue, limit, doomed)).await
    }

    async fn purge_where_walk(
        &self,
        queue: &str,
        limit: usize,
        doomed: impl Fn(&Headers, &[u8]) -> bool,
    ) -> Result<(usize, usize), BusError> {
        let channel = self.channel().await?;
        let (mut deleted, mut examined) = (0, 0);
        while examined < limit {
            let Some(got) = channel.basic_get(queue.into(), BasicGetOptions::default()).await? else { break };
            examined += 1;
            let d = crate::Delivery::from_get(got, queue, channel.clone());
            if doomed(&d.headers, &d.body) {
                d.ack().await?;
                deleted += 1;
            }
        }
        self.close_and_settle(channel, queue, examined - deleted).await;
        Ok((deleted, examined))
    }

    async fn walk(&self, queue: &str, filter: &Filter, republish: bool) -> Result<usize, BusError> {
        self.in_turn(queue, self.walk_and_settle(queue, filter, republish)).await
    }

    async fn walk_and_settle(&self, queue: &str, filter: &Filter, republish: bool) -> Result<usize, BusError> {
        let channel = self.channel().await?;
        let (mut moved, mut kept) = (0, 0);
        while let Some(got) = channel.basic_get(queue.into(), BasicGetOptions::default()).await? {
            let d = crate::Delivery::from_get(got, queue, channel.clone());
            if !filter.matches(&d.headers) {
                kept += 1;
                continue; // stays unacked: back to the queue when the channel closes
            }
            if republish {
                let source = d
                    .headers
                    .get(names::SOURCE_QUEUE)
                    .or_else(|| d.headers.get("x-first-death-queue"))
                    .cloned()
                    .unwrap_or_default();
                let routing_key = self.routing_key_for(&source);
                let mut headers = d.headers.clone();
                headers.retain(|k, _| {
                    !k.starts_with("x-sb-")
                        && !k.starts_with("x-death")
                        && !k.starts_with("x-first-death")
                        && !k.starts_with("x-last-death")
                        && k != "x-delivery-count"
                });
                self.publish(Outgoing {
                    exchange: self.topology().events_exchange.clone(),
                    routing_key: routing_key.to_string(),
                    body: d.body.clone(),
                    headers,
                    message_id: d.message_id.clone(),
                    content_type: "application/json",
                })
                .await?;
            }
            d.ack().await?;
            moved += 1;
        }
        self.close_and_settle(channel, queue, kept).await;
        Ok(moved)
    }

    /// Runs `walk` when no other walk of `queue` is under way, in this process or any other
    /// (see the module docs). Waits up to [`WALK_TURN_WAIT`], then fails with [`BusError::Busy`].
    async fn in_turn<T>(
        &self,
        queue: &str,
        walk: impl std::future::Future<Output = Result<T, BusError>>,
    ) -> Result<T, BusError> {
        let local = LOCAL_TURNS.lock().unwrap_or_else(|p| p.into_inner()).entry(queue.to_owned()).or_default().clone();
        let _local = tokio::time::timeout(WALK_TURN_WAIT, local.lock_owned())
            .await
            .map_err(|_| BusError::Busy(queue.to_owned()))?;
        let marker = walking_marker(queue);
        let deadline = tokio::time::Instant::now() + WALK_TURN_WAIT;
        let mut pause = Duration::from_millis(5);
        loop {
            let channel = self.channel().await?;
            let exclusive = QueueDeclareOptions { exclusive: true, ..Default::default() };
            match channel.queue_declare(marker.as_str().into(), exclusive, FieldTable::default()).await {
                Ok(_) => {
                    let _ = channel.close(200, "turn taken".into()).await;
                    break;
                }
                // RESOURCE_LOCKED: another connection's walk holds the marker.
                Err(e) if matches!(e.kind(), lapin::ErrorKind::ProtocolError(p) if p.get_id() == 405) => {
                    if tokio::time::Instant::now() >= deadline {
                        return Err(BusError::Busy(queue.to_owned()));
                    }
                }
                Err(e) => return Err(e.into()),
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(100));
        }
        let result = walk.await;
        // The marker goes with our connection anyway; deleting it lets the next walk in now.
        if let Ok(channel) = self.channel().await {
            let _ = channel.queue_delete(marker.as_str().into(), QueueDeleteOptions::default()).await;
            let _ = channel.close(200, "turn done".into()).await;
        }
        result
    }

    /// Closes a walk's channel, which hands its unacknowledged messages back to `queue`, and
    /// waits (up to [`SETTLE_DEADLINE`]) until at least `returned` messages are ready there again.
    /// A quorum queue applies those returns asynchronously, after the close completes; without
    /// the wait, a `peek` followed at once by a `redrive` (or a depth reading) could miss them.
    /// Parking queues have no consumers, so nothing else takes them meanwhile.
    async fn close_and_settle(&self, channel: lapin::Channel, queue: &str, returned: usize) {
        let _ = channel.close(200, "walk done".into()).await;
        if returned == 0 {
            return;
        }
        let deadline = tokio::time::Instant::now() + SETTLE_DEADLINE;
        let mut pause = Duration::from_millis(2);
        loop {
            match self.queue_depth(queue).await {
                Ok(ready) if ready as usize >= returned => return,
                Err(_) => return,
                Ok(_) if tokio::time::Instant::now() >= deadline => {
                    tracing::warn!(queue, returned, "parked messages not back in the queue yet after a walk");
                    return;
                }
                Ok(_) => {}
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(100));
        }
    }

    /// Where a message parked from `source_queue` goes back to.
    fn routing_key_for(&self, source_queue: &str) -> &'static str {
        let t = self.topology();
        if source_queue == t.inbound {
            routing::INBOUND
        } else if source_queue == t.statuses {
            routing::STATUS
        } else {
            // outbound, held, the retry ladder, or unknown: it is a reply to send
            routing::OUTBOUND
        }
    }
}
