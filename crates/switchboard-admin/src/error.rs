//! Admin API failures and their HTTP statuses: the only place where that mapping lives.
//!
//! Bodies are short, fixed JSON (`{"error": "<code>"}`): never an echo of the request, and the
//! 401 body is the same whatever was wrong with the credentials.

use actix_web::{http::StatusCode, HttpResponse, ResponseError};
use serde::Serialize;
use switchboard_bus::BusError;
use switchboard_store::StoreError;
use utoipa::ToSchema;

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// No bearer token, a malformed header, or a token that is nobody's.
    #[error("unauthorized")]
    Unauthorized,
    /// A tenant token used on another tenant's path.
    #[error("forbidden")]
    Forbidden,
    /// The operator named a tenant this deployment does not know.
    #[error("unknown tenant")]
    UnknownTenant,
    /// No stored message with that id.
    #[error("message not found")]
    MessageNotFound,
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    /// Redis could not be reached or answered with an error.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// The broker could not be reached while sweeping parked messages.
    #[error("broker: {0}")]
    Bus(#[from] BusError),
    /// The action could not be audited: nothing is disclosed, and the request is safe to repeat.
    #[error("audit log unavailable: {0}")]
    Audit(StoreError),
}

/// The body of every error response.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// `unauthorized`, `forbidden`, `unknown_tenant`, `not_found`, `bad_request`,
    /// `unavailable` or `internal`.
    pub error: &'static str,
    /// What was wrong with the request (400 only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<&'static str>,
}

/// The refusals an authenticated operation may answer, for the OpenAPI document.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)] // only described, never built
pub(crate) enum Refusals {
    /// A malformed `wa_id`, body or query.
    #[response(status = 400)]
    BadRequest(ErrorBody),
    /// A missing, malformed or unknown bearer token (always this same body).
    #[response(status = 401)]
    Unauthorized(ErrorBody),
    /// A tenant token on another tenant's path (answered before anything is looked up).
    #[response(status = 403)]
    Forbidden(ErrorBody),
    /// An unknown tenant (operator token only), or no such message.
    #[response(status = 404)]
    NotFound(ErrorBody),
    /// Redis, the broker or the audit log unreachable: nothing was disclosed; safe to repeat.
    #[response(status = 503)]
    Unavailable(ErrorBody),
}

impl AdminError {
    fn code(&self) -> &'static str {
        match self {
            Self::Unauthorized => "unauthorized",
            Self::Forbidden => "forbidden",
            Self::UnknownTenant => "unknown_tenant",
            Self::MessageNotFound => "not_found",
            Self::BadRequest(_) => "bad_request",
            Self::Store(e) | Self::Audit(e) if e.is_transient() => "unavailable",
            Self::Bus(_) => "unavailable",
            Self::Store(_) | Self::Audit(_) => "internal",
        }
    }
}

impl ResponseError for AdminError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::Forbidden => StatusCode::FORBIDDEN,
            Self::UnknownTenant | Self::MessageNotFound => StatusCode::NOT_FOUND,
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Store(e) | Self::Audit(e) if !e.is_transient() => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Store(_) | Self::Audit(_) | Self::Bus(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        // Store and bus errors never carry stored values (see their types), so they may be logged.
        if status.is_server_error() {
            tracing::error!(error = %self, "admin request failed");
        } else {
            tracing::debug!(error = %self, "admin request refused");
        }
        let mut res = HttpResponse::build(status);
        match self {
            Self::Unauthorized => {
                res.insert_header(("WWW-Authenticate", "Bearer"));
            }
            _ if status == StatusCode::SERVICE_UNAVAILABLE => {
                res.insert_header(("Retry-After", "5"));
            }
            _ => {}
        }
        let detail = match self {
            Self::BadRequest(why) => Some(*why),
            _ => None,
        };
        res.json(ErrorBody { error: self.code(), detail })
    }
}
