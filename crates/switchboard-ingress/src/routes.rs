//! The webhook, handshake and probe handlers.

use std::collections::HashMap;

use actix_web::{
    http::header::CONTENT_LENGTH,
    web::{self, Bytes, BytesMut},
    HttpRequest, HttpResponse,
};
use futures_util::StreamExt;
use subtle::ConstantTimeEq;
use switchboard_bus::{headers::names, topology::routing, Headers, Outgoing};
use switchboard_domain::{message_ref, now_ms};
use switchboard_whatsapp::{parse_webhook, split_batch, verify_signature};

use crate::{IngressState, WebhookError};

pub const WEBHOOK_PATH: &str = "/webhooks/whatsapp";

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource(WEBHOOK_PATH).route(web::get().to(verify_handshake)).route(web::post().to(receive_webhook)),
    )
    .route("/healthz", web::get().to(crate::probes::healthz))
    .route("/readyz", web::get().to(readyz))
    .route("/metrics", web::get().to(crate::probes::metrics));
}

/// REFERENCE §1: 200 with the bare challenge as text/plain when `hub.mode` is `subscribe` and
/// the token matches; 403 otherwise.
async fn verify_handshake(
    state: web::Data<IngressState>,
    query: web::Query<HashMap<String, String>>,
    req: HttpRequest,
) -> HttpResponse {
    let mode = query.get("hub.mode").map(String::as_str);
    let token = query.get("hub.verify_token").map(String::as_bytes);
    let challenge = query.get("hub.challenge");
    let token_ok = token.is_some_and(|given| {
        state
            .tenants
            .current()
            .all_verify_tokens()
            .iter()
            .fold(false, |ok, expected| ok | bool::from(given.ct_eq(expected.as_bytes())))
    });
    match (mode, challenge) {
        (Some("subscribe"), Some(challenge)) if token_ok => {
            tracing::info!("webhook verification handshake accepted");
            HttpResponse::Ok().content_type("text/plain").body(challenge.clone())
        }
        _ => {
            security_event(&req, "verify_token_mismatch");
            HttpResponse::Forbidden().content_type("text/plain").body("forbidden")
        }
    }
}

#[tracing::instrument(
    name = "POST /webhooks/whatsapp",
    skip_all,
    fields(
        otel.kind = "server",
        http.request.method = "POST",
        http.route = WEBHOOK_PATH,
        http.response.status_code = tracing::field::Empty,
        inbound,
        statuses,
    )
)]
async fn receive_webhook(
    state: web::Data<IngressState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, WebhookError> {
    let outcome = handle_webhook(&state, &req, payload).await;
    let label = match &outcome {
        Ok(label) => *label,
        Err(WebhookError::MissingSignature) => "missing_signature",
        Err(WebhookError::BadSignature) => "bad_signature",
        Err(WebhookError::TooLarge { .. }) => "too_large",
        Err(WebhookError::BodyRead) => "bad_request",
        Err(WebhookError::Unavailable(_)) => "unavailable",
    };
    metrics::counter!("switchboard_webhooks_total", "outcome" => label).increment(1);
    let status = match &outcome {
        Ok(_) => 200,
        Err(e) => actix_web::ResponseError::status_code(e).as_u16(),
    };
    tracing::Span::current().record("http.response.status_code", status);
    outcome.map(|_| HttpResponse::Ok().finish())
}

/// The webhook's work; returns the outcome label of an accepted request.
async fn handle_webhook(
    state: &IngressState,
    req: &HttpRequest,
    payload: web::Payload,
) -> Result<&'static str, WebhookError> {
    let body = read_body(req, payload, state.max_body_bytes).await.inspect_err(|e| {
        if matches!(e, WebhookError::TooLarge { .. }) {
            security_event(req, "oversize_body");
        }
    })?;
    let signature = req.headers().get("X-Hub-Signature-256").and_then(|v| v.to_str().ok());
    if signature.is_none() {
        security_event(req, "missing_signature");
        return Err(WebhookError::MissingSignature);
    }
    if !verify_signature(&state.tenants.current().all_app_secrets(), &body, signature) {
        security_event(req, "bad_signature");
        return Err(WebhookError::BadSignature);
    }
    let received_at_ms = now_ms();

    let parsed = match parse_webhook(&body) {
        Ok(p) => p,
        Err(error) => {
            // Signed by Meta but unreadable: a bug on our side or a new shape. Park the raw bytes
            // for inspection and answer 200, or Meta would resend it for a week.
            tracing::warn!(%error, bytes = body.len(), "signed webhook body unreadable; parked");
            let mut headers = Headers::new();
            headers.insert(names::REASON.into(), error.to_string());
            headers.insert(names::RECEIVED_AT.into(), received_at_ms.to_string());
            state
                .bus
                .publish(Outgoing {
                    exchange: state.bus.topology().events_exchange.clone(),
                    routing_key: routing::REJECTED.into(),
                    body: body.to_vec(),
                    headers,
                    message_id: None,
                    content_type: "application/octet-stream",
                })
                .await?;
            return Ok("parked");
        }
    };

    let tenants = state.tenants.current();
    let mut batch = split_batch(
        &parsed,
        |pnid| tenants.by_phone_number_id(pnid).map(|t| t.id.clone()),
        &state.pseudonymizer,
        received_at_ms,
    );
    // Data minimisation: the profile name travels on only for tenants that keep it.
    for ev in &mut batch.inbound {
        if !tenants.get(&ev.tenant_id).is_some_and(|t| t.remember_profile_name) {
            ev.profile_name = None;
        }
    }
    for _ in &batch.unknown_phone_number_ids {
        security_event(req, "unknown_phone_number_id");
    }
    if !batch.value_error_codes.is_empty() {
        tracing::warn!(codes = ?batch.value_error_codes, "webhook carried out-of-band WhatsApp errors");
    }
    let span = tracing::Span::current();
    span.record("inbound", batch.inbound.len());
    span.record("statuses", batch.statuses.len());

    let mut messages = Vec::with_capacity(batch.inbound.len() + batch.statuses.len());
    for ev in &batch.inbound {
        let mut m = state.bus.event(routing::INBOUND, ev)?;
        m.message_id = Some(message_ref(&ev.wamid));
        messages.push(m);
    }
    for st in &batch.statuses {
        let mut m = state.bus.event(routing::STATUS, st)?;
        m.message_id = Some(format!("{}:{}", message_ref(&st.wamid), st.status));
        messages.push(m);
    }
    // 200 only once the broker has confirmed every event of the batch.
    state.bus.publish_all(&messages).await.inspect_err(|error| {
        tracing::error!(%error, events = messages.len(), "publishing webhook events failed; answering 503");
    })?;
    metrics::counter!("switchboard_webhook_events_total", "kind" => "inbound").increment(batch.inbound.len() as u64);
    metrics::counter!("switchboard_webhook_events_total", "kind" => "status").increment(batch.statuses.len() as u64);
    tracing::debug!(
        events = messages.len(),
        skipped = batch.skipped_messages,
        ignored_changes = batch.ignored_changes,
        "webhook accepted"
    );
    Ok("accepted")
}

/// Reads the whole body, refusing more than `limit` bytes (by header, then by counting).
async fn read_body(req: &HttpRequest, mut payload: web::Payload, limit: usize) -> Result<Bytes, WebhookError> {
    let declared =
        req.headers().get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(WebhookError::TooLarge { limit });
    }
    let mut body = BytesMut::with_capacity(declared.unwrap_or(4096).min(limit));
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|_| WebhookError::BodyRead)?;
        if body.len() + chunk.len() > limit {
            return Err(WebhookError::TooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// A security-relevant event: logged with the peer address, never with the body.
fn security_event(req: &HttpRequest, kind: &'static str) {
    let peer = req.peer_addr().map(|a| a.ip().to_string()).unwrap_or_else(|| "unknown".into());
    // As claimed by proxies: trustworthy only behind one's own load balancer.
    let forwarded_for = req.connection_info().realip_remote_addr().unwrap_or("").to_string();
    tracing::warn!(security_event = kind, %peer, %forwarded_for, path = req.path(), "security event");
    metrics::counter!("switchboard_security_events_total", "kind" => kind).increment(1);
}

/// Ready when the broker and Redis both answer now, and not draining.
async fn readyz(state: web::Data<IngressState>) -> HttpResponse {
    crate::probes::readiness(&state.bus, &state.store, &state.draining).await
}
