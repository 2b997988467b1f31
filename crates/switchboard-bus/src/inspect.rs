//! Looking at queues without consuming them for good: depth, one-off gets, teardown. Used by
//! operator commands and tests.

use lapin::{
    options::{BasicGetOptions, ExchangeDeleteOptions, QueueDeclareOptions, QueueDeleteOptions},
    types::FieldTable,
};

use crate::{consume::Delivery, Bus, BusError};

impl Bus {
    /// Messages ready in `queue` (not counting unacked ones).
    pub async fn queue_depth(&self, queue: &str) -> Result<u32, BusError> {
        let channel = self.channel().await?;
        let options = QueueDeclareOptions { passive: true, ..Default::default() };
        let q = channel.queue_declare(queue.into(), options, FieldTable::default()).await?;
        let _ = channel.close(200, "done".into()).await;
        Ok(q.message_count())
    }

    /// Takes one message from `queue`, if any. It stays unacked (and is redelivered when the
    /// returned delivery's channel closes) until settled with `ack`/`requeue`/`reject`.
    pub async fn get(&self, queue: &str) -> Result<Option<Delivery>, BusError> {
        let channel = self.channel().await?;
        let got = channel.basic_get(queue.into(), BasicGetOptions::default()).await?;
        Ok(got.map(|m| Delivery::from_get(m, queue, channel)))
    }

    /// Deletes every queue and exchange of the namespace (tests and decommissioning only).
    pub async fn delete_topology(&self) -> Result<(), BusError> {
        let channel = self.channel().await?;
        let t = self.topology().clone();
        for q in t.queues() {
            channel.queue_delete(q.into(), QueueDeleteOptions::default()).await?;
        }
        for x in [&t.events_exchange, &t.dead_letter_exchange] {
            channel.exchange_delete(x.as_str().into(), ExchangeDeleteOptions::default()).await?;
        }
        let _ = channel.close(200, "done".into()).await;
        Ok(())
    }
}
