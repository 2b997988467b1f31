//! Deliveries held until their message is answered, and the settler that acknowledges them.

use std::{collections::HashMap, sync::Mutex};

use switchboard_bus::Delivery;
use switchboard_domain::InboundEvent;
use switchboard_store::MessageState;

use crate::{ConvKey, Worker, SETTLE_EVERY};

/// Held deliveries by conversation. A delivery stays unacknowledged (so the broker keeps the
/// message) until the message's state says it was answered or needs no answer.
#[derive(Default)]
pub(crate) struct Held {
    by_conversation: Mutex<HashMap<ConvKey, Vec<(InboundEvent, Delivery)>>>,
}

impl Held {
    pub(crate) fn hold(&self, conv: ConvKey, event: InboundEvent, delivery: Delivery) {
        self.by_conversation.lock().expect("held lock").entry(conv).or_default().push((event, delivery));
        metrics::gauge!("switchboard_held_deliveries").increment(1.0);
    }

    fn conversations(&self) -> Vec<ConvKey> {
        self.by_conversation.lock().expect("held lock").keys().cloned().collect()
    }

    fn events(&self, conv: &ConvKey) -> Vec<InboundEvent> {
        let map = self.by_conversation.lock().expect("held lock");
        map.get(conv).map(|v| v.iter().map(|(e, _)| e.clone()).collect()).unwrap_or_default()
    }

    /// Removes and returns the deliveries of the given wamids.
    fn take(&self, conv: &ConvKey, wamids: &[String]) -> Vec<Delivery> {
        let mut map = self.by_conversation.lock().expect("held lock");
        let Some(list) = map.get_mut(conv) else { return Vec::new() };
        let (taken, kept): (Vec<_>, Vec<_>) = list.drain(..).partition(|(e, _)| wamids.contains(&e.wamid));
        *list = kept;
        if list.is_empty() {
            map.remove(conv);
        }
        metrics::gauge!("switchboard_held_deliveries").decrement(taken.len() as f64);
        taken.into_iter().map(|(_, d)| d).collect()
    }
}

impl Worker {
    pub(crate) async fn settle_loop(self) {
        loop {
            tokio::time::sleep(SETTLE_EVERY).await;
            for conv in self.inner.held.conversations() {
                self.settle(&conv, true).await;
            }
        }
    }

    /// Final pass on shutdown: acknowledge what was answered; the rest is redelivered.
    pub(crate) async fn settle_all(&self) {
        for conv in self.inner.held.conversations() {
            self.settle(&conv, false).await;
        }
    }

    /// Acknowledges the conversation's held deliveries whose message is answered. With
    /// `take_over`, a conversation left with unanswered messages and no lease holder (its
    /// holder died, or Redis lost the pending set) is queued again and scheduled here.
    pub(crate) async fn settle(&self, conv: &ConvKey, take_over: bool) {
        let events = self.inner.held.events(conv);
        if events.is_empty() {
            return;
        }
        let store = &self.inner.store;
        let wamids: Vec<String> = events.iter().map(|e| e.wamid.clone()).collect();
        let Ok(states) = store.message_states(&conv.0, &conv.1, &wamids).await else { return };
        let settled: Vec<String> =
            wamids.iter().zip(&states).filter(|(_, s)| s.is_settled()).map(|(w, _)| w.clone()).collect();
        for delivery in self.inner.held.take(conv, &settled) {
            if let Err(error) = delivery.ack().await {
                tracing::warn!(%error, "ack of an answered message failed; its redelivery will be recognised");
            }
        }
        if !take_over || settled.len() == wamids.len() || self.is_running(conv) {
            return;
        }
        if store.conversation_leased(&conv.0, &conv.1).await.unwrap_or(true) {
            return;
        }
        // Orphaned: re-queue what is still open (idempotent; heals a Redis that lost the
        // pending set) and run the conversation here.
        let ttl = self.inner.retention(&conv.0).idempotency();
        for (event, state) in events.iter().zip(&states) {
            if *state == MessageState::Open {
                let _ = store.enqueue_message(event, ttl).await;
            }
        }
        tracing::info!(conversation = %conv.1, "taking over an orphaned conversation");
        self.schedule(conv.clone());
    }

    fn is_running(&self, conv: &ConvKey) -> bool {
        self.inner.running.lock().expect("running lock").contains(conv)
    }
}
