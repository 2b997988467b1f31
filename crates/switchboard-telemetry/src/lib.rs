//! Logging and tracing for every Switchboard binary.
//!
//! * [`init`]: the global `tracing` subscriber (readable or JSON lines, `RUST_LOG` filter) with an
//!   OpenTelemetry layer, so every span has a W3C trace id even before an exporter is configured;
//! * [`inject`] / [`extract`]: carry the current trace context in string headers (AMQP message
//!   headers), so one trace runs from the webhook to the Graph API call.
//!
//! Never record phone numbers, WhatsApp ids, names or message text in a span or event: use the
//! pseudonymous conversation key.

use std::collections::BTreeMap;

use opentelemetry::{
    propagation::{Extractor, Injector, TextMapPropagator},
    trace::TracerProvider as _,
};
use opentelemetry_sdk::{propagation::TraceContextPropagator, trace::SdkTracerProvider};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::{layer::SubscriberExt, util::SubscriberInitExt, EnvFilter, Layer};

/// Output format of log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
}

/// Keeps the tracer provider alive; [`Telemetry::shutdown`] flushes it.
pub struct Telemetry {
    provider: SdkTracerProvider,
}

impl Telemetry {
    pub fn shutdown(self) {
        let _ = self.provider.shutdown();
    }
}

/// Installs the global subscriber. Call once, from `main`. Returns `None` if a subscriber was
/// already installed (tests running several services in one process).
pub fn init(service_name: &'static str, format: Format) -> Option<Telemetry> {
    let provider = SdkTracerProvider::builder().build();
    let tracer = provider.tracer(service_name);
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,lapin=warn,actix_server=warn"));
    let fmt = match format {
        Format::Text => tracing_subscriber::fmt::layer().with_target(true).boxed(),
        Format::Json => tracing_subscriber::fmt::layer().json().flatten_event(true).with_current_span(true).boxed(),
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .with(tracing_opentelemetry::layer().with_tracer(tracer))
        .try_init()
        .ok()
        .map(|_| Telemetry { provider })
}

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

/// Writes the current span's trace context into `headers`.
pub fn inject(headers: &mut Headers) {
    let cx = tracing::Span::current().context();
    TraceContextPropagator::new().inject_context(&cx, &mut HeaderInjector(headers));
}

/// Makes `span` a child of the trace context found in `headers` (no-op when there is none).
pub fn extract(headers: &Headers, span: &tracing::Span) {
    if !headers.contains_key("traceparent") {
        return;
    }
    let cx = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
    let _ = span.set_parent(cx);
}

/// The current span's trace id as 32 hex characters, if it has one.
pub fn current_trace_id() -> Option<String> {
    use opentelemetry::trace::TraceContextExt;
    let cx = tracing::Span::current().context();
    let span = cx.span();
    let sc = span.span_context();
    sc.is_valid().then(|| sc.trace_id().to_string())
}
