use std::time::Duration;

/// What can go wrong on the bus. Every variant means "not durably handed over": callers must
/// not acknowledge the work upstream (the ingress answers 503, a worker leaves its delivery
/// unacked).
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("broker unreachable: {0}")]
    Connect(String),
    #[error("broker operation failed: {0}")]
    Amqp(String),
    #[error("broker refused the message (nack)")]
    Nacked,
    #[error("message unroutable: no queue bound for routing key {0}")]
    Unroutable(String),
    #[error("no confirm from the broker within {0:?}")]
    Timeout(Duration),
    #[error("message could not be encoded: {0}")]
    Encode(String),
    #[error("{0} is being walked by another listing, redrive or sweep; try again")]
    Busy(String),
}

impl From<lapin::Error> for BusError {
    fn from(e: lapin::Error) -> Self {
        BusError::Amqp(e.to_string())
    }
}
