//! The alerts stage: incident events and a periodic look at the waiting drafts become alerts
//! ([`super::Alert`]), each enqueued once per target in the outbox (its job id is derived from
//! the alert id, so a repeat — another event, another instance of a fleet — adds nothing), and
//! kept for `GET /api/alerts?since=MS` (viewer and up: the console's browser notifications).
//! Off (no task; the route answers an empty list) without rules or without the respond stage.

use super::{describe, parse_target, Alert, AlertsConfig, Target, Trigger};
use crate::api::auth::{Access, Role};
use crate::api::routes::Routes;
use crate::bus::{Delivery, Interest};
use crate::incidents::{Event, EventKind, Incident, IncidentState};
use crate::respond::dispatch::system_now_ms;
use crate::respond::notices::{NoticeFilter, NoticeState};
use crate::respond::outbox::{ActionKind, NewJob, Priority};
use crate::respond::stage::Respond;
use crate::stage::{Context, Handle};
use axum::extract::{Query, State};
use axum::routing::get;
use axum::Json;
use serde::Deserialize;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Alerts kept for the console.
pub const KEPT: usize = 200;
/// How often the waiting drafts are looked at.
pub const WAITING_EVERY: Duration = Duration::from_secs(5);

/// The alerts raised, newest last (shared with the route).
#[derive(Default)]
pub struct Raised {
    seen: HashSet<String>,
    list: VecDeque<Alert>,
}

type Shared = Arc<Mutex<Raised>>;

fn lock(s: &Shared) -> std::sync::MutexGuard<'_, Raised> {
    s.lock().unwrap_or_else(|p| p.into_inner())
}

/// Start (see the module docs). `listen` is the service's address (the default link base).
pub fn start(
    cfg: &AlertsConfig,
    cx: &mut Context,
    respond: Option<Arc<Respond>>,
    listen: &str,
) -> anyhow::Result<Handle> {
    let raised: Shared = Arc::new(Mutex::new(Raised::default()));
    let routes = std::mem::take(&mut cx.routes);
    cx.routes = routes.merge(
        Routes::new()
            .route("/api/alerts", Access::Role(Role::Viewer), get(list))
            .with_state(raised.clone()),
    );
    let Some(r) = respond.filter(|_| !cfg.rule.is_empty()) else {
        if !cfg.rule.is_empty() {
            tracing::warn!("Alerts need the respond stage (its outbox and bots): alerts are off.");
        }
        return Ok(Handle::new("alerts", Vec::new()));
    };
    let bots: Vec<String> = r.bots.clone();
    cfg.check(&bots, r.mail).map_err(anyhow::Error::msg)?;
    let base = cfg
        .console_url
        .clone()
        .unwrap_or_else(|| format!("http://{listen}"))
        .trim_end_matches('/')
        .to_string();
    let alerter = Arc::new(Alerter {
        cfg: cfg.clone(),
        respond: r,
        raised: raised.clone(),
        base,
    });
    let rx = cx
        .bus
        .subscribe("alerts", 4_096, Delivery::DropWhenFull, Interest::Incidents);
    let cancel = cx.cancel.clone();
    let task = tokio::spawn(run(alerter, rx, cancel));
    tracing::info!(rules = cfg.rule.len(), bots = bots.len(), "Alerts on.");
    Ok(Handle::new("alerts", vec![task]))
}

struct Alerter {
    cfg: AlertsConfig,
    respond: Arc<Respond>,
    raised: Shared,
    base: String,
}

async fn run(
    a: Arc<Alerter>,
    mut rx: tokio::sync::mpsc::Receiver<Arc<Event>>,
    cancel: tokio_util::sync::CancellationToken,
) {
    // The open incidents the rules care about (for the waiting check).
    let mut open: HashMap<String, Arc<Incident>> = HashMap::new();
    let mut tick = tokio::time::interval(WAITING_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            ev = rx.recv() => {
                let Some(ev) = ev else { return };
                let Event::Incident { kind, incident, .. } = &*ev else { continue };
                if *kind == EventKind::Closed || incident.state != IncidentState::Open {
                    open.remove(&incident.id);
                    continue;
                }
                open.insert(incident.id.clone(), incident.clone());
                let a2 = a.clone();
                let inc = incident.clone();
                let _ = tokio::task::spawn_blocking(move || a2.on_incident(&inc)).await;
            }
            _ = tick.tick() => {
                let a2 = a.clone();
                let incidents: Vec<Arc<Incident>> = open.values().cloned().collect();
                let _ = tokio::task::spawn_blocking(move || a2.check_waiting(&incidents, system_now_ms())).await;
            }
        }
    }
}

impl Alerter {
    fn names(&self, inc: &Incident) -> (String, String) {
        let (zh, en) = self.respond.templates.category_names(&inc.category);
        describe(inc, zh, en)
    }

    /// Where the rules send an alert about `inc` (for a waiting notice: only the rules that
    /// ask for those), each target once.
    fn targets(&self, inc: &Incident, waiting: bool) -> Vec<Target> {
        let mut out = Vec::new();
        for r in self
            .cfg
            .rule
            .iter()
            .filter(|r| (!waiting || r.waiting) && r.matches(inc))
        {
            for t in r.to.iter().map(|t| parse_target(t)) {
                if !out.contains(&t) {
                    out.push(t);
                }
            }
        }
        out
    }

    /// A severe incident opened or rose to a new severity: one alert per severity reached.
    fn on_incident(&self, inc: &Incident) {
        let targets = self.targets(inc, false);
        if targets.is_empty() {
            return;
        }
        let (what_zh, what_en) = self.names(inc);
        let alert = Alert {
            id: format!("incident:{}:{}", inc.id, inc.severity),
            at: system_now_ms(),
            trigger: Trigger::Incident,
            incident_id: inc.id.clone(),
            notice_id: None,
            severity: inc.severity,
            title_zh: format!("{}级 {what_zh}", inc.severity),
            title_en: format!("severity {} {what_en}", inc.severity),
            link: format!("{}/console#incident={}", self.base, inc.id),
        };
        self.raise(alert, &targets);
    }

    /// Drafts of matching incidents waiting longer than `notice_wait_minutes`: one alert each.
    fn check_waiting(&self, open: &[Arc<Incident>], now: i64) {
        let wait = i64::from(self.cfg.notice_wait_minutes) * 60_000;
        let Ok(drafts) = self.respond.notices.list(&NoticeFilter {
            state: Some(NoticeState::Draft),
            ..Default::default()
        }) else {
            return;
        };
        for n in drafts.iter().filter(|n| now - n.created_at >= wait) {
            let Some(inc) = open.iter().find(|i| i.id == n.incident_id) else {
                continue;
            };
            let targets = self.targets(inc, true);
            if targets.is_empty() {
                continue;
            }
            let (what_zh, what_en) = self.names(inc);
            let minutes = (now - n.created_at) / 60_000;
            let alert = Alert {
                id: format!("waiting:{}", n.id),
                at: now,
                trigger: Trigger::Waiting,
                incident_id: inc.id.clone(),
                notice_id: Some(n.id.clone()),
                severity: n.severity,
                title_zh: format!(
                    "通告待审批 {minutes} 分钟（{}/{}）· {what_zh}",
                    n.approvals.len(),
                    n.required_approvals
                ),
                title_en: format!(
                    "notice waiting {minutes} min for approval ({}/{}) · {what_en}",
                    n.approvals.len(),
                    n.required_approvals
                ),
                link: format!("{}/console#notice={}", self.base, n.id),
            };
            self.raise(alert, &targets);
        }
    }

    /// Keep the alert and enqueue its messages, once.
    fn raise(&self, alert: Alert, targets: &[Target]) {
        {
            let mut r = lock(&self.raised);
            if !r.seen.insert(alert.id.clone()) {
                return;
            }
            r.list.push_back(alert.clone());
            while r.list.len() > KEPT {
                if let Some(old) = r.list.pop_front() {
                    r.seen.remove(&old.id);
                }
            }
        }
        let key = format!("alert:{}", alert.id);
        let text = alert.text();
        let mut jobs = Vec::new();
        for t in targets {
            jobs.push(match t {
                Target::Bot(b) => NewJob::new(
                    &key,
                    &format!("bot:{b}"),
                    ActionKind::Post,
                    Priority::Emergency,
                    &text,
                ),
                Target::Mail(to) => NewJob::new(
                    &key,
                    crate::respond::publish::email::MAIL_ACCOUNT,
                    ActionKind::Mail,
                    Priority::Emergency,
                    &text,
                )
                .in_reply_to(to),
            });
        }
        match self.respond.outbox.enqueue_all(jobs, alert.at) {
            Ok(_) => {
                tracing::info!(alert = %alert.id, targets = targets.len(), "Alert sent to the people on duty.");
                self.respond.wake.notify_one();
            }
            Err(e) => tracing::error!(alert = %alert.id, error = %e, "Cannot enqueue an alert."),
        }
    }
}

#[derive(Debug, Deserialize)]
struct ListParams {
    since: Option<i64>,
}

/// `GET /api/alerts?since=MS`: the alerts raised after `since` (default: all kept), oldest first.
async fn list(
    State(raised): State<Shared>,
    Query(p): Query<ListParams>,
) -> Json<serde_json::Value> {
    let since = p.since.unwrap_or(i64::MIN);
    let alerts: Vec<Alert> = lock(&raised)
        .list
        .iter()
        .filter(|a| a.at > since)
        .cloned()
        .collect();
    Json(serde_json::json!({ "alerts": alerts, "now": system_now_ms() }))
}
