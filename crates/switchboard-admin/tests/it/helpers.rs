//! An admin API server with two tenants (`a` and `b`), in a fresh namespace, cleaned up on drop.

use std::{
    io::Write,
    sync::{Arc, Mutex, OnceLock},
};

use serde_json::json;
use switchboard_bus::{topology::routing, Bus, BusOptions, Outgoing};
use switchboard_config::{sha256_hex, Settings, Tenant, TenantDirectory, Tenants};
use switchboard_domain::{ChatEntry, ChatRole, InboundEvent, Pseudonymizer};
use switchboard_store::Store;
use tokio_util::sync::CancellationToken;

pub const OPERATOR: &str = "operator-token-1";
pub const TOKEN_A: &str = "tenant-a-token";
pub const TOKEN_B: &str = "tenant-b-token";
pub const NUMBER: &str = "15551234567";
pub const PSEUDONYM_KEY: &str = "admin-test-pseudonym-key";

pub struct TestAdmin {
    pub base: String,
    pub store: Store,
    pub bus: Bus,
    pub http: reqwest::Client,
    pub ns: String,
    shutdown: CancellationToken,
}

impl TestAdmin {
    pub async fn start() -> Self {
        capture_logs();
        let ns = format!("sbadmin-{}", uuid::Uuid::new_v4().simple());
        let redis = std::env::var("SWITCHBOARD_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/0".into());
        let amqp =
            std::env::var("SWITCHBOARD_AMQP_URL").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into());
        let settings = Settings {
            namespace: ns.clone(),
            operator_token_sha256: Some(sha256_hex(OPERATOR)),
            ..Settings::default()
        };
        let tenant = |id: &str, token: &str, pnid: &str| {
            let mut t = Tenant::with_defaults(id, &settings);
            t.phone_number_ids = vec![pnid.into()];
            t.admin_token_sha256 = vec![sha256_hex(token)];
            t
        };
        let tenants =
            TenantDirectory::new(Tenants::new(vec![tenant("a", TOKEN_A, "100"), tenant("b", TOKEN_B, "200")]));
        let store = Store::connect(&redis, &ns, 4).await.expect("redis must be running for the admin tests");
        let options = BusOptions {
            operation_timeout: std::time::Duration::from_secs(5),
            connection_name: "admin-test".into(),
            retry_steps_ms: vec![1_000],
        };
        let bus = Bus::connect(&amqp, &ns, options).await.expect("rabbitmq must be running for the admin tests");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let shutdown = CancellationToken::new();
        let (s, b, t, cancel) = (store.clone(), bus.clone(), tenants.clone(), shutdown.clone());
        tokio::spawn(async move {
            let p = Pseudonymizer::new(PSEUDONYM_KEY);
            switchboard_admin::run(&settings, listener, s, b, t, p, cancel).await.expect("admin API runs");
        });
        Self { base, store, bus, http: reqwest::Client::new(), ns, shutdown }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn conversation(tenant: &str) -> String {
        Pseudonymizer::new(PSEUDONYM_KEY).conversation(tenant, NUMBER)
    }

    /// A context window of two entries and one pending message for `NUMBER` at `tenant`, with
    /// texts carrying `tag`; and a dead letter of that message.
    pub async fn populate(&self, tenant: &str, tag: &str) {
        let c = Self::conversation(tenant);
        let ttl = std::time::Duration::from_secs(60);
        let user =
            ChatEntry { id: format!("wamid.U-{tag}"), role: ChatRole::User, content: format!("hello {tag}"), at: 1 };
        let bot =
            ChatEntry { id: format!("rp_{tag}"), role: ChatRole::Assistant, content: format!("answer {tag}"), at: 2 };
        self.store.append_context(tenant, &c, &user, ttl).await.unwrap();
        self.store.append_context(tenant, &c, &bot, ttl).await.unwrap();
        let pending = event(tenant, &c, &format!("wamid.P-{tag}"), &format!("pending {tag}"));
        self.store.enqueue_message(&pending, ttl).await.unwrap();
        self.park(&pending).await;
    }

    /// Publishes `event` to the dead-letter queue.
    pub async fn park(&self, event: &InboundEvent) {
        let t = self.bus.topology();
        let mut headers = switchboard_bus::Headers::new();
        headers.insert("x-sb-reason".into(), "llm_failed".into());
        headers.insert("x-sb-tenant".into(), event.tenant_id.clone());
        let message = Outgoing {
            exchange: t.dead_letter_exchange.clone(),
            routing_key: routing::DEAD.into(),
            body: serde_json::to_vec(event).unwrap(),
            headers,
            message_id: None,
            content_type: "application/json",
        };
        self.bus.publish(message).await.unwrap();
    }

    /// Every key of the namespace with a dump of its value.
    pub fn dump(&self) -> Vec<(String, String)> {
        let mut con = sync_conn();
        scan(&mut con, &self.ns)
            .into_iter()
            .map(|key| {
                let kind: String = redis::cmd("TYPE").arg(&key).query(&mut con).unwrap();
                let cmd = match kind.as_str() {
                    "string" => redis::cmd("GET").arg(&key).clone(),
                    "list" => redis::cmd("LRANGE").arg(&key).arg(0).arg(-1).clone(),
                    "hash" => redis::cmd("HGETALL").arg(&key).clone(),
                    "zset" => redis::cmd("ZRANGE").arg(&key).arg(0).arg(-1).clone(),
                    "stream" => redis::cmd("XRANGE").arg(&key).arg("-").arg("+").clone(),
                    other => panic!("unexpected type {other}"),
                };
                let value: redis::Value = cmd.query(&mut con).unwrap();
                (key, format!("{value:?}"))
            })
            .collect()
    }

    /// The bodies in the dead-letter queue (left in place).
    pub async fn dlq_bodies(&self) -> Vec<String> {
        let dlq = self.bus.topology().dlq.clone();
        let parked = self.bus.peek(&dlq, &Default::default(), 100).await.unwrap();
        parked.into_iter().map(|m| String::from_utf8_lossy(&m.body).into_owned()).collect()
    }
}

impl Drop for TestAdmin {
    /// Runs on success and on panic alike (the tests use the multi-thread runtime, so the
    /// broker cleanup can block here).
    fn drop(&mut self) {
        self.shutdown.cancel();
        let mut con = sync_conn();
        for chunk in scan(&mut con, &self.ns).chunks(100) {
            let _: redis::RedisResult<i64> = redis::cmd("DEL").arg(chunk).query(&mut con);
        }
        let bus = self.bus.clone();
        tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current().block_on(async move {
                let _ = bus.delete_topology().await;
                bus.close().await;
            })
        });
    }
}

fn sync_conn() -> redis::Connection {
    let url = std::env::var("SWITCHBOARD_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/0".into());
    redis::Client::open(url).and_then(|c| c.get_connection()).expect("redis connection")
}

/// Every key of the namespace (SCAN, never KEYS).
fn scan(con: &mut redis::Connection, ns: &str) -> Vec<String> {
    let mut cursor: u64 = 0;
    let mut out = Vec::new();
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{ns}:*"))
            .arg("COUNT")
            .arg(1000)
            .query(con)
            .unwrap();
        out.extend(batch);
        if next == 0 {
            break;
        }
        cursor = next;
    }
    out.sort();
    out.dedup();
    out
}

pub fn event(tenant: &str, conversation: &str, wamid: &str, text: &str) -> InboundEvent {
    serde_json::from_value(json!({
        "tenant_id": tenant, "phone_number_id": "200", "wamid": wamid, "from": {"wa_id": NUMBER},
        "conversation": conversation, "timestamp": 1_760_000_000, "received_at_ms": 1_760_000_000_000i64,
        "content": {"kind": "text", "body": text}
    }))
    .unwrap()
}

/// Everything logged by the process, to check that no number ever reaches the logs.
pub fn logs() -> String {
    String::from_utf8_lossy(&LOGS.get().map(|l| l.lock().unwrap().clone()).unwrap_or_default()).into_owned()
}

static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();

struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn capture_logs() {
    LOGS.get_or_init(|| {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let writer = buffer.clone();
        let _ = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_writer(move || Capture(writer.clone()))
            .with_ansi(false)
            .try_init();
        buffer
    });
}
