//! `huiying.toml`: the top-level settings (where to listen, which store, which rules) and one
//! section per stage, each declared by the module that owns it (`[respond]` in
//! [`crate::respond`], `[redis]` in [`crate::store::redis`], `[auth]` in [`crate::api::auth`],
//! `[[feeds]]` in [`crate::feeds`]). Only the wiring ([`crate::app`]) reads this module.

use crate::api::auth::AuthConfig;
use crate::cases::CasesConfig;
use crate::feeds::{FeedConfig, FeedKind};
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
    /// `/api/stream` clients at once; the next one is answered 503.
    pub max_stream_clients: usize,
    /// Mentions that may wait between the feeds and the pipeline.
    pub ingest_queue: usize,
    /// Feeds to connect to.
    pub feeds: Vec<FeedConfig>,
    /// The response stage: notices, approval and publishing.
    pub respond: RespondConfig,
    /// Citizen requests: intake, routing, deadlines, answers.
    pub cases: CasesConfig,
    /// `[redis]`: settings used when `store` is a `redis://` URL.
    pub redis: RedisConfig,
    /// A separate address for `/metrics` (unauthenticated there; the main address then asks
    /// for a viewer). `None`: `/metrics` is public on `listen`.
    pub metrics_listen: Option<String>,
    /// Users, tokens, sessions and login limits.
    pub auth: AuthConfig,
    /// `[alerts]`: who is alerted of what (值班提醒).
    pub alerts: crate::alerts::AlertsConfig,
    /// `[opinion]`: the daily public-opinion report (舆情日报).
    pub opinion: crate::opinion::stage::OpinionConfig,
    /// `[linkage]`: who the office is in its CAP alerts and notice feeds.
    pub linkage: crate::linkage::stage::LinkageConfig,
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
            max_stream_clients: 256,
            ingest_queue: 65_536,
            feeds: Vec::new(),
            respond: RespondConfig::default(),
            cases: CasesConfig::default(),
            redis: RedisConfig::default(),
            metrics_listen: None,
            auth: AuthConfig::default(),
            alerts: Default::default(),
            opinion: Default::default(),
            linkage: Default::default(),
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
        if let Some(d) = c.cases.data_dir.as_mut().filter(|d| d.is_relative()) {
            *d = base.join(&*d);
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
        for (i, f) in c.feeds.iter_mut().enumerate() {
            f.validate()
                .map_err(|e| anyhow::anyhow!("{}: [[feeds]] #{}: {e}", path.display(), i + 1))?;
            if f.kind == FeedKind::File && Path::new(&f.url).is_relative() {
                f.url = base.join(&f.url).to_string_lossy().into_owned();
            }
            if let Some(t) = &f.token_file {
                if t.is_relative() {
                    f.token_file = Some(base.join(t));
                }
            }
        }
        Ok(c)
    }
}
