//! Retrying in place through an outage of Redis (or the broker).
//!
//! A consumer that gives a delivery back to the queue on every Redis error burns through the
//! quorum queue's delivery limit and, in a long outage, dead-letters good messages. Instead it
//! holds the delivery and retries the operation here, with a capped exponential pause, until it
//! succeeds, the error is not worth retrying, or the process is stopping.

use std::{fmt::Display, future::Future, time::Duration};

const FIRST_PAUSE: Duration = Duration::from_millis(100);
const LONGEST_PAUSE: Duration = Duration::from_secs(5);

/// Runs `op` until it succeeds, fails with an error `retryable` refuses, or `stopping()` is true
/// after a failure; returns the last result. `what` names the operation in the warning logged
/// before each pause.
pub async fn persist<T, E, F, Fut>(
    what: &str,
    retryable: impl Fn(&E) -> bool,
    stopping: impl Fn() -> bool,
    mut op: F,
) -> Result<T, E>
where
    E: Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut pause = FIRST_PAUSE;
    loop {
        match op().await {
            Err(error) if retryable(&error) && !stopping() => {
                tracing::warn!(%error, retry_in = ?pause, "{what} failed; retrying");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(LONGEST_PAUSE);
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn retries_until_success_and_stops_on_refusal_or_shutdown() {
        let calls = Cell::new(0);
        let r: Result<u32, String> = persist(
            "op",
            |_| true,
            || false,
            || {
                calls.set(calls.get() + 1);
                let n = calls.get();
                async move {
                    if n < 4 {
                        Err(format!("fail {n}"))
                    } else {
                        Ok(n)
                    }
                }
            },
        )
        .await;
        assert_eq!(r, Ok(4));

        let r: Result<(), String> =
            persist("op", |e: &String| e != "fatal", || false, || async { Err("fatal".into()) }).await;
        assert_eq!(r, Err("fatal".to_string()));

        let r: Result<(), String> = persist("op", |_| true, || true, || async { Err("down".into()) }).await;
        assert_eq!(r, Err("down".to_string()), "no retry once stopping");
    }
}
