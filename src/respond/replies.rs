//! Rebuttal replies: once a rumor's rebuttal notice is approved, answer the cascade's most-spread
//! posts ([`Incident::spread`]) with the rebuttal, where people are actually reading the rumor.
//!
//! # Rules
//!
//! - Only a rumor notice that is approved (`publishing` or `done`) gets replies, and only posts
//!   reposted or answered at least [`ReplyPolicy::min_shares`] times, most-spread first.
//! - At most [`ReplyPolicy::max_per_incident`] replies per incident, counted over every notice
//!   of the incident and over time (a post that becomes popular later still gets one while the
//!   cap allows).
//! - **Never twice to the same post**: a post already answered by any job of any notice of the
//!   incident is skipped, and a job's id is derived from (notice, account, action, post), so
//!   planning again (after a restart, on every update) enqueues nothing new.
//! - The post must be reachable from one of the notice's publishing accounts (lead first, then
//!   co-publishers): a Mastodon status (`mastodon:{host}:{id}`) from a Mastodon account on the
//!   same host (`in_reply_to_id`), a Weibo post (`weibo:{mid}`, or a numeric id with source
//!   `weibo`) from a Weibo account (`comments/create`). Other posts are skipped.
//! - A reply waits for the lead's post (the official statement exists before the answers
//!   point people to it) and goes in the rebuttal lane under the account's limits: replies
//!   count against posts per hour (Mastodon), comments against comments per hour (Weibo).
//! - The reply carries the account's approved text: nothing unapproved is ever posted.

use crate::incidents::{Incident, IncidentKind, SpreadPost};
use crate::respond::matrix::{Matrix, Platform};
use crate::respond::notices::{Notice, NoticeState};
use crate::respond::outbox::{ActionKind, Job, NewJob, Priority};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;

/// How many posts a rebuttal answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReplyPolicy {
    /// Replies per incident at most (0: never reply).
    pub max_per_incident: usize,
    /// A post must have been reposted or answered this many times.
    pub min_shares: u32,
}

impl Default for ReplyPolicy {
    fn default() -> Self {
        ReplyPolicy {
            max_per_incident: 5,
            min_shares: 2,
        }
    }
}

/// Where a rumor post is, and its id there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A Mastodon status on `host` (authority, default port stripped).
    Mastodon {
        /// The instance.
        host: String,
        /// The status id on that instance.
        status_id: String,
    },
    /// A Weibo post.
    Weibo {
        /// Its id (mid).
        mid: String,
    },
}

impl Target {
    /// Where `post` is, if a publisher can answer it.
    pub fn of(post: &SpreadPost) -> Option<Target> {
        Target::from_id(&post.id, post.source.as_deref())
    }

    /// Where the post with mention id `id` (from `source`) is: `mastodon:HOST:ID`,
    /// `weibo:MID`, or a bare number from a Weibo source.
    pub fn from_id(id: &str, source: Option<&str>) -> Option<Target> {
        if let Some(rest) = id.strip_prefix("mastodon:") {
            let (host, id) = rest.rsplit_once(':')?;
            if host.is_empty() || id.is_empty() {
                return None;
            }
            return Some(Target::Mastodon {
                host: host.to_ascii_lowercase(),
                status_id: id.to_string(),
            });
        }
        let mid = id.strip_prefix("weibo:").or_else(|| {
            let weibo = source.is_some_and(|s| s.eq_ignore_ascii_case("weibo"));
            (weibo && id.bytes().all(|b| b.is_ascii_digit())).then_some(id)
        })?;
        // A comment (`weibo:c:…`) is answered on its weibo, which its id does not name.
        (!mid.is_empty() && !mid.starts_with("c:")).then(|| Target::Weibo {
            mid: mid.to_string(),
        })
    }

    /// The platform.
    pub fn platform(&self) -> Platform {
        match self {
            Target::Mastodon { .. } => Platform::Mastodon,
            Target::Weibo { .. } => Platform::Weibo,
        }
    }

    /// The id the platform's API takes.
    pub fn native_id(&self) -> &str {
        match self {
            Target::Mastodon { status_id, .. } => status_id,
            Target::Weibo { mid } => mid,
        }
    }
}

/// `scheme://authority/…` → the authority without the scheme's default port, lower case.
fn origin_host(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = rest[..end]
        .rsplit_once('@')
        .map_or(&rest[..end], |(_, h)| h);
    let default = match scheme.to_ascii_lowercase().as_str() {
        "http" | "ws" => ":80",
        "https" | "wss" => ":443",
        _ => "",
    };
    let a = authority.to_ascii_lowercase();
    let a = if default.is_empty() {
        a
    } else {
        a.strip_suffix(default).map(str::to_string).unwrap_or(a)
    };
    (!a.is_empty()).then_some(a)
}

/// Whether account `id` of the matrix can answer `target`.
pub fn reaches(matrix: &Matrix, id: &str, target: &Target) -> bool {
    let Some(a) = matrix.account(id) else {
        return false;
    };
    match target {
        Target::Mastodon { host, .. } => {
            a.platform == Platform::Mastodon
                && a.endpoint().and_then(origin_host).as_deref() == Some(host.as_str())
        }
        Target::Weibo { .. } => a.platform == Platform::Weibo,
    }
}

/// The posts already answered, and how many replies exist, over `jobs` (every job of every
/// notice of the incident).
pub fn answered(jobs: &[Job]) -> (HashSet<String>, usize) {
    let mut posts = HashSet::new();
    let mut n = 0;
    for j in jobs {
        if matches!(j.action, ActionKind::Reply | ActionKind::Comment) {
            if let Some(t) = &j.in_reply_to {
                posts.insert(t.clone());
                n += 1;
            }
        }
    }
    (posts, n)
}

/// The reply jobs to add for notice `n` about `inc`, given the incident's existing jobs
/// (see the module docs). Empty when nothing is due.
pub fn plan(
    n: &Notice,
    inc: &Incident,
    matrix: &Matrix,
    existing: &[Job],
    policy: &ReplyPolicy,
) -> Vec<NewJob> {
    if n.kind != IncidentKind::Rumor
        || !matches!(n.state, NoticeState::Publishing | NoticeState::Done)
        || n.incident_id != inc.id
    {
        return Vec::new();
    }
    let Some(lead_job) = existing.iter().find(|j| {
        j.notice_id == n.id && j.account_id == n.plan.lead && j.action == ActionKind::Post
    }) else {
        return Vec::new();
    };
    let (mut done, mut count) = answered(existing);
    let speakers: Vec<&str> = std::iter::once(n.plan.lead.as_str())
        .chain(n.plan.co_publishers.iter().map(String::as_str))
        .filter(|a| n.texts.get(*a).is_some_and(|t| !t.text.trim().is_empty()))
        .collect();
    let mut jobs = Vec::new();
    let mut posts: Vec<&SpreadPost> = inc
        .spread
        .iter()
        .filter(|p| p.shares >= policy.min_shares)
        .collect();
    posts.sort_by(|a, b| b.shares.cmp(&a.shares).then_with(|| a.id.cmp(&b.id)));
    for post in posts {
        if count >= policy.max_per_incident {
            break;
        }
        let Some(target) = Target::of(post) else {
            continue;
        };
        let native = target.native_id();
        if done.contains(native) {
            continue;
        }
        let Some(account) = speakers.iter().find(|a| reaches(matrix, a, &target)) else {
            continue;
        };
        let Some(text) = n.texts.get(*account) else {
            continue;
        };
        let action = match target.platform() {
            Platform::Weibo => ActionKind::Comment,
            _ => ActionKind::Reply,
        };
        jobs.push(
            NewJob::new(&n.id, account, action, Priority::Rebuttal, &text.text)
                .in_reply_to(native)
                .depends_on(&lead_job.id),
        );
        done.insert(native.to_string());
        count += 1;
    }
    jobs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn post(id: &str, source: Option<&str>, shares: u32) -> SpreadPost {
        SpreadPost {
            id: id.into(),
            source: source.map(str::to_string),
            shares,
        }
    }

    #[test]
    fn a_weibo_comment_is_not_a_weibo() {
        assert_eq!(
            Target::from_id("weibo:4942000000000001", None).map(|t| t.native_id().to_string()),
            Some("4942000000000001".to_string())
        );
        assert!(Target::from_id("weibo:c:5001", None).is_none());
    }

    #[test]
    fn targets_by_id_and_source() {
        assert_eq!(
            Target::of(&post("mastodon:social.example:1099", None, 3)),
            Some(Target::Mastodon {
                host: "social.example".into(),
                status_id: "1099".into()
            })
        );
        assert_eq!(
            Target::of(&post("mastodon:127.0.0.1:8080:42", None, 3)),
            Some(Target::Mastodon {
                host: "127.0.0.1:8080".into(),
                status_id: "42".into()
            })
        );
        assert_eq!(
            Target::of(&post("weibo:4942", None, 3)),
            Some(Target::Weibo { mid: "4942".into() })
        );
        assert_eq!(
            Target::of(&post("4942", Some("Weibo"), 3)),
            Some(Target::Weibo { mid: "4942".into() })
        );
        for p in [
            post("4942", None, 3),
            post("4942x", Some("weibo"), 3),
            post("at://did:plc:x/app.bsky.feed.post/1", Some("bluesky"), 3),
            post("mastodon::1", None, 3),
            post("weibo:", None, 3),
        ] {
            assert_eq!(Target::of(&p), None, "{p:?}");
        }
    }

    #[test]
    fn origin_hosts_drop_default_ports() {
        assert_eq!(
            origin_host("https://Social.Example/api").as_deref(),
            Some("social.example")
        );
        assert_eq!(
            origin_host("https://social.example:443").as_deref(),
            Some("social.example")
        );
        assert_eq!(
            origin_host("http://127.0.0.1:8080/").as_deref(),
            Some("127.0.0.1:8080")
        );
        assert_eq!(origin_host("no-scheme"), None);
    }
}
