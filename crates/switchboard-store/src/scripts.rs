//! The Lua scripts. Each multi-step update is one script, so it is atomic; each touches a
//! single key (cluster-safe). [`redis::Script`] sends `EVALSHA` and falls back to loading the
//! script when the server does not know it yet, so each is loaded once per server.

use std::sync::LazyLock;

use redis::Script;

/// Claim or re-enter a lease. `KEYS[1]` claim key; `ARGV[1]` token; `ARGV[2]` lease ms.
/// Returns `{"acquired"}`, `{"done", result}` or `{"busy", pttl}`.
pub(crate) static CLAIM: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local v = redis.call('GET', KEYS[1])
if not v then
  redis.call('SET', KEYS[1], 'p:' .. ARGV[1], 'PX', ARGV[2])
  return {'acquired'}
end
if string.sub(v, 1, 2) == 'd:' then
  return {'done', string.sub(v, 3)}
end
if v == 'p:' .. ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return {'acquired'}
end
return {'busy', tostring(redis.call('PTTL', KEYS[1]))}
"#,
    )
});

/// Extend our lease. `KEYS[1]` claim key; `ARGV[1]` token; `ARGV[2]` lease ms. Returns 1/0.
pub(crate) static RENEW: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if redis.call('GET', KEYS[1]) == 'p:' .. ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"#,
    )
});

/// Record completion. `KEYS[1]` claim key; `ARGV[1]` token; `ARGV[2]` result; `ARGV[3]` ttl ms.
/// Writes `d:<result>` unless a done value is already there (the first fact wins). Returns 1
/// if our lease was still in place, else 0.
pub(crate) static COMPLETE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local v = redis.call('GET', KEYS[1])
if v and string.sub(v, 1, 2) == 'd:' then
  return 0
end
redis.call('SET', KEYS[1], 'd:' .. ARGV[2], 'PX', ARGV[3])
if v == 'p:' .. ARGV[1] then
  return 1
end
return 0
"#,
    )
});

/// Give a lease up. `KEYS[1]` claim key; `ARGV[1]` token. Returns 1 if deleted, else 0.
pub(crate) static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if redis.call('GET', KEYS[1]) == 'p:' .. ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
"#,
    )
});

/// Append to a context window, idempotently. `KEYS[1]` list; `ARGV[1]` entry JSON; `ARGV[2]`
/// entry id; `ARGV[3]` window size; `ARGV[4]` ttl ms. Returns the window, oldest first.
/// Entries that do not decode are never equal to the new one (they are kept until trimmed).
pub(crate) static APPEND_CONTEXT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local items = redis.call('LRANGE', KEYS[1], 0, -1)
local present = false
for _, raw in ipairs(items) do
  local ok, e = pcall(cjson.decode, raw)
  if ok and type(e) == 'table' and e.id == ARGV[2] then
    present = true
    break
  end
end
if not present then
  redis.call('RPUSH', KEYS[1], ARGV[1])
  redis.call('LTRIM', KEYS[1], -tonumber(ARGV[3]), -1)
end
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return redis.call('LRANGE', KEYS[1], 0, -1)
"#,
    )
});

/// Apply a delivery status monotonically. `KEYS[1]` status hash; `ARGV[1]` status; `ARGV[2]`
/// rank; `ARGV[3]` timestamp; `ARGV[4]` error codes JSON (`""` when none); `ARGV[5]` reply id
/// (`""` when unknown); `ARGV[6]` now ms; `ARGV[7]` ttl ms.
/// Returns `{applied, status, timestamp, error_codes, reply_id, updated_at_ms}`.
pub(crate) static RECORD_STATUS: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local stored = tonumber(redis.call('HGET', KEYS[1], 'rank') or '-1') or -1
local applied = tonumber(ARGV[2]) > stored
if applied then
  redis.call('HSET', KEYS[1], 'status', ARGV[1], 'rank', ARGV[2], 'timestamp', ARGV[3],
    'updated_at_ms', ARGV[6])
  if ARGV[4] ~= '' then
    redis.call('HSET', KEYS[1], 'error_codes', ARGV[4])
  end
end
if ARGV[5] ~= '' then
  local known = redis.call('HGET', KEYS[1], 'reply_id')
  if not known or known == '' then
    redis.call('HSET', KEYS[1], 'reply_id', ARGV[5])
  end
end
redis.call('PEXPIRE', KEYS[1], ARGV[7])
local r = redis.call('HMGET', KEYS[1], 'status', 'timestamp', 'error_codes', 'reply_id',
  'updated_at_ms')
table.insert(r, 1, applied and '1' or '0')
return r
"#,
    )
});
