//! A feed's section of `huiying.toml` (`[[feeds]]`): kind, URL, token source and the
//! per-protocol options, and their validation ([`FeedConfig::validate`], naming the field).

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
    /// A setting has a value the feed cannot work with.
    #[error("feed {feed:?}: field `{field}`: {message}")]
    Invalid {
        /// The feed.
        feed: String,
        /// The setting.
        field: &'static str,
        /// What is wrong with it.
        message: String,
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
    /// Weibo open API v2, polled: the mentions of one account and the comments to it.
    Weibo,
}

impl FeedKind {
    /// Label value.
    pub fn as_str(self) -> &'static str {
        match self {
            FeedKind::Generic => "generic",
            FeedKind::File => "file",
            FeedKind::Mastodon => "mastodon",
            FeedKind::Jetstream => "jetstream",
            FeedKind::Weibo => "weibo",
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
    /// `ws://` / `wss://` URL (generic, Mastodon, Jetstream), the API's base URL (Weibo:
    /// `https://api.weibo.com`) or a file path (file).
    pub url: String,
    /// Environment variable holding a bearer token sent on connect (never logged).
    #[serde(default)]
    pub token_env: Option<String>,
    /// File holding a bearer token.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// Mastodon: streams to subscribe to, e.g. `["public:local", "hashtag:暴雨", "user",
    /// "user:notification", "direct", "list:42"]` (default `["public:local"]`).
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
    /// Mastodon, Weibo: the account the feed's token belongs to, as the matrix names it
    /// (`wenzheng@gov.example`, `@问政银川`): mentions addressed to it carry it as `to`
    /// (required for Weibo).
    #[serde(default)]
    pub account: Option<String>,
    /// Weibo: requests this feed may make per hour for its account (default 150, Weibo's
    /// per-user limit for an app), spread evenly over the hour.
    #[serde(default)]
    pub requests_per_hour: Option<u32>,
    /// Weibo: items asked for per request (`count`, 1–200, default 200).
    #[serde(default)]
    pub count: Option<u32>,
    /// Weibo: on the first start (nothing stored), also deliver what was posted this long
    /// before it, seconds (default 3600).
    #[serde(default)]
    pub lookback_secs: Option<u64>,
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

    /// Check the settings a feed cannot start without; the error names the field.
    pub fn validate(&self) -> Result<(), FeedConfigError> {
        let bad = |field: &'static str, message: &str| FeedConfigError::Invalid {
            feed: self.name.clone(),
            field,
            message: message.to_string(),
        };
        if self.name.trim().is_empty() {
            return Err(bad("name", "must not be empty"));
        }
        if self.account.as_deref().is_some_and(|a| a.trim().is_empty()) {
            return Err(bad("account", "must not be empty when set"));
        }
        if self.kind != FeedKind::Weibo {
            for (field, set) in [
                ("requests_per_hour", self.requests_per_hour.is_some()),
                ("count", self.count.is_some()),
                ("lookback_secs", self.lookback_secs.is_some()),
            ] {
                if set {
                    return Err(bad(field, "is a setting of kind \"weibo\" only"));
                }
            }
            return Ok(());
        }
        if !(self.url.starts_with("https://") || self.url.starts_with("http://")) {
            return Err(bad(
                "url",
                "must be the API's http(s) base URL (https://api.weibo.com)",
            ));
        }
        if self.account.is_none() {
            return Err(bad(
                "account",
                "required for kind \"weibo\": the handle of the account polled",
            ));
        }
        if self.token_env.is_none() && self.token_file.is_none() {
            return Err(bad(
                "token_env",
                "kind \"weibo\" needs the account's access token (token_env or token_file)",
            ));
        }
        if self.requests_per_hour == Some(0) {
            return Err(bad("requests_per_hour", "must be at least 1"));
        }
        if self.count.is_some_and(|c| !(1..=200).contains(&c)) {
            return Err(bad("count", "must be 1 to 200 (Weibo's maximum)"));
        }
        Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    fn weibo() -> FeedConfig {
        FeedConfig {
            name: "weibo-wenzheng".into(),
            kind: FeedKind::Weibo,
            url: "https://api.weibo.com".into(),
            token_env: Some("WEIBO_TOKEN".into()),
            account: Some("@问政银川".into()),
            ..FeedConfig::default()
        }
    }

    /// Every bad setting is refused naming its field; a complete Weibo feed passes.
    #[test]
    fn validation_names_the_field() {
        assert!(weibo().validate().is_ok());
        let cases: Vec<(FeedConfig, &str)> = vec![
            (
                FeedConfig {
                    name: " ".into(),
                    ..weibo()
                },
                "name",
            ),
            (
                FeedConfig {
                    url: "wss://api.weibo.com".into(),
                    ..weibo()
                },
                "url",
            ),
            (
                FeedConfig {
                    account: None,
                    ..weibo()
                },
                "account",
            ),
            (
                FeedConfig {
                    account: Some("".into()),
                    ..weibo()
                },
                "account",
            ),
            (
                FeedConfig {
                    token_env: None,
                    ..weibo()
                },
                "token_env",
            ),
            (
                FeedConfig {
                    requests_per_hour: Some(0),
                    ..weibo()
                },
                "requests_per_hour",
            ),
            (
                FeedConfig {
                    count: Some(201),
                    ..weibo()
                },
                "count",
            ),
            (
                FeedConfig {
                    count: Some(0),
                    ..weibo()
                },
                "count",
            ),
            (
                FeedConfig {
                    kind: FeedKind::Mastodon,
                    url: "wss://m.example/api/v1/streaming".into(),
                    requests_per_hour: Some(10),
                    ..weibo()
                },
                "requests_per_hour",
            ),
        ];
        for (cfg, field) in cases {
            match cfg.validate() {
                Err(FeedConfigError::Invalid {
                    field: f, ref feed, ..
                }) => {
                    assert_eq!((f, feed.as_str()), (field, cfg.name.as_str()));
                }
                other => panic!("{field}: {other:?}"),
            }
        }
        let e = FeedConfig {
            count: Some(500),
            ..weibo()
        }
        .validate()
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "feed \"weibo-wenzheng\": field `count`: must be 1 to 200 (Weibo's maximum)"
        );
        let masto = FeedConfig {
            kind: FeedKind::Mastodon,
            url: "wss://m.example/api/v1/streaming".into(),
            account: Some("wenzheng@m.example".into()),
            ..FeedConfig::default()
        };
        assert!(FeedConfig {
            name: "m".into(),
            ..masto
        }
        .validate()
        .is_ok());
    }
}
