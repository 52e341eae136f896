//! Notices in a `redb` file: table `notices` (id → JSON) and `notices_meta` (the manual-id
//! counter); every commit is fsynced.

use super::store::Backend;
use super::{storage, NoticeError, StoreError};
use ::redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use std::path::Path;

const NOTICES: TableDefinition<&str, &[u8]> = TableDefinition::new("notices");
const META: TableDefinition<&str, u64> = TableDefinition::new("notices_meta");

/// The notices' database.
pub(super) struct RedbNotices {
    db: Database,
}

impl RedbNotices {
    /// Open (or create) the file at `path`, with its tables.
    pub(super) fn open(path: &Path) -> Result<RedbNotices, NoticeError> {
        let open_err = |path: &Path, source: ::redb::Error| NoticeError::Storage {
            op: "open",
            source: Box::new(StoreError::Open {
                path: path.to_path_buf(),
                source,
            }),
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| open_err(dir, e.into()))?;
        }
        let db = Database::create(path).map_err(|e| open_err(path, e.into()))?;
        let tx = db.begin_write().map_err(storage("open"))?;
        tx.open_table(NOTICES).map_err(storage("open"))?;
        tx.open_table(META).map_err(storage("open"))?;
        tx.commit().map_err(storage("open"))?;
        Ok(RedbNotices { db })
    }
}

impl Backend for RedbNotices {
    fn get(&self, id: &str) -> Result<Option<Vec<u8>>, NoticeError> {
        let tx = self.db.begin_read().map_err(storage("read"))?;
        let t = tx.open_table(NOTICES).map_err(storage("read"))?;
        Ok(t.get(id)
            .map_err(storage("read"))?
            .map(|v| v.value().to_vec()))
    }

    fn put(&self, id: &str, bytes: &[u8]) -> Result<(), NoticeError> {
        let tx = self.db.begin_write().map_err(storage("write"))?;
        {
            let mut t = tx.open_table(NOTICES).map_err(storage("write"))?;
            t.insert(id, bytes).map_err(storage("write"))?;
        }
        tx.commit().map_err(storage("write"))
    }

    fn all(&self) -> Result<Vec<(String, Vec<u8>)>, NoticeError> {
        let tx = self.db.begin_read().map_err(storage("read"))?;
        let t = tx.open_table(NOTICES).map_err(storage("read"))?;
        let mut out = Vec::new();
        for r in t.iter().map_err(storage("read"))? {
            let (k, v) = r.map_err(storage("read"))?;
            out.push((k.value().to_string(), v.value().to_vec()));
        }
        Ok(out)
    }

    fn next_seq(&self) -> Result<u64, NoticeError> {
        let tx = self.db.begin_write().map_err(storage("write"))?;
        let n = {
            let mut t = tx.open_table(META).map_err(storage("write"))?;
            let cur = t
                .get("manual_seq")
                .map_err(storage("read"))?
                .map(|v| v.value())
                .unwrap_or(0);
            t.insert("manual_seq", cur + 1).map_err(storage("write"))?;
            cur + 1
        };
        tx.commit().map_err(storage("write"))?;
        Ok(n)
    }
}
