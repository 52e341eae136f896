//! Whether the log takes writes, and whether the dispatcher waits for it: read without the log's
//! lock by `/healthz`, the console and the metrics.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};

/// [`AuditStatus::inject`]: no failure injected.
const NO_INJECTION: i64 = -1;

/// Logs in this process whose last write failed, and dispatchers paused for the audit log
/// (the gauges: one log and one dispatcher per service; tests run several).
static UNWRITABLE: AtomicUsize = AtomicUsize::new(0);
static PAUSED: AtomicUsize = AtomicUsize::new(0);

fn publish() {
    let m = crate::metrics::respond::respond();
    m.audit_writable
        .set(i64::from(UNWRITABLE.load(Ordering::SeqCst) == 0));
    m.dispatcher_paused
        .with_label_values(&["audit"])
        .set(i64::try_from(PAUSED.load(Ordering::SeqCst)).unwrap_or(i64::MAX));
}

/// The health of one audit log, shared by the log, the dispatcher and the API.
#[derive(Debug)]
pub struct AuditStatus {
    writable: AtomicBool,
    /// When the dispatcher paused because its record could not be written (ms; 0: running).
    paused_since: AtomicI64,
    /// Appends that still succeed before injected failures start (`NO_INJECTION`: none).
    inject: AtomicI64,
}

impl Default for AuditStatus {
    fn default() -> Self {
        publish();
        AuditStatus {
            writable: AtomicBool::new(true),
            paused_since: AtomicI64::new(0),
            inject: AtomicI64::new(NO_INJECTION),
        }
    }
}

impl AuditStatus {
    /// False once a write failed, until one succeeds again.
    pub fn writable(&self) -> bool {
        self.writable.load(Ordering::SeqCst)
    }

    /// Since when (ms) the dispatcher waits for the audit log, if it does.
    pub fn dispatcher_paused_since(&self) -> Option<i64> {
        Some(self.paused_since.load(Ordering::SeqCst)).filter(|t| *t != 0)
    }

    pub(super) fn set_writable(&self, ok: bool) {
        if self.writable.swap(ok, Ordering::SeqCst) != ok {
            if ok {
                UNWRITABLE.fetch_sub(1, Ordering::SeqCst);
            } else {
                UNWRITABLE.fetch_add(1, Ordering::SeqCst);
            }
            publish();
        }
    }

    /// The dispatcher paused at `since` (ms), or resumed (`None`).
    pub fn set_dispatcher_paused(&self, since: Option<i64>) {
        let new = since.map_or(0, |t| t.max(1));
        let old = self.paused_since.swap(new, Ordering::SeqCst);
        if (old == 0) != (new == 0) {
            if new == 0 {
                PAUSED.fetch_sub(1, Ordering::SeqCst);
            } else {
                PAUSED.fetch_add(1, Ordering::SeqCst);
            }
            publish();
        }
    }

    /// Make every append fail as if the storage refused it, until switched off (fault
    /// injection for tests and drills: a test running as root cannot make an open file
    /// unwritable otherwise). Nothing is written while it is on.
    pub fn inject_failure(&self, on: bool) {
        self.inject
            .store(if on { 0 } else { NO_INJECTION }, Ordering::SeqCst);
    }

    /// [`AuditStatus::inject_failure`] after `n` more appends succeed (to fail the record after
    /// an action's first one, e.g. a post's outcome after its attempt).
    pub fn inject_failure_after(&self, n: u32) {
        self.inject.store(i64::from(n), Ordering::SeqCst);
    }

    /// True when this append must fail (counts down the appends still allowed).
    pub(super) fn injected(&self) -> bool {
        let prev = self
            .inject
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| {
                (v > 0).then(|| v - 1)
            });
        // Err(v): not counted down; 0 means failing, NO_INJECTION means not.
        prev == Err(0)
    }
}

impl Drop for AuditStatus {
    fn drop(&mut self) {
        self.set_writable(true);
        self.set_dispatcher_paused(None);
    }
}
