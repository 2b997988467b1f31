//! One test's world: a namespace of its own on the real broker and Redis, fakes for the SaaS,
//! and the roles started in-process.

use std::{net::TcpListener, time::Duration};

use switchboard_bus::{Bus, BusOptions};
use switchboard_config::{Settings, TenantDirectory, Tenants};
use switchboard_llm::LlmClient;
use switchboard_store::Store;
use switchboard_whatsapp::GraphClient;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::{FakeGraph, FakeLlm};

/// Bus options matching `settings` (same retry ladder as the roles).
pub fn bus_options(settings: &Settings, name: &str) -> BusOptions {
    BusOptions {
        operation_timeout: settings.publish_timeout(),
        connection_name: format!("test-{name}"),
        retry_steps_ms: switchboard_bus::topology::ladder(settings.send_backoff_base_ms, settings.send_backoff_max_ms),
    }
}

/// The fixtures' business phone number id.
pub const PHONE_NUMBER_ID: &str = "200000000000002";
/// The fixtures' app secret (their signatures are made with it).
pub const APP_SECRET: &str = "test_app_secret";
pub const VERIFY_TOKEN: &str = "test-verify-token";
pub const ACCESS_TOKEN: &str = "test-access-token";

/// A running role. Dropping it does not stop it: call [`RoleHandle::stop`] or
/// [`RoleHandle::kill`].
pub struct RoleHandle {
    cancel: CancellationToken,
    task: JoinHandle<()>,
    bus: Bus,
}

impl RoleHandle {
    /// Graceful stop: the role drains and returns.
    pub async fn stop(self) {
        self.cancel.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(20), self.task).await;
        self.bus.close().await;
    }

    /// A crash: the task is aborted mid-flight and its broker connection dropped, so its unacked
    /// deliveries go back to the queue, as when a process dies.
    pub async fn kill(self) {
        self.task.abort();
        let _ = self.task.await;
        self.bus.close().await;
    }
}

pub struct TestEnv {
    pub settings: Settings,
    pub tenants: TenantDirectory,
    /// A bus for the test's own inspection (queue depths, DLQ reads).
    pub bus: Bus,
    pub store: Store,
    pub llm: FakeLlm,
    pub graph: FakeGraph,
    roles: Vec<(CancellationToken, JoinHandle<()>, Bus)>,
    ingress_url: Option<String>,
    /// Roles started from now on reach the broker here instead (e.g. through a [`crate::TcpProxy`]).
    pub role_amqp_url: Option<String>,
    /// Roles started from now on use this store instead (e.g. one connected through a proxy).
    pub role_store: Option<Store>,
}

impl TestEnv {
    pub async fn new() -> Self {
        Self::with(|_| {}).await
    }

    /// A fresh namespace, fakes started, settings tuned for tests (short backoffs and leases),
    /// then `adjust` applied.
    pub async fn with(adjust: impl FnOnce(&mut Settings)) -> Self {
        let llm = FakeLlm::start().await;
        let graph = FakeGraph::start().await;
        let mut s = Settings::load_from(std::iter::empty()).expect("defaults load");
        s.namespace = format!("sbt-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        if let Ok(url) = std::env::var("SWITCHBOARD_AMQP_URL") {
            s.amqp_url = switchboard_config::Secret::new(url);
        }
        if let Ok(url) = std::env::var("SWITCHBOARD_REDIS_URL") {
            s.redis_url = switchboard_config::Secret::new(url);
        }
        s.phone_number_id = Some(PHONE_NUMBER_ID.into());
        s.app_secret = Some(switchboard_config::Secret::new(APP_SECRET));
        s.verify_token = Some(switchboard_config::Secret::new(VERIFY_TOKEN));
        s.access_token = Some(switchboard_config::Secret::new(ACCESS_TOKEN));
        s.system_prompt = "You are the test assistant.".into();
        s.llm_model = "test-model".into();
        s.llm_base_url = llm.base_url();
        s.graph_api_base = graph.base_url();
        s.http_addr = "127.0.0.1:0".parse().expect("addr");
        s.http_workers = 1;
        s.llm_timeout_ms = 2_000;
        s.llm_backoff_base_ms = 10;
        s.graph_timeout_ms = 2_000;
        s.claim_lease_ms = 1_500;
        s.shutdown_timeout_ms = 5_000;
        s.publish_timeout_ms = 3_000;
        s.worker_concurrency = 16;
        s.coalesce_window_ms = 100;
        // A short retry ladder (100 ms … 800 ms) and limits that do not slow tests down.
        s.send_backoff_base_ms = 100;
        s.send_backoff_max_ms = 800;
        s.rate_per_number = 1_000.0;
        s.rate_burst = 100;
        s.pair_interval_ms = 10;
        s.pair_burst = 100;
        s.mark_read = false;
        s.turn_max_delay_ms = 3_000;
        s.admin_addr = "127.0.0.1:0".parse().expect("addr");
        s.metrics_addr = "127.0.0.1:0".parse().expect("addr");
        s.dispatcher_concurrency = 16;
        adjust(&mut s);
        let tenants = TenantDirectory::new(Tenants::from_settings(&s));
        let bus =
            Bus::connect(s.amqp_url.expose(), &s.namespace, bus_options(&s, "test")).await.expect("RabbitMQ reachable");
        let store = Store::connect(s.redis_url.expose(), &s.namespace, 8).await.expect("Redis reachable");
        Self {
            settings: s,
            tenants,
            bus,
            store,
            llm,
            graph,
            roles: Vec::new(),
            ingress_url: None,
            role_amqp_url: None,
            role_store: None,
        }
    }

    /// The bus a role gets: through [`TestEnv::role_amqp_url`] when set (e.g. a fault proxy).
    pub fn role_bus(&self, name: &str) -> Bus {
        let url = self.role_amqp_url.clone().unwrap_or_else(|| self.settings.amqp_url.expose().to_string());
        Bus::new_lazy(&url, &self.settings.namespace, bus_options(&self.settings, name))
    }

    /// The store a role gets: [`TestEnv::role_store`] when set (e.g. through a fault proxy).
    fn role_store(&self) -> Store {
        self.role_store.clone().unwrap_or_else(|| self.store.clone())
    }

    /// Starts the ingress on a free port (bus through `amqp_url` when given, e.g. a proxy) and
    /// returns its base URL.
    pub async fn start_ingress_with(&mut self, amqp_url: Option<String>) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let bus = match amqp_url {
            Some(u) => Bus::new_lazy(&u, &self.settings.namespace, bus_options(&self.settings, "ingress")),
            None => self.role_bus("ingress"),
        };
        let cancel = CancellationToken::new();
        let task = {
            let (s, bus, store, tenants, cancel) =
                (self.settings.clone(), bus.clone(), self.role_store(), self.tenants.clone(), cancel.clone());
            tokio::spawn(async move {
                switchboard_ingress::run(&s, listener, bus, store, tenants, cancel).await.expect("ingress runs");
            })
        };
        self.roles.push((cancel, task, bus));
        self.ingress_url = Some(url.clone());
        url
    }

    pub async fn start_ingress(&mut self) -> String {
        self.start_ingress_with(None).await
    }

    /// Starts a worker with its own broker connection.
    pub fn start_worker(&self) -> RoleHandle {
        let bus = self.role_bus("worker");
        let cancel = CancellationToken::new();
        let llm = LlmClient::new(&self.settings.llm_base_url, None, self.settings.llm_timeout()).expect("llm client");
        let task = {
            let (s, bus, store, tenants, cancel) =
                (self.settings.clone(), bus.clone(), self.role_store(), self.tenants.clone(), cancel.clone());
            tokio::spawn(async move { switchboard_worker::run(&s, bus, store, llm, tenants, cancel).await })
        };
        RoleHandle { cancel, task, bus }
    }

    /// Starts a dispatcher with its own broker connection.
    pub fn start_dispatcher(&self) -> RoleHandle {
        let bus = self.role_bus("dispatcher");
        let cancel = CancellationToken::new();
        let graph =
            GraphClient::new(&self.settings.graph_api_base, Duration::from_millis(self.settings.graph_timeout_ms))
                .expect("graph client");
        let task = {
            let (s, bus, store, tenants, cancel) =
                (self.settings.clone(), bus.clone(), self.role_store(), self.tenants.clone(), cancel.clone());
            tokio::spawn(async move { switchboard_dispatcher::run(&s, bus, store, graph, tenants, cancel).await })
        };
        RoleHandle { cancel, task, bus }
    }

    /// Ingress, one worker and one dispatcher, stopped together at teardown.
    pub async fn start_all(&mut self) -> String {
        let url = self.start_ingress().await;
        for role in [self.start_worker(), self.start_dispatcher()] {
            self.roles.push((role.cancel, role.task, role.bus));
        }
        url
    }

    /// POSTs a webhook body to the ingress, signed with the app secret unless `signature` says
    /// otherwise (`Some(None)` = no header).
    pub async fn post_webhook(&self, body: Vec<u8>, signature: Option<Option<String>>) -> reqwest::Response {
        let url = format!("{}/webhooks/whatsapp", self.ingress_url.as_ref().expect("ingress started"));
        let sig = signature.unwrap_or_else(|| Some(crate::webhook::sign(APP_SECRET, &body)));
        let mut req = reqwest::Client::new().post(url).header("content-type", "application/json").body(body);
        if let Some(sig) = sig {
            req = req.header("X-Hub-Signature-256", sig);
        }
        req.send().await.expect("ingress reachable")
    }

    /// The settings as `SWITCHBOARD_*` variables, for running the real binary.
    pub fn env_vars(&self) -> Vec<(String, String)> {
        let s = &self.settings;
        let mut vars = vec![
            ("AMQP_URL", s.amqp_url.expose().to_string()),
            ("REDIS_URL", s.redis_url.expose().to_string()),
            ("NAMESPACE", s.namespace.clone()),
            ("HTTP_ADDR", s.http_addr.to_string()),
            ("HTTP_WORKERS", s.http_workers.to_string()),
            ("PHONE_NUMBER_ID", PHONE_NUMBER_ID.to_string()),
            ("APP_SECRET", APP_SECRET.to_string()),
            ("VERIFY_TOKEN", VERIFY_TOKEN.to_string()),
            ("ACCESS_TOKEN", ACCESS_TOKEN.to_string()),
            ("SYSTEM_PROMPT", s.system_prompt.clone()),
            ("LLM_BASE_URL", s.llm_base_url.clone()),
            ("LLM_MODEL", s.llm_model.clone()),
            ("LLM_TIMEOUT_MS", s.llm_timeout_ms.to_string()),
            ("GRAPH_API_BASE", s.graph_api_base.clone()),
            ("CLAIM_LEASE_MS", s.claim_lease_ms.to_string()),
            ("COALESCE_WINDOW_MS", s.coalesce_window_ms.to_string()),
            ("TURN_MAX_DELAY_MS", s.turn_max_delay_ms.to_string()),
            ("SEND_BACKOFF_BASE_MS", s.send_backoff_base_ms.to_string()),
            ("SEND_BACKOFF_MAX_MS", s.send_backoff_max_ms.to_string()),
            ("RATE_PER_NUMBER", s.rate_per_number.to_string()),
            ("RATE_BURST", s.rate_burst.to_string()),
            ("PAIR_INTERVAL_MS", s.pair_interval_ms.to_string()),
            ("PAIR_BURST", s.pair_burst.to_string()),
            ("MARK_READ", s.mark_read.to_string()),
            ("ADMIN_ADDR", s.admin_addr.to_string()),
            ("METRICS_ADDR", s.metrics_addr.to_string()),
            ("SHUTDOWN_TIMEOUT_MS", s.shutdown_timeout_ms.to_string()),
        ];
        vars.retain(|(_, v)| !v.is_empty());
        vars.into_iter().map(|(k, v)| (format!("SWITCHBOARD_{k}"), v)).collect()
    }

    pub fn ingress_url(&self) -> &str {
        self.ingress_url.as_deref().expect("ingress started")
    }

    /// Stops every role, then deletes the namespace's queues, exchanges and Redis keys.
    pub async fn teardown(mut self) {
        for (cancel, _, _) in &self.roles {
            cancel.cancel();
        }
        for (_, task, bus) in self.roles.drain(..) {
            let _ = tokio::time::timeout(Duration::from_secs(20), task).await;
            bus.close().await;
        }
        let _ = self.bus.delete_topology().await;
        self.bus.close().await;
        delete_redis_namespace(self.settings.redis_url.expose(), &self.settings.namespace).await;
    }
}

/// Deletes every key of `namespace` (SCAN + DEL; never FLUSHDB on the shared Redis).
pub async fn delete_redis_namespace(url: &str, namespace: &str) {
    let Ok(client) = redis::Client::open(url) else {
        return;
    };
    let Ok(mut conn) = client.get_multiplexed_async_connection().await else {
        return;
    };
    let mut cursor: u64 = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = match redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{namespace}:*"))
            .arg("COUNT")
            .arg(500)
            .query_async(&mut conn)
            .await
        {
            Ok(r) => r,
            Err(_) => return,
        };
        if !keys.is_empty() {
            let _: Result<(), _> = redis::cmd("DEL").arg(&keys).query_async(&mut conn).await;
        }
        if next == 0 {
            return;
        }
        cursor = next;
    }
}
