//! Logging, tracing and metrics for every Switchboard binary.
//!
//! * [`init`]: the global `tracing` subscriber (readable or JSON lines with trace and span ids,
//!   `RUST_LOG` filter) with an OpenTelemetry layer. Spans are exported over OTLP/gRPC when
//!   `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set, sampled per
//!   `OTEL_TRACES_SAMPLER`; without it, spans still get W3C ids (for log correlation and
//!   propagation) and go nowhere.
//! * [`propagation`]: carry the trace context in string headers (AMQP message headers).
//! * [`metrics`]: the Prometheus recorder behind every role's `/metrics`.
//!
//! Never record phone numbers, WhatsApp ids, names or message text in a span, event or metric
//! label: use the pseudonymous conversation key and `message_ref`.

mod json;
pub mod metrics;
mod propagation;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::{propagation::TraceContextPropagator, trace::SdkTracerProvider, Resource};
use tracing_subscriber::{layer::SubscriberExt, util::SubscriberInitExt, EnvFilter, Layer};

pub use propagation::{current_trace_id, extract, inject, link, span_context, Headers, TRACEPARENT};

/// Output format of log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
}

/// Keeps the tracer provider alive; [`Telemetry::shutdown`] flushes pending spans.
pub struct Telemetry {
    provider: SdkTracerProvider,
}

impl Telemetry {
    /// Flushes and stops span export (call last, after the roles have stopped).
    pub fn shutdown(self) {
        let _ = self.provider.force_flush();
        let _ = self.provider.shutdown();
    }
}

/// True when an OTLP endpoint is configured through the standard variables.
fn otlp_configured() -> bool {
    let set = |k: &str| std::env::var(k).map(|v| !v.trim().is_empty()).unwrap_or(false);
    let disabled = std::env::var("OTEL_SDK_DISABLED").map(|v| v.eq_ignore_ascii_case("true")).unwrap_or(false);
    !disabled && (set("OTEL_EXPORTER_OTLP_ENDPOINT") || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
}

/// Installs the global subscriber. Call once, from `main`, inside the Tokio runtime (the
/// OTLP exporter needs it). Returns `None` if a subscriber was already installed.
pub fn init(service_name: &'static str, format: Format) -> Option<Telemetry> {
    let mut builder = SdkTracerProvider::builder().with_resource(resource(service_name));
    if otlp_configured() {
        match opentelemetry_otlp::SpanExporter::builder().with_tonic().build() {
            Ok(exporter) => builder = builder.with_batch_exporter(exporter),
            Err(error) => eprintln!("switchboard: OTLP exporter disabled: {error}"),
        }
    }
    install(builder.build(), service_name, format, std::io::stdout)
}

fn resource(service_name: &'static str) -> Resource {
    // OTEL_SERVICE_NAME wins over the role's default name; OTEL_RESOURCE_ATTRIBUTES is read by
    // the SDK's environment detector.
    let name = std::env::var("OTEL_SERVICE_NAME").ok().filter(|n| !n.trim().is_empty());
    Resource::builder().with_service_name(name.unwrap_or_else(|| service_name.to_string())).build()
}

fn install<W>(provider: SdkTracerProvider, service_name: &'static str, format: Format, writer: W) -> Option<Telemetry>
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    let tracer = provider.tracer(service_name);
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,lapin=warn,actix_server=warn"));
    let fmt = match format {
        Format::Text => tracing_subscriber::fmt::layer().with_writer(writer).with_target(true).boxed(),
        Format::Json => tracing_subscriber::fmt::layer()
            .with_writer(writer)
            .fmt_fields(tracing_subscriber::fmt::format::JsonFields::new())
            .event_format(json::JsonWithTrace)
            .boxed(),
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .with(tracing_opentelemetry::layer().with_tracer(tracer))
        .try_init()
        .ok()
        .map(|_| Telemetry { provider })
}

/// Test support: every span goes to `exporter`, every log line (JSON) to `writer`.
#[cfg(feature = "testing")]
pub fn init_for_tests<W>(exporter: opentelemetry_sdk::trace::InMemorySpanExporter, writer: W) -> Option<Telemetry>
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    let provider =
        SdkTracerProvider::builder().with_resource(resource("switchboard-test")).with_simple_exporter(exporter).build();
    install(provider, "switchboard-test", Format::Json, writer)
}
