//! The process's one AMQP connection, re-established on demand.

use std::{sync::Arc, time::Duration};

use lapin::{options::ConfirmSelectOptions, Channel, Connection, ConnectionProperties};
use tokio::sync::Mutex;

use crate::{BusError, Topology};

/// Tuning of the bus.
#[derive(Debug, Clone)]
pub struct BusOptions {
    /// Upper bound on connecting, and on waiting for one publisher confirm.
    pub operation_timeout: Duration,
    /// Shown in the broker's connection list.
    pub connection_name: String,
    /// Delays of the retry ladder, ms (see [`crate::topology::ladder`]).
    pub retry_steps_ms: Vec<u64>,
}

impl Default for BusOptions {
    fn default() -> Self {
        Self {
            operation_timeout: Duration::from_secs(5),
            connection_name: "switchboard".into(),
            retry_steps_ms: crate::topology::ladder(1_000, 300_000),
        }
    }
}

struct Live {
    connection: Connection,
    /// The shared publishing channel, in confirm mode.
    publisher: Channel,
    generation: u64,
}

/// A handle on the broker. Cheap to clone; every clone shares one connection.
///
/// Nothing reconnects in the background: the next operation after a failure reconnects (and
/// redeclares the topology), and reports an error if it cannot. A broker that is down is
/// therefore seen at once by whoever needs it (the ingress answers 503) and recovered from as
/// soon as it is back.
#[derive(Clone)]
pub struct Bus {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    url: String,
    pub(crate) topology: Topology,
    pub(crate) options: BusOptions,
    live: Mutex<Option<Live>>,
    generation: std::sync::atomic::AtomicU64,
    /// The runtime the bus was created on. lapin drives a connection's I/O on the runtime that
    /// opened it, so connections are always opened there, never on a short-lived runtime that
    /// happens to call first (e.g. an actix-web worker thread).
    runtime: Option<tokio::runtime::Handle>,
}

impl Bus {
    /// Connects and declares the topology. Fails if the broker cannot be reached now.
    pub async fn connect(url: &str, namespace: &str, options: BusOptions) -> Result<Self, BusError> {
        let bus = Self::new_lazy(url, namespace, options);
        bus.publisher().await?;
        Ok(bus)
    }

    /// A bus that connects on first use (start-up does not fail while the broker is down).
    pub fn new_lazy(url: &str, namespace: &str, options: BusOptions) -> Self {
        Self {
            inner: Arc::new(Inner {
                url: url.to_string(),
                topology: Topology::with_retry_steps(namespace, &options.retry_steps_ms),
                options,
                live: Mutex::new(None),
                generation: Default::default(),
                runtime: tokio::runtime::Handle::try_current().ok(),
            }),
        }
    }

    pub fn topology(&self) -> &Topology {
        &self.inner.topology
    }

    pub(crate) fn timeout(&self) -> Duration {
        self.inner.options.operation_timeout
    }

    /// True when connected, or when a connection can be made now (readiness probes).
    pub async fn is_ready(&self) -> bool {
        self.publisher().await.is_ok()
    }

    /// The shared confirm-mode publishing channel, connecting first if needed.
    pub(crate) async fn publisher(&self) -> Result<(Channel, u64), BusError> {
        let mut live = self.inner.live.lock().await;
        if let Some(l) = live.as_ref() {
            if l.connection.status().connected() && l.publisher.status().connected() {
                return Ok((l.publisher.clone(), l.generation));
            }
        }
        if let Some(old) = live.take() {
            // Best effort: the old connection is broken already, closing only frees its thread.
            let _ =
                tokio::time::timeout(Duration::from_millis(200), old.connection.close(200, "reconnect".into())).await;
        }
        let fresh = self.open().await?;
        let out = (fresh.publisher.clone(), fresh.generation);
        *live = Some(fresh);
        Ok(out)
    }

    /// A new channel on the shared connection (consumers take one each).
    pub async fn channel(&self) -> Result<Channel, BusError> {
        let _ = self.publisher().await?;
        let live = self.inner.live.lock().await;
        let l = live.as_ref().ok_or_else(|| BusError::Connect("connection lost".into()))?;
        let ch = tokio::time::timeout(self.timeout(), l.connection.create_channel())
            .await
            .map_err(|_| BusError::Timeout(self.timeout()))??;
        Ok(ch)
    }

    /// Forgets the connection of `generation` after an error on it, so the next operation
    /// reconnects instead of reusing a half-dead channel.
    pub(crate) async fn invalidate(&self, generation: u64) {
        let mut live = self.inner.live.lock().await;
        if live.as_ref().is_some_and(|l| l.generation == generation) {
            if let Some(old) = live.take() {
                let _ =
                    tokio::time::timeout(Duration::from_millis(200), old.connection.close(200, "reset".into())).await;
            }
        }
    }

    /// Closes the connection (graceful shutdown).
    pub async fn close(&self) {
        if let Some(l) = self.inner.live.lock().await.take() {
            let _ = tokio::time::timeout(self.timeout(), l.connection.close(200, "shutdown".into())).await;
        }
    }

    async fn open(&self) -> Result<Live, BusError> {
        let timeout = self.timeout();
        let url = self.inner.url.clone();
        let topology = self.inner.topology.clone();
        let name = self.inner.options.connection_name.clone();
        let connect = async move {
            let props = ConnectionProperties::default().with_connection_name(name.as_str().into());
            let connection = tokio::time::timeout(timeout, Connection::connect(&url, props))
                .await
                .map_err(|_| BusError::Connect(format!("no answer within {timeout:?}")))?
                .map_err(|e| BusError::Connect(e.to_string()))?;
            let setup = async {
                let publisher = connection.create_channel().await?;
                topology.declare(&publisher).await?;
                publisher.confirm_select(ConfirmSelectOptions::default()).await?;
                Ok::<_, BusError>(publisher)
            };
            let publisher = tokio::time::timeout(timeout, setup).await.map_err(|_| BusError::Timeout(timeout))??;
            Ok::<_, BusError>((connection, publisher))
        };
        let (connection, publisher) = match &self.inner.runtime {
            Some(rt) => {
                rt.spawn(connect).await.map_err(|e| BusError::Connect(format!("connect task failed: {e}")))??
            }
            None => connect.await?,
        };
        let generation = self.inner.generation.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        tracing::info!(generation, "connected to the broker; topology declared");
        Ok(Live { connection, publisher, generation })
    }
}
