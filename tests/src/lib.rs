//! The end-to-end test kit. Everything runs against the real RabbitMQ and Redis of the machine,
//! isolated per test by a random namespace; the external SaaS (Graph API, LLM provider) are
//! faked by real HTTP servers speaking their protocol.
//!
//! * [`TestEnv`]: settings for one test, the roles started in-process, teardown;
//! * [`FakeLlm`]: an OpenAI-compatible chat-completions server that records every call;
//! * [`FakeGraph`]: a Graph API `/{phone_number_id}/messages` server, scriptable per call;
//! * [`FakeCollector`]: an OpenTelemetry collector (OTLP/gRPC) keeping every exported span;
//! * [`TcpProxy`]: a fault-injecting TCP proxy (refuse, cut connections) in front of a service;
//! * [`webhook`]: signed webhook bodies; [`wait_until`]: polling with a deadline.

mod collector;
mod env;
mod fake_graph;
mod fake_llm;
mod proxy;
pub mod webhook;

pub use collector::{CollectedSpan, FakeCollector};
pub use env::{RoleHandle, TestEnv, APP_SECRET, PHONE_NUMBER_ID, VERIFY_TOKEN};
pub use fake_graph::{FakeGraph, GraphReply, GraphSend};
pub use fake_llm::{FakeLlm, LlmCall, LlmReply};
pub use proxy::TcpProxy;

use std::{future::Future, time::Duration};

/// `p50=… p99=… max=…` in milliseconds (one decimal) of `samples`, for benchmark lines.
pub fn latency_summary(samples: &mut [Duration]) -> String {
    assert!(!samples.is_empty(), "no samples");
    samples.sort();
    let ms = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize].as_secs_f64() * 1000.0;
    format!("p50={:.1} p99={:.1} max={:.1}", ms(0.5), ms(0.99), ms(1.0))
}

/// Polls `check` until it returns `Some`, or panics with `what` after `timeout`.
pub async fn wait_until<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}
