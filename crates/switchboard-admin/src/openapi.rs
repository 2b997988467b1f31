//! The OpenAPI document, generated from the handlers' annotations (utoipa) and served at
//! `GET /admin/openapi.json`.

use std::sync::LazyLock;

use utoipa::{
    openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
    Modify, OpenApi,
};

use crate::{error::ErrorBody, parked, routes};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Switchboard admin and data-subject API",
        description = "Per-tenant data-subject rights (access, portability, rectification, erasure, \
                       restriction, block) and the audit log. Bearer tokens: a tenant's token acts on \
                       that tenant only; the operator's on every tenant. The end-user is named by \
                       `wa_id` in the path; the API never logs it. See docs/privacy.md."
    ),
    paths(
        routes::export,
        routes::erase,
        routes::block,
        routes::edit_message,
        routes::remove_message,
        routes::edit_profile_name,
        routes::remove_profile_name,
        routes::restrict,
        routes::lift,
        routes::audit_log,
        routes::openapi,
        routes::healthz,
    ),
    components(schemas(
        ErrorBody,
        routes::ExportResponse,
        routes::ErasureResponse,
        routes::RectifyBody,
        routes::RectifyResponse,
        routes::ProfileBody,
        routes::RestrictionResponse,
        routes::AuditResponse,
        parked::ParkedMessage,
        parked::Sweep,
    )),
    modifiers(&BearerAuth),
    tags(
        (name = "data subjects", description = "Rights of one end-user of one tenant"),
        (name = "audit", description = "Who did what, when"),
        (name = "meta", description = "Document and probes"),
    )
)]
struct ApiDoc;

/// Declares the `bearer` security scheme the operations refer to.
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

static DOCUMENT: LazyLock<String> =
    LazyLock::new(|| ApiDoc::openapi().to_pretty_json().unwrap_or_else(|_| "{}".to_owned()));

/// The document as JSON (built once).
pub fn document() -> &'static str {
    &DOCUMENT
}
