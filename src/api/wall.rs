//! The wall display (`/wall`): one page for a screen in an operations room, served from assets
//! compiled into the binary (no CDN, no map service), live over `/api/stream?stats=true`.
//!
//! | path | what |
//! |---|---|
//! | `GET /wall` | the page (`?lang=en` for English; Chinese by default) |
//! | `GET /wall/wall.css`, `/wall/wall.js` | its style and script |
//! | `GET /wall/china-tiles.json` | the tile-grid cartogram of the 34 provincial divisions |
//! | `GET /api/wall/summary` | everything the page shows, in one answer (below) |
//!
//! The summary is all a wall reads, and all that `[auth] public_wall` opens: the open incidents
//! (no sample posts, so no authors), the latest rate histories, feed health (names, not
//! addresses), category and account names, and the current notices reduced to what the
//! fan-out board shows (state, approvals counted not named, each account's job state and post
//! id; no texts, operators, errors or rejected notices; drafts and held notices only for a
//! signed-in viewer). A viewer's wall (`/wall#token=…` or a console session) also opens
//! `/api/stream?stats=true` for live updates; the public one polls the summary. The sampler here adds what the events do not carry: every
//! [`STEP_MS`] it sends a `stats` message (global mention rate and a short rate history per
//! open incident) to the stream clients that asked for it. Replay output and the
//! `incident.*`/`mention.assigned` lines are untouched.

use super::auth::Access;
use super::routes::Routes;
use super::ApiState;
use crate::bus::Subscription;
use crate::incidents::Event;
use crate::live::LiveIncidents;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{extract::State, Json};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Sampling period of the wall's rates (wall clock).
pub const STEP_MS: i64 = 5_000;
/// Samples kept per series: ten minutes.
pub const HISTORY: usize = 120;

const INDEX_HTML: &str = include_str!("wall/index.html");
const WALL_CSS: &str = include_str!("wall/wall.css");
const WALL_JS: &str = include_str!("wall/wall.js");
const CHINA_TILES: &str = include_str!("wall/china-tiles.json");

/// The embedded assets: path, content type, body.
const ASSETS: [(&str, &str, &str); 5] = [
    ("/wall", "text/html; charset=utf-8", INDEX_HTML),
    ("/wall/", "text/html; charset=utf-8", INDEX_HTML),
    ("/wall/wall.css", "text/css; charset=utf-8", WALL_CSS),
    ("/wall/wall.js", "text/javascript; charset=utf-8", WALL_JS),
    ("/wall/china-tiles.json", "application/json", CHINA_TILES),
];

/// The wall routes.
pub fn routes() -> Routes<ApiState> {
    let mut r = Routes::new();
    for (path, content_type, body) in ASSETS {
        let page = get(move || async move { asset(content_type, body) });
        r = r.route(path, Access::Public, page);
    }
    r.route("/api/wall/summary", Access::WallRead, get(summary))
}

/// Notices the fan-out board shows.
pub const WALL_NOTICES: usize = 4;

/// `GET /api/wall/summary` (see the module docs).
async fn summary(
    State(s): State<ApiState>,
    axum::Extension(wall): axum::Extension<Wall>,
    principal: Option<axum::Extension<super::auth::Principal>>,
    cred: Option<axum::Extension<super::auth::Credential>>,
) -> Json<serde_json::Value> {
    // With `public_wall` the guard lets everyone through and leaves the credential as the
    // authentication layer found it; otherwise it turned it into the principal.
    let signed_in = principal.is_some() || cred.is_some_and(|c| c.0 .0.is_some());
    let mut incidents: Vec<Arc<crate::incidents::Incident>> = s
        .live
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .values()
        .cloned()
        .collect();
    incidents.sort_by(|a, b| super::most_severe_first(a, b));
    let stats: serde_json::Value =
        serde_json::from_str(&wall.stats.borrow()).unwrap_or(serde_json::Value::Null);
    let feeds: Vec<serde_json::Value> = s
        .feeds
        .snapshot()
        .into_iter()
        .map(|f| {
            serde_json::json!({
                "name": f.name, "kind": f.kind, "connected": f.connected,
                "last_message_at": f.last_message_at, "lag_ms": f.lag_ms,
                "reconnects": f.reconnects,
            })
        })
        .collect();
    let open: std::collections::HashSet<String> = incidents
        .iter()
        .filter(|i| i.state == crate::incidents::IncidentState::Open)
        .map(|i| i.id.clone())
        .collect();
    let top = incidents
        .iter()
        .find(|i| i.state == crate::incidents::IncidentState::Open)
        .map(|i| (i.id.clone(), i.opened_at));
    let notices = match &s.respond {
        None => serde_json::json!(null),
        Some(r) => {
            let r = r.clone();
            tokio::task::spawn_blocking(move || public_notices(&r, signed_in, &open, top))
                .await
                .ok()
                .flatten()
                .unwrap_or(serde_json::Value::Null)
        }
    };
    let Json(labels) = labels(State(s)).await;
    Json(serde_json::json!({
        "incidents": incidents,
        "stats": stats,
        "feeds": feeds,
        "respond": if notices.is_null() { "off" } else { "on" },
        "notices": notices,
        "labels": labels,
    }))
}

/// The notices as the wall shows them: the latest per incident (its state, for the rumor
/// watch) and the [`WALL_NOTICES`] current ones with their jobs — those still moving first,
/// then the published ones of incidents still open (the warning went out: it stays on the wall
/// while its incident lasts), then the rest, latest first — and how many there are in all
/// (`total`, for the wall's "+N more"), and the `timeline` of the top incident (`top`: id and
/// opening time). `None` when the store cannot be read.
fn public_notices(
    r: &crate::respond::stage::Respond,
    signed_in: bool,
    open: &std::collections::HashSet<String>,
    top: Option<(String, i64)>,
) -> Option<serde_json::Value> {
    use crate::respond::notices::{NoticeFilter, NoticeState};
    let now = crate::respond::dispatch::system_now_ms();
    let all: Vec<_> = r
        .notices
        .list(&NoticeFilter::default())
        .map_err(|e| tracing::warn!(error = %e, "The wall cannot read the notices."))
        .ok()?
        .into_iter()
        .filter(|n| match n.state {
            NoticeState::Rejected => false,
            NoticeState::Draft | NoticeState::Held => signed_in,
            _ => true,
        })
        .collect();
    let mut by_incident: BTreeMap<&str, (i64, &str, &str)> = BTreeMap::new();
    for n in &all {
        let e = by_incident.entry(n.incident_id.as_str()).or_insert((
            n.updated_at,
            n.state.as_str(),
            n.id.as_str(),
        ));
        if n.updated_at > e.0 {
            *e = (n.updated_at, n.state.as_str(), n.id.as_str());
        }
    }
    // The latest notice of each incident: its id, for the wall's links to act on it.
    let notice_of: BTreeMap<&str, &str> = by_incident
        .iter()
        .map(|(k, (_, _, id))| (*k, *id))
        .collect();
    let by_incident: BTreeMap<&str, &str> = by_incident
        .into_iter()
        .map(|(k, (_, st, _))| (k, st))
        .collect();
    // 0: moving; 1: published, its incident open; 2: the rest.
    let rank = |n: &crate::respond::notices::Notice| match n.state {
        NoticeState::Done if open.contains(&n.incident_id) => 1,
        NoticeState::Done => 2,
        _ => 0,
    };
    let mut current: Vec<_> = all.iter().collect();
    current.sort_by(|a, b| rank(a).cmp(&rank(b)).then(b.updated_at.cmp(&a.updated_at)));
    // What the wall owes its viewers: every moving notice and every published one of an open
    // incident (older finished ones only fill free room and are not counted as hidden).
    let total = all.iter().filter(|n| rank(n) < 2).count();
    let current: Vec<serde_json::Value> = current
        .into_iter()
        .take(WALL_NOTICES)
        .map(|n| {
            // A publishing notice whose jobs all finished moves to `done` here.
            let n = r.notices.refresh(&n.id, now).unwrap_or_else(|_| n.clone());
            let all = r.outbox.jobs_for_notice(&n.id).unwrap_or_default();
            let jobs: Vec<serde_json::Value> = all
                .iter()
                .map(|j| {
                    serde_json::json!({
                        "account_id": j.account_id, "state": j.state,
                        "platform_post_id": j.platform_post_id,
                        "waiting_for_limit_until":
                            crate::respond::api::waiting_for_limit_until(r, j, now),
                    })
                })
                .collect();
            let check_failed = all
                .iter()
                .filter(|j| j.state == crate::respond::outbox::JobState::CheckFailed)
                .count();
            serde_json::json!({
                "id": n.id, "incident_id": n.incident_id, "kind": n.kind,
                "category": n.category, "severity": n.severity, "region": n.region,
                "state": n.state, "approvals": n.approvals.len(),
                "required_approvals": n.required_approvals, "hold_until": n.hold_until,
                "created_at": n.created_at, "updated_at": n.updated_at, "plan": n.plan, "jobs": jobs,
                "check_failed": check_failed, "purpose": n.purpose,
                "stale": n.stale.is_some(), "superseded_by": n.superseded_by,
            })
        })
        .collect();
    let timeline = top.map(|(id, opened_at)| timeline(r, &all, &id, opened_at));
    Some(serde_json::json!({
        "current": current, "total": total, "by_incident": by_incident, "notice_of": notice_of,
        "timeline": timeline,
    }))
}

/// The top incident's way from detection to the public (issue 16, item 10): opened, first
/// notice drafted, approved, first and last post (ms; `null` for a step not reached yet).
fn timeline(
    r: &crate::respond::stage::Respond,
    notices: &[crate::respond::notices::Notice],
    incident: &str,
    opened_at: i64,
) -> serde_json::Value {
    use crate::respond::outbox::{ActionKind, JobState};
    let mut mine: Vec<_> = notices
        .iter()
        .filter(|n| n.incident_id == incident)
        .collect();
    mine.sort_by_key(|n| n.created_at);
    let drafted = mine.first().map(|n| n.created_at);
    let approved = mine
        .iter()
        .flat_map(|n| n.history.iter())
        .filter(|h| h.action == "enqueue")
        .map(|h| h.at)
        .min();
    let posts: Vec<i64> = mine
        .iter()
        .flat_map(|n| r.outbox.jobs_for_notice(&n.id).unwrap_or_default())
        .filter(|j| {
            matches!(j.action, ActionKind::Post | ActionKind::Repost) && j.state == JobState::Done
        })
        .map(|j| j.updated_at)
        .collect();
    serde_json::json!({
        "incident_id": incident, "opened_at": opened_at, "drafted_at": drafted,
        "approved_at": approved, "first_post_at": posts.iter().min(),
        "last_post_at": posts.iter().max(), "notices": mine.len(),
    })
}

/// An embedded asset. `no-cache`: a new binary's page is picked up on the next reload. (The
/// security headers, CSP included, come from the router's layer.)
fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
}

/// Names of the categories in both languages, from the rules in force, and the display name and
/// platform of each account of the matrix (what the fan-out board shows: not handles, limits or
/// token sources, so a public wall needs no access to `/api/accounts`).
async fn labels(State(s): State<ApiState>) -> Json<serde_json::Value> {
    let rules = s.rules.load();
    let categories: BTreeMap<&str, serde_json::Value> = rules
        .categories
        .iter()
        .map(|c| {
            (
                &*c.id,
                serde_json::json!({"zh": c.name_zh, "en": c.name_en}),
            )
        })
        .collect();
    let accounts: BTreeMap<&str, serde_json::Value> = s
        .respond
        .as_ref()
        .map(|r| {
            r.matrix
                .accounts()
                .iter()
                .map(|a| {
                    (
                        a.id.as_str(),
                        serde_json::json!({"name": a.name, "platform": a.platform.as_str()}),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    Json(serde_json::json!({ "categories": categories, "accounts": accounts }))
}

/// The wall's share of the service: the latest `stats` message, for stream clients.
#[derive(Clone)]
pub struct Wall {
    stats: watch::Receiver<Arc<str>>,
}

impl Wall {
    /// Start the sampler on `events` (the bus subscription of the API stage); it stops when
    /// the service's cancel token fires or the bus closes.
    pub fn start(state: &ApiState, events: Subscription) -> Wall {
        let first = Rates::new(STEP_MS, HISTORY).sample(now_ms(), accepted_total(), []);
        let (tx, rx) = watch::channel(Arc::from(first.to_json()));
        tokio::spawn(sampler(
            state.live.clone(),
            events,
            tx,
            state.cancel.clone(),
        ));
        Wall { stats: rx }
    }

    /// A receiver whose first `changed()` returns at once with the latest message, so a new
    /// client gets the history without waiting a step.
    pub fn stats(&self) -> watch::Receiver<Arc<str>> {
        let mut rx = self.stats.clone();
        rx.mark_changed();
        rx
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn accepted_total() -> u64 {
    crate::metrics::global().accepted_total()
}

/// The sampler task: counts `mention.assigned` per incident from the bus and publishes a
/// `stats` message every step. The bus drops events for it rather than wait when it falls
/// behind: the wall's counts are for display.
async fn sampler(
    live: LiveIncidents,
    mut bus: Subscription,
    tx: watch::Sender<Arc<str>>,
    cancel: tokio_util::sync::CancellationToken,
) {
    let mut rates = Rates::new(STEP_MS, HISTORY);
    // Prime the counters so the first published rate is a real difference.
    let _ = rates.sample(now_ms(), accepted_total(), []);
    let step = Duration::from_millis(STEP_MS.unsigned_abs());
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + step, step);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tick.tick() => {
                let open: Vec<String> = live
                    .read()
                    .unwrap_or_else(|p| p.into_inner())
                    .keys()
                    .cloned()
                    .collect();
                let msg = rates.sample(now_ms(), accepted_total(), open);
                tx.send_replace(Arc::from(msg.to_json()));
            }
            ev = bus.recv() => match ev.as_deref() {
                Some(Event::Assigned { incident_id, totals, .. }) => {
                    rates.assigned(incident_id);
                    rates.totals(incident_id, *totals);
                }
                Some(Event::Incident { incident, .. }) => {
                    rates.totals(&incident.id, (incident.mentions, incident.authors));
                }
                Some(_) => {}
                None => break,
            },
        }
    }
}

/// Rate histories: the global mention rate and mentions assigned per open incident, per
/// minute, one value per step. Time is an argument, so tests drive it.
#[derive(Debug)]
pub struct Rates {
    step_ms: i64,
    len: usize,
    last: Option<(i64, u64)>,
    global: VecDeque<f64>,
    counts: HashMap<String, u64>,
    incidents: BTreeMap<String, VecDeque<f64>>,
    /// Latest (mentions, authors) per incident.
    totals: HashMap<String, (u64, u64)>,
}

/// One `stats` message.
#[derive(Debug, Serialize)]
pub struct Stats {
    /// Always `stats`.
    pub event: &'static str,
    /// Wall-clock time of the sample (ms); unlike incident events, not event time.
    pub at: i64,
    /// Distance between samples (ms).
    pub step_ms: i64,
    /// Mentions accepted per minute over every feed, oldest first.
    pub mentions_per_min: Vec<f64>,
    /// Mentions assigned per minute, per open incident, oldest first (since the incident opened
    /// or the sampler started).
    pub incidents: BTreeMap<String, Vec<f64>>,
    /// `[mentions, authors]` per open incident at the same instant as the rates: a card shows
    /// its counts and its sparkline from one snapshot.
    pub totals: BTreeMap<String, [u64; 2]>,
}

impl Stats {
    /// The JSON line.
    pub fn to_json(&self) -> String {
        // Plain numbers and strings: serialising cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

impl Rates {
    /// Empty histories of `len` samples, `step_ms` apart.
    pub fn new(step_ms: i64, len: usize) -> Self {
        Rates {
            step_ms: step_ms.max(1),
            len: len.max(1),
            last: None,
            global: VecDeque::new(),
            counts: HashMap::new(),
            incidents: BTreeMap::new(),
            totals: HashMap::new(),
        }
    }

    /// The incident's latest counts (the larger wins: events may arrive out of order between
    /// an assignment and the update that counts it).
    pub fn totals(&mut self, incident: &str, (mentions, authors): (u64, u64)) {
        match self.totals.get_mut(incident) {
            Some(t) => *t = (t.0.max(mentions), t.1.max(authors)),
            None => {
                self.totals
                    .insert(incident.to_string(), (mentions, authors));
            }
        }
    }

    /// A mention was assigned to `incident`.
    pub fn assigned(&mut self, incident: &str) {
        match self.counts.get_mut(incident) {
            Some(n) => *n += 1,
            None => {
                self.counts.insert(incident.to_string(), 1);
            }
        }
    }

    /// Close the step ending at `now_ms`: `accepted_total` is the ever-growing count of
    /// accepted mentions, `open` the incidents open now (others are forgotten). The first call
    /// only sets the starting point.
    pub fn sample(
        &mut self,
        now_ms: i64,
        accepted_total: u64,
        open: impl IntoIterator<Item = String>,
    ) -> Stats {
        let counts = std::mem::take(&mut self.counts);
        if let Some((at, total)) = self.last {
            // The real elapsed time, not the nominal step: a late tick must not inflate a rate.
            let per_min = 60_000.0 / (now_ms - at).max(1) as f64;
            let rate = |n: u64| (n as f64 * per_min * 10.0).round() / 10.0;
            push(
                &mut self.global,
                rate(accepted_total.saturating_sub(total)),
                self.len,
            );
            let mut next = BTreeMap::new();
            for id in open {
                let mut h = self.incidents.remove(&id).unwrap_or_default();
                push(
                    &mut h,
                    rate(counts.get(&id).copied().unwrap_or(0)),
                    self.len,
                );
                next.insert(id, h);
            }
            self.incidents = next;
            let open = &self.incidents;
            self.totals.retain(|id, _| open.contains_key(id));
        }
        self.last = Some((now_ms, accepted_total));
        Stats {
            event: "stats",
            at: now_ms,
            step_ms: self.step_ms,
            mentions_per_min: self.global.iter().copied().collect(),
            incidents: self
                .incidents
                .iter()
                .map(|(k, v)| (k.clone(), v.iter().copied().collect()))
                .collect(),
            totals: self
                .incidents
                .keys()
                .filter_map(|k| self.totals.get(k).map(|t| (k.clone(), [t.0, t.1])))
                .collect(),
        }
    }
}

fn push(h: &mut VecDeque<f64>, v: f64, len: usize) {
    if h.len() == len {
        h.pop_front();
    }
    h.push_back(v);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn rates_are_per_minute_over_the_real_elapsed_time() {
        let mut r = Rates::new(5_000, 3);
        let s = r.sample(0, 100, ids(&["a"]));
        assert!(
            s.mentions_per_min.is_empty() && s.incidents.is_empty(),
            "{s:?}"
        );
        for _ in 0..4 {
            r.assigned("a");
        }
        r.assigned("gone");
        // 10 s elapsed (a late tick): 50 mentions → 300/min, 4 assigned → 24/min.
        let s = r.sample(10_000, 150, ids(&["a", "b"]));
        assert_eq!(s.mentions_per_min, vec![300.0]);
        assert_eq!(s.incidents["a"], vec![24.0]);
        assert_eq!(s.incidents["b"], vec![0.0]);
        assert!(!s.incidents.contains_key("gone"));
        assert_eq!(s.at, 10_000);
        let line: serde_json::Value = serde_json::from_str(&s.to_json()).expect("JSON");
        assert_eq!(line["event"], "stats");
        assert_eq!(line["step_ms"], 5_000);
    }

    /// Issue 16, item 6: the counts a card shows travel in the same message as its rates, as
    /// the assignments left them (not the last throttled `incident.updated`), and an older,
    /// smaller count arriving late never takes a count back.
    #[test]
    fn counts_come_with_the_rates_in_one_snapshot() {
        let mut r = Rates::new(5_000, 3);
        r.sample(0, 0, ids(&["a"]));
        r.totals("a", (5, 5));
        for n in 6..=9 {
            r.assigned("a");
            r.totals("a", (n, 7));
        }
        r.totals("a", (5, 5));
        r.totals("gone", (3, 3));
        let s = r.sample(5_000, 4, ids(&["a"]));
        assert_eq!(s.incidents["a"], vec![48.0]);
        assert_eq!(s.totals["a"], [9, 7]);
        assert!(!s.totals.contains_key("gone"));
        let line: serde_json::Value = serde_json::from_str(&s.to_json()).expect("JSON");
        assert_eq!(line["totals"]["a"], serde_json::json!([9, 7]));
    }

    #[test]
    fn histories_are_bounded_and_closed_incidents_forgotten() {
        let mut r = Rates::new(1_000, 3);
        r.sample(0, 0, ids(&["a"]));
        for t in 1..=5u64 {
            for _ in 0..t {
                r.assigned("a");
            }
            r.sample(t as i64 * 1_000, t * 10, ids(&["a"]));
        }
        let s = r.sample(6_000, 60, Vec::new());
        assert_eq!(s.mentions_per_min, vec![600.0, 600.0, 600.0]);
        assert!(s.incidents.is_empty());
        let s = r.sample(7_000, 60, ids(&["a"]));
        // Reopened (or restored): a fresh history, not the old one.
        assert_eq!(s.incidents["a"], vec![0.0]);
        assert_eq!(s.mentions_per_min.len(), 3);
    }

    #[test]
    fn the_cartogram_has_the_34_divisions_once_each_on_distinct_tiles() {
        let v: serde_json::Value = serde_json::from_str(CHINA_TILES).expect("cartogram JSON");
        let tiles = v["tiles"].as_array().expect("tiles");
        assert_eq!(tiles.len(), 34);
        let mut codes = std::collections::BTreeSet::new();
        let mut cells = std::collections::BTreeSet::new();
        for t in tiles {
            let code = t["code"].as_str().expect("code");
            assert!(code.len() == 6 && code.ends_with("0000"), "{t}");
            assert!(codes.insert(code.to_string()), "duplicate code {code}");
            let cell = (
                t["col"].as_u64().expect("col"),
                t["row"].as_u64().expect("row"),
            );
            assert!(cells.insert(cell), "two tiles on {cell:?}");
            for k in ["zh", "short", "en"] {
                assert!(t[k].as_str().is_some_and(|s| !s.is_empty()), "{t}: {k}");
            }
        }
    }
}
