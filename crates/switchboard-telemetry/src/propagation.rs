//! W3C trace context in string headers.

use std::collections::BTreeMap;

use opentelemetry::{
    propagation::{Extractor, Injector, TextMapPropagator},
    trace::{SpanContext, TraceContextExt},
};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// String headers carrying trace context (`traceparent`, `tracestate`).
pub type Headers = BTreeMap<String, String>;

struct HeaderInjector<'a>(&'a mut Headers);
impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key.to_string(), value);
    }
}

struct HeaderExtractor<'a>(&'a Headers);
impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(String::as_str).collect()
    }
}

/// The W3C trace-context header (and field of stored envelopes) that carries a span's context.
pub const TRACEPARENT: &str = "traceparent";

/// Writes the current span's trace context into `headers`.
pub fn inject(headers: &mut Headers) {
    let cx = tracing::Span::current().context();
    TraceContextPropagator::new().inject_context(&cx, &mut HeaderInjector(headers));
}

/// Makes `span` a child of the trace context found in `headers` (no-op when there is none).
pub fn extract(headers: &Headers, span: &tracing::Span) {
    if !headers.contains_key(TRACEPARENT) {
        return;
    }
    let cx = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
    let _ = span.set_parent(cx);
}

/// The span context carried by `headers`, if valid.
pub fn span_context(headers: &Headers) -> Option<SpanContext> {
    if !headers.contains_key(TRACEPARENT) {
        return None;
    }
    let cx = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
    let sc = cx.span().span_context().clone();
    sc.is_valid().then_some(sc)
}

/// Links `span` to the trace carried by `headers` (e.g. a later status to the reply's trace).
pub fn link(headers: &Headers, span: &tracing::Span) {
    if let Some(sc) = span_context(headers) {
        span.add_link(sc);
    }
}

/// The current span's trace id as 32 hex characters, if it has one.
pub fn current_trace_id() -> Option<String> {
    let cx = tracing::Span::current().context();
    let span = cx.span();
    let sc = span.span_context();
    sc.is_valid().then(|| sc.trace_id().to_string())
}
