//! A store in a fresh namespace, cleaned up on drop.

use std::time::{Duration, Instant};

use switchboard_store::Store;

pub fn redis_url() -> String {
    std::env::var("SWITCHBOARD_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/0".into())
}

/// A [`Store`] under `sbtest-<uuid>`; every `sbtest-<uuid>:*` key is deleted on drop.
pub struct TestStore {
    pub store: Store,
    ns: String,
}

impl TestStore {
    pub async fn new() -> Self {
        let ns = format!("sbtest-{}", uuid::Uuid::new_v4().simple());
        let store = Store::connect(&redis_url(), &ns, 8).await.expect("redis must be running for the store tests");
        Self { store, ns }
    }

    /// The full Redis key for a suffix, e.g. `ctx:{t:c}`.
    pub fn key(&self, suffix: &str) -> String {
        format!("{}:{suffix}", self.ns)
    }

    /// Every key of this namespace.
    pub fn keys(&self) -> Vec<String> {
        let mut con = sync_conn();
        scan(&mut con, &format!("{}:*", self.ns))
    }

    /// PTTL of a raw key (-2: missing, -1: no expiry).
    pub fn pttl(&self, key: &str) -> i64 {
        let mut con = sync_conn();
        redis::cmd("PTTL").arg(key).query(&mut con).unwrap()
    }
}

impl Drop for TestStore {
    fn drop(&mut self) {
        let mut con = sync_conn();
        let keys = scan(&mut con, &format!("{}:*", self.ns));
        for chunk in keys.chunks(100) {
            let _: redis::RedisResult<i64> = redis::cmd("DEL").arg(chunk).query(&mut con);
        }
    }
}

fn sync_conn() -> redis::Connection {
    redis::Client::open(redis_url()).and_then(|c| c.get_connection()).expect("redis connection")
}

fn scan(con: &mut redis::Connection, pattern: &str) -> Vec<String> {
    let mut cursor: u64 = 0;
    let mut out = Vec::new();
    loop {
        let (next, batch): (u64, Vec<String>) =
            redis::cmd("SCAN").arg(cursor).arg("MATCH").arg(pattern).arg("COUNT").arg(1000).query(con).expect("SCAN");
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

/// Polls `check` every 10 ms until it returns `Some`, for at most `limit`.
pub async fn poll_until<T, F, Fut>(limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "condition not reached within {limit:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
