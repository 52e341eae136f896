//! `huiying.toml`: the top-level settings (where to listen, which store, which rules) and one
//! section per stage, each declared by the module that owns it (`[respond]` in
//! [`crate::respond`], `[redis]` in [`crate::store::redis`], `[auth]` in [`crate::api::auth`],
//! `[[feeds]]` in [`crate::feeds`]). Only the wiring ([`crate::app`]) reads this module.

use crate::respond::RespondConfig;
use crate::store::redis::RedisConfig;
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

/// `[auth]`: who may use the API and the console (see `crate::api::auth`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// The users file (`[[user]]` with argon2 hashes, `[[token]]` with SHA-256 hashes),
    /// relative to the config file; written by `huiying user add` / `huiying token create`.
    pub users_file: Option<PathBuf>,
    /// Extra API tokens given by hash in the config itself (`{ name, role, sha256 }`).
    pub tokens: Vec<crate::api::auth::TokenEntry>,
    /// Serve `/wall` and every read it makes (GET endpoints) without a credential.
    pub public_wall: bool,
    /// Session lifetime from login, seconds (default 8 h).
    pub session_secs: u64,
    /// Failed logins per user name within the window before logins are refused (default 5).
    pub login_max_failures_per_user: usize,
    /// Failed logins per client address within the window (default 20).
    pub login_max_failures_per_ip: usize,
    /// The sliding window of the login limits, seconds (default 15 min).
    pub login_window_secs: u64,
    /// Mark the session cookie `Secure` (set when HTTPS terminates in front of the engine).
    pub secure_cookie: bool,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            users_file: None,
            tokens: Vec::new(),
            public_wall: false,
            session_secs: 8 * 3600,
            login_max_failures_per_user: 5,
            login_max_failures_per_ip: 20,
            login_window_secs: 15 * 60,
            secure_cookie: false,
        }
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

/// Feed kinds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FeedKind {
    /// A websocket sending the generic mention format, one JSON object (or array) per frame.
    #[default]
    Generic,
    /// A JSON Lines file read once.
    File,
    /// Mastodon's streaming API (`wss://HOST/api/v1/streaming`).
    Mastodon,
    /// Bluesky Jetstream (`wss://HOST/subscribe`).
    Jetstream,
}

impl FeedKind {
    /// Label value.
    pub fn as_str(self) -> &'static str {
        match self {
            FeedKind::Generic => "generic",
            FeedKind::File => "file",
            FeedKind::Mastodon => "mastodon",
            FeedKind::Jetstream => "jetstream",
        }
    }
}

/// One feed.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedConfig {
    /// Name (a metric label: keep it short and fixed).
    pub name: String,
    /// Kind.
    pub kind: FeedKind,
    /// `ws://` / `wss://` URL (generic) or file path (file).
    pub url: String,
    /// Environment variable holding a bearer token sent on connect (never logged).
    #[serde(default)]
    pub token_env: Option<String>,
    /// File holding a bearer token.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// Mastodon: streams to subscribe to, e.g. `["public:local", "hashtag:暴雨", "user",
    /// "user:notification", "list:42"]` (default `["public:local"]`).
    #[serde(default)]
    pub streams: Vec<String>,
    /// Mastodon: base URL of the REST API for backfill (default: the streaming URL's origin).
    #[serde(default)]
    pub rest_url: Option<String>,
    /// Jetstream: collections (default `["app.bsky.feed.post"]`).
    #[serde(default)]
    pub collections: Vec<String>,
    /// Jetstream: how far before the stored cursor to resume, seconds (default 5).
    #[serde(default)]
    pub rewind_secs: Option<u64>,
    /// Frames larger than this are skipped and counted (default 1 MiB).
    #[serde(default)]
    pub max_frame_bytes: Option<usize>,
    /// No frame or pong for this long: the connection is dead (default 60 s).
    #[serde(default)]
    pub read_timeout_secs: Option<u64>,
    /// Ping interval (default 20 s).
    #[serde(default)]
    pub ping_secs: Option<u64>,
}

impl FeedConfig {
    /// Connection options from the config, defaults elsewhere.
    pub fn ws_options(&self) -> crate::feeds::websocket::WsOptions {
        let mut o = crate::feeds::websocket::WsOptions::default();
        if let Some(b) = self.max_frame_bytes {
            o.max_frame_bytes = b;
        }
        if let Some(t) = self.read_timeout_secs {
            o.read_timeout = std::time::Duration::from_secs(t.max(1));
        }
        if let Some(p) = self.ping_secs {
            o.ping_every = std::time::Duration::from_secs(p.max(1));
        }
        o
    }
}

impl FeedConfig {
    /// The feed's bearer token, if configured.
    pub fn token(&self) -> anyhow::Result<Option<String>> {
        if let Some(var) = &self.token_env {
            return std::env::var(var).map(Some).map_err(|_| {
                anyhow::anyhow!("feed {}: environment variable {var} is not set", self.name)
            });
        }
        if let Some(f) = &self.token_file {
            let t = std::fs::read_to_string(f).map_err(|e| {
                anyhow::anyhow!("feed {}: token file {}: {e}", self.name, f.display())
            })?;
            return Ok(Some(t.trim().to_string()));
        }
        Ok(None)
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
