//! Webhook failures and their HTTP statuses (the only place where that mapping lives).

use actix_web::{http::StatusCode, HttpResponse, ResponseError};
use switchboard_bus::BusError;

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("missing X-Hub-Signature-256 header")]
    MissingSignature,
    #[error("invalid webhook signature")]
    BadSignature,
    #[error("request body larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("request body could not be read")]
    BodyRead,
    /// The broker did not confirm: Meta must retry.
    #[error("events could not be stored: {0}")]
    Unavailable(#[from] BusError),
}

impl ResponseError for WebhookError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::MissingSignature | Self::BadSignature => StatusCode::UNAUTHORIZED,
            Self::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::BodyRead => StatusCode::BAD_REQUEST,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut res = HttpResponse::build(self.status_code());
        if matches!(self, Self::Unavailable(_)) {
            res.insert_header(("Retry-After", "5"));
        }
        // A short, fixed text: never echo the request back.
        res.content_type("text/plain; charset=utf-8").body(match self {
            Self::MissingSignature | Self::BadSignature => "invalid signature",
            Self::TooLarge { .. } => "payload too large",
            Self::BodyRead => "bad request",
            Self::Unavailable(_) => "temporarily unavailable",
        })
    }
}
