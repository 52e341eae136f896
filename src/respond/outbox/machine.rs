//! The state machine, shared by every store: each store offers a [`Backend`] view of one atomic
//! step, and the transitions below run on it, so the stores behave alike.

use super::{idempotency_key, ActionKind, Enqueued, Job, JobId, JobState, NewJob, OutboxError};
use std::time::Duration;

/// What a store offers the shared transition code (inside one atomic step).
pub(crate) trait Backend {
    fn load(&self, id: &str) -> Result<Option<Job>, OutboxError>;
    /// Store `new` and move it between indexes (`old` is `None` for a new job).
    fn save(&mut self, old: Option<&Job>, new: &Job) -> Result<(), OutboxError>;
    fn dependants(&self, id: &str) -> Result<Vec<JobId>, OutboxError>;
    fn next_seq(&mut self) -> Result<u64, OutboxError>;
    fn paused(&self) -> Result<bool, OutboxError>;
}

fn load_existing<B: Backend>(b: &B, id: &str) -> Result<Job, OutboxError> {
    b.load(id)?
        .ok_or_else(|| OutboxError::UnknownJob(id.to_string()))
}

/// Enqueue `new` (no-op returning the stored job when its id exists).
pub(crate) fn enqueue_in<B: Backend>(
    b: &mut B,
    new: NewJob,
    now: i64,
) -> Result<Enqueued, OutboxError> {
    if new.notice_id.trim().is_empty() || new.account_id.trim().is_empty() {
        return Err(OutboxError::Invalid("empty notice or account id".into()));
    }
    if new.body.trim().is_empty()
        && matches!(
            new.action,
            ActionKind::Post | ActionKind::Reply | ActionKind::Comment | ActionKind::Mail
        )
    {
        return Err(OutboxError::Invalid(format!(
            "a {} needs a body",
            new.action.as_str()
        )));
    }
    if new.action != ActionKind::Post && new.in_reply_to.is_none() && new.depends_on.is_none() {
        return Err(OutboxError::Invalid(format!(
            "a {} needs in_reply_to or depends_on",
            new.action.as_str()
        )));
    }
    let id = new.id();
    if let Some(j) = b.load(&id)? {
        return Ok(Enqueued::Existing(j));
    }
    let (dependency_post_id, failed) = match &new.depends_on {
        None => (None, None),
        Some(d) if *d == id => {
            return Err(OutboxError::Invalid(format!("job {id} depends on itself")))
        }
        Some(d) => {
            let dj = b.load(d)?.ok_or_else(|| OutboxError::UnknownDependency {
                id: id.clone(),
                dependency: d.clone(),
            })?;
            match dj.state {
                JobState::Done => (dj.platform_post_id, None),
                JobState::Failed => (
                    None,
                    Some(format!(
                        "dependency {d} failed: {}",
                        dj.last_error.unwrap_or_default()
                    )),
                ),
                JobState::CheckFailed => (
                    None,
                    Some(format!(
                        "dependency {d} could not be checked: {}",
                        dj.last_error.unwrap_or_default()
                    )),
                ),
                _ => (None, None),
            }
        }
    };
    let key = idempotency_key(
        &new.notice_id,
        &new.account_id,
        new.action,
        new.in_reply_to.as_deref(),
    );
    let job = Job {
        id,
        notice_id: new.notice_id,
        account_id: new.account_id,
        action: new.action,
        priority: new.priority,
        body: new.body,
        in_reply_to: new.in_reply_to,
        depends_on: new.depends_on,
        dependency_post_id,
        idempotency_key: key,
        state: if failed.is_some() {
            JobState::Failed
        } else {
            JobState::Pending
        },
        attempts: 0,
        next_attempt_at: now,
        last_error: failed,
        platform_post_id: None,
        created_at: now,
        updated_at: now,
        seq: b.next_seq()?,
    };
    b.save(None, &job)?;
    Ok(Enqueued::Created(job))
}

/// `pending`/`retry` → `attempting` (refused while paused or blocked).
pub(crate) fn attempt_in<B: Backend>(b: &mut B, id: &str, now: i64) -> Result<Job, OutboxError> {
    if b.paused()? {
        return Err(OutboxError::Paused);
    }
    let old = load_existing(b, id)?;
    if !matches!(old.state, JobState::Pending | JobState::Retry) {
        return Err(OutboxError::InvalidTransition {
            id: id.to_string(),
            op: "attempt",
            from: old.state,
        });
    }
    if let (true, Some(d)) = (old.is_blocked(), &old.depends_on) {
        return Err(OutboxError::DependencyNotDone {
            id: id.to_string(),
            dependency: d.clone(),
        });
    }
    let mut j = old.clone();
    j.state = JobState::Attempting;
    j.attempts = j.attempts.saturating_add(1);
    j.updated_at = now;
    b.save(Some(&old), &j)?;
    Ok(j)
}

/// `attempting` → `done`; dependants see the post id.
pub(crate) fn done_in<B: Backend>(
    b: &mut B,
    id: &str,
    post_id: &str,
    now: i64,
) -> Result<Job, OutboxError> {
    if post_id.trim().is_empty() {
        return Err(OutboxError::Invalid("empty platform post id".into()));
    }
    let old = load_existing(b, id)?;
    match old.state {
        JobState::Attempting => {}
        JobState::Done if old.platform_post_id.as_deref() == Some(post_id) => return Ok(old),
        from => {
            return Err(OutboxError::InvalidTransition {
                id: id.to_string(),
                op: "complete",
                from,
            })
        }
    }
    let mut j = old.clone();
    j.state = JobState::Done;
    j.platform_post_id = Some(post_id.to_string());
    j.last_error = None;
    j.updated_at = now;
    b.save(Some(&old), &j)?;
    for d in b.dependants(id)? {
        let Some(dold) = b.load(&d)? else { continue };
        if dold.state.is_finished() || dold.dependency_post_id.is_some() {
            continue;
        }
        let mut dj = dold.clone();
        dj.dependency_post_id = Some(post_id.to_string());
        dj.updated_at = now;
        b.save(Some(&dold), &dj)?;
    }
    Ok(j)
}

/// `attempting` → `retry` at `at`.
pub(crate) fn retry_in<B: Backend>(
    b: &mut B,
    id: &str,
    now: i64,
    at: i64,
    error: &str,
) -> Result<Job, OutboxError> {
    let old = load_existing(b, id)?;
    if old.state != JobState::Attempting {
        return Err(OutboxError::InvalidTransition {
            id: id.to_string(),
            op: "retry",
            from: old.state,
        });
    }
    let mut j = old.clone();
    j.state = JobState::Retry;
    j.next_attempt_at = at;
    j.last_error = Some(error.to_string());
    j.updated_at = now;
    b.save(Some(&old), &j)?;
    Ok(j)
}

/// Any unfinished state → `failed`, with the dependants, transitively.
pub(crate) fn fail_in<B: Backend>(
    b: &mut B,
    id: &str,
    now: i64,
    error: &str,
) -> Result<Job, OutboxError> {
    give_up_in(b, id, now, error, JobState::Failed)
}

/// `attempting` → `check_failed` (no-op when already there), with the dependants failed,
/// transitively: nobody knows the post id they would act on.
pub(crate) fn check_failed_in<B: Backend>(
    b: &mut B,
    id: &str,
    now: i64,
    error: &str,
) -> Result<Job, OutboxError> {
    give_up_in(b, id, now, error, JobState::CheckFailed)
}

/// → `to` (`failed`: from any unfinished state; `check_failed`: from `attempting`); a no-op
/// when already there. Fails the dependants, transitively.
fn give_up_in<B: Backend>(
    b: &mut B,
    id: &str,
    now: i64,
    error: &str,
    to: JobState,
) -> Result<Job, OutboxError> {
    let old = load_existing(b, id)?;
    if old.state == to {
        return Ok(old);
    }
    let (allowed, op, why) = match to {
        JobState::CheckFailed => (
            old.state == JobState::Attempting,
            "give up checking",
            format!("could not be checked: {error}"),
        ),
        _ => (!old.state.is_finished(), "fail", format!("failed: {error}")),
    };
    if !allowed {
        return Err(OutboxError::InvalidTransition {
            id: id.to_string(),
            op,
            from: old.state,
        });
    }
    let mut j = old.clone();
    j.state = to;
    j.last_error = Some(error.to_string());
    j.updated_at = now;
    b.save(Some(&old), &j)?;
    fail_dependants(b, id, now, &why)?;
    Ok(j)
}

/// Fail the unfinished dependants of `id`, transitively (they can never run); `why` follows
/// "dependency {id} ".
fn fail_dependants<B: Backend>(
    b: &mut B,
    id: &str,
    now: i64,
    why: &str,
) -> Result<(), OutboxError> {
    let mut stack = vec![id.to_string()];
    while let Some(failed) = stack.pop() {
        for d in b.dependants(&failed)? {
            let Some(dold) = b.load(&d)? else { continue };
            if dold.state.is_finished() {
                continue;
            }
            let mut dj = dold.clone();
            dj.state = JobState::Failed;
            dj.last_error = Some(format!("dependency {failed} {why}"));
            dj.updated_at = now;
            b.save(Some(&dold), &dj)?;
            stack.push(d);
        }
    }
    Ok(())
}

/// How long ago `created` was, at `now` (ms).
pub(super) fn age(now: i64, created: Option<i64>) -> Option<Duration> {
    created.map(|c| Duration::from_millis(u64::try_from(now.saturating_sub(c)).unwrap_or(0)))
}
