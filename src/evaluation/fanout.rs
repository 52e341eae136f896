//! Notice fan-out as the evaluation sees it: for every notice whose fan-out started (its
//! `enqueue`), each account its plan named (lead, co-publishers, amplifiers) and whether and when
//! the outbox posted it. Collected by the evaluation stage from the respond stage's notices and
//! outbox into the case store (`account_fanout`), so the command line reads what the API does.

use crate::cases::store::{CaseStore, Table};
use crate::respond::notices::Notice;
use crate::respond::outbox::{JobState, OutboxStore};
use serde::{Deserialize, Serialize};

/// One account planned for one notice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Planned {
    /// The notice.
    pub notice: String,
    /// The matrix account.
    pub account: String,
    /// When the fan-out started (the notice's `enqueue`, ms).
    pub at: i64,
    /// When the account's post went out, if it did.
    pub done_at: Option<i64>,
}

/// The planned accounts of `notices` and what the outbox did for each.
pub fn collect(notices: &[Notice], outbox: &dyn OutboxStore) -> Result<Vec<Planned>, String> {
    let mut out = Vec::new();
    for n in notices {
        let Some(at) = n
            .history
            .iter()
            .find(|h| h.action == "enqueue")
            .map(|h| h.at)
        else {
            continue;
        };
        let jobs = outbox.jobs_for_notice(&n.id).map_err(|e| e.to_string())?;
        let mut accounts: Vec<&String> = std::iter::once(&n.plan.lead)
            .chain(&n.plan.co_publishers)
            .chain(&n.plan.amplifiers)
            .collect();
        accounts.sort();
        accounts.dedup();
        for a in accounts {
            let done_at = jobs
                .iter()
                .filter(|j| &j.account_id == a && j.state == JobState::Done)
                .map(|j| j.updated_at)
                .min();
            out.push(Planned {
                notice: n.id.clone(),
                account: a.clone(),
                at,
                done_at,
            });
        }
    }
    Ok(out)
}

/// Keep `planned` in `store` (one record per notice and account).
pub fn keep(store: &CaseStore, planned: &[Planned]) -> Result<(), String> {
    let records: Vec<(String, Vec<u8>)> = planned
        .iter()
        .filter_map(|p| {
            serde_json::to_vec(p)
                .ok()
                .map(|v| (format!("{}:{}", p.notice, p.account), v))
        })
        .collect();
    store
        .put_records(Table::AccountFanout, &records)
        .map_err(|e| e.to_string())
}

/// Every record in `store` (one that does not decode is skipped and logged).
pub fn load(store: &CaseStore) -> Result<Vec<Planned>, String> {
    let raw = store
        .records(Table::AccountFanout)
        .map_err(|e| e.to_string())?;
    Ok(raw
        .iter()
        .filter_map(|r| match serde_json::from_slice::<Planned>(r) {
            Ok(p) => Some(p),
            Err(e) => {
                tracing::warn!(error = %e, "A stored fan-out record does not decode.");
                None
            }
        })
        .collect())
}
