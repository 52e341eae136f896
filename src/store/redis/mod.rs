//! Redis, the distributed engine: one connection context shared by everything that several
//! instances must agree on (incidents, window counters, events, the outbox, rate limits,
//! notices, the audit log, the pause switch).
//!
//! [`Redis`] holds a `redis` crate [`ConnectionManager`] (async, tokio; reconnects by itself),
//! the key namespace and this instance's id. Keys are `{namespace}:…`; a part in braces is a
//! Redis Cluster hash tag, so the keys one script touches share a slot (see the README's
//! production notes).
//!
//! Configured by `store = "redis://HOST:PORT/DB"` and the `[redis]` table (namespace, password
//! from env or file: never in the URL of a committed config, never logged).

use crate::config::RedisConfig;
use redis::aio::ConnectionManager;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A Redis failure.
#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    /// The URL or the password source is wrong.
    #[error("redis config: {0}")]
    Config(String),
    /// Redis answered with an error or could not be reached.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
}

/// The shared Redis context (cheap to clone).
#[derive(Clone)]
pub struct Redis {
    conn: ConnectionManager,
    namespace: Arc<str>,
    instance: Arc<str>,
    up: Arc<AtomicBool>,
}

impl std::fmt::Debug for Redis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redis")
            .field("namespace", &self.namespace)
            .field("instance", &self.instance)
            .finish_non_exhaustive()
    }
}

/// `redis://…` or `rediss://…`.
pub fn is_redis_url(spec: &str) -> bool {
    spec.starts_with("redis://") || spec.starts_with("rediss://")
}

impl Redis {
    /// Connect to `url` with the `[redis]` settings. The connection manager reconnects on its
    /// own after a failure; [`Redis::is_up`] says how the last command went.
    pub async fn connect(url: &str, cfg: &RedisConfig) -> Result<Redis, RedisError> {
        let mut info: redis::ConnectionInfo = url
            .into_connection_info()
            .map_err(|e| RedisError::Config(format!("bad URL: {e}")))?;
        if let Some(p) = cfg.password().map_err(RedisError::Config)? {
            let settings = info.redis_settings().clone().set_password(p);
            info = info.set_redis_settings(settings);
        }
        let client = redis::Client::open(info)?;
        let mgr_cfg = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(5)))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_secs(2));
        let conn = ConnectionManager::new_with_config(client, mgr_cfg).await?;
        let instance = cfg
            .instance
            .clone()
            .unwrap_or_else(|| format!("{}-{}", hostname(), std::process::id()));
        Ok(Redis {
            conn,
            namespace: Arc::from(cfg.namespace.as_str()),
            instance: Arc::from(instance.as_str()),
            up: Arc::new(AtomicBool::new(true)),
        })
    }

    /// A connection handle (clones share one multiplexed connection).
    pub fn conn(&self) -> ConnectionManager {
        self.conn.clone()
    }

    /// `{namespace}:{suffix}`.
    pub fn key(&self, suffix: &str) -> String {
        format!("{}:{suffix}", self.namespace)
    }

    /// The key namespace.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// This instance's id (consumer name in consumer groups, owner of claims).
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// Whether the last command reached Redis.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// Record how a command went (for `/healthz` and metrics), passing the result through.
    pub fn track<T>(&self, r: redis::RedisResult<T>) -> redis::RedisResult<T> {
        let up = match &r {
            Ok(_) => true,
            Err(e) => {
                !(e.is_io_error()
                    || e.is_connection_dropped()
                    || e.is_connection_refusal()
                    || e.is_timeout())
            }
        };
        if self.up.swap(up, Ordering::Relaxed) != up {
            if up {
                tracing::info!("Redis is reachable again.");
            } else if let Err(e) = &r {
                tracing::warn!(error = %e, "Redis is unreachable.");
            }
        }
        crate::metrics::global().redis_up.set(i64::from(up));
        r
    }
}

use redis::IntoConnectionInfo;

fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "huiying".into())
}
