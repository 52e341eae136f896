//! Cases in a `redb` file: tables `cases` (id → JSON), `cases_index` (`src:…`/`post:…` → id),
//! `cases_contacts` (id → contacts JSON) and `cases_seq` (counters); every commit is fsynced.

use super::{redb_err, Backend, CaseStoreError, Table};
use ::redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use std::path::Path;

const SEQ: TableDefinition<&str, u64> = TableDefinition::new("cases_seq");

fn def(t: Table) -> TableDefinition<'static, &'static str, &'static [u8]> {
    TableDefinition::new(t.as_str())
}

/// The cases' database.
pub(super) struct RedbCases {
    db: Database,
}

impl RedbCases {
    /// Open (or create) the file at `path`, with its tables.
    pub(super) fn open(path: &Path) -> Result<RedbCases, CaseStoreError> {
        let open_err = |path: &Path, e: ::redb::Error| CaseStoreError::Open {
            path: path.to_path_buf(),
            source: Box::new(e),
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| open_err(dir, e.into()))?;
        }
        let db = Database::create(path).map_err(|e| open_err(path, e.into()))?;
        let tx = db.begin_write().map_err(redb_err("open"))?;
        for t in [
            Table::Cases,
            Table::Index,
            Table::Contacts,
            Table::AccountPosts,
            Table::AccountFanout,
            Table::AccountReplies,
        ] {
            tx.open_table(def(t)).map_err(redb_err("open"))?;
        }
        tx.open_table(SEQ).map_err(redb_err("open"))?;
        tx.commit().map_err(redb_err("open"))?;
        Ok(RedbCases { db })
    }
}

impl Backend for RedbCases {
    fn get(&self, table: Table, key: &str) -> Result<Option<Vec<u8>>, CaseStoreError> {
        let tx = self.db.begin_read().map_err(redb_err("read"))?;
        let t = tx.open_table(def(table)).map_err(redb_err("read"))?;
        Ok(t.get(key)
            .map_err(redb_err("read"))?
            .map(|v| v.value().to_vec()))
    }

    fn put_all(&self, writes: &[(Table, String, Vec<u8>)]) -> Result<(), CaseStoreError> {
        let tx = self.db.begin_write().map_err(redb_err("write"))?;
        for (table, key, bytes) in writes {
            let mut t = tx.open_table(def(*table)).map_err(redb_err("write"))?;
            t.insert(key.as_str(), bytes.as_slice())
                .map_err(redb_err("write"))?;
        }
        tx.commit().map_err(redb_err("write"))
    }

    fn all(&self, table: Table) -> Result<Vec<(String, Vec<u8>)>, CaseStoreError> {
        let tx = self.db.begin_read().map_err(redb_err("read"))?;
        let t = tx.open_table(def(table)).map_err(redb_err("read"))?;
        let mut out = Vec::new();
        for e in t.iter().map_err(redb_err("read"))? {
            let (k, v) = e.map_err(redb_err("read"))?;
            out.push((k.value().to_string(), v.value().to_vec()));
        }
        Ok(out)
    }

    fn next_seq(&self, name: &str) -> Result<u64, CaseStoreError> {
        let tx = self.db.begin_write().map_err(redb_err("write"))?;
        let n = {
            let mut t = tx.open_table(SEQ).map_err(redb_err("write"))?;
            let n = t
                .get(name)
                .map_err(redb_err("write"))?
                .map(|v| v.value())
                .unwrap_or(0)
                + 1;
            t.insert(name, n).map_err(redb_err("write"))?;
            n
        };
        tx.commit().map_err(redb_err("write"))?;
        Ok(n)
    }
}
