//! Notices in memory (tests, drills): nothing survives the process.

use super::store::Backend;
use super::NoticeError;
use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

/// The notices (id → JSON) and the manual-id counter.
#[derive(Default)]
pub(super) struct MemoryNotices {
    state: Mutex<(BTreeMap<String, Vec<u8>>, u64)>,
}

impl MemoryNotices {
    fn lock(&self) -> MutexGuard<'_, (BTreeMap<String, Vec<u8>>, u64)> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Backend for MemoryNotices {
    fn get(&self, id: &str) -> Result<Option<Vec<u8>>, NoticeError> {
        Ok(self.lock().0.get(id).cloned())
    }

    fn put(&self, id: &str, bytes: &[u8]) -> Result<(), NoticeError> {
        self.lock().0.insert(id.to_string(), bytes.to_vec());
        Ok(())
    }

    fn all(&self) -> Result<Vec<(String, Vec<u8>)>, NoticeError> {
        Ok(self
            .lock()
            .0
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    fn next_seq(&self) -> Result<u64, NoticeError> {
        let mut g = self.lock();
        g.1 += 1;
        Ok(g.1)
    }
}
