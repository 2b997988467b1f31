//! Leases: exclusive, renewed claims on a unit of work (an inbound message, a reply part).

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use crate::{ClaimKey, ClaimOutcome, Store, StoreError};

/// The result of trying to take a claim.
pub enum Acquired {
    /// The work is ours; hold the lease while doing it.
    Lease(Lease),
    /// Somebody finished this work already; the value is what they recorded.
    Done(String),
    /// Somebody else is still doing it after we waited `wait_max`.
    Busy,
}

/// A held claim, renewed in the background every third of its duration until completed,
/// released or dropped. If a renewal finds the claim taken over (the lease expired, e.g. after a
/// long pause of this process), [`Lease::is_lost`] turns true: the holder must then not publish
/// or send anything, because another replica owns the work now.
pub struct Lease {
    store: Store,
    key: ClaimKey,
    token: String,
    lost: Arc<AtomicBool>,
    renewer: tokio::task::JoinHandle<()>,
}

impl Lease {
    /// Takes `key`, waiting up to `wait_max` while another holder's lease is live (a duplicate
    /// delivery being processed elsewhere, or a crashed holder whose lease has not expired yet).
    pub async fn acquire(
        store: &Store,
        key: ClaimKey,
        lease: Duration,
        wait_max: Duration,
    ) -> Result<Acquired, StoreError> {
        let token = new_token();
        let deadline = tokio::time::Instant::now() + wait_max;
        loop {
            match store.claim(&key, &token, lease).await? {
                ClaimOutcome::Acquired => return Ok(Acquired::Lease(Self::start(store.clone(), key, token, lease))),
                ClaimOutcome::Done(value) => return Ok(Acquired::Done(value)),
                ClaimOutcome::Busy { ttl_ms } => {
                    let now = tokio::time::Instant::now();
                    if now >= deadline {
                        return Ok(Acquired::Busy);
                    }
                    let pause = Duration::from_millis(ttl_ms.clamp(20, 250) as u64).min(deadline - now);
                    tokio::time::sleep(pause).await;
                }
            }
        }
    }

    fn start(store: Store, key: ClaimKey, token: String, lease: Duration) -> Self {
        let lost = Arc::new(AtomicBool::new(false));
        let renewer = {
            let (store, key, token, lost) = (store.clone(), key.clone(), token.clone(), lost.clone());
            tokio::spawn(async move {
                let every = (lease / 3).max(Duration::from_millis(10));
                loop {
                    tokio::time::sleep(every).await;
                    match store.renew(&key, &token, lease).await {
                        Ok(true) => {}
                        Ok(false) => {
                            tracing::warn!(claim = key.id(), "lease lost to another holder");
                            lost.store(true, Ordering::SeqCst);
                            return;
                        }
                        Err(error) => {
                            tracing::warn!(claim = key.id(), %error, "lease renewal failed; retrying")
                        }
                    }
                }
            })
        };
        Self { store, key, token, lost, renewer }
    }

    /// The holder's token: the fencing token checked by fenced writes.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// True once another holder has taken the claim over.
    pub fn is_lost(&self) -> bool {
        self.lost.load(Ordering::SeqCst)
    }

    /// Records the work as done with `result`, kept for `ttl`. Returns false if the lease had
    /// been lost meanwhile (the result is recorded all the same: it is a fact).
    pub async fn complete(self, result: &str, ttl: Duration) -> Result<bool, StoreError> {
        self.renewer.abort();
        self.store.complete(&self.key, &self.token, result, ttl).await
    }

    /// Gives the work up without completing it, so another delivery can take it at once.
    pub async fn release(self) -> Result<bool, StoreError> {
        self.renewer.abort();
        self.store.release(&self.key, &self.token).await
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.renewer.abort();
    }
}

fn new_token() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}
