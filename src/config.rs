//! `huiying.toml`: where to listen, which store, which rules, which feeds.

use crate::api::auth::AuthConfig;
use crate::feeds::{FeedConfig, FeedKind};
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// The service configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address of the HTTP server (API, stream, metrics).
    pub listen: String,
    /// `memory`, or the path of the embedded store file.
    pub store: String,
    /// Rules directory.
    pub rules: PathBuf,
    /// Watch the rules directory and reload on change.
    pub watch_rules: bool,
    /// Analysis worker threads (0: one per core).
    pub workers: usize,
    /// Largest accepted `POST /api/mentions` body.
    pub max_body_bytes: usize,
    /// Mentions that may wait between the feeds and the pipeline.
    pub ingest_queue: usize,
    /// Feeds to connect to.
    pub feeds: Vec<FeedConfig>,
    /// The response stage: notices, approval and publishing.
    pub respond: RespondConfig,
    /// `[redis]`: settings used when `store` is a `redis://` URL.
    pub redis: RedisConfig,
    /// A separate address for `/metrics` (unauthenticated there; the main address then asks
    /// for a viewer). `None`: `/metrics` is public on `listen`.
    pub metrics_listen: Option<String>,
    /// Users, tokens, sessions and login limits.
    pub auth: AuthConfig,
}

/// `[redis]`: the distributed engine's settings (with `store = "redis://HOST:PORT/DB"`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisConfig {
    /// Prefix of every key (several deployments can share one Redis).
    pub namespace: String,
    /// This instance's name in the cluster (consumer name, claim owner); default
    /// `{hostname}-{pid}`.
    pub instance: Option<String>,
    /// Environment variable holding the Redis password.
    pub password_env: Option<String>,
    /// File holding the Redis password.
    pub password_file: Option<PathBuf>,
    /// `rediss://`: a PEM file of the CA that signed the server's certificate (default: the
    /// built-in Mozilla roots and the system's certificates).
    pub ca_file: Option<PathBuf>,
    /// Days a closed incident (and its mention index) stays in Redis (default 30).
    pub closed_retention_days: u32,
    /// Outbox entries of an instance idle this long (it stopped) are claimed by another (ms).
    pub claim_idle_ms: u64,
    /// A claimed job left `attempting` this long is uncertain and checked with the platform
    /// (ms; must exceed a platform call's timeout, 20 s).
    pub attempt_timeout_ms: u64,
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            namespace: "huiying".into(),
            instance: None,
            password_env: None,
            password_file: None,
            ca_file: None,
            closed_retention_days: 30,
            claim_idle_ms: 30_000,
            attempt_timeout_ms: 30_000,
        }
    }
}

impl RedisConfig {
    /// This instance's name: `instance`, or `{hostname}-{pid}`.
    pub fn instance_name(&self) -> String {
        self.instance.clone().unwrap_or_else(|| {
            let host = std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "huiying".into());
            format!("{host}-{}", std::process::id())
        })
    }

    /// The password, if a source is configured (errors name the source, never the secret).
    pub fn password(&self) -> Result<Option<String>, String> {
        let raw = if let Some(var) = &self.password_env {
            std::env::var(var).map_err(|_| format!("[redis] password_env: {var} is not set"))?
        } else if let Some(f) = &self.password_file {
            std::fs::read_to_string(f)
                .map_err(|e| format!("[redis] password_file {}: {e}", f.display()))?
        } else {
            return Ok(None);
        };
        let p = raw.trim();
        if p.is_empty() {
            return Err("[redis] the password is empty".into());
        }
        Ok(Some(p.to_string()))
    }
}

/// `[respond]`: the notice workflow and the publishing of approved notices.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RespondConfig {
    /// Run the respond stage (it also needs `rules/matrix` and `rules/templates`).
    pub enabled: bool,
    /// Where the notices, the outbox and the audit log are kept (relative to the config file).
    pub data_dir: PathBuf,
    /// The approval policy.
    pub policy: crate::respond::notices::ApprovalPolicy,
    /// Operators: API tokens that identify actors (never logged). Kept for compatibility:
    /// each is an API token with the `operator` role; prefer `[auth]` users and tokens.
    pub operators: Vec<Operator>,
    /// Drills and the demo: every account publishes to this JSON Lines file instead of its
    /// platform (same plan, limits, outbox and audit; nothing leaves the machine).
    pub drill_sink: Option<PathBuf>,
}

impl Default for RespondConfig {
    fn default() -> Self {
        RespondConfig {
            enabled: true,
            data_dir: PathBuf::from("huiying-data"),
            policy: Default::default(),
            operators: Vec::new(),
            drill_sink: None,
        }
    }
}

/// One operator of the API: a name (the actor of the audit log) and where its token is read.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Operator {
    /// The actor name (`alice`).
    pub name: String,
    /// Environment variable holding the operator's API token.
    #[serde(default)]
    pub token_env: Option<String>,
    /// File holding the operator's API token.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
}

impl Operator {
    /// The operator's token (read now; never logged).
    pub fn token(&self) -> anyhow::Result<String> {
        let raw = if let Some(var) = &self.token_env {
            std::env::var(var).map_err(|_| {
                anyhow::anyhow!(
                    "operator {}: environment variable {var} is not set",
                    self.name
                )
            })?
        } else if let Some(f) = &self.token_file {
            std::fs::read_to_string(f).map_err(|e| {
                anyhow::anyhow!("operator {}: token file {}: {e}", self.name, f.display())
            })?
        } else {
            anyhow::bail!("operator {}: no token_env or token_file", self.name);
        };
        let t = raw.trim();
        if t.is_empty() {
            anyhow::bail!("operator {}: empty token", self.name);
        }
        Ok(t.to_string())
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:8080".into(),
            store: "huiying-data/huiying.redb".into(),
            rules: PathBuf::from("rules"),
            watch_rules: true,
            workers: 0,
            max_body_bytes: 1 << 20,
            ingest_queue: 65_536,
            feeds: Vec::new(),
            respond: RespondConfig::default(),
            redis: RedisConfig::default(),
            metrics_listen: None,
            auth: AuthConfig::default(),
        }
    }
}

impl Config {
    /// Read a config file; errors name the file and line.
    pub fn load(path: &Path) -> anyhow::Result<Config> {
        let src = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let mut c: Config = toml::from_str(&src).map_err(|e| {
            let line = e
                .span()
                .map(|s| src[..s.start].matches('\n').count() + 1)
                .unwrap_or(0);
            anyhow::anyhow!("{}:{line}: {}", path.display(), e.message().trim())
        })?;
        // Relative paths are relative to the config file.
        let base = path.parent().unwrap_or(Path::new("."));
        if c.rules.is_relative() {
            c.rules = base.join(&c.rules);
        }
        if c.store != "memory"
            && !crate::store::redis::is_redis_url(&c.store)
            && Path::new(&c.store).is_relative()
        {
            c.store = base.join(&c.store).to_string_lossy().into_owned();
        }
        if c.respond.data_dir.is_relative() {
            c.respond.data_dir = base.join(&c.respond.data_dir);
        }
        if let Some(d) = &c.respond.drill_sink {
            if d.is_relative() {
                c.respond.drill_sink = Some(base.join(d));
            }
        }
        if let Some(u) = &c.auth.users_file {
            if u.is_relative() {
                c.auth.users_file = Some(base.join(u));
            }
        }
        for op in &mut c.respond.operators {
            if let Some(f) = &op.token_file {
                if f.is_relative() {
                    op.token_file = Some(base.join(f));
                }
            }
        }
        for f in &mut c.feeds {
            if f.kind == FeedKind::File && Path::new(&f.url).is_relative() {
                f.url = base.join(&f.url).to_string_lossy().into_owned();
            }
        }
        Ok(c)
    }
}
