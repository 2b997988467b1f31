//! The worker role: answers each conversation like one attentive person — one turn at a time,
//! in order, never twice — with any number of worker replicas.
//!
//! * [`receive`]: every inbound delivery is queued in its conversation's pending set in Redis
//!   (idempotent per wamid) and **held unacknowledged** until its message is answered;
//! * [`runner`]: whoever holds the conversation's lease (a renewed Redis claim whose token is the
//!   fencing token) runs its turns: wait for the coalescing window, take every pending message
//!   in order, call the LLM once, regenerate if newer messages arrived meanwhile (up to the
//!   turn's hard cap), commit the turn fenced by the lease, publish the reply with a confirm;
//! * [`held`]: the settler acknowledges held deliveries once their message is answered and takes
//!   over conversations whose lease holder died.
//!
//! A crash anywhere loses nothing: unacknowledged deliveries return to the queue, the lease
//! expires (`SWITCHBOARD_CLAIM_LEASE_MS`), another replica's settler or redelivery takes the
//! conversation over, recovers a committed-but-unpublished turn under the same reply id, and
//! answers what is still pending. See `docs/architecture.md` for the failure modes.

mod held;
mod llm;
mod receive;
mod runner;

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
    time::Duration,
};

use switchboard_bus::{consume, Bus, ConsumerConfig};
use switchboard_config::{Settings, TenantDirectory};
use switchboard_llm::LlmClient;
use switchboard_store::Store;
use tokio::{sync::Semaphore, task::JoinSet};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

/// A conversation: (tenant, pseudonymous conversation key).
pub(crate) type ConvKey = (String, String);

/// What a worker needs, built once by the binary (or a test).
#[derive(Clone)]
pub struct Worker {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub bus: Bus,
    pub store: Store,
    pub llm: LlmClient,
    /// Clients of tenants with an LLM endpoint of their own, by tenant (built on first use,
    /// rebuilt when a reload changes the endpoint).
    pub tenant_llms: Mutex<std::collections::HashMap<String, (String, LlmClient)>>,
    pub tenants: TenantDirectory,
    pub settings: Settings,
    pub shutdown: CancellationToken,
    /// Deliveries waiting for their message to be answered.
    pub held: held::Held,
    /// Conversations with a runner task in this process.
    pub running: Mutex<HashSet<ConvKey>>,
    /// Bounds the turns generating at once (fair: FIFO); coalescing waits do not take one.
    pub turn_permits: Arc<Semaphore>,
    /// Tracks runner tasks, so the drain can wait for them.
    pub runners: TaskTracker,
    /// Owns every task the worker spawns, so that dropping [`run`]'s future (an aborted task,
    /// i.e. a simulated crash in tests) takes them all down, like a process exit would.
    pub tasks: Arc<Mutex<JoinSet<()>>>,
}

impl Inner {
    pub(crate) fn spawn(&self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        let mut tasks = self.tasks.lock().expect("tasks lock");
        while tasks.try_join_next().is_some() {}
        tasks.spawn(self.runners.track_future(task));
    }
}

/// Aborts every task of the worker when dropped.
struct AbortAll(Arc<Mutex<JoinSet<()>>>);

impl Drop for AbortAll {
    fn drop(&mut self) {
        if let Ok(mut tasks) = self.0.lock() {
            tasks.abort_all();
        }
    }
}

/// Consumes `{ns}.inbound` until `shutdown` is cancelled; then stops taking messages, lets the
/// running turns finish (up to `SWITCHBOARD_SHUTDOWN_TIMEOUT_MS`), acknowledges what they
/// answered, and leaves the rest to be redelivered to another replica.
pub async fn run(
    settings: &Settings,
    bus: Bus,
    store: Store,
    llm: LlmClient,
    tenants: TenantDirectory,
    shutdown: CancellationToken,
) {
    let worker = Worker {
        inner: Arc::new(Inner {
            bus: bus.clone(),
            store,
            llm,
            tenant_llms: Mutex::new(std::collections::HashMap::new()),
            tenants,
            settings: settings.clone(),
            shutdown: shutdown.clone(),
            held: held::Held::default(),
            running: Mutex::new(HashSet::new()),
            turn_permits: Arc::new(Semaphore::new(settings.worker_concurrency)),
            runners: TaskTracker::new(),
            tasks: Arc::new(Mutex::new(JoinSet::new())),
        }),
    };
    let _abort_all = AbortAll(worker.inner.tasks.clone());
    let config = ConsumerConfig {
        queue: bus.topology().inbound.clone(),
        prefetch: settings.worker_prefetch.clamp(1, u16::MAX as usize) as u16,
        // Receiving is quick (one Redis script); the turns run in their own tasks.
        concurrency: 32,
        drain_timeout: settings.shutdown_timeout(),
        tag: "worker".into(),
    };
    worker.inner.tasks.lock().expect("tasks lock").spawn(worker.clone().settle_loop());
    let drain = {
        let worker = worker.clone();
        async move {
            worker.inner.runners.close();
            worker.inner.runners.wait().await;
            worker.settle_all().await;
        }
    };
    let handler = {
        let worker = worker.clone();
        move |delivery| {
            let worker = worker.clone();
            async move { worker.receive(delivery).await }
        }
    };
    consume::run_with_drain(bus, config, shutdown, handler, drain).await;
}

impl Inner {
    /// The LLM client for `tenant`: its own endpoint when it has one, else the default.
    pub(crate) fn llm_for(&self, tenant: &switchboard_config::Tenant) -> LlmClient {
        let Some(url) = &tenant.llm_base_url else { return self.llm.clone() };
        let mut cache = self.tenant_llms.lock().expect("llm cache lock");
        if let Some((cached_url, client)) = cache.get(&tenant.id) {
            if cached_url == url {
                return client.clone();
            }
        }
        let key = tenant.llm_api_key.as_ref().map(|k| k.expose()).filter(|k| !k.is_empty());
        match LlmClient::new(url, key, self.settings.llm_timeout()) {
            Ok(client) => {
                cache.insert(tenant.id.clone(), (url.clone(), client.clone()));
                client
            }
            Err(error) => {
                tracing::error!(tenant = %tenant.id, %error, "tenant LLM endpoint unusable; using the default");
                self.llm.clone()
            }
        }
    }

    /// The tenant's retention periods (the settings' defaults for an unknown tenant).
    pub(crate) fn retention(&self, tenant: &str) -> switchboard_config::Retention {
        self.tenants
            .current()
            .get(tenant)
            .map(|t| t.retention)
            .unwrap_or_else(|| switchboard_config::Retention::from_settings(&self.settings))
    }
}

/// How often held deliveries are checked (acked when answered, taken over when orphaned).
pub(crate) const SETTLE_EVERY: Duration = Duration::from_millis(100);
