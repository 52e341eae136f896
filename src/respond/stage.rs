//! The respond stage as the service runs it: the matrix and templates from the rules directory,
//! the notice workflow over its `redb` store, the durable outbox, the audit log, the rate limits
//! on the real clock, one publisher per account, the dispatcher task and the drafting task that
//! turns incidents at or above the policy's threshold into drafts.
//!
//! Started by [`crate::app::start`] when `[respond] enabled` (the default) and the rules
//! directory has valid `matrix/` and `templates/`; otherwise the stage is off (with a warning)
//! and the API's notice endpoints answer 503 `respond_disabled`.

use crate::bus::{Delivery, Interest};
use crate::detect::reload::SharedRules;
use crate::incidents::{Event, EventKind, Incident, IncidentKind, IncidentState};
use crate::metrics::respond::{LANES, NOTICE_STATES};
use crate::respond::audit::AuditLog;
use crate::respond::dispatch::{system_now_ms, Dispatcher, Route};
use crate::respond::limits::RedisLimiter;
use crate::respond::limits::SharedLimiter;
use crate::respond::limits::{Limits, Profile};
use crate::respond::matrix::{Matrix, Platform};
use crate::respond::notices::{
    NoticeError, NoticeFilter, NoticeState, NoticeStore, Notices, SYSTEM,
};
use crate::respond::outbox::{Outbox, OutboxStore};
use crate::respond::outbox::{RedisOutbox, RedisOutboxConfig};
use crate::respond::publish::{
    http_client, AnyPublisher, FilePublisher, MastodonPublisher, WebhookPublisher, WeiboPublisher,
};
use crate::respond::redis::Blocking;
use crate::respond::replies;
use crate::respond::templates::Templates;
use crate::respond::RespondConfig;
use crate::stage::{Context, Handle};
use anyhow::Context as _;
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;

/// The running respond stage, shared by the API handlers.
pub struct Respond {
    /// The notice workflow.
    pub notices: Arc<Notices>,
    /// The durable outbox.
    pub outbox: Arc<dyn OutboxStore>,
    /// The account matrix.
    pub matrix: Arc<Matrix>,
    /// The notice templates.
    pub templates: Arc<Templates>,
    /// The rate limits.
    pub limits: Arc<Limits>,
    /// The audit log.
    pub audit: Arc<Mutex<AuditLog>>,
    /// The live rules (regions, categories).
    pub rules: SharedRules,
    /// Wakes the dispatcher (a notice became `publishing`, publishing resumed).
    pub wake: Arc<Notify>,
    /// Whether e-mail goes out (`[respond.smtp]`, through the account `smtp`).
    pub mail: bool,
    /// The IM group bots (`[[respond.bots]]` ids; account `bot:<id>`).
    pub bots: Vec<String>,
}

impl std::fmt::Debug for Respond {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Respond")
            .field("accounts", &self.matrix.accounts().len())
            .finish_non_exhaustive()
    }
}

impl Respond {
    /// Wake the dispatcher if `state` means jobs were enqueued.
    pub fn wake_if_publishing(&self, state: NoticeState) {
        if state == NoticeState::Publishing {
            self.wake.notify_one();
        }
    }
}

/// Load the matrix and templates from `rules_dir`. `Ok(None)` (with a warning) when the stage
/// cannot run from these rules.
fn load_rules(rules_dir: &Path, rules: &SharedRules) -> Option<(Matrix, Templates)> {
    let rs = rules.load();
    let (mdir, tdir) = (rules_dir.join("matrix"), rules_dir.join("templates"));
    if !mdir.is_dir() || !tdir.is_dir() {
        tracing::warn!(
            rules = %rules_dir.display(),
            "No matrix/ or templates/ in the rules directory: the respond stage is off."
        );
        return None;
    }
    let matrix = match Matrix::load(&mdir, &rs) {
        Ok(m) => m,
        Err(e) => {
            tracing::warn!(errors = %e, "The account matrix is invalid: the respond stage is off.");
            return None;
        }
    };
    let templates = match Templates::load(&tdir, &rs) {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(errors = %e, "The notice templates are invalid: the respond stage is off.");
            return None;
        }
    };
    Some((matrix, templates))
}

/// Start the respond stage: the dispatcher, the gauges and the drafting task (incident events
/// from the bus, dropped when its queue is full: drafting is idempotent and every update
/// carries the incident again). The stage is `None` when it is disabled or its rules are
/// missing/invalid; storage that cannot be opened is an error. With a shared Redis the outbox,
/// limits, notices and audit log are the fleet's.
pub async fn start(
    cfg: &RespondConfig,
    cx: &mut Context,
) -> anyhow::Result<(Handle, Option<Arc<Respond>>)> {
    let off = |cx: &mut Context| {
        // Its routes answer 503 `respond_disabled` while the stage is off.
        add_routes(cx, None);
        Ok((Handle::new("respond", Vec::new()), None))
    };
    if !cfg.enabled {
        tracing::info!("The respond stage is disabled in the config.");
        return off(cx);
    }
    let rd = cx.rules_dir.clone();
    let rules = cx.rules.clone();
    let r2 = rules.clone();
    let Some((matrix, templates)) =
        tokio::task::spawn_blocking(move || load_rules(&rd, &r2)).await?
    else {
        return off(cx);
    };
    let shared = cx
        .redis
        .as_ref()
        .map(|r| (r.url().to_string(), r.settings().clone()));

    let data_dir = cfg.data_dir.clone();
    let policy = cfg.policy.clone();
    let sh = shared.clone();
    let (store, outbox, audit, limiter) = tokio::task::spawn_blocking(move || {
        std::fs::create_dir_all(&data_dir)
            .with_context(|| format!("cannot create {}", data_dir.display()))?;
        if let Some((url, settings)) = sh {
            let db = Arc::new(
                Blocking::new(&url, &settings)
                    .map_err(|e| anyhow::anyhow!("the Redis URL of `store`: {e}"))?,
            );
            let ns = settings.namespace.as_str();
            let outbox: Arc<dyn OutboxStore> = Arc::new(
                RedisOutbox::new(db.clone(), RedisOutboxConfig::from_settings(&settings, ns))
                    .context("the outbox on Redis")?,
            );
            let limiter: Arc<dyn SharedLimiter> = Arc::new(RedisLimiter::new(db.clone(), ns));
            let audit = AuditLog::shared(db.clone(), ns).context("the audit log on Redis")?;
            return anyhow::Ok((NoticeStore::redis(db, ns), outbox, audit, Some(limiter)));
        }
        let audit = AuditLog::open(&data_dir.join("audit.jsonl"))
            .with_context(|| format!("audit log in {}", data_dir.display()))?;
        let store = NoticeStore::open(&data_dir.join("notices.redb"))
            .with_context(|| format!("notice store in {}", data_dir.display()))?;
        let outbox: Arc<dyn OutboxStore> = Arc::new(
            Outbox::open(&data_dir.join("outbox.redb"))
                .with_context(|| format!("outbox in {}", data_dir.display()))?,
        );
        anyhow::Ok((store, outbox, audit, None))
    })
    .await??;
    let audit = Arc::new(Mutex::new(audit));
    let notices = Arc::new(Notices::new(store, outbox.clone(), audit.clone(), policy));

    // Limits on the real clock, a publisher per account.
    let limits = Arc::new(Limits::new(crate::clock::SystemClock));
    if let Some(l) = limiter {
        limits.share(l);
    }
    let client = http_client(Duration::from_secs(20)).context("http client")?;
    let mut dispatcher =
        Dispatcher::new(outbox.clone(), Arc::clone(&limits)).with_audit(audit.clone());
    let mut routed = 0usize;
    let drill = match &cfg.drill_sink {
        Some(p) => Some(
            FilePublisher::open(p).with_context(|| format!("the drill sink {}", p.display()))?,
        ),
        None => None,
    };
    if let Some(d) = &drill {
        tracing::info!(sink = %d.path().display(), "Drill: every account publishes to the file sink.");
    }
    for a in matrix.accounts() {
        let id = a.id.as_str();
        limits.add_account(
            id,
            Profile {
                posts_per_hour: a.profile.posts_per_hour,
                comments_per_hour: a.profile.comments_per_hour,
                reposts_per_hour: a.profile.reposts_per_hour,
                burst: 1,
            },
        );
        if let Some(d) = &drill {
            let mut route = Route::new(d.clone(), &a.handle);
            route.language = Some(a.lang.as_str().to_string());
            dispatcher.add_account(id, route);
            routed += 1;
            continue;
        }
        let token = match a.token() {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(account = id, error = %e, "Account has no token: it will not publish.");
                continue;
            }
        };
        let endpoint = a.endpoint().unwrap_or_default().to_string();
        let publisher: AnyPublisher = match (a.platform, token) {
            (Platform::Mastodon, Some(t)) => {
                MastodonPublisher::new(client.clone(), &endpoint, t).into()
            }
            (Platform::Weibo, Some(t)) => WeiboPublisher::new(client.clone(), &endpoint, t).into(),
            (Platform::Webhook, Some(t)) => {
                WebhookPublisher::new(client.clone(), endpoint.clone(), t.into_bytes()).into()
            }
            (Platform::File, _) => match FilePublisher::open(&endpoint) {
                Ok(p) => p.into(),
                Err(e) => {
                    tracing::warn!(account = id, error = %e, "Cannot open the file sink: the account will not publish.");
                    continue;
                }
            },
            (_, None) => {
                tracing::warn!(account = id, "Account has no token: it will not publish.");
                continue;
            }
        };
        let mut route = Route::new(publisher, &a.handle);
        route.language = Some(a.lang.as_str().to_string());
        dispatcher.add_account(id, route);
        routed += 1;
    }
    let mail = match &cfg.smtp {
        None => false,
        Some(smtp) => {
            let creds = secret_from_env(
                smtp.credentials_env.as_deref(),
                "[respond.smtp] credentials_env:",
            )?;
            let publisher = crate::respond::publish::EmailPublisher::new(
                &smtp.url,
                &smtp.from,
                creds.as_deref(),
                Duration::from_secs(smtp.timeout_secs.max(1)),
            )
            .map_err(|e| anyhow::anyhow!("[respond.smtp] {e}"))?;
            let id = crate::respond::publish::email::MAIL_ACCOUNT;
            limits.add_account(
                id,
                Profile {
                    posts_per_hour: smtp.per_hour,
                    comments_per_hour: 0,
                    reposts_per_hour: 0,
                    burst: 1,
                },
            );
            let route = match &drill {
                Some(d) => Route::new(d.clone(), &smtp.from),
                None => Route::new(publisher, &smtp.from),
            };
            dispatcher.add_account(id, route);
            tracing::info!(from = %smtp.from, "E-mail on: the `smtp` account sends mail jobs.");
            true
        }
    };
    for bot in &cfg.bots {
        let what = |field: &str| format!("[[respond.bots]] {}: {field}", bot.id);
        let url = secret_from_env(Some(&bot.url_env), &what("url_env"))?.unwrap_or_default();
        let secret = secret_from_env(bot.secret_env.as_deref(), &what("secret_env"))?;
        let id = bot.account();
        limits.add_account(
            &id,
            Profile {
                posts_per_hour: bot.per_hour,
                comments_per_hour: 0,
                reposts_per_hour: 0,
                burst: 1,
            },
        );
        let route = match &drill {
            Some(d) => Route::new(d.clone(), &id),
            None => Route::new(
                crate::respond::publish::imbot::ImBotPublisher::new(
                    client.clone(),
                    bot.kind,
                    url,
                    secret,
                ),
                &id,
            ),
        };
        dispatcher.add_account(&id, route);
        tracing::info!(bot = %bot.id, kind = bot.kind.as_str(), "IM bot on: alerts go to it.");
    }
    tracing::info!(
        accounts = matrix.accounts().len(),
        publishing = routed,
        "Respond stage on."
    );

    let wake = dispatcher.notifier();
    let respond = Arc::new(Respond {
        notices,
        outbox,
        matrix: Arc::new(matrix),
        templates: Arc::new(templates),
        limits,
        audit,
        rules,
        wake,
        mail,
        bots: cfg.bots.iter().map(|b| b.id.clone()).collect(),
    });

    let mut tasks = Vec::new();
    let is_shared = shared.is_some();
    {
        let c = cx.cancel.clone();
        tasks.push(tokio::spawn(async move {
            // Shared: jobs approved on another instance wake nobody here, so look more often.
            let idle = if is_shared {
                Duration::from_secs(1)
            } else {
                Duration::from_secs(5)
            };
            dispatcher.run(c, idle).await;
        }));
    }
    tasks.push(tokio::spawn(gauges(respond.clone(), cx.cancel.clone())));
    let rx = cx
        .bus
        .subscribe("respond", 4096, Delivery::DropWhenFull, Interest::Incidents);
    tasks.push(tokio::spawn(drafter(
        respond.clone(),
        rx,
        cx.cancel.clone(),
    )));
    add_routes(cx, Some(respond.clone()));
    cx.audit = Some(respond.audit.clone());
    Ok((Handle::new("respond", tasks), Some(respond)))
}

/// The value of the environment variable `var` (a credential: never logged), `None` without
/// one; an unset variable is an error naming `what` (the config field) and the variable.
fn secret_from_env(var: Option<&str>, what: &str) -> anyhow::Result<Option<String>> {
    match var {
        None => Ok(None),
        Some(var) => std::env::var(var)
            .map(Some)
            .map_err(|_| anyhow::anyhow!("{what} {var} is not set")),
    }
}

fn add_routes(cx: &mut Context, stage: Option<Arc<Respond>>) {
    let routes = std::mem::take(&mut cx.routes);
    cx.routes = routes.merge(super::api::routes(stage));
}

/// Refresh the gauges that are read off the stores (notices by state, outbox depth by lane and
/// its oldest job) every [`GAUGE_PERIOD`].
async fn gauges(r: Arc<Respond>, cancel: CancellationToken) {
    let m = crate::metrics::respond::respond();
    loop {
        let r2 = r.clone();
        let read = tokio::task::spawn_blocking(move || {
            let notices = r2.notices.list(&NoticeFilter::default());
            let lanes = r2.outbox.depth_by_lane();
            let oldest = r2.outbox.oldest_pending_age(system_now_ms());
            (notices, lanes, oldest)
        })
        .await;
        match read {
            Ok((notices, lanes, oldest)) => {
                match notices {
                    Ok(ns) => {
                        let mut by_state = [0i64; NOTICE_STATES.len()];
                        for n in &ns {
                            if let Some(i) =
                                NOTICE_STATES.iter().position(|s| *s == n.state.as_str())
                            {
                                by_state[i] += 1;
                            }
                        }
                        for (s, v) in NOTICE_STATES.iter().zip(by_state) {
                            m.notices.with_label_values(&[s]).set(v);
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "Cannot count notices."),
                }
                match lanes {
                    Ok(l) => {
                        for (lane, v) in LANES.iter().zip(l) {
                            m.outbox_jobs
                                .with_label_values(&[lane])
                                .set(i64::try_from(v).unwrap_or(i64::MAX));
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "Cannot read the outbox depth."),
                }
                match oldest {
                    Ok(a) => m.outbox_oldest_age.set(a.map_or(0.0, |d| d.as_secs_f64())),
                    Err(e) => tracing::warn!(error = %e, "Cannot read the outbox's oldest job."),
                }
            }
            Err(e) => tracing::error!(error = %e, "Gauge task failed."),
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(GAUGE_PERIOD) => {}
        }
    }
}

/// How often [`gauges`] reads the stores.
pub const GAUGE_PERIOD: Duration = Duration::from_secs(2);

/// How often the open rumor incidents are checked for rebuttal replies to add (an approval
/// in between is picked up at the next check; an incident event checks its incident at once).
pub const REPLY_PERIOD: Duration = Duration::from_secs(2);

/// Add the rebuttal replies due for one rumor incident ([`crate::respond::replies`]); returns
/// how many jobs were added.
fn add_replies(r: &Respond, inc: &Incident) -> Result<usize, NoticeError> {
    let notices = r.notices.list(&NoticeFilter {
        incident_id: Some(inc.id.clone()),
        kind: Some(IncidentKind::Rumor),
        ..NoticeFilter::default()
    })?;
    let mut jobs = Vec::new();
    for n in &notices {
        jobs.extend(r.outbox.jobs_for_notice(&n.id)?);
    }
    let policy = &r.notices.policy().replies;
    let mut added = 0;
    for n in &notices {
        let new = replies::plan(n, inc, &r.matrix, &jobs, policy);
        if new.is_empty() {
            continue;
        }
        let before = n.jobs.len();
        let after = r.notices.add_replies(&n.id, new, system_now_ms())?;
        added += after.jobs.len().saturating_sub(before);
        jobs = Vec::new();
        for n in &notices {
            jobs.extend(r.outbox.jobs_for_notice(&n.id)?);
        }
    }
    Ok(added)
}

/// [`add_replies`] off the async threads, logged.
async fn reply(r: &Arc<Respond>, incidents: Vec<Arc<Incident>>) {
    let r2 = r.clone();
    let res = tokio::task::spawn_blocking(move || {
        let mut added = 0;
        for inc in &incidents {
            match add_replies(&r2, inc) {
                Ok(n) => {
                    if n > 0 {
                        tracing::info!(incident = %inc.id, replies = n, "Rebuttal replies enqueued.");
                    }
                    added += n;
                }
                Err(e) => {
                    tracing::warn!(incident = %inc.id, error = %e, "Cannot plan rebuttal replies.")
                }
            }
        }
        added
    })
    .await;
    match res {
        Ok(n) if n > 0 => r.wake.notify_one(),
        Ok(_) => {}
        Err(e) => tracing::error!(error = %e, "Reply planning task failed."),
    }
}

/// [`Notices::follow_incident`](crate::respond::notices::Notices::follow_incident) off the
/// async threads, logged.
async fn follow(r: &Arc<Respond>, inc: Arc<Incident>) {
    let r2 = r.clone();
    let id = inc.id.clone();
    let res = tokio::task::spawn_blocking(move || {
        let rules = r2.rules.load();
        r2.notices
            .follow_incident(&inc, &rules, &r2.matrix, &r2.templates, system_now_ms())
    })
    .await;
    match res {
        Ok(Ok(Some(n))) => {
            tracing::info!(notice = %n.id, incident = %id, purpose = n.purpose.as_str(), state = %n.state, "Follow-up notice drafted.");
            r.wake_if_publishing(n.state);
        }
        Ok(Ok(None)) => {}
        Ok(Err(e)) => {
            tracing::warn!(incident = %id, error = %e, "Cannot follow the incident's notices.")
        }
        Err(e) => tracing::error!(error = %e, "Follow-up task failed."),
    }
}

/// Send the automatically approved notices whose hold has ended.
async fn release_held(r: &Arc<Respond>) {
    let r2 = r.clone();
    match tokio::task::spawn_blocking(move || r2.notices.release_held(system_now_ms())).await {
        Ok(Ok(sent)) => {
            for n in &sent {
                tracing::info!(notice = %n.id, "Hold ended: the notice is published.");
            }
            if !sent.is_empty() {
                r.wake.notify_one();
            }
        }
        Ok(Err(e)) => tracing::warn!(error = %e, "Cannot release held notices."),
        Err(e) => tracing::error!(error = %e, "Hold release task failed."),
    }
}

/// What of an incident its notices follow: severity, region, whether it is open.
type Followed = (u8, Option<String>, bool);

fn followed(inc: &Incident) -> Followed {
    (
        inc.severity,
        inc.region.as_ref().map(|r| r.code.clone()),
        inc.state == IncidentState::Open,
    )
}

/// Draft a notice for every open incident at or above the threshold (once per incident), keep
/// its notices in step when its severity, region or state changes
/// ([`Notices::follow_incident`]), and keep the open rumor incidents' latest state to answer
/// their most-spread posts once their rebuttal is approved.
///
/// [`Notices::follow_incident`]: crate::respond::notices::Notices::follow_incident
async fn drafter(r: Arc<Respond>, mut rx: mpsc::Receiver<Arc<Event>>, cancel: CancellationToken) {
    let mut drafted: HashSet<String> = HashSet::new();
    let mut seen: HashMap<String, Followed> = HashMap::new();
    let mut rumors: HashMap<String, Arc<Incident>> = HashMap::new();
    let mut tick = tokio::time::interval(REPLY_PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let ev = tokio::select! {
            _ = cancel.cancelled() => return,
            ev = rx.recv() => match ev { Some(e) => e, None => return },
            _ = tick.tick() => {
                if !rumors.is_empty() {
                    reply(&r, rumors.values().cloned().collect()).await;
                }
                release_held(&r).await;
                continue;
            }
        };
        let Event::Incident { kind, incident, .. } = &*ev else {
            continue;
        };
        // An emerging incident names no category, so no template fits: an operator judges it
        // first (dismisses it, or promotes it into the rules; the rule incident that follows
        // is drafted for).
        if incident.kind == IncidentKind::Emerging {
            continue;
        }
        if incident.kind == IncidentKind::Rumor {
            if incident.state == IncidentState::Open {
                rumors.insert(incident.id.clone(), incident.clone());
                reply(&r, vec![incident.clone()]).await;
            } else {
                rumors.remove(&incident.id);
            }
        }
        // Follow a change of an incident that has notices (after a restart `seen` is empty:
        // the first event of each incident is checked once).
        let now = followed(incident);
        let changed = seen.get(&incident.id) != Some(&now);
        if (drafted.contains(&incident.id) || *kind == EventKind::Closed) && changed {
            seen.insert(incident.id.clone(), now);
            if *kind == EventKind::Closed {
                seen.remove(&incident.id);
                drafted.remove(&incident.id);
            }
            follow(&r, incident.clone()).await;
            continue;
        }
        if !matches!(kind, EventKind::Opened | EventKind::Updated)
            || incident.state != IncidentState::Open
            || drafted.contains(&incident.id)
            || !r.notices.policy().drafts(incident.severity)
        {
            continue;
        }
        let r2 = r.clone();
        let inc = incident.clone();
        let res = tokio::task::spawn_blocking(move || {
            let rules = r2.rules.load();
            r2.notices.draft_from_incident(
                &inc,
                &rules,
                &r2.matrix,
                &r2.templates,
                system_now_ms(),
                SYSTEM,
            )
        })
        .await;
        match res {
            Ok(Ok(n)) => {
                tracing::info!(notice = %n.id, incident = %incident.id, state = %n.state, "Notice drafted.");
                drafted.insert(incident.id.clone());
                seen.insert(incident.id.clone(), followed(incident));
                r.wake_if_publishing(n.state);
                // Drafted before (a restart, another instance): the incident may have moved on
                // since (a no-op when it has not).
                follow(&r, incident.clone()).await;
            }
            Ok(Err(NoticeError::BelowThreshold { .. })) => {}
            Ok(Err(e)) => {
                tracing::warn!(incident = %incident.id, error = %e, "Cannot draft a notice.");
                // Not retried for every update of a broken incident: once is enough.
                drafted.insert(incident.id.clone());
            }
            Err(e) => tracing::error!(error = %e, "Drafting task failed."),
        }
    }
}
