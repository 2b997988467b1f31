//! The handlers. Each one authorises first ([`AdminState::authorize`]: 401, then 403 before
//! any lookup), then computes the subject's conversation key from the `wa_id` in the path,
//! acts, and audits. Reads are audited before any data is returned (no audit, no disclosure);
//! writes after they are applied (a failed audit answers 503, and every action is safe to
//! repeat). The `wa_id` is never logged or audited: only its conversation key is.

use std::sync::Arc;

use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use switchboard_config::Tenant;
use switchboard_domain::now_ms;
use switchboard_store::{AuditRecord, ErasureReport, SubjectExport};
use utoipa::{IntoParams, ToSchema};

use crate::{
    auth::Caller,
    error::Refusals,
    parked::{self, ParkedMessage, Sweep},
    AdminError, AdminState,
};

/// Audit records returned by one call at most.
pub const AUDIT_PAGE: usize = 10_000;
/// Longest accepted rectified message.
const MAX_CONTENT_BYTES: usize = 16 * 1024;

pub fn configure(cfg: &mut web::ServiceConfig) {
    let user = "/admin/tenants/{tenant}/users/{wa_id}";
    cfg.service(web::resource(user).route(web::get().to(export)).route(web::delete().to(erase)))
        .service(
            web::resource(format!("{user}/messages/{{id}}"))
                .route(web::patch().to(edit_message))
                .route(web::delete().to(remove_message)),
        )
        .service(
            web::resource(format!("{user}/restriction")).route(web::put().to(restrict)).route(web::delete().to(lift)),
        )
        .service(
            web::resource(format!("{user}/profile"))
                .route(web::put().to(edit_profile_name))
                .route(web::delete().to(remove_profile_name)),
        )
        .service(web::resource(format!("{user}/block")).route(web::post().to(block)))
        .route("/admin/tenants/{tenant}/audit", web::get().to(audit_log))
        .route("/admin/openapi.json", web::get().to(openapi))
        .route("/healthz", web::get().to(healthz));
}

/// The authorised caller, the tenant and the end-user the request is about.
struct Target {
    caller: Caller,
    tenant: Arc<Tenant>,
    identity: String,
    conversation: String,
}

impl AdminState {
    fn target(&self, req: &HttpRequest, tenant: &str, wa_id: &str) -> Result<Target, AdminError> {
        let (caller, tenant) = self.authorize(req, tenant)?;
        let identity = normalize_identity(wa_id)?;
        let conversation = self.pseudonymizer.conversation(&tenant.id, &identity);
        Ok(Target { caller, tenant, identity, conversation })
    }

    async fn record(
        &self,
        caller: &Caller,
        tenant: &Tenant,
        action: &str,
        subject: Option<&str>,
        detail: String,
    ) -> Result<(), AdminError> {
        let record = AuditRecord {
            at_ms: now_ms(),
            actor: caller.actor(),
            action: action.into(),
            subject_ref: subject.map(str::to_owned),
            detail,
        };
        self.store.audit(&tenant.id, &record, tenant.retention.audit()).await.map_err(AdminError::Audit)?;
        tracing::info!(tenant = %tenant.id, actor = %record.actor, action, subject_ref = ?subject, "admin action");
        Ok(())
    }
}

/// A WhatsApp user id: the phone number in international digits (a leading `+` is dropped),
/// or a business-scoped user id.
fn normalize_identity(wa_id: &str) -> Result<String, AdminError> {
    let id = wa_id.trim().trim_start_matches('+');
    let ok = !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    ok.then(|| id.to_owned()).ok_or(AdminError::BadRequest("wa_id must be the user's WhatsApp id"))
}

/// Everything held about one end-user.
#[derive(Serialize, ToSchema)]
pub struct ExportResponse {
    /// Redis: context window, pending messages, unpublished and sent replies, message states,
    /// deliveries with statuses and error codes, restriction and erasure state, timestamps,
    /// and every key with its remaining lifetime.
    #[schema(value_type = Object)]
    pub subject: SubjectExport,
    /// Dead letters and held replies of the user on the broker.
    pub parked: Vec<ParkedMessage>,
}

#[utoipa::path(get, path = "/admin/tenants/{tenant}/users/{wa_id}", tag = "data subjects",
    params(("tenant" = String, Path), ("wa_id" = String, Path, description = "WhatsApp id (phone number digits)")),
    responses((status = 200, description = "Everything held about the user", body = ExportResponse), Refusals),
    security(("bearer" = [])))]
/// Access and portability: one JSON document with everything held about the user.
pub async fn export(
    state: web::Data<AdminState>,
    req: HttpRequest,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, AdminError> {
    let t = state.target(&req, &path.0, &path.1)?;
    state.record(&t.caller, &t.tenant, "export", Some(&t.conversation), String::new()).await?;
    let subject = state.store.export_subject(&t.tenant.id, &t.conversation).await?;
    let owner = parked::Subject { tenant: &t.tenant.id, conversation: &t.conversation, identity: &t.identity };
    let parked = parked::find(&state.bus, &owner).await?;
    Ok(HttpResponse::Ok().json(ExportResponse { subject, parked }))
}

/// The outcome of an erasure (or a block).
#[derive(Serialize, ToSchema)]
pub struct ErasureResponse {
    /// What was deleted from Redis, by kind (counts only).
    #[schema(value_type = Object)]
    pub report: ErasureReport,
    pub parked: Sweep,
}

#[utoipa::path(delete, path = "/admin/tenants/{tenant}/users/{wa_id}", tag = "data subjects",
    params(("tenant" = String, Path), ("wa_id" = String, Path)),
    responses((status = 200, description = "Erased; counts of what was deleted", body = ErasureResponse), Refusals),
    security(("bearer" = [])))]
/// Erasure: deletes everything held about the user (Redis and parked messages); queued
/// messages are skipped when consumed. Only the audit record remains.
pub async fn erase(
    state: web::Data<AdminState>,
    req: HttpRequest,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, AdminError> {
    let t = state.target(&req, &path.0, &path.1)?;
    erase_subject(&state, &t, false).await
}

#[utoipa::path(post, path = "/admin/tenants/{tenant}/users/{wa_id}/block", tag = "data subjects",
    params(("tenant" = String, Path), ("wa_id" = String, Path)),
    responses((status = 200, description = "Erased; counts of what was deleted", body = ErasureResponse), Refusals),
    security(("bearer" = [])))]
/// Erase and block (e.g. a child's data: "promptly delete"): restricts processing, then erases.
pub async fn block(
    state: web::Data<AdminState>,
    req: HttpRequest,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, AdminError> {
    let t = state.target(&req, &path.0, &path.1)?;
    erase_subject(&state, &t, true).await
}

async fn erase_subject(state: &AdminState, t: &Target, block: bool) -> Result<HttpResponse, AdminError> {
    let (store, ttl) = (&state.store, t.tenant.retention.idempotency());
    let report = if block {
        store.block_subject(&t.tenant.id, &t.conversation, ttl).await?
    } else {
        store.erase_subject(&t.tenant.id, &t.conversation, ttl).await?
    };
    let owner = parked::Subject { tenant: &t.tenant.id, conversation: &t.conversation, identity: &t.identity };
    let swept = parked::sweep(&state.bus, &owner).await;
    let mut detail: Vec<String> = report.deleted_keys.iter().map(|(kind, n)| format!("{kind}={n}")).collect();
    detail.push(format!("context_entries={} pending={}", report.context_entries, report.pending_messages));
    detail.push(match &swept {
        Ok(s) => format!("parked_deleted={} parked_not_examined={}", s.deleted, s.not_examined),
        Err(_) => "parked_sweep=failed".into(),
    });
    let action = if block { "block" } else { "erase" };
    state.record(&t.caller, &t.tenant, action, Some(&t.conversation), detail.join(" ")).await?;
    Ok(HttpResponse::Ok().json(ErasureResponse { report, parked: swept? }))
}

/// New content of a stored message.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RectifyBody {
    pub content: String,
}

#[derive(Serialize, ToSchema)]
pub struct RectifyResponse {
    /// `edited` or `removed` (a message), `profile_edited` or `profile_removed`.
    pub rectified: &'static str,
}

#[utoipa::path(patch, path = "/admin/tenants/{tenant}/users/{wa_id}/messages/{id}", tag = "data subjects",
    params(("tenant" = String, Path), ("wa_id" = String, Path),
        ("id" = String, Path, description = "The entry id from the export (wamid or reply id) or its message_ref")),
    request_body = RectifyBody,
    responses((status = 200, description = "Rectified", body = RectifyResponse), Refusals),
    security(("bearer" = [])))]
/// Rectification: replaces the content of one stored message of the context window.
pub async fn edit_message(
    state: web::Data<AdminState>,
    req: HttpRequest,
    path: web::Path<(String, String, String)>,
    body: web::Bytes,
) -> Result<HttpResponse, AdminError> {
    let t = state.target(&req, &path.0, &path.1)?;
    let bad = AdminError::BadRequest("the body must be {\"content\": \"<non-empty text of at most 16 KiB>\"}");
    let body: RectifyBody = serde_json::from_slice(&body).map_err(|_| bad)?;
    if body.content.trim().is_empty() || body.content.len() > MAX_CONTENT_BYTES {
        return Err(AdminError::BadRequest("the body must be {\"content\": \"<non-empty text of at most 16 KiB>\"}"));
    }
    rectify(&state, &t, &path.2, Some(body.content)).await
}

#[utoipa::path(delete, path = "/admin/tenants/{tenant}/users/{wa_id}/messages/{id}", tag = "data subjects",
    params(("tenant" = String, Path), ("wa_id" = String, Path), ("id" = String, Path)),
    responses((status = 200, description = "Rectified", body = RectifyResponse), Refusals),
    security(("bearer" = [])))]
/// Rectification: removes one stored message from the context window.
pub async fn remove_message(
    state: web::Data<AdminState>,
    req: HttpRequest,
    path: web::Path<(String, String, String)>,
) -> Result<HttpResponse, AdminError> {
    let t = state.target(&req, &path.0, &path.1)?;
    rectify(&state, &t, &path.2, None).await
}

async fn rectify(
    state: &AdminState,
    t: &Target,
    id: &str,
    content: Option<String>,
) -> Result<HttpResponse, AdminError> {
    let outcome = if content.is_some() { "edited" } else { "removed" };
    let found = state.store.rectify_context_entry(&t.tenant.id, &t.conversation, id, content).await?;
    let detail = if found { outcome } else { "not_found" };
    state.record(&t.caller, &t.tenant, "rectify", Some(&t.conversation), detail.into()).await?;
    if !found {
        return Err(AdminError::MessageNotFound);
    }
    Ok(HttpResponse::Ok().json(RectifyResponse { rectified: outcome }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProfileBody {
    /// The corrected profile name.
    pub name: String,
}

/// Longest profile name accepted by rectification (WhatsApp allows far fewer).
const MAX_PROFILE_NAME_CHARS: usize = 128;

#[utoipa::path(put, path = "/admin/tenants/{tenant}/users/{wa_id}/profile", tag = "data subjects",
    params(("tenant" = String, Path), ("wa_id" = String, Path)),
    request_body = ProfileBody,
    responses((status = 200, description = "Rectified", body = RectifyResponse), Refusals),
    security(("bearer" = [])))]
/// Rectification: corrects the stored profile name (kept where the tenant enables
/// `remember_profile_name`); its expiry is unchanged. 404 if no name is stored.
pub async fn edit_profile_name(
    state: web::Data<AdminState>,
    req: HttpRequest,
    path: web::Path<(String, String)>,
    body: web::Bytes,
) -> Result<HttpResponse, AdminError> {
    let t = state.target(&req, &path.0, &path.1)?;
    let bad = || AdminError::BadRequest("the body must be {\"name\": \"<non-empty name of at most 128 characters>\"}");
    let body: ProfileBody = serde_json::from_slice(&body).map_err(|_| bad())?;
    let name = body.name.trim();
    if name.is_empty() || name.chars().count() > MAX_PROFILE_NAME_CHARS {
        return Err(bad());
    }
    let found = state.store.rectify_profile_name(&t.tenant.id, &t.conversation, name).await?;
    profile_outcome(&state, &t, found, "profile_edited").await
}

#[utoipa::path(delete, path = "/admin/tenants/{tenant}/users/{wa_id}/profile", tag = "data subjects",
    params(("tenant" = String, Path), ("wa_id" = String, Path)),
    responses((status = 200, description = "Rectified", body = RectifyResponse), Refusals),
    security(("bearer" = [])))]
/// Rectification: deletes the stored profile name. 404 if none is stored.
pub async fn remove_profile_name(
    state: web::Data<AdminState>,
    req: HttpRequest,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, AdminError> {
    let t = state.target(&req, &path.0, &path.1)?;
    let found = state.store.delete_profile_name(&t.tenant.id, &t.conversation).await?;
    profile_outcome(&state, &t, found, "profile_removed").await
}

async fn profile_outcome(
    state: &AdminState,
    t: &Target,
    found: bool,
    outcome: &'static str,
) -> Result<HttpResponse, AdminError> {
    let detail = if found { outcome } else { "profile_not_found" };
    state.record(&t.caller, &t.tenant, "rectify", Some(&t.conversation), detail.into()).await?;
    if !found {
        return Err(AdminError::MessageNotFound);
    }
    Ok(HttpResponse::Ok().json(RectifyResponse { rectified: outcome }))
}

#[derive(Serialize, ToSchema)]
pub struct RestrictionResponse {
    pub restricted: bool,
    /// Whether this request changed the state.
    pub changed: bool,
    pub since_ms: Option<i64>,
}

#[utoipa::path(put, path = "/admin/tenants/{tenant}/users/{wa_id}/restriction", tag = "data subjects",
    params(("tenant" = String, Path), ("wa_id" = String, Path)),
    responses((status = 200, description = "The restriction state", body = RestrictionResponse), Refusals),
    security(("bearer" = [])))]
/// Restriction / objection: the assistant stops processing the user's messages until lifted.
pub async fn restrict(
    state: web::Data<AdminState>,
    req: HttpRequest,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, AdminError> {
    let t = state.target(&req, &path.0, &path.1)?;
    set_restriction(&state, &t, true).await
}

#[utoipa::path(delete, path = "/admin/tenants/{tenant}/users/{wa_id}/restriction", tag = "data subjects",
    params(("tenant" = String, Path), ("wa_id" = String, Path)),
    responses((status = 200, description = "The restriction state", body = RestrictionResponse), Refusals),
    security(("bearer" = [])))]
/// Lifts a restriction.
pub async fn lift(
    state: web::Data<AdminState>,
    req: HttpRequest,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, AdminError> {
    let t = state.target(&req, &path.0, &path.1)?;
    set_restriction(&state, &t, false).await
}

async fn set_restriction(state: &AdminState, t: &Target, on: bool) -> Result<HttpResponse, AdminError> {
    let changed = state.store.restrict(&t.tenant.id, &t.conversation, on).await?;
    let action = if on { "restrict" } else { "lift_restriction" };
    let detail = if changed { "changed" } else { "unchanged" };
    state.record(&t.caller, &t.tenant, action, Some(&t.conversation), detail.into()).await?;
    let since_ms = state.store.restricted_since(&t.tenant.id, &t.conversation).await?;
    Ok(HttpResponse::Ok().json(RestrictionResponse { restricted: since_ms.is_some(), changed, since_ms }))
}

#[derive(Deserialize, IntoParams)]
pub struct AuditQuery {
    /// Only records from this time on (Unix ms; default: the whole retained log).
    pub since_ms: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct AuditResponse {
    pub tenant: String,
    #[schema(value_type = Vec<Object>)]
    pub records: Vec<AuditRecord>,
    /// More records follow: ask again with `since_ms` = the last record's `at_ms`.
    pub truncated: bool,
}

#[utoipa::path(get, path = "/admin/tenants/{tenant}/audit", tag = "audit",
    params(("tenant" = String, Path), AuditQuery),
    responses((status = 200, description = "The audit records", body = AuditResponse), Refusals),
    security(("bearer" = [])))]
/// The tenant's audit log (who did what, when, about which subject), oldest first.
pub async fn audit_log(
    state: web::Data<AdminState>,
    req: HttpRequest,
    path: web::Path<String>,
    query: web::Query<AuditQuery>,
) -> Result<HttpResponse, AdminError> {
    let (caller, tenant) = state.authorize(&req, &path)?;
    let since_ms = query.since_ms.unwrap_or(0);
    state.record(&caller, &tenant, "audit_export", None, format!("since_ms={since_ms}")).await?;
    let records = state.store.audit_log(&tenant.id, since_ms, tenant.retention.audit(), AUDIT_PAGE).await?;
    let truncated = records.len() >= AUDIT_PAGE;
    Ok(HttpResponse::Ok().json(AuditResponse { tenant: tenant.id.clone(), records, truncated }))
}

#[utoipa::path(get, path = "/admin/openapi.json", tag = "meta", responses((status = 200, description = "This document")))]
/// The OpenAPI document of this API (no authentication).
pub async fn openapi() -> HttpResponse {
    HttpResponse::Ok().content_type("application/json").body(crate::openapi::document())
}

#[utoipa::path(get, path = "/healthz", tag = "meta", responses((status = 200, description = "The process is up")))]
/// Liveness.
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain").body("ok")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_are_normalised_or_refused() {
        assert_eq!(normalize_identity("+15551234567").unwrap(), "15551234567");
        assert_eq!(normalize_identity("US.1234").unwrap(), "US.1234");
        assert!(normalize_identity("").is_err());
        assert!(normalize_identity("a b").is_err());
        assert!(normalize_identity(&"1".repeat(65)).is_err());
    }
}
