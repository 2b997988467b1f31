//! The store's error type.
//!
//! Messages carry categories, codes and key *kinds* only, never values: context entries hold
//! message text, and claim results may hold ids that belong to a user.

use deadpool_redis::PoolError;
use redis::{ErrorKind, RedisError};

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The connection pool could not hand out a connection (bad configuration, pool closed, or
    /// Redis refused a new connection).
    #[error("redis pool error: {0}")]
    Pool(String),
    /// Redis answered with an error, or the connection failed mid-command.
    #[error("redis error: {0}")]
    Redis(String),
    /// Redis answered, but the reply was not what the store wrote.
    #[error("could not decode stored data: {0}")]
    Decode(String),
    /// No answer (or no connection) within the configured time.
    #[error("redis operation timed out")]
    Timeout,
}

impl StoreError {
    /// Whether retrying the same operation later may succeed (connection trouble and timeouts),
    /// as opposed to a bug or corrupt data.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Pool(_) | Self::Redis(_) | Self::Timeout)
    }

    /// A decode failure, described without the offending value.
    pub(crate) fn decode(what: &str) -> Self {
        Self::Decode(what.to_owned())
    }
}

impl From<RedisError> for StoreError {
    fn from(err: RedisError) -> Self {
        if err.is_timeout() {
            return Self::Timeout;
        }
        match err.kind() {
            // Parse/type errors quote the reply, which may hold stored text: category only.
            ErrorKind::Parse | ErrorKind::UnexpectedReturnType => {
                Self::Decode(format!("unexpected reply ({})", err.category()))
            }
            // Server errors (script errors included) describe commands, not values.
            ErrorKind::Server(_) | ErrorKind::Extension => {
                let mut msg = err.code().unwrap_or("server error").to_owned();
                if let Some(detail) = err.detail() {
                    msg.push_str(": ");
                    msg.extend(detail.chars().take(200));
                }
                Self::Redis(msg)
            }
            // I/O errors name the transport cause (e.g. connection refused), never data.
            ErrorKind::Io => Self::Redis(err.to_string()),
            _ => Self::Redis(err.category().to_owned()),
        }
    }
}

impl From<PoolError> for StoreError {
    fn from(err: PoolError) -> Self {
        match err {
            PoolError::Timeout(_) => Self::Timeout,
            PoolError::Backend(e) => match Self::from(e) {
                Self::Redis(msg) => Self::Pool(msg),
                other => other,
            },
            PoolError::Closed => Self::Pool("pool closed".to_owned()),
            PoolError::NoRuntimeSpecified => Self::Pool("no runtime specified".to_owned()),
            PoolError::PostCreateHook(_) => Self::Pool("post-create hook failed".to_owned()),
        }
    }
}

impl From<tokio::time::error::Elapsed> for StoreError {
    fn from(_: tokio::time::error::Elapsed) -> Self {
        Self::Timeout
    }
}

/// Describes a JSON decode error by category and position, never by content (serde's messages
/// can quote the value).
pub(crate) fn json_error(what: &str, err: &serde_json::Error) -> StoreError {
    let category = match err.classify() {
        serde_json::error::Category::Io => "io",
        serde_json::error::Category::Syntax => "syntax",
        serde_json::error::Category::Data => "data",
        serde_json::error::Category::Eof => "eof",
    };
    StoreError::Decode(format!("{what}: {category} error at line {} column {}", err.line(), err.column()))
}
