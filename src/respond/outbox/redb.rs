//! The durable outbox in its own `redb` file: the jobs plus indexes (queue by lane, blocked,
//! attempting, per notice, dependants), every mutation one fsynced transaction.

use super::machine::{
    age, attempt_in, check_failed_in, done_in, enqueue_in, fail_in, retry_in, Backend,
};
use super::{storage, Enqueued, Job, JobId, JobState, NewJob, OutboxError, OutboxStore, Recovery};
use ::redb::{
    Database, ReadOnlyTable, ReadableDatabase, ReadableTable, ReadableTableMetadata, Table,
    TableDefinition, WriteTransaction,
};
use std::path::Path;
use std::time::Duration;

const JOBS: TableDefinition<&str, &[u8]> = TableDefinition::new("outbox_jobs");
/// Runnable jobs by (lane, next_attempt_at, created_at, seq).
const QUEUE: TableDefinition<(u8, i64, i64, u64), &str> = TableDefinition::new("outbox_queue");
/// Pending jobs waiting for their dependency.
const BLOCKED: TableDefinition<&str, ()> = TableDefinition::new("outbox_blocked");
/// Jobs in `attempting`.
const ATTEMPTING: TableDefinition<&str, ()> = TableDefinition::new("outbox_attempting");
const BY_NOTICE: TableDefinition<(&str, u64), &str> = TableDefinition::new("outbox_by_notice");
/// (dependency, dependant).
const DEPENDANTS: TableDefinition<(&str, &str), ()> = TableDefinition::new("outbox_dependants");
const META: TableDefinition<&str, u64> = TableDefinition::new("outbox_meta");

const META_PAUSED: &str = "paused";
const META_SEQ: &str = "seq";

fn decode(id: &str, bytes: &[u8]) -> Result<Job, OutboxError> {
    serde_json::from_slice(bytes).map_err(|e| OutboxError::Decode {
        id: id.to_string(),
        source: e,
    })
}

fn load_from<T: ReadableTable<&'static str, &'static [u8]>>(
    t: &T,
    id: &str,
) -> Result<Option<Job>, OutboxError> {
    match t.get(id).map_err(storage("read"))? {
        Some(v) => decode(id, v.value()).map(Some),
        None => Ok(None),
    }
}

/// The tables of one write transaction.
struct WriteTables<'t> {
    jobs: Table<'t, &'static str, &'static [u8]>,
    queue: Table<'t, (u8, i64, i64, u64), &'static str>,
    blocked: Table<'t, &'static str, ()>,
    attempting: Table<'t, &'static str, ()>,
    by_notice: Table<'t, (&'static str, u64), &'static str>,
    dependants: Table<'t, (&'static str, &'static str), ()>,
    meta: Table<'t, &'static str, u64>,
}

impl<'t> WriteTables<'t> {
    fn open(tx: &'t WriteTransaction) -> Result<Self, OutboxError> {
        let e = storage("open table");
        Ok(WriteTables {
            jobs: tx.open_table(JOBS).map_err(&e)?,
            queue: tx.open_table(QUEUE).map_err(&e)?,
            blocked: tx.open_table(BLOCKED).map_err(&e)?,
            attempting: tx.open_table(ATTEMPTING).map_err(&e)?,
            by_notice: tx.open_table(BY_NOTICE).map_err(&e)?,
            dependants: tx.open_table(DEPENDANTS).map_err(&e)?,
            meta: tx.open_table(META).map_err(&e)?,
        })
    }

    fn set_meta(&mut self, key: &str, v: u64) -> Result<(), OutboxError> {
        self.meta.insert(key, v).map_err(storage("write"))?;
        Ok(())
    }

    fn meta(&self, key: &str) -> Result<u64, OutboxError> {
        Ok(self
            .meta
            .get(key)
            .map_err(storage("read"))?
            .map(|v| v.value())
            .unwrap_or(0))
    }
}

impl Backend for WriteTables<'_> {
    fn load(&self, id: &str) -> Result<Option<Job>, OutboxError> {
        load_from(&self.jobs, id)
    }

    fn save(&mut self, old: Option<&Job>, new: &Job) -> Result<(), OutboxError> {
        let w = storage("write");
        match old {
            None => {
                self.by_notice
                    .insert((new.notice_id.as_str(), new.seq), new.id.as_str())
                    .map_err(&w)?;
                if let Some(d) = &new.depends_on {
                    self.dependants
                        .insert((d.as_str(), new.id.as_str()), ())
                        .map_err(&w)?;
                }
            }
            Some(o) => match o.state {
                JobState::Pending | JobState::Retry if o.is_blocked() => {
                    self.blocked.remove(o.id.as_str()).map_err(&w)?;
                }
                JobState::Pending | JobState::Retry => {
                    self.queue.remove(o.queue_key()).map_err(&w)?;
                }
                JobState::Attempting => {
                    self.attempting.remove(o.id.as_str()).map_err(&w)?;
                }
                JobState::Done | JobState::Failed | JobState::CheckFailed => {}
            },
        }
        match new.state {
            JobState::Pending | JobState::Retry if new.is_blocked() => {
                self.blocked.insert(new.id.as_str(), ()).map_err(&w)?;
            }
            JobState::Pending | JobState::Retry => {
                self.queue
                    .insert(new.queue_key(), new.id.as_str())
                    .map_err(&w)?;
            }
            JobState::Attempting => {
                self.attempting.insert(new.id.as_str(), ()).map_err(&w)?;
            }
            JobState::Done | JobState::Failed | JobState::CheckFailed => {}
        }
        let bytes = serde_json::to_vec(new).map_err(|e| OutboxError::Decode {
            id: new.id.clone(),
            source: e,
        })?;
        self.jobs
            .insert(new.id.as_str(), bytes.as_slice())
            .map_err(&w)?;
        Ok(())
    }

    fn dependants(&self, id: &str) -> Result<Vec<JobId>, OutboxError> {
        let mut out = Vec::new();
        for r in self.dependants.range((id, "")..).map_err(storage("read"))? {
            let (k, _) = r.map_err(storage("read"))?;
            let (dep, job) = k.value();
            if dep != id {
                break;
            }
            out.push(job.to_string());
        }
        Ok(out)
    }

    fn next_seq(&mut self) -> Result<u64, OutboxError> {
        let s = self.meta(META_SEQ)? + 1;
        self.set_meta(META_SEQ, s)?;
        Ok(s)
    }

    fn paused(&self) -> Result<bool, OutboxError> {
        Ok(self.meta(META_PAUSED)? != 0)
    }
}

/// The durable outbox in its own `redb` file. Every mutation is one fsynced transaction.
pub struct Outbox {
    db: Database,
}

impl Outbox {
    /// Open (or create) the outbox file at `path`.
    pub fn open(path: &Path) -> Result<Self, OutboxError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| OutboxError::Open {
                path: dir.to_path_buf(),
                source: e.into(),
            })?;
        }
        let db = Database::create(path).map_err(|e| OutboxError::Open {
            path: path.to_path_buf(),
            source: e.into(),
        })?;
        let ob = Outbox { db };
        // Create the tables so readers never meet a missing one.
        ob.write("open", |_| Ok(()))?;
        Ok(ob)
    }

    fn write<T>(
        &self,
        op: &'static str,
        f: impl FnOnce(&mut WriteTables<'_>) -> Result<T, OutboxError>,
    ) -> Result<T, OutboxError> {
        let tx = self.db.begin_write().map_err(storage(op))?;
        let out = {
            let mut t = WriteTables::open(&tx)?;
            f(&mut t)
        };
        match out {
            Ok(v) => {
                tx.commit().map_err(storage(op))?;
                Ok(v)
            }
            Err(e) => {
                let _ = tx.abort();
                Err(e)
            }
        }
    }

    fn read_ids(
        jobs: &ReadOnlyTable<&'static str, &'static [u8]>,
        ids: impl IntoIterator<Item = String>,
    ) -> Result<Vec<Job>, OutboxError> {
        let mut out = Vec::new();
        for id in ids {
            if let Some(j) = load_from(jobs, &id)? {
                out.push(j);
            }
        }
        Ok(out)
    }

    fn keys(t: &ReadOnlyTable<&'static str, ()>) -> Result<Vec<String>, OutboxError> {
        let mut out = Vec::new();
        for r in t.iter().map_err(storage("read"))? {
            let (k, _) = r.map_err(storage("read"))?;
            out.push(k.value().to_string());
        }
        Ok(out)
    }

    fn queue_ids(
        t: &ReadOnlyTable<(u8, i64, i64, u64), &'static str>,
        lane: u8,
        now: i64,
        limit: usize,
    ) -> Result<Vec<String>, OutboxError> {
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        for r in t
            .range((lane, i64::MIN, i64::MIN, 0u64)..=(lane, now, i64::MAX, u64::MAX))
            .map_err(storage("read"))?
        {
            let (_, v) = r.map_err(storage("read"))?;
            out.push(v.value().to_string());
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }
}

impl OutboxStore for Outbox {
    fn enqueue_all(&self, jobs: Vec<NewJob>, now_ms: i64) -> Result<Vec<Enqueued>, OutboxError> {
        self.write("enqueue", |t| {
            jobs.into_iter().map(|j| enqueue_in(t, j, now_ms)).collect()
        })
    }

    fn get(&self, id: &str) -> Result<Option<Job>, OutboxError> {
        let tx = self.db.begin_read().map_err(storage("read"))?;
        let jobs = tx.open_table(JOBS).map_err(storage("read"))?;
        load_from(&jobs, id)
    }

    fn next_due(&self, now_ms: i64, limit: usize) -> Result<Vec<Job>, OutboxError> {
        let tx = self.db.begin_read().map_err(storage("read"))?;
        let meta = tx.open_table(META).map_err(storage("read"))?;
        let paused = meta
            .get(META_PAUSED)
            .map_err(storage("read"))?
            .map(|v| v.value())
            .unwrap_or(0);
        if paused != 0 {
            return Ok(Vec::new());
        }
        let queue = tx.open_table(QUEUE).map_err(storage("read"))?;
        let jobs = tx.open_table(JOBS).map_err(storage("read"))?;
        let mut ids = Vec::new();
        for lane in 0..=2u8 {
            let rest = limit.saturating_sub(ids.len());
            ids.extend(Self::queue_ids(&queue, lane, now_ms, rest)?);
        }
        Self::read_ids(&jobs, ids)
    }

    fn mark_attempting(&self, id: &str, now_ms: i64) -> Result<Job, OutboxError> {
        self.write("attempt", |t| attempt_in(t, id, now_ms))
    }

    fn mark_done(&self, id: &str, post_id: &str, now_ms: i64) -> Result<Job, OutboxError> {
        self.write("done", |t| done_in(t, id, post_id, now_ms))
    }

    fn mark_retry(
        &self,
        id: &str,
        now_ms: i64,
        at_ms: i64,
        error: &str,
    ) -> Result<Job, OutboxError> {
        self.write("retry", |t| retry_in(t, id, now_ms, at_ms, error))
    }

    fn mark_failed(&self, id: &str, now_ms: i64, error: &str) -> Result<Job, OutboxError> {
        self.write("fail", |t| fail_in(t, id, now_ms, error))
    }

    fn mark_check_failed(&self, id: &str, now_ms: i64, error: &str) -> Result<Job, OutboxError> {
        self.write("check_failed", |t| check_failed_in(t, id, now_ms, error))
    }

    fn pause(&self) -> Result<(), OutboxError> {
        self.write("pause", |t| t.set_meta(META_PAUSED, 1))
    }

    fn resume(&self) -> Result<(), OutboxError> {
        self.write("resume", |t| t.set_meta(META_PAUSED, 0))
    }

    fn is_paused(&self) -> Result<bool, OutboxError> {
        let tx = self.db.begin_read().map_err(storage("read"))?;
        let meta = tx.open_table(META).map_err(storage("read"))?;
        Ok(meta
            .get(META_PAUSED)
            .map_err(storage("read"))?
            .is_some_and(|v| v.value() != 0))
    }

    fn recover(&self) -> Result<Recovery, OutboxError> {
        let tx = self.db.begin_read().map_err(storage("read"))?;
        let jobs = tx.open_table(JOBS).map_err(storage("read"))?;
        let queue = tx.open_table(QUEUE).map_err(storage("read"))?;
        let mut runnable = Vec::new();
        for r in queue.iter().map_err(storage("read"))? {
            let (_, v) = r.map_err(storage("read"))?;
            runnable.push(v.value().to_string());
        }
        let attempting = tx.open_table(ATTEMPTING).map_err(storage("read"))?;
        let blocked = tx.open_table(BLOCKED).map_err(storage("read"))?;
        Ok(Recovery {
            uncertain: Self::read_ids(&jobs, Self::keys(&attempting)?)?,
            runnable: Self::read_ids(&jobs, runnable)?,
            blocked: Self::read_ids(&jobs, Self::keys(&blocked)?)?,
        })
    }

    fn jobs_for_notice(&self, notice_id: &str) -> Result<Vec<Job>, OutboxError> {
        let tx = self.db.begin_read().map_err(storage("read"))?;
        let jobs = tx.open_table(JOBS).map_err(storage("read"))?;
        let idx = tx.open_table(BY_NOTICE).map_err(storage("read"))?;
        let mut ids = Vec::new();
        for r in idx
            .range((notice_id, 0u64)..=(notice_id, u64::MAX))
            .map_err(storage("read"))?
        {
            let (_, v) = r.map_err(storage("read"))?;
            ids.push(v.value().to_string());
        }
        Self::read_ids(&jobs, ids)
    }

    fn depth(&self) -> Result<usize, OutboxError> {
        let tx = self.db.begin_read().map_err(storage("read"))?;
        let mut n = tx
            .open_table(QUEUE)
            .map_err(storage("read"))?
            .len()
            .map_err(storage("read"))?;
        for t in [BLOCKED, ATTEMPTING] {
            n += tx
                .open_table(t)
                .map_err(storage("read"))?
                .len()
                .map_err(storage("read"))?;
        }
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }

    fn depth_by_lane(&self) -> Result<[usize; 3], OutboxError> {
        let tx = self.db.begin_read().map_err(storage("read"))?;
        let jobs = tx.open_table(JOBS).map_err(storage("read"))?;
        let queue = tx.open_table(QUEUE).map_err(storage("read"))?;
        let mut lanes = [0usize; 3];
        for r in queue.iter().map_err(storage("read"))? {
            let (k, _) = r.map_err(storage("read"))?;
            lanes[usize::from(k.value().0.min(2))] += 1;
        }
        for t in [BLOCKED, ATTEMPTING] {
            let t = tx.open_table(t).map_err(storage("read"))?;
            for j in Self::read_ids(&jobs, Self::keys(&t)?)? {
                lanes[usize::from(j.priority.lane())] += 1;
            }
        }
        Ok(lanes)
    }

    fn oldest_pending_age(&self, now_ms: i64) -> Result<Option<Duration>, OutboxError> {
        let tx = self.db.begin_read().map_err(storage("read"))?;
        let jobs = tx.open_table(JOBS).map_err(storage("read"))?;
        let queue = tx.open_table(QUEUE).map_err(storage("read"))?;
        let mut oldest: Option<i64> = None;
        for r in queue.iter().map_err(storage("read"))? {
            let (k, _) = r.map_err(storage("read"))?;
            let (_, _, created, _) = k.value();
            oldest = Some(oldest.map_or(created, |o| o.min(created)));
        }
        for t in [BLOCKED, ATTEMPTING] {
            let t = tx.open_table(t).map_err(storage("read"))?;
            for j in Self::read_ids(&jobs, Self::keys(&t)?)? {
                oldest = Some(oldest.map_or(j.created_at, |o| o.min(j.created_at)));
            }
        }
        Ok(age(now_ms, oldest))
    }
}
