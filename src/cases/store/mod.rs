//! [`CaseStore`]: cases as JSON by id, the indexes that find a case from a source item or from
//! one of its posts, the requesters' contact details kept apart, and the daily case-number
//! counter — on one of the backends (`redb.rs`, `memory.rs`, `redis.rs`), each a [`Backend`].
//!
//! Every change of a case is one atomic write of the case and its new index entries, so a crash
//! leaves either the old case or the new one with its indexes, never a case without them.

mod memory;
mod redb;
mod redis;

use super::model::{Case, Contact};
use crate::respond::redis::{Blocking, RedisLock};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The tables of a case store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    /// Case id → case JSON.
    Cases,
    /// `src:<source id>` / `post:<platform post id>` → case id.
    Index,
    /// `<case id>` → the requesters' contact details (JSON map handle → contact): kept apart so
    /// no listing of cases carries them.
    Contacts,
    /// `<account>:<post id>` → one of a matrix account's own posts as its timeline showed it
    /// (JSON; written and read by the evaluation stage for 传播力).
    AccountPosts,
    /// `<notice>:<account>` → whether and when a planned account posted a notice (JSON; written
    /// by the evaluation stage from the notices and the outbox).
    AccountFanout,
    /// `<mention id>` → a reply to one of an account's own posts and what it says (JSON; the
    /// evaluation stage's 认同度).
    AccountReplies,
}

impl Table {
    /// The table's name (redb table, Redis hash suffix).
    pub fn as_str(self) -> &'static str {
        match self {
            Table::Cases => "cases",
            Table::Index => "cases_index",
            Table::Contacts => "cases_contacts",
            Table::AccountPosts => "account_posts",
            Table::AccountFanout => "account_fanout",
            Table::AccountReplies => "account_replies",
        }
    }
}

/// What went wrong in a case store.
#[derive(Debug, thiserror::Error)]
pub enum CaseStoreError {
    /// The embedded database failed.
    #[error("case store: {op}: {source}")]
    Redb {
        /// The operation.
        op: &'static str,
        /// The cause.
        source: Box<::redb::Error>,
    },
    /// The store's file cannot be opened or created.
    #[error("case store: cannot open {}: {source}", path.display())]
    Open {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: Box<::redb::Error>,
    },
    /// Redis failed.
    #[error("case store: {op}: redis: {source}")]
    Redis {
        /// The operation.
        op: &'static str,
        /// The cause.
        source: ::redis::RedisError,
    },
    /// The fleet-wide lock stayed busy.
    #[error("case store: the shared lock is busy")]
    Locked,
    /// A stored value is not valid JSON for its type.
    #[error("case store: cannot decode {key}: {source}")]
    Decode {
        /// The key.
        key: String,
        /// The cause.
        source: serde_json::Error,
    },
    /// A value cannot be encoded.
    #[error("case store: cannot encode: {0}")]
    Encode(#[from] serde_json::Error),
}

/// Wrap an embedded-database error of operation `op`.
pub(super) fn redb_err<E: Into<::redb::Error>>(op: &'static str) -> impl Fn(E) -> CaseStoreError {
    move |e| CaseStoreError::Redb {
        op,
        source: Box::new(e.into()),
    }
}

/// One place cases are kept.
pub(crate) trait Backend: Send + Sync {
    /// The bytes at `key` of `table`.
    fn get(&self, table: Table, key: &str) -> Result<Option<Vec<u8>>, CaseStoreError>;
    /// Write every `(table, key, bytes)` in one atomic, durable step.
    fn put_all(&self, writes: &[(Table, String, Vec<u8>)]) -> Result<(), CaseStoreError>;
    /// Every entry of `table`, in key order.
    fn all(&self, table: Table) -> Result<Vec<(String, Vec<u8>)>, CaseStoreError>;
    /// The next number of counter `name` (persisted; starts at 1).
    fn next_seq(&self, name: &str) -> Result<u64, CaseStoreError>;
    /// The fleet-wide lock, for a shared store (`None`: the caller's local mutex is enough).
    fn shared_lock(&self) -> Result<Option<RedisLock>, CaseStoreError> {
        Ok(None)
    }
}

/// Where cases are kept: a `redb` file (default), memory, or the fleet's Redis.
pub struct CaseStore {
    backend: Box<dyn Backend>,
}

impl std::fmt::Debug for CaseStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaseStore").finish_non_exhaustive()
    }
}

fn decode<T: serde::de::DeserializeOwned>(key: &str, b: &[u8]) -> Result<T, CaseStoreError> {
    serde_json::from_slice(b).map_err(|source| CaseStoreError::Decode {
        key: key.to_string(),
        source,
    })
}

impl CaseStore {
    /// Open (or create) the file at `path`.
    pub fn open(path: &Path) -> Result<CaseStore, CaseStoreError> {
        Ok(CaseStore {
            backend: Box::new(redb::RedbCases::open(path)?),
        })
    }

    /// The cases of namespace `ns`, shared through Redis.
    pub fn redis(db: Arc<Blocking>, ns: &str) -> CaseStore {
        CaseStore {
            backend: Box::new(redis::RedisCases::new(db, ns)),
        }
    }

    /// A store in memory (tests).
    pub fn memory() -> CaseStore {
        CaseStore {
            backend: Box::new(memory::MemoryCases::default()),
        }
    }

    /// The fleet-wide lock (Redis only): changes are serialised across instances.
    pub fn shared_lock(&self) -> Result<Option<RedisLock>, CaseStoreError> {
        self.backend.shared_lock()
    }

    /// One case.
    pub fn get(&self, id: &str) -> Result<Option<Case>, CaseStoreError> {
        self.backend
            .get(Table::Cases, id)?
            .map(|b| decode(id, &b))
            .transpose()
    }

    /// Store a case with index entries (`src:…`, `post:…` keys pointing at it), atomically.
    pub fn put(&self, case: &Case, index: &[String]) -> Result<(), CaseStoreError> {
        let mut w = vec![(Table::Cases, case.id.clone(), serde_json::to_vec(case)?)];
        w.extend(
            index
                .iter()
                .map(|k| (Table::Index, k.clone(), case.id.as_bytes().to_vec())),
        );
        self.backend.put_all(&w)
    }

    /// Point index keys at case `id` (without writing the case).
    pub fn put_index(&self, id: &str, keys: &[String]) -> Result<(), CaseStoreError> {
        let w: Vec<_> = keys
            .iter()
            .map(|k| (Table::Index, k.clone(), id.as_bytes().to_vec()))
            .collect();
        self.backend.put_all(&w)
    }

    /// Write records (`key` → JSON) of the evaluation's tables ([`Table::AccountPosts`],
    /// [`Table::AccountFanout`]), replacing those with the same key.
    pub fn put_records(
        &self,
        table: Table,
        records: &[(String, Vec<u8>)],
    ) -> Result<(), CaseStoreError> {
        let writes: Vec<(Table, String, Vec<u8>)> = records
            .iter()
            .map(|(k, v)| (table, k.clone(), v.clone()))
            .collect();
        self.backend.put_all(&writes)
    }

    /// Every record of one of the evaluation's tables.
    pub fn records(&self, table: Table) -> Result<Vec<Vec<u8>>, CaseStoreError> {
        Ok(self
            .backend
            .all(table)?
            .into_iter()
            .map(|(_, v)| v)
            .collect())
    }

    /// Every case, in id order.
    pub fn all(&self) -> Result<Vec<Case>, CaseStoreError> {
        self.backend
            .all(Table::Cases)?
            .iter()
            .map(|(k, b)| decode(k, b))
            .collect()
    }

    /// The case an index key points at (`src:<source id>`, `post:<post id>`).
    pub fn find(&self, key: &str) -> Result<Option<String>, CaseStoreError> {
        Ok(self
            .backend
            .get(Table::Index, key)?
            .map(|b| String::from_utf8_lossy(&b).into_owned()))
    }

    /// The requesters' contact details of a case (handle → contact).
    pub fn contacts(
        &self,
        case_id: &str,
    ) -> Result<std::collections::BTreeMap<String, Contact>, CaseStoreError> {
        Ok(self
            .backend
            .get(Table::Contacts, case_id)?
            .map(|b| decode(case_id, &b))
            .transpose()?
            .unwrap_or_default())
    }

    /// Add (or replace) one requester's contact details.
    pub fn put_contact(
        &self,
        case_id: &str,
        handle: &str,
        contact: &Contact,
    ) -> Result<(), CaseStoreError> {
        let mut all = self.contacts(case_id)?;
        all.insert(handle.to_string(), contact.clone());
        self.backend.put_all(&[(
            Table::Contacts,
            case_id.to_string(),
            serde_json::to_vec(&all)?,
        )])
    }

    /// The next case number of `day` (`YYYYMMDD`), from 1.
    pub fn next_number(&self, day: &str) -> Result<u64, CaseStoreError> {
        self.backend.next_seq(day)
    }
}

#[cfg(test)]
mod tests;
