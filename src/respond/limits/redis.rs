//! Cluster-wide rate limits: the same GCRA as [`crate::respond::limits`], with its state (the
//! theoretical arrival time, in ms of Redis's own clock) in Redis and decided by one Lua script,
//! so a per-account limit holds for the whole cluster. The account's and the app's cells are
//! taken together or not at all. Keys: `{NS:limits}:acct:{account}:{kind}`, `{NS:limits}:app`
//! (one hash tag: one slot for the script), expiring once the state no longer matters.

use super::{Gcra, LimitKind, Scope, SharedLimiter, SharedRefusal};
use crate::respond::redis::Blocking;
use std::sync::Arc;
use std::time::Duration;

/// KEYS: account, app. ARGV: account T, account τ, app T (0: none), app τ (all ms).
/// Returns {1} when both cells were taken, {0, wait_ms, 1|2} when the account (1) or the app (2)
/// refused.
const TAKE: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function next_tat(key, T, tau)
  local tat = tonumber(redis.call('GET', key) or '0')
  if tat < now then tat = now end
  local wait = tat - tau - now
  if wait > 0 then return nil, wait end
  return tat + T, 0
end
local a, wa = next_tat(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]))
if not a then return {0, wa, 1} end
local T2 = tonumber(ARGV[3])
local b = nil
if T2 > 0 then
  local wb
  b, wb = next_tat(KEYS[2], T2, tonumber(ARGV[4]))
  if not b then return {0, wb, 2} end
end
redis.call('SET', KEYS[1], a, 'PX', a - now + 1000)
if b then redis.call('SET', KEYS[2], b, 'PX', b - now + 1000) end
return {1}
"#;

/// The Redis side of [`crate::respond::limits::Limits`].
pub struct RedisLimiter {
    db: Arc<Blocking>,
    tag: String,
    script: redis::Script,
}

impl std::fmt::Debug for RedisLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLimiter")
            .field("tag", &self.tag)
            .finish_non_exhaustive()
    }
}

impl RedisLimiter {
    /// Limits of namespace `ns` on `db`.
    pub fn new(db: Arc<Blocking>, ns: &str) -> RedisLimiter {
        RedisLimiter {
            db,
            tag: format!("{{{ns}:limits}}"),
            script: redis::Script::new(TAKE),
        }
    }
}

fn ms(d: Duration) -> i64 {
    // Rounded up: the shared limiter is never looser than the local one.
    i64::try_from(d.as_nanos().div_ceil(1_000_000)).unwrap_or(i64::MAX)
}

impl SharedLimiter for RedisLimiter {
    fn take(
        &self,
        account: &str,
        kind: LimitKind,
        acct: Gcra,
        app: Option<Gcra>,
    ) -> Result<(), SharedRefusal> {
        let akey = format!("{}:acct:{account}:{}", self.tag, kind.as_str());
        let appkey = format!("{}:app", self.tag);
        let (t2, tau2) = app.map_or((0, 0), |g| (ms(g.period), ms(g.tolerance)));
        let r: redis::RedisResult<Vec<i64>> = self.db.run(|c| {
            self.script
                .key(&akey)
                .key(&appkey)
                .arg(ms(acct.period))
                .arg(ms(acct.tolerance))
                .arg(t2)
                .arg(tau2)
                .invoke(c)
        });
        match r {
            Ok(v) if v.first() == Some(&1) => Ok(()),
            Ok(v) => {
                let wait =
                    Duration::from_millis(u64::try_from(*v.get(1).unwrap_or(&1)).unwrap_or(1));
                let scope = if v.get(2) == Some(&2) {
                    Scope::App
                } else {
                    Scope::Account
                };
                Err(SharedRefusal::Wait { wait, scope })
            }
            Err(e) => Err(SharedRefusal::Unavailable(e.to_string())),
        }
    }
}
