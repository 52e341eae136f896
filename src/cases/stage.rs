//! The cases stage as the service runs it: the router, calendar and texts from the rules
//! directory, the case store (`cases.redb` in `data_dir`, or the fleet's Redis), the workflow
//! over the respond stage's outbox and audit log, one task that takes `mention.request` events
//! from the bus (waited for: a request is never dropped) and one that supervises deadlines.
//!
//! Off (with a warning, its routes answering 503 `cases_disabled`) when `[cases] enabled =
//! false`, the respond stage is off, or the rules have no valid `routing/` and `cases/`.

use super::api;
use super::config::CasesConfig;
use super::deadlines::Calendar;
use super::routing::Router;
use super::store::CaseStore;
use super::texts::Texts;
use super::workflow::{Cases, MentionOutcome, Outlet};
use crate::bus::{Delivery, Interest};
use crate::incidents::Event;
use crate::respond::dispatch::system_now_ms;
use crate::respond::stage::Respond;
use crate::stage::{Context, Handle};
use anyhow::Context as _;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

/// Requests kept for a retry when the store or the audit log refused them (oldest dropped,
/// counted, beyond this).
const RETRY_CAP: usize = 10_000;

fn load(rules_dir: &std::path::Path) -> Result<(Router, Calendar, Texts), String> {
    let router = Router::load(rules_dir).map_err(|e| e.to_string())?;
    let calendar = Calendar::load(&rules_dir.join("cases/calendar.toml"), &super::KINDS)
        .map_err(|e| e.to_string())?;
    let texts = Texts::load(rules_dir).map_err(|e| e.to_string())?;
    Ok((router, calendar, texts))
}

/// Start the stage (see the module docs); the workflow is `None` when the stage is off.
pub async fn start(
    cfg: &CasesConfig,
    cx: &mut Context,
    respond_data_dir: &std::path::Path,
    respond: Option<&Arc<Respond>>,
) -> anyhow::Result<(Handle, Option<Arc<Cases>>)> {
    let off = |cx: &mut Context| {
        let routes = std::mem::take(&mut cx.routes);
        cx.routes = routes
            .merge(api::routes(None))
            .merge(super::open311::routes(None));
        Ok((Handle::new("cases", Vec::new()), None))
    };
    if !cfg.enabled {
        tracing::info!("The cases stage is disabled in the config.");
        return off(cx);
    }
    cfg.validate().map_err(anyhow::Error::msg)?;
    let Some(respond) = respond else {
        // Acknowledgements, answers and the audit log are the respond stage's.
        tracing::warn!("The respond stage is off: the cases stage is off too.");
        return off(cx);
    };
    let rd = cx.rules_dir.clone();
    let loaded = tokio::task::spawn_blocking(move || load(&rd)).await?;
    let (router, calendar, texts) = match loaded {
        Ok(x) => x,
        Err(e) => {
            tracing::warn!(errors = %e, "No valid rules/routing or rules/cases: the cases stage is off.");
            return off(cx);
        }
    };
    for d in cfg
        .members
        .keys()
        .chain(cfg.duty_addresses.keys())
        .chain(cfg.supervisor.iter())
    {
        if router.departments.get(d).is_none() {
            anyhow::bail!("[cases]: unknown department {d:?} (not in rules/routing/)");
        }
    }
    let outlet = Some(Outlet {
        outbox: respond.outbox.clone(),
        matrix: respond.matrix.clone(),
        wake: respond.wake.clone(),
        mail: respond.mail,
    });
    if let Some(d) = calendar
        .departments()
        .find(|d| router.departments.get(d).is_none())
    {
        anyhow::bail!("rules/cases/calendar.toml: a deadline names department {d:?}, which routing/ does not have");
    }
    for a in &cfg.accounts {
        if outlet
            .as_ref()
            .is_some_and(|o| o.matrix.account(a).is_none())
        {
            anyhow::bail!("[cases] accounts: no account {a:?} in the matrix");
        }
    }
    let shared = cx
        .redis
        .as_ref()
        .map(|r| (r.url().to_string(), r.settings().clone()));
    let data_dir = cfg
        .data_dir
        .clone()
        .unwrap_or_else(|| respond_data_dir.to_path_buf());
    let feedback = data_dir.join("routing-feedback.jsonl");
    let store = tokio::task::spawn_blocking(move || {
        if let Some((url, settings)) = shared {
            let db = crate::respond::redis::Blocking::new(&url, &settings)
                .map_err(|e| anyhow::anyhow!("the Redis URL of `store`: {e}"))?;
            return anyhow::Ok(CaseStore::redis(Arc::new(db), &settings.namespace));
        }
        std::fs::create_dir_all(&data_dir)
            .with_context(|| format!("cannot create {}", data_dir.display()))?;
        CaseStore::open(&data_dir.join("cases.redb"))
            .with_context(|| format!("case store in {}", data_dir.display()))
    })
    .await??;
    let cases = Arc::new(
        Cases::new(
            store,
            router,
            calendar,
            texts,
            cfg.clone(),
            outlet,
            cx.audit.clone(),
            Some(cx.live.incidents.clone()),
        )
        .with_feedback(feedback),
    );
    crate::metrics::cases::cases();
    let mut rx = cx
        .bus
        .subscribe("cases", 4_096, Delivery::Wait, Interest::Requests);
    let c2 = cases.clone();
    let intake = tokio::spawn(async move {
        // Reads the bus to its end (it closes after the engine drained), so no request is lost
        // on shutdown.
        while let Some(ev) = rx.recv().await {
            let Event::Request { mention, kinds, .. } = ev.as_ref() else {
                continue;
            };
            let (c, m) = (c2.clone(), mention.clone());
            let kinds: Vec<String> = kinds.iter().map(|k| k.to_string()).collect();
            let r = tokio::task::spawn_blocking(move || {
                let out = c.on_mention(&m, &kinds, system_now_ms());
                (out, m, kinds)
            })
            .await;
            match r {
                Ok((Ok(MentionOutcome::Deferred), m, kinds)) => {
                    crate::metrics::cases::cases()
                        .intake
                        .with_label_values(&["deferred"])
                        .inc();
                    retry_later(&c2, m, kinds, system_now_ms());
                }
                Ok((Ok(out), _, _)) => count(&out),
                Ok((Err(e), m, kinds)) => {
                    tracing::warn!(mention = %m.id, error = %e, "A request could not be taken in: kept for a retry.");
                    crate::metrics::cases::cases()
                        .intake
                        .with_label_values(&["retry"])
                        .inc();
                    retry_later(&c2, m, kinds, system_now_ms());
                }
                Err(e) => tracing::error!(error = %e, "The intake task failed."),
            }
        }
    });
    let c3 = cases.clone();
    let cancel = cx.cancel.clone();
    let every = Duration::from_secs(cfg.supervise_secs.max(1));
    let supervise = tokio::spawn(async move {
        loop {
            let c = c3.clone();
            let r = tokio::task::spawn_blocking(move || {
                let now = system_now_ms();
                c.retry_pending(now);
                let s = c.supervise(now);
                c.gauges(now);
                s
            })
            .await;
            match r {
                Ok(Ok(s)) if s.reminded + s.escalated + s.closed_unrated > 0 => {
                    tracing::info!(
                        reminded = s.reminded,
                        escalated = s.escalated,
                        closed_unrated = s.closed_unrated,
                        overdue = s.overdue,
                        "Supervision round."
                    );
                }
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "A supervision round failed; the next one retries.")
                }
                Err(e) => tracing::error!(error = %e, "The supervision task failed."),
            }
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
        }
    });
    let routes = std::mem::take(&mut cx.routes);
    cx.routes = routes
        .merge(api::routes(Some(cases.clone())))
        .merge(super::open311::routes(Some(cases.clone())));
    tracing::info!(
        departments = cases.router().departments.all().len(),
        "Cases stage started."
    );
    Ok((Handle::new("cases", vec![intake, supervise]), Some(cases)))
}

fn count(out: &MentionOutcome) {
    let label = match out {
        MentionOutcome::Ignored => "ignored",
        MentionOutcome::Intake(o) if o.created => "created",
        MentionOutcome::Intake(o) if o.joined => "joined",
        MentionOutcome::Intake(_) => "duplicate",
        MentionOutcome::Rated(_) => "rated",
        MentionOutcome::FollowUp(_) => "follow_up",
        MentionOutcome::Deferred => "deferred",
    };
    crate::metrics::cases::cases()
        .intake
        .with_label_values(&[label])
        .inc();
}

fn retry_later(c: &Cases, m: Arc<crate::normalize::Mention>, kinds: Vec<String>, now: i64) {
    let mut q = c.pending.lock().unwrap_or_else(|p| p.into_inner());
    if q.len() >= RETRY_CAP {
        q.pop_front();
        crate::metrics::cases::cases()
            .intake
            .with_label_values(&["lost"])
            .inc();
        tracing::error!("The request retry queue is full: the oldest request was dropped.");
    }
    q.push_back((m, kinds, now));
}

/// Requests waiting for a retry, with when they were first put aside (ms).
pub type Pending = std::sync::Mutex<VecDeque<(Arc<crate::normalize::Mention>, Vec<String>, i64)>>;
