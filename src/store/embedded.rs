//! The embedded default: one `redb` file. Crash-safe (copy-on-write B-trees, fsync on commit);
//! the writer batches many events into one transaction.

use super::{Store, StoreError, StoredIncident};
use crate::incidents::hours::HourStats;
use crate::incidents::{Incident, IncidentState};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use std::path::Path;
use std::sync::Arc;

const INCIDENTS: TableDefinition<&str, &[u8]> = TableDefinition::new("incidents");
const OPEN: TableDefinition<&str, ()> = TableDefinition::new("open_incidents");
const MENTIONS: TableDefinition<(&str, &str), ()> = TableDefinition::new("incident_mentions");
const CURSORS: TableDefinition<&str, i64> = TableDefinition::new("feed_cursors");
const FEED_STATE: TableDefinition<&str, &[u8]> = TableDefinition::new("feed_state");
/// Hour start (ms) → its figures (JSON).
const HOURS: TableDefinition<i64, &[u8]> = TableDefinition::new("hours");

/// A redb-backed store.
pub struct EmbeddedStore {
    db: Database,
}

impl EmbeddedStore {
    /// One read transaction for `f` (errors counted as `read`).
    fn read_with<T>(
        &self,
        f: impl FnOnce(&redb::ReadTransaction) -> Result<T, redb::Error>,
    ) -> Result<T, StoreError> {
        let run = || f(&self.db.begin_read()?);
        run().map_err(|e| StoreError::new("read", e))
    }

    /// One write transaction: `f` fills it, then it commits (errors counted as `write`).
    fn write_with(
        &self,
        f: impl FnOnce(&redb::WriteTransaction) -> Result<(), redb::Error>,
    ) -> Result<(), StoreError> {
        let run = || {
            let tx = self.db.begin_write()?;
            f(&tx)?;
            tx.commit()?;
            Ok::<_, redb::Error>(())
        };
        run().map_err(|e| StoreError::new("write", e))
    }

    /// Open (or create) the file at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| StoreError::new("open", format!("{}: {e}", dir.display())))?;
        }
        let db = Database::create(path)
            .map_err(|e| StoreError::new("open", format!("{}: {e}", path.display())))?;
        // Create the tables so readers never meet a missing one.
        let tx = db.begin_write().map_err(|e| StoreError::new("open", e))?;
        {
            tx.open_table(INCIDENTS)
                .map_err(|e| StoreError::new("open", e))?;
            tx.open_table(OPEN)
                .map_err(|e| StoreError::new("open", e))?;
            tx.open_table(MENTIONS)
                .map_err(|e| StoreError::new("open", e))?;
            tx.open_table(CURSORS)
                .map_err(|e| StoreError::new("open", e))?;
            tx.open_table(FEED_STATE)
                .map_err(|e| StoreError::new("open", e))?;
            tx.open_table(HOURS)
                .map_err(|e| StoreError::new("open", e))?;
        }
        tx.commit().map_err(|e| StoreError::new("open", e))?;
        Ok(EmbeddedStore { db })
    }

    fn read_incident(&self, id: &str) -> Result<Option<StoredIncident>, StoreError> {
        let tx = self
            .db
            .begin_read()
            .map_err(|e| StoreError::new("read", e))?;
        let t = tx
            .open_table(INCIDENTS)
            .map_err(|e| StoreError::new("read", e))?;
        let Some(v) = t.get(id).map_err(|e| StoreError::new("read", e))? else {
            return Ok(None);
        };
        serde_json::from_slice(v.value())
            .map(Some)
            .map_err(|e| StoreError::new("decode", format!("incident {id}: {e}")))
    }
}

impl Store for EmbeddedStore {
    fn put_incidents(&self, incidents: &[Arc<Incident>]) -> Result<(), StoreError> {
        let tx = self
            .db
            .begin_write()
            .map_err(|e| StoreError::new("write", e))?;
        {
            let mut t = tx
                .open_table(INCIDENTS)
                .map_err(|e| StoreError::new("write", e))?;
            let mut open = tx
                .open_table(OPEN)
                .map_err(|e| StoreError::new("write", e))?;
            for i in incidents {
                let bytes = serde_json::to_vec(&StoredIncident::from_incident(i))
                    .map_err(|e| StoreError::new("encode", e))?;
                t.insert(i.id.as_str(), bytes.as_slice())
                    .map_err(|e| StoreError::new("write", e))?;
                if i.state == IncidentState::Open {
                    open.insert(i.id.as_str(), ())
                        .map_err(|e| StoreError::new("write", e))?;
                } else {
                    open.remove(i.id.as_str())
                        .map_err(|e| StoreError::new("write", e))?;
                }
            }
        }
        tx.commit().map_err(|e| StoreError::new("write", e))
    }

    fn put_assignments(&self, pairs: &[(Arc<str>, String)]) -> Result<(), StoreError> {
        let tx = self
            .db
            .begin_write()
            .map_err(|e| StoreError::new("write", e))?;
        {
            let mut t = tx
                .open_table(MENTIONS)
                .map_err(|e| StoreError::new("write", e))?;
            for (i, m) in pairs {
                t.insert((&**i, m.as_str()), ())
                    .map_err(|e| StoreError::new("write", e))?;
            }
        }
        tx.commit().map_err(|e| StoreError::new("write", e))
    }

    fn get_incident(&self, id: &str) -> Result<Option<Incident>, StoreError> {
        Ok(self.read_incident(id)?.map(StoredIncident::into_incident))
    }

    fn open_incidents(&self) -> Result<Vec<Incident>, StoreError> {
        let ids: Vec<String> = {
            let tx = self
                .db
                .begin_read()
                .map_err(|e| StoreError::new("read", e))?;
            let t = tx
                .open_table(OPEN)
                .map_err(|e| StoreError::new("read", e))?;
            let mut ids = Vec::new();
            for r in t.iter().map_err(|e| StoreError::new("read", e))? {
                let (k, _) = r.map_err(|e| StoreError::new("read", e))?;
                ids.push(k.value().to_string());
            }
            ids
        };
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(s) = self.read_incident(&id)? {
                out.push(s.into_incident());
            }
        }
        Ok(out)
    }

    fn incident_mentions(&self, id: &str, limit: usize) -> Result<Vec<String>, StoreError> {
        let tx = self
            .db
            .begin_read()
            .map_err(|e| StoreError::new("read", e))?;
        let t = tx
            .open_table(MENTIONS)
            .map_err(|e| StoreError::new("read", e))?;
        let mut out = Vec::new();
        for r in t
            .range((id, "")..)
            .map_err(|e| StoreError::new("read", e))?
        {
            let (k, _) = r.map_err(|e| StoreError::new("read", e))?;
            let (iid, mid) = k.value();
            if iid != id || out.len() >= limit {
                break;
            }
            out.push(mid.to_string());
        }
        Ok(out)
    }

    fn incidents_between(&self, from: i64, to: i64) -> Result<Vec<Incident>, StoreError> {
        // An office's incidents over its retention: a scan is what a report costs.
        let raw: Vec<Vec<u8>> = self.read_with(|tx| {
            let t = tx.open_table(INCIDENTS)?;
            let mut v = Vec::new();
            for r in t.iter()? {
                let (_, val) = r?;
                v.push(val.value().to_vec());
            }
            Ok(v)
        })?;
        let mut out = Vec::new();
        for bytes in raw {
            let s: StoredIncident = serde_json::from_slice(&bytes)
                .map_err(|e| StoreError::new("decode", format!("incident: {e}")))?;
            if (from..to).contains(&s.incident.opened_at) {
                out.push(s.into_incident());
            }
        }
        out.sort_by(|a, b| a.opened_at.cmp(&b.opened_at).then_with(|| a.id.cmp(&b.id)));
        Ok(out)
    }

    fn add_hour(&self, hour: &HourStats) -> Result<(), StoreError> {
        let mut err = None;
        self.write_with(|tx| {
            let mut t = tx.open_table(HOURS)?;
            let mut h = hour.clone();
            if let Some(old) = t.get(hour.hour)? {
                match serde_json::from_slice::<HourStats>(old.value()) {
                    Ok(mut o) => {
                        o.merge(hour);
                        h = o;
                    }
                    Err(e) => err = Some(format!("hour {}: {e}", hour.hour)),
                }
            }
            if err.is_none() {
                let bytes = serde_json::to_vec(&h).unwrap_or_default();
                t.insert(hour.hour, bytes.as_slice())?;
            }
            Ok(())
        })?;
        match err {
            Some(e) => Err(StoreError::new("decode", e)),
            None => Ok(()),
        }
    }

    fn hours(&self, from: i64, to: i64) -> Result<Vec<HourStats>, StoreError> {
        if from >= to {
            return Ok(Vec::new());
        }
        let raw: Vec<(i64, Vec<u8>)> = self.read_with(|tx| {
            let t = tx.open_table(HOURS)?;
            let mut v = Vec::new();
            for r in t.range(from..to)? {
                let (k, val) = r?;
                v.push((k.value(), val.value().to_vec()));
            }
            Ok(v)
        })?;
        raw.into_iter()
            .map(|(k, b)| {
                serde_json::from_slice(&b)
                    .map_err(|e| StoreError::new("decode", format!("hour {k}: {e}")))
            })
            .collect()
    }

    fn get_cursor(&self, feed: &str) -> Result<Option<i64>, StoreError> {
        self.read_with(|tx| Ok(tx.open_table(CURSORS)?.get(feed)?.map(|v| v.value())))
    }

    fn put_cursor(&self, feed: &str, cursor: i64) -> Result<(), StoreError> {
        self.write_with(|tx| {
            tx.open_table(CURSORS)?.insert(feed, cursor)?;
            Ok(())
        })
    }

    fn get_feed_state(&self, feed: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.read_with(|tx| {
            Ok(tx
                .open_table(FEED_STATE)?
                .get(feed)?
                .map(|v| v.value().to_vec()))
        })
    }

    fn put_feed_state(&self, feed: &str, state: &[u8]) -> Result<(), StoreError> {
        self.write_with(|tx| {
            tx.open_table(FEED_STATE)?.insert(feed, state)?;
            Ok(())
        })
    }

    fn flush(&self) -> Result<(), StoreError> {
        // Every commit is already durable.
        Ok(())
    }

    fn kind(&self) -> &'static str {
        "embedded"
    }
}
