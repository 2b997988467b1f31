//! JSON log lines with the OpenTelemetry trace and span ids of the current span.

use std::fmt;

use serde_json::{Map, Value};
use tracing::{field::Field, Event, Subscriber};
use tracing_subscriber::{
    fmt::{format::Writer, FmtContext, FormatEvent, FormatFields, FormattedFields},
    registry::LookupSpan,
};

/// One JSON object per event: `timestamp`, `level`, `target`, the event's fields (with
/// `message`), the current span's name and fields, `trace_id` and `span_id`.
pub(crate) struct JsonWithTrace;

impl<S, N> FormatEvent<S, N> for JsonWithTrace
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        let mut line = Map::new();
        let now = time::OffsetDateTime::now_utc();
        let ts = now.format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
        line.insert("timestamp".into(), Value::String(ts));
        line.insert("level".into(), Value::String(event.metadata().level().to_string()));
        line.insert("target".into(), Value::String(event.metadata().target().to_string()));
        let mut fields = FieldVisitor(Map::new());
        event.record(&mut fields);
        line.extend(fields.0);
        if let Some(span) = ctx.lookup_current() {
            line.insert("span".into(), Value::String(span.name().to_string()));
            if let Some(stored) = span.extensions().get::<FormattedFields<N>>() {
                if let Ok(Value::Object(span_fields)) = serde_json::from_str::<Value>(stored.as_str()) {
                    line.insert("span_fields".into(), Value::Object(span_fields));
                }
            }
            let id = span.id();
            drop(span);
            let ids = tracing::dispatcher::get_default(|dispatch| {
                tracing_opentelemetry::get_otel_context(&id, dispatch).map(|cx| {
                    use opentelemetry::trace::TraceContextExt;
                    let sc = cx.span().span_context().clone();
                    (sc.trace_id().to_string(), sc.span_id().to_string(), sc.is_valid())
                })
            });
            if let Some((trace_id, span_id, true)) = ids {
                line.insert("trace_id".into(), Value::String(trace_id));
                line.insert("span_id".into(), Value::String(span_id));
            }
        }
        writeln!(writer, "{}", Value::Object(line))
    }
}

struct FieldVisitor(Map<String, Value>);

impl tracing::field::Visit for FieldVisitor {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0.insert(field.name().to_string(), Value::String(format!("{value:?}")));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_string(), Value::String(value.to_string()));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().to_string(), Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_string(), Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().to_string(), Value::from(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().to_string(), Value::from(value));
    }
}
