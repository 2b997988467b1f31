//! Exchanges, queues and bindings, all named under the namespace.
//!
//! ```text
//!  ingress ──► {ns}.events (direct) ──"inbound"──► {ns}.inbound  ──► worker
//!                                   ──"status"───► {ns}.statuses ──► dispatcher
//!                                   ──"rejected"─► {ns}.rejected     (parked webhook bodies)
//!  worker  ──► {ns}.events ─────────"outbound"──► {ns}.outbound ──► dispatcher
//!  any     ──► {ns}.dlx (direct) ───"dead"──────► {ns}.dlq          (dead letters, with reasons)
//!  dispatcher ► {ns}.events ────────"retry.<ms>"► {ns}.retry.<ms> ──(TTL expires)──► "outbound"
//!  dispatcher ► {ns}.events ────────"held"──────► {ns}.held         (jobs of paused tenants)
//!  worker  ──► {ns}.events ─────────"receipt"───► {ns}.receipts ──► dispatcher (read + typing)
//! ```
//! The three work queues dead-letter into `{ns}.dlx` themselves too (poison messages that hit
//! the delivery limit, or an explicit reject).

use lapin::{
    options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions},
    types::{AMQPValue, FieldTable},
    Channel, ExchangeKind,
};

use crate::BusError;

/// Routing keys on the events exchange.
pub mod routing {
    pub const INBOUND: &str = "inbound";
    pub const OUTBOUND: &str = "outbound";
    pub const STATUS: &str = "status";
    pub const REJECTED: &str = "rejected";
    pub const HELD: &str = "held";
    pub const RECEIPT: &str = "receipt";

    /// The routing key of the retry-ladder step that delays by `ms`.
    pub fn retry(ms: u64) -> String {
        format!("retry.{ms}")
    }
    pub const DEAD: &str = "dead";
}

/// How many times a quorum queue redelivers one message before dead-lettering it: a message
/// that crashes its consumer every time must not loop forever.
pub const DELIVERY_LIMIT: i64 = 20;

/// Delivery limit of the DLQ and the rejected queue: effectively none.
pub const PARKING_DELIVERY_LIMIT: i64 = 1_000_000_000;

/// The names of everything on the broker for one namespace.
#[derive(Debug, Clone)]
pub struct Topology {
    pub events_exchange: String,
    pub dead_letter_exchange: String,
    pub inbound: String,
    pub outbound: String,
    pub statuses: String,
    pub rejected: String,
    pub dlq: String,
    /// Jobs of tenants whose sending is paused (token invalid), until resumed.
    pub held: String,
    /// Read receipts / typing indicators for the dispatcher (best effort, short-lived).
    pub receipts: String,
    /// The retry ladder: (delay in ms, queue), ascending.
    pub retry_steps: Vec<(u64, String)>,
}

/// How long a read receipt may wait before it is pointless (the typing indicator lasts 25 s).
pub const RECEIPT_TTL_MS: i64 = 20_000;

impl Topology {
    /// The topology with the default retry ladder (1 s doubling to 5 min).
    pub fn new(namespace: &str) -> Self {
        Self::with_retry_steps(namespace, &ladder(1_000, 300_000))
    }

    /// The topology with the given retry-ladder delays (ms).
    pub fn with_retry_steps(namespace: &str, steps_ms: &[u64]) -> Self {
        Self {
            held: format!("{namespace}.held"),
            receipts: format!("{namespace}.receipts"),
            retry_steps: steps_ms.iter().map(|ms| (*ms, format!("{namespace}.retry.{ms}"))).collect(),
            events_exchange: format!("{namespace}.events"),
            dead_letter_exchange: format!("{namespace}.dlx"),
            inbound: format!("{namespace}.inbound"),
            outbound: format!("{namespace}.outbound"),
            statuses: format!("{namespace}.statuses"),
            rejected: format!("{namespace}.rejected"),
            dlq: format!("{namespace}.dlq"),
        }
    }

    /// Every queue, for tools and tests.
    pub fn queues(&self) -> Vec<&str> {
        let mut q = vec![
            self.inbound.as_str(),
            &self.outbound,
            &self.statuses,
            &self.rejected,
            &self.dlq,
            &self.held,
            &self.receipts,
        ];
        q.extend(self.retry_steps.iter().map(|(_, name)| name.as_str()));
        q
    }

    /// The smallest ladder step of at least `ms` (the longest step when none is).
    pub fn retry_step_at_least(&self, ms: u64) -> u64 {
        let last = self.retry_steps.last().map(|s| s.0).unwrap_or(ms);
        self.retry_steps.iter().map(|(d, _)| *d).find(|d| *d >= ms).unwrap_or(last)
    }

    /// Declares everything. Idempotent: the same arguments every time (RabbitMQ refuses a
    /// redeclaration with different arguments, which would surface here as an error).
    pub async fn declare(&self, channel: &Channel) -> Result<(), BusError> {
        // Durable exchanges: survive a broker restart together with the durable queues.
        let durable = ExchangeDeclareOptions { durable: true, ..Default::default() };
        for exchange in [&self.events_exchange, &self.dead_letter_exchange] {
            channel
                .exchange_declare(exchange.as_str().into(), ExchangeKind::Direct, durable, FieldTable::default())
                .await?;
        }
        let work =
            [(&self.inbound, routing::INBOUND), (&self.outbound, routing::OUTBOUND), (&self.statuses, routing::STATUS)];
        for (queue, key) in work {
            let mut args = quorum_args();
            // Rejected and poison messages go to the DLQ instead of being dropped.
            args.insert("x-dead-letter-exchange".into(), long_string(&self.dead_letter_exchange));
            args.insert("x-dead-letter-routing-key".into(), long_string(routing::DEAD));
            args.insert("x-delivery-limit".into(), AMQPValue::LongLongInt(DELIVERY_LIMIT));
            self.declare_bound(channel, queue, args, &self.events_exchange, key).await?;
        }
        // The parking queues have nowhere further to dead-letter to. RabbitMQ 4 gives quorum
        // queues a default delivery limit of 20, after which a message without a dead-letter
        // target is dropped: an operator peeking at messages must never lose one, so the limit
        // is set far out of reach.
        let mut parking = quorum_args();
        parking.insert("x-delivery-limit".into(), AMQPValue::LongLongInt(PARKING_DELIVERY_LIMIT));
        self.declare_bound(channel, &self.rejected, parking.clone(), &self.events_exchange, routing::REJECTED).await?;
        self.declare_bound(channel, &self.dlq, parking.clone(), &self.dead_letter_exchange, routing::DEAD).await?;
        self.declare_bound(channel, &self.held, parking, &self.events_exchange, routing::HELD).await?;

        // The retry ladder: one queue per delay, nobody consumes them; a message expires at the
        // head after the queue's fixed TTL and is dead-lettered back to the outbound queue. A
        // fixed TTL per queue (not per message) keeps expiry in order. Classic queues: their
        // TTL dead-lettering is the long-standing mechanism (quorum queues dead-letter at most
        // once by default); durable, and the messages are persistent.
        for (ms, queue) in &self.retry_steps {
            let mut args = FieldTable::default();
            args.insert("x-message-ttl".into(), AMQPValue::LongLongInt(*ms as i64));
            args.insert("x-dead-letter-exchange".into(), long_string(&self.events_exchange));
            args.insert("x-dead-letter-routing-key".into(), long_string(routing::OUTBOUND));
            self.declare_bound(channel, queue, args, &self.events_exchange, &routing::retry(*ms)).await?;
        }
        // Receipts are worthless after a few seconds: expire them rather than send them late.
        let mut args = FieldTable::default();
        args.insert("x-message-ttl".into(), AMQPValue::LongLongInt(RECEIPT_TTL_MS));
        self.declare_bound(channel, &self.receipts, args, &self.events_exchange, routing::RECEIPT).await?;
        Ok(())
    }

    async fn declare_bound(
        &self,
        channel: &Channel,
        queue: &str,
        args: FieldTable,
        exchange: &str,
        key: &str,
    ) -> Result<(), BusError> {
        // Durable, shared by every replica: neither exclusive nor auto-deleted.
        let options = QueueDeclareOptions { durable: true, ..Default::default() };
        channel.queue_declare(queue.into(), options, args).await?;
        channel
            .queue_bind(queue.into(), exchange.into(), key.into(), QueueBindOptions::default(), FieldTable::default())
            .await?;
        Ok(())
    }
}

/// The ladder's delays: `base_ms` doubling up to `max_ms` (which is always the last step).
pub fn ladder(base_ms: u64, max_ms: u64) -> Vec<u64> {
    let base = base_ms.max(1);
    let mut steps = Vec::new();
    let mut d = base;
    while d < max_ms {
        steps.push(d);
        d = d.saturating_mul(2);
    }
    steps.push(max_ms.max(base));
    steps
}

/// Quorum queues: replicated (Raft) when the broker is a cluster, and they track delivery counts
/// so poison messages can be dead-lettered.
fn quorum_args() -> FieldTable {
    let mut args = FieldTable::default();
    args.insert("x-queue-type".into(), long_string("quorum"));
    args
}

fn long_string(s: &str) -> AMQPValue {
    AMQPValue::LongString(s.into())
}
