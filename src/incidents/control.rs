//! Operator changes to incident state (console, API).

/// An operator's change to incident state. It travels the pipeline like any item so that the
/// engine thread, the only owner of incident state, applies it in input order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    /// Close an open incident now.
    Close {
        /// The incident.
        id: String,
    },
    /// Fold the open incident `from` into the open incident `into` (same kind); `from` closes.
    Merge {
        /// The incident that stays.
        into: String,
        /// The incident that is absorbed and closed.
        from: String,
    },
    /// Close an open emerging incident as not worth following: its terms are muted for
    /// `mute_secs` of event time (they open nothing meanwhile).
    Dismiss {
        /// The incident.
        id: String,
        /// How long its terms stay muted.
        mute_secs: u32,
    },
}
