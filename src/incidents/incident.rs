//! Incidents and the events that announce them (the output contract of `huiying replay` and
//! `/api/stream`).

use crate::detect::gazetteer::RegionRef;
use crate::normalize::Mention;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Emergency or rumor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IncidentKind {
    /// A spike of mentions of an emergency category in a region.
    Emergency,
    /// A claim spreading and being questioned, or a known debunked claim.
    Rumor,
    /// A burst of terms no rule names (category `emerging`).
    Emerging,
}

impl IncidentKind {
    /// Label value.
    pub fn as_str(self) -> &'static str {
        match self {
            IncidentKind::Emergency => "emergency",
            IncidentKind::Rumor => "rumor",
            IncidentKind::Emerging => "emerging",
        }
    }
}

/// Open or closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IncidentState {
    /// Still active.
    Open,
    /// Quiet for long enough.
    Closed,
}

/// The official rebuttal of a known debunked claim.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rebuttal {
    /// Claim id in `rules/claims.toml`.
    pub claim_id: String,
    /// Rebuttal text, Chinese.
    pub zh: String,
    /// Rebuttal text, English.
    pub en: String,
    /// Link to the official debunk.
    pub link: String,
    /// Who debunked it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

/// How many of a cascade's most-spread posts an incident carries.
pub const SPREAD_TOP: usize = 10;

/// A post of a rumor cascade and how far it spread.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpreadPost {
    /// The post's mention id (as the feed gave it: `mastodon:{host}:{id}`, a Weibo mid, …).
    pub id: String,
    /// Where it is (the `source` of the mentions that reposted or answered it), if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Distinct reposts and replies that spread or questioned it.
    pub shares: u32,
}

/// Why a rumor was flagged: what its cascade shows, for the people who must judge it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RumorWhy {
    /// Posts in the cascade (original, reposts, replies).
    pub posts: u32,
    /// Posts asking whether it is true (求证, 真的吗).
    pub enquiry: u32,
    /// Posts saying it is false (辟谣, 假的).
    pub correction: u32,
    /// Posts urging others to spread it (扩散, 转发).
    pub spreading: u32,
    /// The original post carries one of these cues itself.
    pub original_cue: bool,
    /// The trained scorer flagged it (else: a known claim, or enough spreading authors).
    pub scored: bool,
}

/// The longest headline, in characters.
pub const HEADLINE_CHARS: usize = 60;

/// A post's text as a headline: links and `#tags#`-style markers' hashes dropped, whitespace
/// collapsed, at most [`HEADLINE_CHARS`] characters, cut after the last sentence or clause
/// mark (。！？；，、 or a space; the mark itself dropped) in the second half when it is longer,
/// with `…`.
pub fn headline(text: &str) -> String {
    let mut words = Vec::new();
    for w in text.split_whitespace() {
        if w.starts_with("http://") || w.starts_with("https://") {
            continue;
        }
        words.push(w);
    }
    let clean: String = words.join(" ").replace('#', "");
    let chars: Vec<char> = clean.chars().collect();
    if chars.len() <= HEADLINE_CHARS {
        return clean;
    }
    let head = &chars[..HEADLINE_CHARS];
    let cut = head
        .iter()
        .rposition(|c| "。！？；，、!?;, ".contains(*c))
        .filter(|&i| i >= HEADLINE_CHARS / 2)
        .unwrap_or(HEADLINE_CHARS);
    let mut out: String = head[..cut].iter().collect();
    out = out.trim_end().to_string();
    out.push('…');
    out
}

/// An incident, as events and the API carry it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    /// Stable id.
    pub id: String,
    /// Emergency or rumor.
    pub kind: IncidentKind,
    /// Category id (rumors: the claim's category, or the first emergency category seen, or "other").
    pub category: String,
    /// Emergencies: every category of the incident, the primary (`category`, the one most of
    /// its mentions hit) first, then the others in rule order. Related categories (a `group`
    /// of `rules/categories.toml`) firing on one place are one incident. Empty for rumors.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub categories: Vec<String>,
    /// Most specific region, if any.
    pub region: Option<RegionRef>,
    /// Event time of the first mention that counted towards it.
    pub first_seen: i64,
    /// Event time it opened.
    pub opened_at: i64,
    /// Event time of the last change.
    pub updated_at: i64,
    /// Mentions assigned.
    pub mentions: u64,
    /// Distinct authors assigned.
    pub authors: u64,
    /// Distinct authors per minute in the current window.
    pub rate_per_min: f64,
    /// Baseline distinct authors per minute.
    pub baseline_per_min: f64,
    /// 1 (low) to 5 (highest).
    pub severity: u8,
    /// Most frequent significant terms.
    pub top_terms: Vec<String>,
    /// The first few mention ids.
    pub sample_mention_ids: Vec<String>,
    /// Root post of a rumor cascade.
    pub root_mention_id: Option<String>,
    /// Rebuttal of a known claim.
    pub rebuttal: Option<Rebuttal>,
    /// Open or closed.
    pub state: IncidentState,
    /// Rumors: the cascade's most-spread posts (most reposts and replies first), at most
    /// [`SPREAD_TOP`]; what the rebuttal replies answer.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub spread: Vec<SpreadPost>,
    /// Emergencies: a mention of an official feed (`official = true` in its `[[feeds]]`
    /// section) counted towards it. What an office's opt-in automatic approval trusts.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub official: bool,
    /// Distinct authors verified by their platform among its mentions (as the feeds report them;
    /// `POST /api/mentions` cannot claim verification).
    #[serde(default)]
    pub verified_authors: u64,
    /// The incident it was merged into (set on the `incident.closed` event of a merge): its
    /// notices not yet out are withdrawn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merged_into: Option<String>,
    /// What it is about as people wrote it: its first post (a rumor: the cascade's original
    /// when seen), links removed, cut at a word boundary ([`headline`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headline: Option<String>,
    /// Rumors: why the cascade was flagged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub why: Option<RumorWhy>,
    /// The first few mentions themselves (kept by the store and API detail, not in events).
    #[serde(skip)]
    pub samples: Vec<Mention>,
}

/// Which incident event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// `incident.opened`
    Opened,
    /// `incident.updated`
    Updated,
    /// `incident.closed`
    Closed,
}

impl EventKind {
    /// The `event` string.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Opened => "incident.opened",
            EventKind::Updated => "incident.updated",
            EventKind::Closed => "incident.closed",
        }
    }
}

/// One output event.
#[derive(Debug, Clone)]
pub enum Event {
    /// An incident opened, changed or closed.
    Incident {
        /// Which.
        kind: EventKind,
        /// Event time (ms) at which it happened.
        at: i64,
        /// The incident after the change.
        incident: Arc<Incident>,
    },
    /// A mention carries a citizen-request cue (求助, 投诉, …): for the stage that takes
    /// citizen requests. Emitted only when a stage asked for them
    /// ([`crate::incidents::Engine::emitting_requests`]), so replay output is unchanged.
    Request {
        /// Event time (ms).
        at: i64,
        /// The mention.
        mention: Arc<Mention>,
        /// The request kinds hit (ids from `rules/requests.toml`).
        kinds: Vec<Arc<str>>,
    },
    /// An event-time hour ended: its figures (for public-opinion reports). Emitted only when
    /// a stage asked for them ([`crate::incidents::Engine::emitting_hours`]).
    Hour(Arc<super::hours::HourStats>),
    /// A mention joined an incident.
    Assigned {
        /// Event time (ms).
        at: i64,
        /// The mention.
        mention_id: String,
        /// The incident.
        incident_id: Arc<str>,
        /// The incident's mentions and distinct authors with this one counted: what a display
        /// shows between the throttled `incident.updated` events (not in the JSON line).
        totals: (u64, u64),
    },
}

#[derive(Serialize)]
struct HourJson {
    event: &'static str,
    hour: i64,
    mentions: u64,
}

#[derive(Serialize)]
struct IncidentEventJson<'a> {
    event: &'static str,
    at: i64,
    incident: &'a Incident,
}

#[derive(Serialize)]
struct RequestJson<'a> {
    event: &'static str,
    at: i64,
    mention_id: &'a str,
    kinds: &'a [Arc<str>],
}

#[derive(Serialize)]
struct AssignedJson<'a> {
    event: &'static str,
    at: i64,
    mention_id: &'a str,
    incident_id: &'a str,
}

impl Event {
    /// One JSON line (without the newline), exactly as `huiying replay` prints it.
    pub fn to_json(&self) -> String {
        let r = match self {
            Event::Incident { kind, at, incident } => serde_json::to_string(&IncidentEventJson {
                event: kind.as_str(),
                at: *at,
                incident,
            }),
            Event::Assigned {
                at,
                mention_id,
                incident_id,
                ..
            } => serde_json::to_string(&AssignedJson {
                event: "mention.assigned",
                at: *at,
                mention_id,
                incident_id,
            }),
            Event::Hour(h) => serde_json::to_string(&HourJson {
                event: "hour.stats",
                hour: h.hour,
                mentions: h.mentions,
            }),
            Event::Request { at, mention, kinds } => serde_json::to_string(&RequestJson {
                event: "mention.request",
                at: *at,
                mention_id: &mention.id,
                kinds,
            }),
        };
        // Serialising these plain structs cannot fail.
        r.unwrap_or_default()
    }

    /// Whether this is a `mention.assigned` event.
    pub fn is_assignment(&self) -> bool {
        matches!(self, Event::Assigned { .. })
    }

    /// Whether this is an `incident.*` event.
    pub fn is_incident(&self) -> bool {
        matches!(self, Event::Incident { .. })
    }
}

impl Incident {
    /// An open incident with nothing counted yet: `id`, `kind` and `category`, first seen, opened
    /// and updated at `at` (ms), severity 1, no region. Hand-drafted notices and tests start
    /// from it (`Incident { region, severity, ..Incident::new(…) }`).
    pub fn new(
        id: impl Into<String>,
        kind: IncidentKind,
        category: impl Into<String>,
        at: i64,
    ) -> Incident {
        Incident {
            id: id.into(),
            kind,
            category: category.into(),
            categories: Vec::new(),
            region: None,
            first_seen: at,
            opened_at: at,
            updated_at: at,
            mentions: 0,
            authors: 0,
            rate_per_min: 0.0,
            baseline_per_min: 0.0,
            severity: 1,
            top_terms: Vec::new(),
            sample_mention_ids: Vec::new(),
            root_mention_id: None,
            rebuttal: None,
            state: IncidentState::Open,
            spread: Vec::new(),
            samples: Vec::new(),
            official: false,
            verified_authors: 0,
            merged_into: None,
            headline: None,
            why: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 16, item 5: the claim as people wrote it, readable: no links, no tag marks, cut at
    /// a clause mark, never mid-word when one is near.
    #[test]
    fn headlines_are_the_post_trimmed_at_a_boundary() {
        assert_eq!(
            headline("网传 #全城停水# 三天，大家赶紧储水！ https://t.cn/abc"),
            "网传 全城停水 三天，大家赶紧储水！"
        );
        let long = "紧急扩散：明天起本市全城停水三天，自来水公司内部消息，请大家今晚务必储水，\
                    超市的矿泉水已经被抢光了，转给家人朋友，不转不是中国人，已经有很多小区停水了";
        let h = headline(long);
        assert!(h.ends_with('…'), "{h}");
        assert!(h.chars().count() <= HEADLINE_CHARS + 1, "{h}");
        let body = h.trim_end_matches('…');
        assert!(long.starts_with(body), "{h}");
        let next = long[body.len()..].chars().next();
        assert!(
            next.is_some_and(|c| "，。".contains(c)),
            "cut at a clause mark: {h}"
        );
        // No boundary in reach: cut at the limit.
        let run = "字".repeat(100);
        assert_eq!(headline(&run).chars().count(), HEADLINE_CHARS + 1);
        assert_eq!(headline("   "), "");
    }
}
