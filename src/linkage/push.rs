//! Push: each newly published notice or rebuttal goes to the office's subscribers (a portal's
//! CMS, a newsroom's desk, a WebSub hub) through a durable outbox of its own, so a crash never
//! loses a push and never sends one twice under two keys.
//!
//! `[[linkage.push]]` in `huiying.toml` names each subscriber:
//!
//! | `protocol` | what goes out | signed | on an uncertain outcome |
//! |---|---|---|---|
//! | `webhook` | `POST <url>`, the notice as JSON ([`payload`]) | HMAC-SHA256 of `timestamp.body` in `X-Huiying-Signature` ([`crate::respond::publish::webhook`]) | resent with the same `Idempotency-Key`: the receiver keeps the first |
//! | `websub` | `POST <hub>` `hub.mode=publish&hub.url=<feed>` for the Atom and RSS feeds ([`crate::respond::publish::websub`]) | – (the hub fetches the public feed) | pinged again: harmless |
//!
//! # Exactly once
//!
//! One job per (notice, subscriber), its id and idempotency key derived from both
//! ([`crate::respond::outbox::job_id`]), its body made once when it is enqueued: enqueueing it
//! again is a no-op, so the two ways a notice reaches the outbox cannot double it:
//!
//! 1. the respond stage tells the push of each notice that begins publishing
//!    ([`crate::respond::notices::Notices::on_published`]);
//! 2. at start and every [`SCAN_SECS`], every published notice sent in the last
//!    `backfill_hours` is enqueued again (what a kill -9 between the notice's commit and the
//!    push's lost, what another instance of a fleet left).
//!
//! The outbox commits `attempting` before each call and recovers after a kill -9 like the
//! platforms' (see [`crate::respond::outbox`]); neither protocol has a read API, so a call the
//! kill left unanswered is sent again **with the same key**: delivery is at least once, the
//! effect exactly once for a receiver that keeps the first request of each `Idempotency-Key`
//! (the README shows one).
//!
//! A subscriber's filter (`region`, `category`, `kind`) is the archive's
//! ([`super::archive::Filter`]); a subscriber added later gets the notices of the last
//! `backfill_hours` and everything after.

use super::archive::{ArchiveQuery, Filter};
use super::{cap, feed};
use crate::respond::notices::Notice;
use crate::respond::outbox::{ActionKind, NewJob, OutboxError, OutboxStore, Priority};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// How often (seconds) the published notices are looked over for pushes not yet enqueued.
pub const SCAN_SECS: u64 = 60;

/// The outbox account of subscriber `id`.
pub fn account(id: &str) -> String {
    format!("push:{id}")
}

/// How a subscriber is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// The notice as signed JSON.
    Webhook,
    /// A WebSub hub ping naming the feeds.
    WebSub,
}

impl Protocol {
    /// The name.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Webhook => "webhook",
            Protocol::WebSub => "websub",
        }
    }
}

/// `[[linkage.push]]`: one subscriber.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PushConfig {
    /// A short id (`a-z`, `0-9`, `-`, `_`): the outbox account is `push:{id}`.
    pub id: String,
    /// `webhook` or `websub`.
    pub protocol: Protocol,
    /// The receiver's (or hub's) URL; or `url_env`, the variable holding it (a URL with a
    /// token in it).
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub url_env: Option<String>,
    /// The variable holding the webhook's HMAC secret (required for `webhook`).
    #[serde(default)]
    pub secret_env: Option<String>,
    /// Only notices of this region (6-digit code; a province or city covers what is under it),
    /// category and kind (`emergency`, `rumor`): as the feeds and the archive filter.
    #[serde(default)]
    pub region: Option<String>,
    #[serde(default)]
    pub category: Option<String>,
    #[serde(default)]
    pub kind: Option<String>,
    /// Pushes per hour at most (default 3600).
    #[serde(default = "default_per_hour")]
    pub per_hour: u32,
}

fn default_per_hour() -> u32 {
    3600
}

/// A subscriber checked: its URL and secret read.
pub struct Subscriber {
    /// `[[linkage.push]] id`.
    pub id: String,
    /// The outbox account (`push:{id}`).
    pub account: String,
    pub protocol: Protocol,
    /// The receiver or hub (may hold a token: never logged whole).
    pub url: String,
    /// The webhook's secret.
    pub secret: Option<String>,
    pub filter: Filter,
    pub per_hour: u32,
}

impl std::fmt::Debug for Subscriber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscriber")
            .field("id", &self.id)
            .field("protocol", &self.protocol)
            .finish_non_exhaustive()
    }
}

/// Check the subscribers (`env` reads a variable): every error names the subscriber and field.
pub fn check(
    cfgs: &[PushConfig],
    base_url: Option<&str>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Vec<Subscriber>, String> {
    if !cfgs.is_empty() && base_url.is_none_or(|b| b.trim().is_empty()) {
        return Err(
            "[linkage] base_url: required with [[linkage.push]] (the links a push carries)".into(),
        );
    }
    let mut out: Vec<Subscriber> = Vec::new();
    for (i, c) in cfgs.iter().enumerate() {
        let at = |field: &str| format!("[[linkage.push]] #{} ({:?}) {field}", i + 1, c.id);
        let id = c.id.trim();
        if id.is_empty()
            || id.len() > 40
            || !id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        {
            return Err(format!("{}: 1 to 40 of a-z, 0-9, -, _", at("id")));
        }
        if out.iter().any(|s| s.id == id) {
            return Err(format!("{}: used twice", at("id")));
        }
        let url = match (&c.url, &c.url_env) {
            (Some(u), None) => u.trim().to_string(),
            (None, Some(var)) => env(var)
                .ok_or_else(|| format!("{}: {var} is not set", at("url_env")))?
                .trim()
                .to_string(),
            _ => return Err(format!("{}: give url or url_env (one)", at("url"))),
        };
        let parsed = reqwest::Url::parse(&url).map_err(|_| {
            format!(
                "{}: not a URL",
                at(if c.url.is_some() { "url" } else { "url_env" })
            )
        })?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
            return Err(format!("{}: an http(s) URL", at("url")));
        }
        let secret = match (c.protocol, &c.secret_env) {
            (Protocol::Webhook, None) => {
                return Err(format!(
                    "{}: a webhook is signed: name the secret's variable",
                    at("secret_env")
                ))
            }
            (Protocol::Webhook, Some(var)) => Some(
                env(var)
                    .filter(|s| !s.is_empty())
                    .ok_or_else(|| format!("{}: {var} is not set", at("secret_env")))?,
            ),
            (Protocol::WebSub, Some(_)) => {
                return Err(format!("{}: a WebSub ping is not signed", at("secret_env")))
            }
            (Protocol::WebSub, None) => None,
        };
        let filter = ArchiveQuery {
            region: c.region.clone(),
            category: c.category.clone(),
            kind: c.kind.clone(),
            ..Default::default()
        }
        .check()
        .map_err(|e| format!("{}{e}", at("")))?;
        if c.per_hour == 0 {
            return Err(format!("{}: at least 1", at("per_hour")));
        }
        out.push(Subscriber {
            id: id.to_string(),
            account: account(id),
            protocol: c.protocol,
            url,
            secret,
            filter,
            per_hour: c.per_hour,
        });
    }
    Ok(out)
}

/// What a push says of the office.
#[derive(Debug, Clone)]
pub struct Origin {
    /// The public base URL (no trailing slash).
    pub base: String,
    /// `Actual` or `Exercise` (as the CAP alerts).
    pub status: &'static str,
}

#[derive(Serialize)]
struct Region<'a> {
    code: &'a str,
    name: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    name_en: &'a str,
}

#[derive(Serialize)]
struct Text<'a> {
    lang: &'static str,
    text: &'a str,
}

#[derive(Serialize)]
struct Links {
    archive: String,
    atom: String,
    rss: String,
    cap: Option<String>,
}

#[derive(Serialize)]
struct Payload<'a> {
    event: &'static str,
    id: &'a str,
    status: &'static str,
    kind: &'static str,
    category: &'a str,
    category_name: String,
    severity: u8,
    region: Option<Region<'a>>,
    sent: String,
    headline: String,
    texts: Vec<Text<'a>>,
    links: Links,
}

/// The public feeds a WebSub hub is told of (Atom, RSS).
pub fn topics(base: &str) -> Vec<String> {
    vec![
        format!("{base}{}", feed::ATOM_PATH),
        format!("{base}{}", feed::RSS_PATH),
    ]
}

/// The webhook body of notice `n`: `event` `notice.published`, its id, kind, category (with its
/// name), severity, region, when it was sent (+08:00), headline, texts (Chinese first) and the
/// links to the archive, the feeds and (an emergency notice) its CAP alert.
pub fn payload(n: &Notice, origin: &Origin, category_name: &str) -> String {
    let texts = cap::texts(n);
    let p = Payload {
        event: "notice.published",
        id: &n.id,
        status: origin.status,
        kind: n.kind.as_str(),
        category: &n.category,
        category_name: category_name.to_string(),
        severity: n.severity,
        region: n.region.as_ref().map(|r| Region {
            code: &r.code,
            name: &r.name,
            name_en: &r.name_en,
        }),
        sent: cap::cap_time(cap::sent_at(n)),
        headline: feed::headline(n).unwrap_or_default(),
        texts: texts
            .iter()
            .map(|(l, t)| Text {
                lang: l.as_str(),
                text: t,
            })
            .collect(),
        links: Links {
            archive: format!("{}/archive", origin.base),
            atom: format!("{}{}", origin.base, feed::ATOM_PATH),
            rss: format!("{}{}", origin.base, feed::RSS_PATH),
            cap: feed::cap_url(n, &origin.base),
        },
    };
    // A struct of strings and numbers always serialises.
    serde_json::to_string(&p).unwrap_or_default()
}

/// Makes and enqueues the pushes.
pub struct Pusher {
    /// (id, protocol, filter) of each subscriber.
    subs: Vec<(String, Protocol, Filter)>,
    outbox: Arc<dyn OutboxStore>,
    origin: Origin,
}

impl Pusher {
    /// Pushes to `subs` through `outbox`.
    pub fn new(subs: &[Subscriber], outbox: Arc<dyn OutboxStore>, origin: Origin) -> Pusher {
        Pusher {
            subs: subs
                .iter()
                .map(|s| (s.id.clone(), s.protocol, s.filter.clone()))
                .collect(),
            outbox,
            origin,
        }
    }

    /// The outbox.
    pub fn outbox(&self) -> &Arc<dyn OutboxStore> {
        &self.outbox
    }

    /// Each subscriber's id and protocol.
    pub fn subscribers(&self) -> impl Iterator<Item = (&str, Protocol)> {
        self.subs.iter().map(|(id, p, _)| (id.as_str(), *p))
    }

    /// The jobs of notice `n`: one per subscriber whose filter takes it; none for a notice not
    /// published.
    pub fn jobs(&self, n: &Notice, category_name: &str) -> Vec<NewJob> {
        if !cap::published(n) {
            return Vec::new();
        }
        let priority = match n.kind {
            crate::incidents::IncidentKind::Rumor => Priority::Rebuttal,
            _ => Priority::Emergency,
        };
        let mut body = None;
        let mut ping = None;
        self.subs
            .iter()
            .filter(|(_, _, f)| f.matches(n))
            .map(|(id, protocol, _)| {
                let text: &String = match protocol {
                    Protocol::Webhook => {
                        body.get_or_insert_with(|| payload(n, &self.origin, category_name))
                    }
                    Protocol::WebSub => ping.get_or_insert_with(|| {
                        crate::respond::publish::websub::ping_body(&topics(&self.origin.base))
                    }),
                };
                NewJob::new(&n.id, &account(id), ActionKind::Post, priority, text)
            })
            .collect()
    }

    /// Enqueue the pushes of `n` (a no-op for those already in the outbox); how many are new.
    pub fn enqueue(
        &self,
        n: &Notice,
        category_name: &str,
        now_ms: i64,
    ) -> Result<usize, OutboxError> {
        let jobs = self.jobs(n, category_name);
        if jobs.is_empty() {
            return Ok(0);
        }
        let done = self.outbox.enqueue_all(jobs, now_ms)?;
        Ok(done.iter().filter(|e| e.created()).count())
    }
}
