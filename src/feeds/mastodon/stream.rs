//! The configured streams: how each is named in frames, its subscribe message and the REST
//! timeline that backfills it.

use super::url::url_encode;

/// One configured stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Stream {
    /// `public`, `public:local`, `public:remote`, and their `:media` variants.
    Public {
        name: String,
        local: bool,
        remote: bool,
        media: bool,
    },
    /// `hashtag:TAG` or `hashtag:local:TAG`.
    Hashtag { tag: String, local: bool },
    /// `list:ID`.
    List(String),
    /// `user`: the home timeline (and notifications).
    User,
    /// `user:notification`.
    Notifications,
    /// `direct`: conversations (direct messages) of the account.
    Direct,
    /// Anything else: subscribed to as is, no backfill.
    Other(String),
}

impl Stream {
    pub(super) fn parse(s: &str) -> Stream {
        let s = s.trim();
        match s {
            "public"
            | "public:local"
            | "public:remote"
            | "public:media"
            | "public:local:media"
            | "public:remote:media" => {
                return Stream::Public {
                    name: s.to_string(),
                    local: s.starts_with("public:local"),
                    remote: s.starts_with("public:remote"),
                    media: s.ends_with(":media"),
                }
            }
            "user" => return Stream::User,
            "user:notification" => return Stream::Notifications,
            "direct" => return Stream::Direct,
            _ => {}
        }
        if let Some(tag) = s.strip_prefix("hashtag:local:") {
            return Stream::Hashtag {
                tag: tag.trim_start_matches('#').to_string(),
                local: true,
            };
        }
        if let Some(tag) = s.strip_prefix("hashtag:") {
            return Stream::Hashtag {
                tag: tag.trim_start_matches('#').to_string(),
                local: false,
            };
        }
        if let Some(list) = s.strip_prefix("list:") {
            return Stream::List(list.to_string());
        }
        Stream::Other(s.to_string())
    }

    /// The stream as frames name it (their `stream` array joined with `:`), lower case.
    pub(super) fn key(&self) -> String {
        match self {
            Stream::Public { name, .. } | Stream::Other(name) => name.to_lowercase(),
            Stream::Hashtag { tag, local: false } => format!("hashtag:{}", tag.to_lowercase()),
            Stream::Hashtag { tag, local: true } => {
                format!("hashtag:local:{}", tag.to_lowercase())
            }
            Stream::List(id) => format!("list:{id}"),
            Stream::User => "user".into(),
            Stream::Notifications => "user:notification".into(),
            Stream::Direct => "direct".into(),
        }
    }

    /// The subscribe message.
    pub(super) fn subscribe(&self) -> String {
        let v = match self {
            Stream::Public { name, .. } | Stream::Other(name) => {
                serde_json::json!({"type": "subscribe", "stream": name})
            }
            Stream::Hashtag { tag, local } => serde_json::json!({
                "type": "subscribe",
                "stream": if *local { "hashtag:local" } else { "hashtag" },
                "tag": tag,
            }),
            Stream::List(id) => {
                serde_json::json!({"type": "subscribe", "stream": "list", "list": id})
            }
            Stream::User => serde_json::json!({"type": "subscribe", "stream": "user"}),
            Stream::Notifications => {
                serde_json::json!({"type": "subscribe", "stream": "user:notification"})
            }
            Stream::Direct => serde_json::json!({"type": "subscribe", "stream": "direct"}),
        };
        v.to_string()
    }

    /// The REST path and fixed query parameters of the matching timeline, if there is one.
    pub(super) fn timeline(&self) -> Option<(String, String)> {
        let mut params = Vec::new();
        let path = match self {
            Stream::Public {
                local,
                remote,
                media,
                ..
            } => {
                if *local {
                    params.push("local=true");
                }
                if *remote {
                    params.push("remote=true");
                }
                if *media {
                    params.push("only_media=true");
                }
                "/api/v1/timelines/public".to_string()
            }
            Stream::Hashtag { tag, local } => {
                if *local {
                    params.push("local=true");
                }
                format!("/api/v1/timelines/tag/{}", url_encode(tag))
            }
            Stream::List(id) => format!("/api/v1/timelines/list/{}", url_encode(id)),
            Stream::User => "/api/v1/timelines/home".to_string(),
            // A direct message to the account is also a `mention` notification: both backfill
            // from the notifications (the conversations list keeps only each one's last status).
            Stream::Notifications | Stream::Direct => {
                params.push("types%5B%5D=mention");
                "/api/v1/notifications".to_string()
            }
            Stream::Other(_) => return None,
        };
        Some((path, params.join("&")))
    }

    /// Whether the stream backfills from the notifications (and their ids).
    pub(super) fn is_notifications(&self) -> bool {
        matches!(self, Stream::Notifications | Stream::Direct)
    }
}
