//! Exchanges, queues and bindings, all named under the namespace.
//!
//! ```text
//!  ingress ──► {ns}.events (direct) ──"inbound"──► {ns}.inbound  ──► worker
//!                                   ──"status"───► {ns}.statuses ──► dispatcher
//!                                   ──"rejected"─► {ns}.rejected     (parked webhook bodies)
//!  worker  ──► {ns}.events ─────────"outbound"──► {ns}.outbound ──► dispatcher
//!  any     ──► {ns}.dlx (direct) ───"dead"──────► {ns}.dlq          (dead letters, with reasons)
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
}

impl Topology {
    pub fn new(namespace: &str) -> Self {
        Self {
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
    pub fn queues(&self) -> [&str; 5] {
        [&self.inbound, &self.outbound, &self.statuses, &self.rejected, &self.dlq]
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
        self.declare_bound(channel, &self.dlq, parking, &self.dead_letter_exchange, routing::DEAD).await?;
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
