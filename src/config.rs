//! `huiying.toml`: where to listen, which store, which rules, which feeds.

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
        }
    }
}

/// Feed kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FeedKind {
    /// A websocket sending the generic mention format, one JSON object (or array) per frame.
    Generic,
    /// A JSON Lines file replayed once at the given speed.
    File,
}

/// One feed.
#[derive(Debug, Clone, Deserialize)]
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
        if c.store != "memory" && Path::new(&c.store).is_relative() {
            c.store = base.join(&c.store).to_string_lossy().into_owned();
        }
        for f in &mut c.feeds {
            if f.kind == FeedKind::File && Path::new(&f.url).is_relative() {
                f.url = base.join(&f.url).to_string_lossy().into_owned();
            }
        }
        Ok(c)
    }
}
