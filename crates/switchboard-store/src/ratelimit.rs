//! Cluster-wide rate limits: GCRA (generic cell rate algorithm) buckets in Redis, shared by
//! every dispatcher replica. Each call *reserves* a slot and says how long to wait for it, so
//! under load messages queue up in order at exactly the configured rate; none is dropped.
//!
//! Keys: `{ns}:rate:{name}` holding the bucket's theoretical arrival time (µs, Redis clock).

use std::{sync::LazyLock, time::Duration};

use redis::Script;

use crate::{Store, StoreError};

/// `KEYS[1]` bucket; `ARGV[1]` emission interval µs; `ARGV[2]` burst tolerance µs;
/// `ARGV[3]` penalty µs (0 = a normal reservation). Returns the wait in µs.
/// Uses the Redis server clock, so every replica agrees on time.
static RESERVE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local penalty = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
if penalty > 0 then
  -- Beyond the burst tolerance too: the next sender waits the full penalty.
  tat = tat + penalty + tolerance
  redis.call('SET', KEYS[1], string.format('%.0f', tat), 'PX', math.ceil((tat - now) / 1000) + 1000)
  return 0
end
local wait = tat - tolerance - now
if wait < 0 then wait = 0 end
local new_tat = tat + interval
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1000)
return wait
"#,
    )
});

/// A rate: `per_second` on average, with bursts of up to `burst` at once.
#[derive(Debug, Clone, Copy)]
pub struct Rate {
    pub per_second: f64,
    pub burst: u32,
}

impl Rate {
    fn interval_us(self) -> u64 {
        (1_000_000.0 / self.per_second.max(0.001)).round() as u64
    }
}

impl Store {
    /// Reserves one slot in bucket `name` and returns how long to wait before using it.
    pub async fn reserve(&self, name: &str, rate: Rate) -> Result<Duration, StoreError> {
        let interval = rate.interval_us();
        let tolerance = interval * u64::from(rate.burst.max(1) - 1);
        let mut conn = self.conn().await?;
        let wait_us: i64 =
            RESERVE.key(self.keys.rate(name)).arg(interval).arg(tolerance).arg(0).invoke_async(&mut conn).await?;
        Ok(Duration::from_micros(wait_us.max(0) as u64))
    }

    /// Pushes bucket `name` (used at `rate`) back by `delay`: the next sender waits at least
    /// that long, whatever burst is left (the reaction to a throughput or pair-rate error).
    pub async fn penalize(&self, name: &str, rate: Rate, delay: Duration) -> Result<(), StoreError> {
        let interval = rate.interval_us();
        let tolerance = interval * u64::from(rate.burst.max(1) - 1);
        let mut conn = self.conn().await?;
        let _: i64 = RESERVE
            .key(self.keys.rate(name))
            .arg(interval)
            .arg(tolerance)
            .arg(delay.as_micros().max(1) as u64)
            .invoke_async(&mut conn)
            .await?;
        Ok(())
    }
}
