//! What the respond stage's Redis backends share: the blocking connection and the short lock.
//! The backends live beside their traits: [`crate::respond::outbox::RedisOutbox`] (Redis
//! Streams with a consumer group), [`crate::respond::limits::RedisLimiter`] (GCRA in a Lua
//! script), the shared notices and the shared audit log.
//!
//! The respond stage's stores are blocking traits (the dispatcher calls them between platform
//! calls, drafting and the API from `spawn_blocking`), so these use a blocking connection,
//! [`Blocking`], that reconnects after a failure and reports Redis health like the async
//! [`crate::store::redis::Redis`] context. When Redis is down every call fails: the dispatcher
//! waits and retries, and nothing is posted without the cluster-wide limit and the outbox's
//! record of the attempt.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A blocking Redis connection that reconnects on the next call after a failure.
pub struct Blocking {
    client: redis::Client,
    conn: Mutex<Option<redis::Connection>>,
    up: Arc<AtomicBool>,
}

impl std::fmt::Debug for Blocking {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Blocking").finish_non_exhaustive()
    }
}

/// How long a blocking call may wait for Redis.
const TIMEOUT: Duration = Duration::from_secs(3);

impl Blocking {
    /// A connection to `url` with the `[redis]` password and CA file
    /// ([`crate::store::redis::client`]). Connects lazily.
    pub fn new(
        url: &str,
        cfg: &crate::store::redis::RedisConfig,
    ) -> Result<Blocking, crate::store::redis::RedisError> {
        Ok(Blocking::with_client(crate::store::redis::client(
            url, cfg,
        )?))
    }

    /// A connection through `client`. Connects lazily.
    pub fn with_client(client: redis::Client) -> Blocking {
        Blocking {
            client,
            conn: Mutex::new(None),
            up: Arc::new(AtomicBool::new(true)),
        }
    }

    /// Run `f` on the connection (connecting first if needed). An I/O failure drops the
    /// connection so the next call reconnects.
    pub fn run<T>(
        &self,
        f: impl FnOnce(&mut redis::Connection) -> redis::RedisResult<T>,
    ) -> redis::RedisResult<T> {
        let mut g = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        if g.is_none() {
            match self.client.get_connection_with_timeout(TIMEOUT) {
                Ok(c) => {
                    c.set_read_timeout(Some(TIMEOUT))?;
                    c.set_write_timeout(Some(TIMEOUT))?;
                    *g = Some(c);
                }
                Err(e) => {
                    self.health(false, Some(&e));
                    return Err(e);
                }
            }
        }
        let Some(conn) = g.as_mut() else {
            return Err(redis::RedisError::from((
                redis::ErrorKind::Io,
                "no connection",
            )));
        };
        let r = f(conn);
        match &r {
            Err(e) if is_down(e) => {
                *g = None;
                self.health(false, Some(e));
            }
            _ => self.health(true, None),
        }
        r
    }

    /// Whether the last call reached Redis.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    fn health(&self, up: bool, e: Option<&redis::RedisError>) {
        if self.up.swap(up, Ordering::Relaxed) != up {
            if up {
                tracing::info!("Redis (publishing) is reachable again.");
            } else if let Some(e) = e {
                tracing::warn!(error = %e, "Redis (publishing) is unreachable: publishing waits.");
            }
        }
        crate::metrics::global().redis_up.set(i64::from(up));
    }
}

/// Whether `e` means Redis could not be reached (as opposed to a command error).
pub fn is_down(e: &redis::RedisError) -> bool {
    e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() || e.is_timeout()
}

/// Lua: delete the lock only if this owner still holds it.
const UNLOCK: &str =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end";

/// Take the lock `key` on `c` (`SET NX PX`), waiting up to `wait`; `Ok(None)` when it stayed
/// busy. The lock expires after `ttl` if its owner dies.
pub fn lock_on(
    c: &mut redis::Connection,
    key: &str,
    ttl: Duration,
    wait: Duration,
) -> redis::RedisResult<Option<String>> {
    let tok = token();
    let deadline = std::time::Instant::now() + wait;
    loop {
        let ok: Option<String> = redis::cmd("SET")
            .arg(key)
            .arg(&tok)
            .arg("NX")
            .arg("PX")
            .arg(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX))
            .query(c)?;
        if ok.is_some() {
            return Ok(Some(tok));
        }
        if std::time::Instant::now() > deadline {
            return Ok(None);
        }
        // Held by another instance for a few milliseconds (one transition): poll.
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Release a lock taken by [`lock_on`] (no-op if it expired and someone else holds it).
pub fn unlock_on(c: &mut redis::Connection, key: &str, tok: &str) -> redis::RedisResult<()> {
    let _: i64 = redis::Script::new(UNLOCK).key(key).arg(tok).invoke(c)?;
    Ok(())
}

/// A lock held across several calls (released on drop).
pub struct RedisLock {
    db: Arc<Blocking>,
    key: String,
    tok: String,
}

impl RedisLock {
    /// Take `key` (see [`lock_on`]); `Ok(None)` when it stayed busy for `wait`.
    pub fn acquire(
        db: &Arc<Blocking>,
        key: &str,
        ttl: Duration,
        wait: Duration,
    ) -> redis::RedisResult<Option<RedisLock>> {
        Ok(db
            .run(|c| lock_on(c, key, ttl, wait))?
            .map(|tok| RedisLock {
                db: db.clone(),
                key: key.to_string(),
                tok,
            }))
    }
}

impl Drop for RedisLock {
    fn drop(&mut self) {
        if let Err(e) = self.db.run(|c| unlock_on(c, &self.key, &self.tok)) {
            tracing::warn!(error = %e, "Cannot release a Redis lock; it expires on its own.");
        }
    }
}

/// A short random token (lock ownership).
fn token() -> String {
    use rand::Rng;
    format!("{:016x}", rand::rng().random::<u64>())
}
