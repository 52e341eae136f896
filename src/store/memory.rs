//! The in-memory store, for throwaway runs and tests.

use super::{Store, StoreError, StoredIncident};
use crate::incidents::hours::HourStats;
use crate::incidents::{Incident, IncidentState};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

/// Keeps everything in maps behind a mutex.
#[derive(Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    incidents: BTreeMap<String, StoredIncident>,
    mentions: BTreeMap<String, BTreeSet<String>>,
    cursors: BTreeMap<String, i64>,
    feed_state: BTreeMap<String, Vec<u8>>,
    hours: BTreeMap<i64, HourStats>,
}

impl MemoryStore {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves plain maps behind; they are still usable.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Store for MemoryStore {
    fn put_incidents(&self, incidents: &[Arc<Incident>]) -> Result<(), StoreError> {
        let mut g = self.lock();
        for i in incidents {
            g.incidents
                .insert(i.id.clone(), StoredIncident::from_incident(i));
        }
        Ok(())
    }

    fn put_assignments(&self, pairs: &[(Arc<str>, String)]) -> Result<(), StoreError> {
        let mut g = self.lock();
        for (i, m) in pairs {
            g.mentions
                .entry(i.to_string())
                .or_default()
                .insert(m.clone());
        }
        Ok(())
    }

    fn get_incident(&self, id: &str) -> Result<Option<Incident>, StoreError> {
        Ok(self
            .lock()
            .incidents
            .get(id)
            .cloned()
            .map(StoredIncident::into_incident))
    }

    fn open_incidents(&self) -> Result<Vec<Incident>, StoreError> {
        Ok(self
            .lock()
            .incidents
            .values()
            .filter(|s| s.incident.state == IncidentState::Open)
            .cloned()
            .map(StoredIncident::into_incident)
            .collect())
    }

    fn incident_mentions(&self, id: &str, limit: usize) -> Result<Vec<String>, StoreError> {
        Ok(self
            .lock()
            .mentions
            .get(id)
            .map(|s| s.iter().take(limit).cloned().collect())
            .unwrap_or_default())
    }

    fn incidents_between(&self, from: i64, to: i64) -> Result<Vec<Incident>, StoreError> {
        let mut v: Vec<Incident> = self
            .lock()
            .incidents
            .values()
            .filter(|s| (from..to).contains(&s.incident.opened_at))
            .cloned()
            .map(StoredIncident::into_incident)
            .collect();
        v.sort_by(|a, b| a.opened_at.cmp(&b.opened_at).then_with(|| a.id.cmp(&b.id)));
        Ok(v)
    }

    fn add_hour(&self, hour: &HourStats) -> Result<(), StoreError> {
        let mut g = self.lock();
        match g.hours.get_mut(&hour.hour) {
            Some(h) => h.merge(hour),
            None => {
                g.hours.insert(hour.hour, hour.clone());
            }
        }
        Ok(())
    }

    fn hours(&self, from: i64, to: i64) -> Result<Vec<HourStats>, StoreError> {
        if from >= to {
            return Ok(Vec::new());
        }
        Ok(self
            .lock()
            .hours
            .range(from..to)
            .map(|(_, h)| h.clone())
            .collect())
    }

    fn get_cursor(&self, feed: &str) -> Result<Option<i64>, StoreError> {
        Ok(self.lock().cursors.get(feed).copied())
    }

    fn put_cursor(&self, feed: &str, cursor: i64) -> Result<(), StoreError> {
        self.lock().cursors.insert(feed.to_string(), cursor);
        Ok(())
    }

    fn get_feed_state(&self, feed: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.lock().feed_state.get(feed).cloned())
    }

    fn put_feed_state(&self, feed: &str, state: &[u8]) -> Result<(), StoreError> {
        self.lock()
            .feed_state
            .insert(feed.to_string(), state.to_vec());
        Ok(())
    }

    fn flush(&self) -> Result<(), StoreError> {
        Ok(())
    }

    fn kind(&self) -> &'static str {
        "memory"
    }
}
