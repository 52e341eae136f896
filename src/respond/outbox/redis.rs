//! The outbox on Redis Streams, shared by every instance of a cluster.
//!
//! # Layout
//!
//! Every key is under the hash tag `{NS:outbox}` (one Redis Cluster slot, so one transaction can
//! touch them all): `job:{id}` (the job, JSON), `notice:{id}` (sorted set of its jobs by enqueue
//! order), `deps:{id}` (its dependants), `blocked`, `attempting`, `unfinished:{lane}` (sorted by
//! creation: depth and oldest age), `lane:{lane}` (a **stream** per lane with the consumer group
//! `publishers`), `entry` (job → stream entry id), `seq`, `entryseq`, `paused`, `lock`.
//!
//! # How a job travels
//!
//! - A job becomes runnable (new, or its dependency done): an entry `{job: id}` is added to its
//!   lane's stream, in the same `MULTI` as the job.
//! - [`RedisOutbox::next_due`] reads new entries for this instance (`XREADGROUP … >`): an entry
//!   delivered to a consumer stays in its pending list (PEL) until acknowledged. Due jobs among
//!   the entries this instance holds are returned in lane order; rate-limited or retrying ones
//!   stay held.
//! - The state transitions are the shared state machine of [`super`], run under
//!   a short Redis lock and committed in one `MULTI`/`EXEC`; `mark_attempting` refuses a job
//!   that is not `pending`/`retry`, so two instances never attempt the same job at once.
//! - A job that finishes (done, failed) is acknowledged and deleted from its stream (`XACK`,
//!   `XDEL`) in the same transaction: **an entry is acknowledged only after the platform
//!   answered**.
//! - An instance keeps its entries fresh (`XCLAIM … 0 JUSTID` to itself). Entries of an instance
//!   that died go idle and are claimed by a live one (`XAUTOCLAIM` after `claim_idle`). A
//!   claimed job left `attempting` is **uncertain**: once its attempt is older than
//!   `attempt_timeout` (longer than a platform call may take), [`RedisOutbox::recover`] hands it
//!   to the dispatcher, which asks the platform (`find_recent`) before sending anything: never
//!   posted twice. The job record in Redis *is* the idempotency record.
//! - The pause switch is a key: every instance stops at once.

use super::machine::{
    attempt_in, check_failed_in, done_in, enqueue_in, fail_in, retry_in, Backend,
};
use super::{Enqueued, Job, JobId, JobState, NewJob, OutboxError, OutboxStore, Recovery};
use crate::respond::redis::{lock_on, unlock_on, Blocking};
use redis::streams::{StreamAutoClaimReply, StreamReadReply};
use redis::Connection;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The consumer group every instance reads the lanes through.
pub const GROUP: &str = "publishers";

/// How an instance shares the outbox.
#[derive(Debug, Clone)]
pub struct RedisOutboxConfig {
    /// Key namespace.
    pub namespace: String,
    /// This instance's consumer name (unique per process).
    pub consumer: String,
    /// Entries idle this long belong to a dead instance and are claimed.
    pub claim_idle: Duration,
    /// A claimed job `attempting` for longer than this is uncertain (must exceed the platform
    /// call timeout, so that a slow but live instance's call has ended).
    pub attempt_timeout: Duration,
}

impl RedisOutboxConfig {
    /// The outbox of this instance of the fleet `settings` describe, under `namespace`.
    pub fn from_settings(
        settings: &crate::store::redis::RedisConfig,
        namespace: &str,
    ) -> RedisOutboxConfig {
        RedisOutboxConfig {
            namespace: namespace.to_string(),
            consumer: settings.instance_name(),
            claim_idle: Duration::from_millis(settings.claim_idle_ms.max(100)),
            attempt_timeout: Duration::from_millis(settings.attempt_timeout_ms),
        }
    }
}

/// The keys.
#[derive(Debug, Clone)]
struct Keys {
    tag: String,
}

impl Keys {
    fn new(ns: &str) -> Keys {
        Keys {
            tag: format!("{{{ns}:outbox}}"),
        }
    }
    fn job(&self, id: &str) -> String {
        format!("{}:job:{id}", self.tag)
    }
    fn notice(&self, id: &str) -> String {
        format!("{}:notice:{id}", self.tag)
    }
    fn deps(&self, id: &str) -> String {
        format!("{}:deps:{id}", self.tag)
    }
    fn set(&self, name: &str) -> String {
        format!("{}:{name}", self.tag)
    }
    fn unfinished(&self, lane: u8) -> String {
        format!("{}:unfinished:{lane}", self.tag)
    }
    fn lane(&self, lane: u8) -> String {
        format!("{}:lane:{lane}", self.tag)
    }
}

/// Wrap a Redis error of operation `op`.
fn io(op: &'static str) -> impl Fn(redis::RedisError) -> OutboxError {
    move |e| OutboxError::Redis { op, source: e }
}

fn decode(id: &str, s: &str) -> Result<Job, OutboxError> {
    serde_json::from_str(s).map_err(|e| OutboxError::Decode {
        id: id.to_string(),
        source: e,
    })
}

fn encode(j: &Job) -> Result<String, OutboxError> {
    serde_json::to_string(j).map_err(|e| OutboxError::Decode {
        id: j.id.clone(),
        source: e,
    })
}

/// One transition's view of Redis: reads go through (cached), writes are collected into one
/// atomic pipeline.
struct Tx<'c> {
    c: &'c mut Connection,
    k: &'c Keys,
    cache: HashMap<String, Option<Job>>,
    /// Preloaded dependants (plus the ones added in this transaction).
    deps: HashMap<String, Vec<String>>,
    paused: bool,
    pipe: redis::Pipeline,
}

impl Tx<'_> {
    fn entry_of(&mut self, id: &str) -> Result<Option<String>, OutboxError> {
        redis::cmd("HGET")
            .arg(self.k.set("entry"))
            .arg(id)
            .query(self.c)
            .map_err(io("read"))
    }
}

impl Backend for Tx<'_> {
    fn load(&self, id: &str) -> Result<Option<Job>, OutboxError> {
        if let Some(j) = self.cache.get(id) {
            return Ok(j.clone());
        }
        // `load` takes `&self`; the connection needs `&mut`: reads go through a fresh borrow.
        Err(OutboxError::Invalid(format!("job {id} not preloaded")))
    }

    fn save(&mut self, old: Option<&Job>, new: &Job) -> Result<(), OutboxError> {
        let k = self.k;
        let lane = new.priority.lane();
        match old {
            None => {
                self.pipe
                    .cmd("ZADD")
                    .arg(k.notice(&new.notice_id))
                    .arg(new.seq)
                    .arg(&new.id)
                    .ignore();
                if let Some(d) = &new.depends_on {
                    self.pipe.cmd("SADD").arg(k.deps(d)).arg(&new.id).ignore();
                    self.deps.entry(d.clone()).or_default().push(new.id.clone());
                }
                if !new.state.is_finished() {
                    self.pipe
                        .cmd("ZADD")
                        .arg(k.unfinished(lane))
                        .arg(new.created_at)
                        .arg(&new.id)
                        .ignore();
                }
            }
            Some(o) => {
                if o.state == JobState::Attempting {
                    self.pipe
                        .cmd("SREM")
                        .arg(k.set("attempting"))
                        .arg(&o.id)
                        .ignore();
                }
                if o.is_blocked() && !o.state.is_finished() {
                    self.pipe
                        .cmd("SREM")
                        .arg(k.set("blocked"))
                        .arg(&o.id)
                        .ignore();
                }
            }
        }
        let was_queued = old.is_some_and(|o| !o.state.is_finished() && !o.is_blocked());
        match new.state {
            JobState::Pending | JobState::Retry if new.is_blocked() => {
                self.pipe
                    .cmd("SADD")
                    .arg(k.set("blocked"))
                    .arg(&new.id)
                    .ignore();
            }
            JobState::Pending | JobState::Retry if !was_queued => {
                let n: u64 = redis::cmd("INCR")
                    .arg(k.set("entryseq"))
                    .query(self.c)
                    .map_err(io("write"))?;
                let entry = format!("{n}-1");
                self.pipe
                    .cmd("XADD")
                    .arg(k.lane(lane))
                    .arg(&entry)
                    .arg("job")
                    .arg(&new.id)
                    .ignore();
                self.pipe
                    .cmd("HSET")
                    .arg(k.set("entry"))
                    .arg(&new.id)
                    .arg(&entry)
                    .ignore();
            }
            JobState::Attempting => {
                self.pipe
                    .cmd("SADD")
                    .arg(k.set("attempting"))
                    .arg(&new.id)
                    .ignore();
            }
            JobState::Done | JobState::Failed | JobState::CheckFailed => {
                if old.is_some_and(|o| !o.state.is_finished()) {
                    self.pipe
                        .cmd("ZREM")
                        .arg(k.unfinished(lane))
                        .arg(&new.id)
                        .ignore();
                }
                if was_queued {
                    if let Some(entry) = self.entry_of(&new.id)? {
                        self.pipe
                            .cmd("XACK")
                            .arg(k.lane(lane))
                            .arg(GROUP)
                            .arg(&entry)
                            .ignore();
                        self.pipe.cmd("XDEL").arg(k.lane(lane)).arg(&entry).ignore();
                        self.pipe
                            .cmd("HDEL")
                            .arg(k.set("entry"))
                            .arg(&new.id)
                            .ignore();
                    }
                }
            }
            _ => {}
        }
        self.pipe
            .cmd("SET")
            .arg(k.job(&new.id))
            .arg(encode(new)?)
            .ignore();
        self.cache.insert(new.id.clone(), Some(new.clone()));
        Ok(())
    }

    fn dependants(&self, id: &str) -> Result<Vec<JobId>, OutboxError> {
        let mut v = self.deps.get(id).cloned().unwrap_or_default();
        v.sort();
        v.dedup();
        Ok(v)
    }

    fn next_seq(&mut self) -> Result<u64, OutboxError> {
        redis::cmd("INCR")
            .arg(self.k.set("seq"))
            .query(self.c)
            .map_err(io("write"))
    }

    fn paused(&self) -> Result<bool, OutboxError> {
        Ok(self.paused)
    }
}

/// What this instance holds: stream entries delivered to it, by job.
#[derive(Debug, Default)]
struct Held {
    /// job → (lane, entry id).
    entries: HashMap<JobId, (u8, String)>,
    last_claim_ms: i64,
    last_refresh_ms: i64,
    /// Claimed jobs left `attempting` by another instance, not yet resolved.
    uncertain: bool,
}

/// The shared outbox (see the module docs).
pub struct RedisOutbox {
    db: Arc<Blocking>,
    keys: Keys,
    cfg: RedisOutboxConfig,
    held: Mutex<Held>,
}

impl std::fmt::Debug for RedisOutbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisOutbox")
            .field("namespace", &self.cfg.namespace)
            .field("consumer", &self.cfg.consumer)
            .finish_non_exhaustive()
    }
}

fn now_ms() -> i64 {
    crate::respond::dispatch::system_now_ms()
}

impl RedisOutbox {
    /// The outbox of `cfg.namespace` on `db`; creates the consumer groups if missing.
    pub fn new(db: Arc<Blocking>, cfg: RedisOutboxConfig) -> Result<Self, OutboxError> {
        let ob = RedisOutbox {
            keys: Keys::new(&cfg.namespace),
            db,
            cfg,
            held: Mutex::new(Held::default()),
        };
        ob.db.run(|c| ob.create_groups(c)).map_err(io("open"))?;
        Ok(ob)
    }

    fn create_groups(&self, c: &mut Connection) -> redis::RedisResult<()> {
        for lane in 0..3u8 {
            let r: redis::RedisResult<()> = redis::cmd("XGROUP")
                .arg("CREATE")
                .arg(self.keys.lane(lane))
                .arg(GROUP)
                .arg("0")
                .arg("MKSTREAM")
                .query(c);
            match r {
                Ok(()) => {}
                Err(e) if e.code() == Some("BUSYGROUP") => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn held(&self) -> std::sync::MutexGuard<'_, Held> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Run one state transition under the cluster-wide lock, committed atomically.
    fn transition<T>(
        &self,
        op: &'static str,
        ids: &[&str],
        f: impl FnOnce(&mut Tx<'_>) -> Result<T, OutboxError>,
    ) -> Result<T, OutboxError> {
        let keys = &self.keys;
        let lock = keys.set("lock");
        self.db
            .run(|c| {
                let Some(tok) = lock_on(c, &lock, Duration::from_secs(10), Duration::from_secs(5))?
                else {
                    return Ok(Err(OutboxError::Busy { op }));
                };
                let out = self.transition_locked(c, ids, f);
                unlock_on(c, &lock, &tok)?;
                Ok(out)
            })
            .map_err(io(op))?
    }

    fn transition_locked<T>(
        &self,
        c: &mut Connection,
        ids: &[&str],
        f: impl FnOnce(&mut Tx<'_>) -> Result<T, OutboxError>,
    ) -> Result<T, OutboxError> {
        let keys = &self.keys;
        // Preload the jobs named, their dependants and their dependants' jobs (transitively for
        // failures), and the pause flag: the state machine reads through `&self`.
        let mut cache: HashMap<String, Option<Job>> = HashMap::new();
        let mut deps: HashMap<String, Vec<String>> = HashMap::new();
        let paused: bool = redis::cmd("EXISTS")
            .arg(keys.set("paused"))
            .query(c)
            .map_err(io("read"))?;
        let mut todo: Vec<String> = ids.iter().map(|s| s.to_string()).collect();
        let mut seen = HashSet::new();
        while let Some(id) = todo.pop() {
            if !seen.insert(id.clone()) {
                continue;
            }
            let raw: Option<String> = redis::cmd("GET")
                .arg(keys.job(&id))
                .query(c)
                .map_err(io("read"))?;
            let job = raw.map(|s| decode(&id, &s)).transpose()?;
            if job.is_some() {
                let d: Vec<String> = redis::cmd("SMEMBERS")
                    .arg(keys.deps(&id))
                    .query(c)
                    .map_err(io("read"))?;
                todo.extend(d.iter().cloned());
                deps.insert(id.clone(), d);
            }
            cache.insert(id, job);
        }
        let mut tx = Tx {
            c,
            k: keys,
            cache,
            deps,
            paused,
            pipe: redis::pipe(),
        };
        tx.pipe.atomic();
        let out = f(&mut tx)?;
        let Tx { c, pipe, .. } = tx;
        let _: () = pipe.query(c).map_err(io("commit"))?;
        Ok(out)
    }

    fn load_many(
        &self,
        c: &mut Connection,
        ids: &[String],
    ) -> redis::RedisResult<Vec<Option<Job>>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = ids.iter().map(|i| self.keys.job(i)).collect();
        let raw: Vec<Option<String>> = redis::cmd("MGET").arg(keys).query(c)?;
        Ok(raw
            .into_iter()
            .zip(ids)
            .map(|(r, id)| r.and_then(|s| decode(id, &s).ok()))
            .collect())
    }

    /// Claim idle entries of dead instances and keep this instance's entries fresh.
    fn maintain(&self, c: &mut Connection, now: i64, force: bool) -> redis::RedisResult<()> {
        let idle = i64::try_from(self.cfg.claim_idle.as_millis()).unwrap_or(i64::MAX);
        let (claim, refresh) = {
            let h = self.held();
            (
                force || now - h.last_claim_ms >= idle / 2,
                now - h.last_refresh_ms >= idle / 3,
            )
        };
        if refresh {
            let mut by_lane: BTreeMap<u8, Vec<String>> = BTreeMap::new();
            for (lane, e) in self.held().entries.values() {
                by_lane.entry(*lane).or_default().push(e.clone());
            }
            for (lane, entries) in by_lane {
                for chunk in entries.chunks(100) {
                    let _: redis::Value = redis::cmd("XCLAIM")
                        .arg(self.keys.lane(lane))
                        .arg(GROUP)
                        .arg(&self.cfg.consumer)
                        .arg(0)
                        .arg(chunk)
                        .arg("JUSTID")
                        .query(c)?;
                }
            }
            self.held().last_refresh_ms = now;
        }
        if claim {
            let mut claimed: Vec<(u8, String, String)> = Vec::new();
            for lane in 0..3u8 {
                let mut start = "0-0".to_string();
                loop {
                    let r: StreamAutoClaimReply = redis::cmd("XAUTOCLAIM")
                        .arg(self.keys.lane(lane))
                        .arg(GROUP)
                        .arg(&self.cfg.consumer)
                        .arg(idle)
                        .arg(&start)
                        .arg("COUNT")
                        .arg(100)
                        .query(c)?;
                    for e in &r.claimed {
                        if let Some(job) = e.get::<String>("job") {
                            claimed.push((lane, e.id.clone(), job));
                        }
                    }
                    if r.next_stream_id == "0-0" || r.claimed.is_empty() {
                        break;
                    }
                    start = r.next_stream_id;
                }
            }
            if !claimed.is_empty() {
                tracing::info!(
                    entries = claimed.len(),
                    consumer = %self.cfg.consumer,
                    "Outbox: claimed the jobs of an instance that stopped."
                );
            }
            let mut h = self.held();
            for (lane, entry, job) in claimed {
                h.entries.insert(job, (lane, entry));
                h.uncertain = true;
            }
            h.last_claim_ms = now;
        }
        Ok(())
    }

    /// Read new entries for this instance (at most `want`); their jobs' ids.
    fn read_new(&self, c: &mut Connection, want: usize) -> redis::RedisResult<Vec<JobId>> {
        let mut new = Vec::new();
        if want == 0 {
            return Ok(new);
        }
        let lanes: Vec<String> = (0..3u8).map(|l| self.keys.lane(l)).collect();
        let r: redis::RedisResult<Option<StreamReadReply>> = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(GROUP)
            .arg(&self.cfg.consumer)
            .arg("COUNT")
            .arg(want)
            .arg("STREAMS")
            .arg(&lanes)
            .arg(&[">", ">", ">"])
            .query(c);
        let r = match r {
            Err(e) if e.code() == Some("NOGROUP") => {
                // Redis lost its data (no persistence) or the keys were removed: recreate.
                self.create_groups(c)?;
                return Ok(new);
            }
            r => r?,
        };
        let Some(r) = r else { return Ok(new) };
        let mut h = self.held();
        for key in r.keys {
            let lane = lanes.iter().position(|l| *l == key.key).unwrap_or(2) as u8;
            for e in key.ids {
                if let Some(job) = e.get::<String>("job") {
                    h.entries.insert(job.clone(), (lane, e.id.clone()));
                    new.push(job);
                }
            }
        }
        Ok(new)
    }

    /// Acknowledge entries whose job is finished or gone (a crash between the platform's answer
    /// and the record of it cannot leave one, but a lost key can).
    fn drop_finished(
        &self,
        c: &mut Connection,
        gone: Vec<(JobId, u8, String)>,
    ) -> redis::RedisResult<()> {
        for (job, lane, entry) in gone {
            let _: () = redis::pipe()
                .cmd("XACK")
                .arg(self.keys.lane(lane))
                .arg(GROUP)
                .arg(&entry)
                .ignore()
                .cmd("XDEL")
                .arg(self.keys.lane(lane))
                .arg(&entry)
                .ignore()
                .query(c)?;
            self.held().entries.remove(&job);
        }
        Ok(())
    }

    /// The jobs this instance holds, loaded; finished ones are acknowledged and forgotten.
    fn held_jobs(&self, c: &mut Connection) -> redis::RedisResult<Vec<Job>> {
        let ids: Vec<(JobId, u8, String)> = self
            .held()
            .entries
            .iter()
            .map(|(j, (l, e))| (j.clone(), *l, e.clone()))
            .collect();
        let jobs = self.load_many(c, &ids.iter().map(|i| i.0.clone()).collect::<Vec<_>>())?;
        let mut out = Vec::new();
        let mut gone = Vec::new();
        for ((id, lane, entry), j) in ids.into_iter().zip(jobs) {
            match j {
                Some(j) if !j.state.is_finished() => out.push(j),
                _ => gone.push((id, lane, entry)),
            }
        }
        self.drop_finished(c, gone)?;
        Ok(out)
    }

    /// Whether a claimed job is waiting to be resolved, or it is time to look for the entries
    /// of dead instances: the dispatcher then runs its recovery.
    fn recovery_due(&self) -> bool {
        let h = self.held();
        let idle = i64::try_from(self.cfg.claim_idle.as_millis()).unwrap_or(i64::MAX);
        h.uncertain || now_ms() - h.last_claim_ms >= idle
    }
}

impl OutboxStore for RedisOutbox {
    fn enqueue_all(&self, jobs: Vec<NewJob>, now_ms: i64) -> Result<Vec<Enqueued>, OutboxError> {
        let ids: Vec<String> = jobs
            .iter()
            .flat_map(|j| std::iter::once(j.id()).chain(j.depends_on.clone()))
            .collect();
        let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        self.transition("enqueue", &refs, |tx| {
            jobs.into_iter()
                .map(|j| enqueue_in(tx, j, now_ms))
                .collect()
        })
    }

    fn get(&self, id: &str) -> Result<Option<Job>, OutboxError> {
        let raw: Option<String> = self
            .db
            .run(|c| redis::cmd("GET").arg(self.keys.job(id)).query(c))
            .map_err(io("read"))?;
        raw.map(|s| decode(id, &s)).transpose()
    }

    fn next_due(&self, now_ms: i64, limit: usize) -> Result<Vec<Job>, OutboxError> {
        self.db
            .run(|c| {
                let paused: bool = redis::cmd("EXISTS").arg(self.keys.set("paused")).query(c)?;
                if paused {
                    return Ok(Vec::new());
                }
                self.maintain(c, now_ms, false)?;
                let mut due: Vec<Job> = self
                    .held_jobs(c)?
                    .into_iter()
                    .filter(|j| j.is_due(now_ms))
                    .collect();
                let new = self.read_new(c, limit.saturating_sub(due.len()))?;
                due.extend(
                    self.load_many(c, &new)?
                        .into_iter()
                        .flatten()
                        .filter(|j| j.is_due(now_ms)),
                );
                due.sort_by_key(Job::queue_key);
                due.truncate(limit);
                Ok(due)
            })
            .map_err(io("next_due"))
    }

    fn mark_attempting(&self, id: &str, now_ms: i64) -> Result<Job, OutboxError> {
        self.transition("attempt", &[id], |tx| attempt_in(tx, id, now_ms))
    }

    fn mark_done(&self, id: &str, post_id: &str, now_ms: i64) -> Result<Job, OutboxError> {
        self.transition("done", &[id], |tx| done_in(tx, id, post_id, now_ms))
    }

    fn mark_retry(
        &self,
        id: &str,
        now_ms: i64,
        at_ms: i64,
        error: &str,
    ) -> Result<Job, OutboxError> {
        self.transition("retry", &[id], |tx| retry_in(tx, id, now_ms, at_ms, error))
    }

    fn mark_failed(&self, id: &str, now_ms: i64, error: &str) -> Result<Job, OutboxError> {
        self.transition("fail", &[id], |tx| fail_in(tx, id, now_ms, error))
    }

    fn mark_check_failed(&self, id: &str, now_ms: i64, error: &str) -> Result<Job, OutboxError> {
        self.transition("check_failed", &[id], |tx| {
            check_failed_in(tx, id, now_ms, error)
        })
    }

    fn pause(&self) -> Result<(), OutboxError> {
        self.db
            .run(|c| {
                redis::cmd("SET")
                    .arg(self.keys.set("paused"))
                    .arg(1)
                    .query(c)
            })
            .map_err(io("pause"))
    }

    fn resume(&self) -> Result<(), OutboxError> {
        self.db
            .run(|c| {
                redis::cmd("DEL")
                    .arg(self.keys.set("paused"))
                    .query::<i64>(c)
            })
            .map(|_| ())
            .map_err(io("resume"))
    }

    fn is_paused(&self) -> Result<bool, OutboxError> {
        self.db
            .run(|c| redis::cmd("EXISTS").arg(self.keys.set("paused")).query(c))
            .map_err(io("read"))
    }

    fn recover(&self) -> Result<Recovery, OutboxError> {
        let now = now_ms();
        let timeout = i64::try_from(self.cfg.attempt_timeout.as_millis()).unwrap_or(i64::MAX);
        self.db
            .run(|c| {
                self.maintain(c, now, true)?;
                let held = self.held_jobs(c)?;
                let mut rec = Recovery::default();
                let mut young = false;
                for j in held {
                    match j.state {
                        JobState::Attempting if now - j.updated_at >= timeout => {
                            rec.uncertain.push(j)
                        }
                        // Perhaps still being sent by a slow instance: look again later.
                        JobState::Attempting => young = true,
                        _ if j.is_blocked() => rec.blocked.push(j),
                        _ => rec.runnable.push(j),
                    }
                }
                let blocked: Vec<String> = redis::cmd("SMEMBERS")
                    .arg(self.keys.set("blocked"))
                    .query(c)?;
                for j in self.load_many(c, &blocked)?.into_iter().flatten() {
                    if !rec.blocked.iter().any(|b| b.id == j.id) {
                        rec.blocked.push(j);
                    }
                }
                rec.runnable.sort_by_key(Job::queue_key);
                self.held().uncertain = young;
                Ok(rec)
            })
            .map_err(io("recover"))
    }

    fn needs_recovery(&self) -> bool {
        self.recovery_due()
    }

    fn jobs_for_notice(&self, notice_id: &str) -> Result<Vec<Job>, OutboxError> {
        self.db
            .run(|c| {
                let ids: Vec<String> = redis::cmd("ZRANGE")
                    .arg(self.keys.notice(notice_id))
                    .arg(0)
                    .arg(-1)
                    .query(c)?;
                Ok(self.load_many(c, &ids)?.into_iter().flatten().collect())
            })
            .map_err(io("read"))
    }

    fn depth(&self) -> Result<usize, OutboxError> {
        Ok(self.depth_by_lane()?.iter().sum())
    }

    fn oldest_pending_age(&self, now_ms: i64) -> Result<Option<Duration>, OutboxError> {
        self.db
            .run(|c| {
                let mut oldest: Option<i64> = None;
                for lane in 0..3u8 {
                    let v: Vec<(String, f64)> = redis::cmd("ZRANGE")
                        .arg(self.keys.unfinished(lane))
                        .arg(0)
                        .arg(0)
                        .arg("WITHSCORES")
                        .query(c)?;
                    if let Some((_, s)) = v.first() {
                        let s = *s as i64;
                        oldest = Some(oldest.map_or(s, |o| o.min(s)));
                    }
                }
                Ok(oldest.map(|o| {
                    Duration::from_millis(u64::try_from(now_ms.saturating_sub(o)).unwrap_or(0))
                }))
            })
            .map_err(io("read"))
    }

    fn depth_by_lane(&self) -> Result<[usize; 3], OutboxError> {
        self.db
            .run(|c| {
                let mut out = [0usize; 3];
                for (lane, slot) in out.iter_mut().enumerate() {
                    *slot = redis::cmd("ZCARD")
                        .arg(self.keys.unfinished(lane as u8))
                        .query(c)?;
                }
                Ok(out)
            })
            .map_err(io("read"))
    }
}
