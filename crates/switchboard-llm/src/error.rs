//! The LLM client's error type, classified for retry decisions.

use std::time::Duration;

/// Why a completion failed. Messages hold status codes and error categories only: never
/// prompt or response text, never the API key.
#[derive(Debug, thiserror::Error)]
pub enum LlmError {
    /// No complete answer within the client's timeout.
    #[error("LLM request timed out")]
    Timeout,
    /// The request could not be sent or the response could not be read.
    #[error("LLM network error: {0}")]
    Network(String),
    /// The API answered with a non-success HTTP status.
    #[error("LLM API returned HTTP {status}")]
    Status {
        status: u16,
        /// The server's `Retry-After`, in seconds, when it sent one.
        retry_after: Option<Duration>,
    },
    /// The response body was not the expected JSON.
    #[error("LLM response could not be decoded: {0}")]
    Decode(String),
    /// The response held no usable text (no choice, no content, or only whitespace).
    #[error("LLM returned an empty completion")]
    Empty,
    /// The client was configured wrongly (bad base URL, API key not a valid header value, …).
    #[error("invalid LLM client configuration: {0}")]
    Config(String),
}

impl LlmError {
    /// Whether the same request may succeed later: timeouts, network errors, and HTTP 408,
    /// 409, 429 and 5xx. Other 4xx, undecodable or empty answers and configuration errors are
    /// permanent.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Timeout | Self::Network(_) => true,
            Self::Status { status, .. } => matches!(status, 408 | 409 | 429) || (500..=599).contains(status),
            Self::Decode(_) | Self::Empty | Self::Config(_) => false,
        }
    }

    /// The delay the server asked for (`Retry-After`), if any. Callers should clamp it.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// A short, text-free label for logs and dead-letter metadata (`timeout`, `http 503`, …).
    pub fn label(&self) -> String {
        match self {
            Self::Timeout => "timeout".to_owned(),
            Self::Network(_) => "network".to_owned(),
            Self::Status { status, .. } => format!("http {status}"),
            Self::Decode(_) => "decode".to_owned(),
            Self::Empty => "empty".to_owned(),
            Self::Config(_) => "config".to_owned(),
        }
    }

    /// Maps a transport error without its URL (which could carry credentials) or body.
    pub(crate) fn from_reqwest(err: reqwest::Error) -> Self {
        if err.is_timeout() {
            return Self::Timeout;
        }
        let kind = if err.is_connect() {
            "connect"
        } else if err.is_body() || err.is_decode() {
            "body"
        } else if err.is_redirect() {
            "redirect"
        } else if err.is_request() {
            "request"
        } else {
            "transport"
        };
        // The source chain names transport causes (connection refused, TLS, DNS); it never
        // contains request or response bodies.
        let mut msg = kind.to_owned();
        let mut source = std::error::Error::source(&err);
        while let Some(cause) = source {
            msg.push_str(": ");
            msg.push_str(&cause.to_string());
            source = cause.source();
        }
        Self::Network(msg)
    }

    /// A JSON error by category and position; serde's own message can quote the input.
    pub(crate) fn from_json(err: &serde_json::Error) -> Self {
        let category = match err.classify() {
            serde_json::error::Category::Io => "io",
            serde_json::error::Category::Syntax => "syntax",
            serde_json::error::Category::Data => "data",
            serde_json::error::Category::Eof => "eof",
        };
        Self::Decode(format!("{category} error at line {} column {}", err.line(), err.column()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(status: u16) -> LlmError {
        LlmError::Status { status, retry_after: None }
    }

    #[test]
    fn classification() {
        for s in [408, 409, 429, 500, 502, 503, 504, 599] {
            assert!(status(s).is_retryable(), "{s}");
        }
        for s in [400, 401, 403, 404, 413, 422, 300] {
            assert!(!status(s).is_retryable(), "{s}");
        }
        assert!(LlmError::Timeout.is_retryable());
        assert!(LlmError::Network("x".into()).is_retryable());
        assert!(!LlmError::Decode("x".into()).is_retryable());
        assert!(!LlmError::Empty.is_retryable());
        assert!(!LlmError::Config("x".into()).is_retryable());
        assert_eq!(status(503).label(), "http 503");
    }

    #[test]
    fn json_errors_do_not_quote_input() {
        let err = serde_json::from_str::<u32>(r#""secret text""#).unwrap_err();
        let msg = LlmError::from_json(&err).to_string();
        assert!(!msg.contains("secret"), "{msg}");
        assert!(msg.contains("data error"), "{msg}");
    }
}
