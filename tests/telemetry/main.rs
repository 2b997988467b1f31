//! Telemetry tests that need the process-wide subscriber: one trace from the webhook to the
//! Graph API call, and no phone number, name or message text in any log line or span.
//!
//! Both tests share one capture (logs as JSON lines, spans in an in-memory exporter), installed
//! once per process.

use std::{
    io::Write,
    sync::{Arc, Mutex, OnceLock},
    time::Duration,
};

use opentelemetry_sdk::trace::{InMemorySpanExporter, SpanData};
use switchboard_tests::{wait_until, webhook, webhook::Text, TestEnv, PHONE_NUMBER_ID};

const DEADLINE: Duration = Duration::from_secs(30);

#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

struct Capture {
    logs: Logs,
    spans: InMemorySpanExporter,
}

fn capture() -> &'static Capture {
    static CAPTURE: OnceLock<Capture> = OnceLock::new();
    CAPTURE.get_or_init(|| {
        // Debug level for our own crates, so their debug lines are checked too. Set before the
        // subscriber reads it, at the start of the test.
        std::env::set_var(
            "RUST_LOG",
            "info,switchboard_ingress=debug,switchboard_worker=debug,switchboard_dispatcher=debug,\
             switchboard_store=debug,switchboard_bus=debug,switchboard_llm=debug,switchboard_whatsapp=debug",
        );
        let logs = Logs::default();
        let spans = InMemorySpanExporter::default();
        let writer = logs.clone();
        let telemetry = switchboard_telemetry::init_for_tests(spans.clone(), move || writer.clone())
            .expect("the only subscriber of this test process");
        std::mem::forget(telemetry); // keep the provider for the whole process
        Capture { logs, spans }
    })
}

fn finished_spans() -> Vec<SpanData> {
    capture().spans.get_finished_spans().unwrap_or_default()
}

fn span_named<'a>(spans: &'a [SpanData], name: &str) -> Vec<&'a SpanData> {
    spans.iter().filter(|s| s.name == name).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_runs_from_the_webhook_to_the_graph_api_call() {
    let _ = capture();
    let mut env = TestEnv::with(|s| s.mark_read = true).await;
    env.start_all().await;
    let body = webhook::text_batch(
        PHONE_NUMBER_ID,
        &[Text { from: "15550101010", wamid: "wamid.trace.1", body: "trace me", timestamp: webhook::now_s() }],
    );
    assert_eq!(env.post_webhook(body, None).await.status(), 200);
    let sent = wait_until(DEADLINE, "the reply", || async { env.graph.delivered().into_iter().next() }).await;
    let spans = wait_until(DEADLINE, "the send and receipt spans", || async {
        let spans = finished_spans();
        (!span_named(&spans, "send reply").is_empty() && !span_named(&spans, "mark read").is_empty()).then_some(spans)
    })
    .await;
    let webhook_span = span_named(&spans, "POST /webhooks/whatsapp");
    let trace_id = webhook_span.iter().map(|s| s.span_context.trace_id()).find(|t| {
        spans.iter().any(|s| s.name == "POST /{phone_number_id}/messages" && s.span_context.trace_id() == *t)
    });
    let trace_id = trace_id.expect("a Graph API call in the same trace as a webhook");
    for name in ["receive inbound", "turn", "chat", "send reply", "POST /{phone_number_id}/messages", "mark read"] {
        assert!(
            spans.iter().any(|s| s.name == name && s.span_context.trace_id() == trace_id),
            "span {name:?} is not in the webhook's trace"
        );
    }
    // Each consumer span is the child of the PRODUCER span that published its message.
    let events_exchange = format!("publish {}.events", env.settings.namespace);
    for consumer in ["receive inbound", "send reply", "mark read"] {
        let span = spans.iter().find(|s| s.name == consumer && s.span_context.trace_id() == trace_id).unwrap();
        let parent = spans
            .iter()
            .find(|p| p.span_context.span_id() == span.parent_span_id)
            .unwrap_or_else(|| panic!("the parent of {consumer:?} was not exported"));
        assert_eq!(parent.name, events_exchange, "the parent of {consumer:?}");
        assert_eq!(parent.span_kind, opentelemetry::trace::SpanKind::Producer);
        let attribute =
            |key: &str| parent.attributes.iter().find(|kv| kv.key.as_str() == key).map(|kv| kv.value.to_string());
        assert_eq!(attribute("messaging.system").as_deref(), Some("rabbitmq"));
        assert_eq!(attribute("messaging.operation.type").as_deref(), Some("send"));
    }
    // The chat span follows the GenAI semantic conventions.
    let chat = spans.iter().find(|s| s.name == "chat" && s.span_context.trace_id() == trace_id).unwrap();
    let keys: Vec<String> = chat.attributes.iter().map(|kv| kv.key.to_string()).collect();
    assert!(keys.contains(&"gen_ai.request.model".to_string()), "{keys:?}");
    assert!(keys.contains(&"gen_ai.usage.input_tokens".to_string()), "{keys:?}");

    // A later status for the reply links to the reply's trace.
    let status = format!(
        r#"{{"object":"whatsapp_business_account","entry":[{{"id":"1","changes":[{{"field":"messages","value":{{"messaging_product":"whatsapp","metadata":{{"display_phone_number":"1","phone_number_id":"{PHONE_NUMBER_ID}"}},"statuses":[{{"id":"{}","status":"delivered","timestamp":"{}","recipient_id":"15550101010"}}]}}}}]}}]}}"#,
        sent.accepted.clone().unwrap(),
        webhook::now_s()
    );
    assert_eq!(env.post_webhook(status.into_bytes(), None).await.status(), 200);
    wait_until(DEADLINE, "a status span linked to the reply's trace", || async {
        finished_spans()
            .iter()
            .any(|s| s.name == "record status" && s.links.iter().any(|l| l.span_context.trace_id() == trace_id))
            .then_some(())
    })
    .await;
    env.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_phone_number_name_or_text_reaches_logs_or_spans() {
    let cap = capture();
    let mut env = TestEnv::with(|s| s.mark_read = true).await;
    env.start_all().await;
    let number = "15559876543";
    let text = "my card number is 4111 1111 1111 1111";
    let wamid = "wamid.HBgLMTU1NTk4NzY1NDMVAgASGBQzQUZBS0UwMDAwMDAwMDAwMDAw0099AA=";
    let mut body = String::from_utf8(webhook::text_batch(
        PHONE_NUMBER_ID,
        &[Text { from: number, wamid, body: text, timestamp: webhook::now_s() }],
    ))
    .unwrap();
    body = body.replace("Test User", "Zelda Quixote");
    assert_eq!(env.post_webhook(body.into_bytes(), None).await.status(), 200);
    let sent = wait_until(DEADLINE, "the reply", || async { env.graph.delivered().into_iter().next() }).await;
    // A failed status with the number, to exercise that path too.
    let status = format!(
        r#"{{"object":"whatsapp_business_account","entry":[{{"id":"1","changes":[{{"field":"messages","value":{{"messaging_product":"whatsapp","metadata":{{"display_phone_number":"1","phone_number_id":"{PHONE_NUMBER_ID}"}},"statuses":[{{"id":"{}","status":"failed","timestamp":"{}","recipient_id":"{number}","errors":[{{"code":131026,"title":"x"}}]}}]}}}}]}}]}}"#,
        sent.accepted.clone().unwrap(),
        webhook::now_s()
    );
    assert_eq!(env.post_webhook(status.into_bytes(), None).await.status(), 200);
    // A bad signature (security event) and an unknown number, with the user's number inside.
    let bad = webhook::text_batch("999", &[Text { from: number, wamid: "wamid.x", body: text, timestamp: 1 }]);
    assert_eq!(env.post_webhook(bad.clone(), Some(Some("sha256=00".into()))).await.status(), 401);
    assert_eq!(env.post_webhook(bad, None).await.status(), 200);
    wait_until(DEADLINE, "statuses drained", || async {
        (env.bus.queue_depth(&env.bus.topology().statuses).await.ok()? == 0).then_some(())
    })
    .await;
    env.teardown().await;

    let logs = String::from_utf8(cap.logs.0.lock().unwrap().clone()).unwrap();
    assert!(logs.lines().count() > 5, "logs were captured");
    assert!(logs.contains("\"trace_id\""), "log lines carry trace ids");
    let spans = format!("{:?}", finished_spans());
    for (what, needle) in [("number", number), ("text", "4111 1111"), ("name", "Zelda"), ("wamid", "HBgLMTU1NTk4")] {
        assert!(!logs.contains(needle), "the {what} leaked into a log line");
        assert!(!spans.contains(needle), "the {what} leaked into a span");
    }
}
