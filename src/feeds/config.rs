//! A feed's section of `huiying.toml` (`[[feeds]]`): kind, URL, token source and the
//! per-protocol options.

use super::websocket::WsOptions;
use serde::Deserialize;
use std::path::PathBuf;

/// Errors reading a feed's configured secrets.
#[derive(Debug, thiserror::Error)]
pub enum FeedConfigError {
    /// The token's environment variable is not set.
    #[error("feed {feed}: environment variable {var} is not set")]
    TokenEnv {
        /// The feed.
        feed: String,
        /// The variable.
        var: String,
    },
    /// The token file cannot be read.
    #[error("feed {feed}: token file {}: {source}", path.display())]
    TokenFile {
        /// The feed.
        feed: String,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
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
    /// Frames larger than this are refused before they are buffered, counted as `oversize`, and
    /// restart the connection (default 1 MiB).
    #[serde(default)]
    pub max_frame_bytes: Option<usize>,
    /// No frame or pong for this long: the connection is dead (default 60 s).
    #[serde(default)]
    pub read_timeout_secs: Option<u64>,
    /// Ping interval (default 20 s).
    #[serde(default)]
    pub ping_secs: Option<u64>,
    /// An official source (say the weather bureau's warnings): incidents its mentions count
    /// towards may be approved automatically where `[respond.policy]` opts in (default false).
    #[serde(default)]
    pub official: bool,
}

impl FeedConfig {
    /// Connection options from the config, defaults elsewhere.
    pub fn ws_options(&self) -> WsOptions {
        let mut o = WsOptions::default();
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

    /// The feed's bearer token, if configured.
    pub fn token(&self) -> Result<Option<String>, FeedConfigError> {
        if let Some(var) = &self.token_env {
            return std::env::var(var)
                .map(Some)
                .map_err(|_| FeedConfigError::TokenEnv {
                    feed: self.name.clone(),
                    var: var.clone(),
                });
        }
        if let Some(f) = &self.token_file {
            let t = std::fs::read_to_string(f).map_err(|source| FeedConfigError::TokenFile {
                feed: self.name.clone(),
                path: f.clone(),
                source,
            })?;
            return Ok(Some(t.trim().to_string()));
        }
        Ok(None)
    }
}
