//! A fake OpenTelemetry collector: a real OTLP/gRPC `TraceService` (the protocol the OTLP
//! exporter speaks) on 127.0.0.1, keeping every exported span with its resource's service name.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::conn::auto,
    service::TowerToHyperService,
};
use opentelemetry_proto::tonic::{
    collector::trace::v1::{
        trace_service_server::{TraceService, TraceServiceServer},
        ExportTraceServiceRequest, ExportTraceServiceResponse,
    },
    common::v1::{any_value::Value, AnyValue},
    trace::v1::Span,
};
use tokio_util::sync::CancellationToken;

/// One span as received, with the `service.name` of its resource.
#[derive(Debug, Clone)]
pub struct CollectedSpan {
    pub service: String,
    pub span: Span,
}

impl CollectedSpan {
    pub fn trace_id(&self) -> &[u8] {
        &self.span.trace_id
    }

    /// Every string the span carries (name, attribute keys and values, event names and
    /// attributes, link attributes), for leak checks.
    pub fn strings(&self) -> Vec<String> {
        let s = &self.span;
        let mut out = vec![s.name.clone()];
        let attributes = s
            .attributes
            .iter()
            .chain(s.events.iter().flat_map(|e| e.attributes.iter()))
            .chain(s.links.iter().flat_map(|l| l.attributes.iter()));
        for kv in attributes {
            out.push(kv.key.clone());
            out.extend(kv.value.as_ref().map(render));
        }
        out.extend(s.events.iter().map(|e| e.name.clone()));
        out
    }

    /// The value of attribute `key`, rendered as a string.
    pub fn attribute(&self, key: &str) -> Option<String> {
        self.span.attributes.iter().find(|kv| kv.key == key).and_then(|kv| kv.value.as_ref()).map(render)
    }
}

fn render(v: &AnyValue) -> String {
    match &v.value {
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::DoubleValue(d)) => d.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

#[derive(Default)]
struct Received {
    spans: Mutex<Vec<CollectedSpan>>,
    requests: Mutex<usize>,
}

#[tonic::async_trait]
impl TraceService for Received {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = Vec::new();
        for rs in request.into_inner().resource_spans {
            let service = rs
                .resource
                .iter()
                .flat_map(|r| r.attributes.iter())
                .find(|kv| kv.key == "service.name")
                .and_then(|kv| kv.value.as_ref())
                .map(render)
                .unwrap_or_default();
            for ss in rs.scope_spans {
                spans.extend(ss.spans.into_iter().map(|span| CollectedSpan { service: service.clone(), span }));
            }
        }
        self.spans.lock().unwrap().extend(spans);
        *self.requests.lock().unwrap() += 1;
        Ok(tonic::Response::new(ExportTraceServiceResponse { partial_success: None }))
    }
}

/// The collector; stops serving when dropped.
pub struct FakeCollector {
    addr: SocketAddr,
    received: Arc<Received>,
    stop: CancellationToken,
}

impl FakeCollector {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the collector");
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(Received::default());
        let stop = CancellationToken::new();
        let service = TraceServiceServer::from_arc(received.clone());
        let token = stop.clone();
        tokio::spawn(async move {
            loop {
                let (stream, _) = tokio::select! {
                    accepted = listener.accept() => match accepted { Ok(a) => a, Err(_) => continue },
                    _ = token.cancelled() => return,
                };
                let service = TowerToHyperService::new(service.clone());
                tokio::spawn(async move {
                    let _ =
                        auto::Builder::new(TokioExecutor::new()).serve_connection(TokioIo::new(stream), service).await;
                });
            }
        });
        Self { addr, received, stop }
    }

    /// The value for `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn spans(&self) -> Vec<CollectedSpan> {
        self.received.spans.lock().unwrap().clone()
    }

    /// Export requests received so far.
    pub fn requests(&self) -> usize {
        *self.received.requests.lock().unwrap()
    }
}

impl Drop for FakeCollector {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}
