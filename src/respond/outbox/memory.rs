//! The outbox in memory: the same state machine, nothing survives the process.

use super::machine::{
    age, attempt_in, check_failed_in, done_in, enqueue_in, fail_in, retry_in, Backend,
};
use super::{Enqueued, Job, JobId, JobState, NewJob, OutboxError, OutboxStore, Recovery};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

#[derive(Default)]
struct MemState {
    jobs: HashMap<JobId, Job>,
    paused: bool,
    seq: u64,
}

impl Backend for MemState {
    fn load(&self, id: &str) -> Result<Option<Job>, OutboxError> {
        Ok(self.jobs.get(id).cloned())
    }

    fn save(&mut self, _old: Option<&Job>, new: &Job) -> Result<(), OutboxError> {
        self.jobs.insert(new.id.clone(), new.clone());
        Ok(())
    }

    fn dependants(&self, id: &str) -> Result<Vec<JobId>, OutboxError> {
        let mut v: Vec<&Job> = self
            .jobs
            .values()
            .filter(|j| j.depends_on.as_deref() == Some(id))
            .collect();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(v.into_iter().map(|j| j.id.clone()).collect())
    }

    fn next_seq(&mut self) -> Result<u64, OutboxError> {
        self.seq += 1;
        Ok(self.seq)
    }

    fn paused(&self) -> Result<bool, OutboxError> {
        Ok(self.paused)
    }
}

/// The outbox in memory (tests, drills): the same state machine, nothing survives the process.
#[derive(Default)]
pub struct MemoryOutbox {
    state: Mutex<MemState>,
}

impl MemoryOutbox {
    /// Empty.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Run `f` on a copy and keep it only on success, so every operation is atomic.
    fn write<T>(
        &self,
        f: impl FnOnce(&mut MemState) -> Result<T, OutboxError>,
    ) -> Result<T, OutboxError> {
        let mut g = self.lock();
        let mut copy = MemState {
            jobs: g.jobs.clone(),
            paused: g.paused,
            seq: g.seq,
        };
        let out = f(&mut copy)?;
        *g = copy;
        Ok(out)
    }

    fn sorted(mut v: Vec<Job>) -> Vec<Job> {
        v.sort_by_key(|j| j.queue_key());
        v
    }
}

impl OutboxStore for MemoryOutbox {
    fn enqueue_all(&self, jobs: Vec<NewJob>, now_ms: i64) -> Result<Vec<Enqueued>, OutboxError> {
        self.write(|s| jobs.into_iter().map(|j| enqueue_in(s, j, now_ms)).collect())
    }

    fn get(&self, id: &str) -> Result<Option<Job>, OutboxError> {
        Ok(self.lock().jobs.get(id).cloned())
    }

    fn next_due(&self, now_ms: i64, limit: usize) -> Result<Vec<Job>, OutboxError> {
        let g = self.lock();
        if g.paused {
            return Ok(Vec::new());
        }
        let due = g
            .jobs
            .values()
            .filter(|j| j.is_due(now_ms))
            .cloned()
            .collect();
        let mut v = Self::sorted(due);
        v.truncate(limit);
        Ok(v)
    }

    fn mark_attempting(&self, id: &str, now_ms: i64) -> Result<Job, OutboxError> {
        self.write(|s| attempt_in(s, id, now_ms))
    }

    fn mark_done(&self, id: &str, post_id: &str, now_ms: i64) -> Result<Job, OutboxError> {
        self.write(|s| done_in(s, id, post_id, now_ms))
    }

    fn mark_retry(
        &self,
        id: &str,
        now_ms: i64,
        at_ms: i64,
        error: &str,
    ) -> Result<Job, OutboxError> {
        self.write(|s| retry_in(s, id, now_ms, at_ms, error))
    }

    fn mark_failed(&self, id: &str, now_ms: i64, error: &str) -> Result<Job, OutboxError> {
        self.write(|s| fail_in(s, id, now_ms, error))
    }

    fn mark_check_failed(&self, id: &str, now_ms: i64, error: &str) -> Result<Job, OutboxError> {
        self.write(|s| check_failed_in(s, id, now_ms, error))
    }

    fn pause(&self) -> Result<(), OutboxError> {
        self.lock().paused = true;
        Ok(())
    }

    fn resume(&self) -> Result<(), OutboxError> {
        self.lock().paused = false;
        Ok(())
    }

    fn is_paused(&self) -> Result<bool, OutboxError> {
        Ok(self.lock().paused)
    }

    fn recover(&self) -> Result<Recovery, OutboxError> {
        let g = self.lock();
        let mut r = Recovery::default();
        for j in g.jobs.values() {
            match j.state {
                JobState::Attempting => r.uncertain.push(j.clone()),
                JobState::Pending | JobState::Retry if j.is_blocked() => r.blocked.push(j.clone()),
                JobState::Pending | JobState::Retry => r.runnable.push(j.clone()),
                JobState::Done | JobState::Failed | JobState::CheckFailed => {}
            }
        }
        r.runnable = Self::sorted(r.runnable);
        r.uncertain.sort_by(|a, b| a.id.cmp(&b.id));
        r.blocked.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(r)
    }

    fn jobs_for_notice(&self, notice_id: &str) -> Result<Vec<Job>, OutboxError> {
        let g = self.lock();
        let mut v: Vec<Job> = g
            .jobs
            .values()
            .filter(|j| j.notice_id == notice_id)
            .cloned()
            .collect();
        v.sort_by_key(|j| j.seq);
        Ok(v)
    }

    fn depth(&self) -> Result<usize, OutboxError> {
        Ok(self
            .lock()
            .jobs
            .values()
            .filter(|j| !j.state.is_finished())
            .count())
    }

    fn depth_by_lane(&self) -> Result<[usize; 3], OutboxError> {
        let mut lanes = [0usize; 3];
        for j in self.lock().jobs.values().filter(|j| !j.state.is_finished()) {
            lanes[usize::from(j.priority.lane())] += 1;
        }
        Ok(lanes)
    }

    fn oldest_pending_age(&self, now_ms: i64) -> Result<Option<Duration>, OutboxError> {
        let oldest = self
            .lock()
            .jobs
            .values()
            .filter(|j| !j.state.is_finished())
            .map(|j| j.created_at)
            .min();
        Ok(age(now_ms, oldest))
    }
}
