//! Cases in memory (tests): nothing survives the process.

use super::{Backend, CaseStoreError, Table};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard};

type State = (BTreeMap<(Table, String), Vec<u8>>, HashMap<String, u64>);

/// The tables and counters.
#[derive(Default)]
pub(super) struct MemoryCases {
    state: Mutex<State>,
}

impl MemoryCases {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Backend for MemoryCases {
    fn get(&self, table: Table, key: &str) -> Result<Option<Vec<u8>>, CaseStoreError> {
        Ok(self.lock().0.get(&(table, key.to_string())).cloned())
    }

    fn put_all(&self, writes: &[(Table, String, Vec<u8>)]) -> Result<(), CaseStoreError> {
        let mut g = self.lock();
        for (t, k, v) in writes {
            g.0.insert((*t, k.clone()), v.clone());
        }
        Ok(())
    }

    fn all(&self, table: Table) -> Result<Vec<(String, Vec<u8>)>, CaseStoreError> {
        Ok(self
            .lock()
            .0
            .iter()
            .filter(|((t, _), _)| *t == table)
            .map(|((_, k), v)| (k.clone(), v.clone()))
            .collect())
    }

    fn next_seq(&self, name: &str) -> Result<u64, CaseStoreError> {
        let mut g = self.lock();
        let n = g.1.entry(name.to_string()).or_insert(0);
        *n += 1;
        Ok(*n)
    }
}
