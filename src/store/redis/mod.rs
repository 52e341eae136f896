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

pub mod config;
pub mod events;
pub mod fleet;
pub mod shared;
pub mod store;

pub use config::RedisConfig;
pub use shared::RedisCoordinator;
pub use store::RedisStore;

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
    /// For what the multiplexed connection cannot carry (pub/sub subscriptions).
    client: redis::Client,
    namespace: Arc<str>,
    instance: Arc<str>,
    up: Arc<AtomicBool>,
    /// Where and how it was reached (the stages that open their own connections).
    url: Arc<str>,
    settings: Arc<RedisConfig>,
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

/// A client for `url` with the `[redis]` password and, for `rediss://`, the CA file. The
/// password is never part of an error.
pub fn client(url: &str, cfg: &RedisConfig) -> Result<redis::Client, RedisError> {
    crate::install_tls();
    let mut info: redis::ConnectionInfo = url
        .into_connection_info()
        .map_err(|e| RedisError::Config(format!("bad URL: {e}")))?;
    if let Some(p) = cfg.password().map_err(RedisError::Config)? {
        let settings = info.redis_settings().clone().set_password(p);
        info = info.set_redis_settings(settings);
    }
    match &cfg.ca_file {
        Some(f) => {
            let pem = std::fs::read(f)
                .map_err(|e| RedisError::Config(format!("[redis] ca_file {}: {e}", f.display())))?;
            Ok(redis::Client::build_with_tls(
                info,
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(pem),
                },
            )?)
        }
        None => Ok(redis::Client::open(info)?),
    }
}

impl Redis {
    /// Connect to `url` with the `[redis]` settings. The connection manager reconnects on its
    /// own after a failure; [`Redis::is_up`] says how the last command went.
    pub async fn connect(url: &str, cfg: &RedisConfig) -> Result<Redis, RedisError> {
        let client = client(url, cfg)?;
        let pubsub_client = client.clone();
        let mgr_cfg = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(5)))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_secs(2));
        let conn = ConnectionManager::new_with_config(client, mgr_cfg).await?;
        let instance = cfg.instance_name();
        // The id heads every event message (`{instance}\n{line}`) and names consumers.
        if instance.is_empty() || instance.chars().any(char::is_whitespace) {
            return Err(RedisError::Config(format!(
                "[redis] instance {instance:?}: must be non-empty, without spaces or newlines"
            )));
        }
        Ok(Redis {
            conn,
            client: pubsub_client,
            namespace: Arc::from(cfg.namespace.as_str()),
            instance: Arc::from(instance.as_str()),
            up: Arc::new(AtomicBool::new(true)),
            url: Arc::from(url),
            settings: Arc::new(RedisConfig {
                instance: Some(instance),
                ..cfg.clone()
            }),
        })
    }

    /// The URL it was connected with.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The `[redis]` settings it was connected with (the instance name filled in).
    pub fn settings(&self) -> &RedisConfig {
        &self.settings
    }

    /// A connection handle (clones share one multiplexed connection).
    pub fn conn(&self) -> ConnectionManager {
        self.conn.clone()
    }

    /// The client, for a dedicated connection (pub/sub).
    pub fn client(&self) -> &redis::Client {
        &self.client
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

/// Redis metrics, registered in the global registry on first use.
pub struct RedisMetrics {
    /// Round trips to Redis by purpose (`store`, `sync`, `claim`, `events`).
    pub round_trips: prometheus::IntCounterVec,
    /// Failed round trips by purpose.
    pub errors: prometheus::IntCounterVec,
    /// Incident id claims by result (`won`, `adopted`, `local`: Redis unreachable).
    pub claims: prometheus::IntCounterVec,
    /// Incident events received from other instances, by result (`shown`, `duplicate`,
    /// `invalid`).
    pub remote_events: prometheus::IntCounterVec,
}

/// The Redis metrics.
pub fn metrics() -> &'static RedisMetrics {
    static M: std::sync::OnceLock<RedisMetrics> = std::sync::OnceLock::new();
    M.get_or_init(|| {
        let r = &crate::metrics::global().registry;
        let vec = |name: &str, help: &str, label: &str| {
            let c = prometheus::IntCounterVec::new(prometheus::Opts::new(name, help), &[label])
                .expect("valid metric");
            r.register(Box::new(c.clone())).expect("unique metric");
            c
        };
        RedisMetrics {
            round_trips: vec(
                "huiying_redis_round_trips_total",
                "Round trips to Redis, by purpose (store, sync, claim, events).",
                "op",
            ),
            errors: vec(
                "huiying_redis_errors_total",
                "Failed round trips to Redis, by purpose.",
                "op",
            ),
            claims: vec(
                "huiying_cluster_claims_total",
                "Incident id claims, by result (won, adopted, local).",
                "result",
            ),
            remote_events: vec(
                "huiying_cluster_remote_events_total",
                "Incident events from other instances, by result (shown, duplicate, invalid).",
                "result",
            ),
        }
    })
}

/// Count one round trip for `op`.
pub(crate) fn round_trip(op: &'static str) {
    metrics().round_trips.with_label_values(&[op]).inc();
}
