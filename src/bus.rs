//! The event bus: every event the engine emits, in the engine's order, to every stage that
//! subscribed. Stages subscribe while the service starts ([`crate::stage::Context`]); the engine
//! thread publishes; a subscriber's queue closes when the engine has drained, so a stage that
//! reads to the end has seen every event.
//!
//! Each subscriber says what it needs:
//! - [`Bus::inline`]: a callback run on the engine thread itself, for cheap in-memory work that
//!   must see every event at once (the live view and the stream: no queue, no wake-up between
//!   the engine and `/api/stream` clients);
//! - [`Delivery::Wait`]: every event, even if the engine has to wait for room (the store
//!   writer, the live view: nothing may be lost there, and they keep up);
//! - [`Delivery::DropWhenFull`]: a full queue drops the event with a warning rather than stall
//!   detection (drafting is idempotent and every update carries the incident again; the other
//!   instances read the shared store after a gap; the wall's counts are for display).

use crate::incidents::Event;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::mpsc;

/// What happens when a subscriber's queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// The engine waits for room.
    Wait,
    /// The event is dropped for this subscriber (logged).
    DropWhenFull,
}

/// Which events a subscriber receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interest {
    /// `incident.opened`, `incident.updated`, `incident.closed`.
    Incidents,
    /// Incident events and `mention.assigned`.
    IncidentsAndAssignments,
    /// `mention.request`: mentions with a citizen-request cue (the engine emits them only when
    /// a stage subscribed to them).
    Requests,
    /// `hour.stats`: the figures of each event-time hour (the engine emits them only when a
    /// stage subscribed to them).
    Hours,
}

impl Interest {
    fn wants(self, e: &Event) -> bool {
        match self {
            Interest::Incidents => e.is_incident(),
            Interest::IncidentsAndAssignments => e.is_incident() || e.is_assignment(),
            Interest::Requests => matches!(e, Event::Request { .. }),
            Interest::Hours => matches!(e, Event::Hour(_)),
        }
    }
}

/// A receiving end, owned by one stage.
pub type Subscription = mpsc::Receiver<Arc<Event>>;

struct Subscriber {
    stage: &'static str,
    tx: mpsc::Sender<Arc<Event>>,
    delivery: Delivery,
    interest: Interest,
    dropped: AtomicU64,
}

/// A callback run on the engine thread for every event it wants.
type Inline = Box<dyn Fn(&Event) + Send>;

/// The bus. Built while stages start, then moved to the engine thread.
#[derive(Default)]
pub struct Bus {
    inline: Vec<(Interest, Inline)>,
    subscribers: Vec<Subscriber>,
}

impl Bus {
    /// Subscribe `stage` (a fixed name, for logs) with a queue of `capacity` events.
    pub fn subscribe(
        &mut self,
        stage: &'static str,
        capacity: usize,
        delivery: Delivery,
        interest: Interest,
    ) -> Subscription {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        self.subscribers.push(Subscriber {
            stage,
            tx,
            delivery,
            interest,
            dropped: AtomicU64::new(0),
        });
        rx
    }

    /// Run `f` on the engine thread for every event of `interest`, before the queued
    /// subscribers get it. Only for work that never blocks and takes microseconds.
    pub fn inline(&mut self, interest: Interest, f: impl Fn(&Event) + Send + 'static) {
        self.inline.push((interest, Box::new(f)));
    }

    /// Hand `e` to every subscriber that wants it. Runs on the engine thread (blocking where a
    /// subscriber asked to be waited for); never on a runtime thread.
    pub fn publish(&self, e: &Event) {
        for (interest, f) in &self.inline {
            if interest.wants(e) {
                f(e);
            }
        }
        let mut shared: Option<Arc<Event>> = None;
        for s in &self.subscribers {
            if !s.interest.wants(e) {
                continue;
            }
            let ev = shared.get_or_insert_with(|| Arc::new(e.clone())).clone();
            match s.delivery {
                // A stage that stopped (its receiver is gone) no longer needs the event.
                Delivery::Wait => {
                    let _ = s.tx.blocking_send(ev);
                }
                Delivery::DropWhenFull => {
                    if let Err(mpsc::error::TrySendError::Full(_)) = s.tx.try_send(ev) {
                        // Logged on the first drop and every 10,000th: an overload must not
                        // also flood the log.
                        let n = s.dropped.fetch_add(1, Ordering::Relaxed);
                        if n % 10_000 == 0 {
                            tracing::warn!(
                                stage = s.stage,
                                dropped = n + 1,
                                "Stage queue full: events were dropped for it."
                            );
                        }
                    }
                }
            }
        }
    }

    /// Whether no stage subscribed.
    pub fn is_empty(&self) -> bool {
        self.subscribers.is_empty() && self.inline.is_empty()
    }

    /// Whether a stage subscribed to `mention.request` events.
    pub fn wants_requests(&self) -> bool {
        self.subscribers
            .iter()
            .any(|s| s.interest == Interest::Requests)
    }

    /// Whether a stage subscribed to the hourly figures (the engine then emits them).
    pub fn wants_hours(&self) -> bool {
        self.subscribers
            .iter()
            .any(|s| s.interest == Interest::Hours)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::incidents::{Event, EventKind, Incident};

    fn assigned() -> Event {
        Event::Assigned {
            at: 1,
            mention_id: "m".into(),
            incident_id: Arc::from("em-1"),
            totals: (1, 1),
        }
    }

    fn opened() -> Event {
        let inc: Incident = serde_json::from_value(serde_json::json!({
            "id": "em-1", "kind": "emergency", "category": "flood", "region": null,
            "first_seen": 1, "opened_at": 1, "updated_at": 1, "mentions": 5, "authors": 5,
            "rate_per_min": 1.0, "baseline_per_min": 0.1, "severity": 2, "top_terms": [],
            "sample_mention_ids": [], "root_mention_id": null, "rebuttal": null, "state": "open"
        }))
        .expect("incident");
        Event::Incident {
            kind: EventKind::Opened,
            at: 1,
            incident: Arc::new(inc),
        }
    }

    #[test]
    fn subscribers_get_what_they_asked_for_and_a_full_drop_queue_does_not_block() {
        let mut bus = Bus::default();
        let mut all = bus.subscribe("all", 8, Delivery::Wait, Interest::IncidentsAndAssignments);
        let mut inc = bus.subscribe("inc", 1, Delivery::DropWhenFull, Interest::Incidents);
        assert!(!bus.wants_requests());
        bus.publish(&assigned());
        bus.publish(&opened());
        bus.publish(&opened()); // `inc` is full: dropped, not waited for
        drop(bus);
        let mut n_all = 0;
        while let Some(e) = all.blocking_recv() {
            n_all += 1;
            let _ = e;
        }
        assert_eq!(n_all, 3);
        let mut n_inc = 0;
        while let Some(e) = inc.blocking_recv() {
            assert!(!e.is_assignment());
            n_inc += 1;
        }
        assert_eq!(n_inc, 1);
    }
}
