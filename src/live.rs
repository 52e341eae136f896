//! The live view: open incidents as the engine last reported them, and the stream of event lines
//! that `/api/stream` clients and the wall receive. The engine's sink applies this instance's
//! events; `store::redis::events` applies the other instances' (an incident opened on several
//! instances is announced once per stream). Read by the API, the wall and the metrics.

use crate::incidents::{Event, EventKind, Incident, IncidentState};
use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, RwLock};
use tokio::sync::broadcast;

/// One event as the stream sends it: serialised once, shared by every client.
#[derive(Debug, Clone)]
pub struct StreamMsg {
    /// The JSON line.
    pub json: Arc<str>,
    /// Whether it is a `mention.assigned` event (sent only to clients that ask for them).
    pub assignment: bool,
}

/// Open incidents as the engine last reported them.
pub type LiveIncidents = Arc<RwLock<BTreeMap<String, Arc<Incident>>>>;

/// Events the stream ring holds for clients that read slowly (a client further behind is
/// disconnected, never waited for).
const STREAM_RING: usize = 4096;

/// The live view and its stream.
#[derive(Clone)]
pub struct Live {
    /// Open incidents.
    pub incidents: LiveIncidents,
    /// The stream every `/api/stream` client subscribes to.
    pub stream: broadcast::Sender<StreamMsg>,
    /// With several instances: which opened/closed announcements this stream already made.
    dedup: Option<Arc<StreamDedup>>,
    /// Open incidents of the view by (kind, severity): `huiying_incidents_open`, kept as the
    /// view changes (recounting the view on every event cost O(open incidents) an event).
    open: Arc<Mutex<OpenCounts>>,
}

/// Open incidents by kind (emergency, rumor) and severity (1–5).
type OpenCounts = [[i64; 5]; 2];

impl Live {
    /// An empty view; `shared` when other instances' events are shown too.
    pub fn new(shared: bool) -> Live {
        Live {
            incidents: Default::default(),
            stream: broadcast::channel(STREAM_RING).0,
            dedup: shared.then(Default::default),
            open: Default::default(),
        }
    }

    /// Put restored open incidents into the view.
    pub fn restore(&self, incidents: &[Incident]) {
        let mut g = self.write();
        for i in incidents {
            let old = g.insert(i.id.clone(), Arc::new(i.clone()));
            self.recount(old.as_deref(), Some(i));
        }
    }

    /// Add the open incidents the view misses (after reconnecting to the other instances).
    pub fn add_missing(&self, incidents: Vec<Incident>) {
        let mut g = self.write();
        for i in incidents {
            if let std::collections::btree_map::Entry::Vacant(v) = g.entry(i.id.clone()) {
                self.recount(None, Some(&i));
                v.insert(Arc::new(i));
            }
        }
    }

    /// An event of this engine: update the view, then announce it on the stream.
    pub fn apply(&self, e: &Event) {
        let json: Arc<str> = Arc::from(e.to_json());
        self.show(e, json);
    }

    /// An event of another instance, with its JSON line; false when this stream had already
    /// announced it (opened or closed).
    pub fn apply_remote(&self, e: &Event, line: &str) -> bool {
        self.show(e, Arc::from(line))
    }

    fn show(&self, e: &Event, json: Arc<str>) -> bool {
        if let Event::Incident { kind, incident, .. } = e {
            {
                let mut g = self.write();
                if incident.state == IncidentState::Open {
                    let old = g.insert(incident.id.clone(), incident.clone());
                    self.recount(old.as_deref(), Some(incident));
                } else {
                    let old = g.remove(&incident.id);
                    self.recount(old.as_deref(), None);
                }
            }
            if let Some(d) = &self.dedup {
                if !d.first(*kind, &incident.id) {
                    return false;
                }
            }
        }
        let _ = self.stream.send(StreamMsg {
            json,
            assignment: e.is_assignment(),
        });
        true
    }

    /// `old` (the view's copy an event replaced or removed) counted out of the open gauge and
    /// `new` (the copy it put in) counted in: severity changes while open, so an update moves
    /// an incident from one series to another.
    fn recount(&self, old: Option<&Incident>, new: Option<&Incident>) {
        let mut n = self.open.lock().unwrap_or_else(|p| p.into_inner());
        for (i, d) in [(old, -1), (new, 1)] {
            if let Some(i) = i {
                let (k, s) = crate::metrics::open_cell(i.kind, i.severity);
                n[k][s] += d;
                crate::metrics::global().set_incidents_open(i.kind, i.severity, n[k][s]);
            }
        }
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, Arc<Incident>>> {
        self.incidents.write().unwrap_or_else(|p| p.into_inner())
    }
}

/// The stage: this engine's events into the view and onto the stream, every one, in order, on
/// the engine thread (an update and a broadcast send: no queue between the engine and the
/// stream's clients).
pub fn start(cx: &mut crate::stage::Context) -> crate::stage::Handle {
    let live = cx.live.clone();
    cx.bus
        .inline(crate::bus::Interest::IncidentsAndAssignments, move |e| {
            live.apply(e)
        });
    crate::stage::Handle::new("live", Vec::new())
}

/// Ids remembered per kind of announcement (older ones are forgotten first).
const DEDUP_CAP: usize = 10_000;

#[derive(Default)]
struct Seen {
    set: HashSet<(bool, String)>,
    order: VecDeque<(bool, String)>,
}

/// Which incidents this instance's stream already announced as opened or closed.
#[derive(Default)]
struct StreamDedup {
    seen: Mutex<Seen>,
}

impl StreamDedup {
    /// Whether an event of `kind` for incident `id` should be shown: updates always, opened and
    /// closed only the first time.
    fn first(&self, kind: EventKind, id: &str) -> bool {
        let closed = match kind {
            EventKind::Updated => return true,
            EventKind::Opened => false,
            EventKind::Closed => true,
        };
        let mut g = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let k = (closed, id.to_string());
        if !g.set.insert(k.clone()) {
            return false;
        }
        g.order.push_back(k);
        if g.order.len() > DEDUP_CAP {
            if let Some(old) = g.order.pop_front() {
                g.set.remove(&old);
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_incident_is_announced_opened_and_closed_once_and_updated_always() {
        let d = StreamDedup::default();
        assert!(d.first(EventKind::Opened, "em-1"));
        assert!(!d.first(EventKind::Opened, "em-1"));
        assert!(d.first(EventKind::Updated, "em-1"));
        assert!(d.first(EventKind::Updated, "em-1"));
        assert!(d.first(EventKind::Closed, "em-1"));
        assert!(!d.first(EventKind::Closed, "em-1"));
        assert!(d.first(EventKind::Opened, "em-2"));
    }

    #[test]
    fn the_open_gauge_counts_the_view_by_kind_and_severity() {
        use crate::incidents::IncidentKind;
        let inc = |id: &str, kind, severity, state| {
            Arc::new(Incident {
                severity,
                state,
                ..Incident::new(id, kind, "flood", 0)
            })
        };
        let ev = |kind, i: Arc<Incident>| Event::Incident {
            kind,
            at: 0,
            incident: i,
        };
        let live = Live::new(false);
        let (e, r, open, closed) = (
            IncidentKind::Emergency,
            IncidentKind::Rumor,
            IncidentState::Open,
            IncidentState::Closed,
        );
        live.apply(&ev(EventKind::Opened, inc("em-1", e, 4, open)));
        live.apply(&ev(EventKind::Opened, inc("em-2", e, 4, open)));
        live.apply(&ev(EventKind::Opened, inc("ru-1", r, 2, open)));
        // One emergency rose to 5 (it moves from one series to the other); the rumor closed;
        // restored and missing copies of what the view holds are not counted twice.
        live.apply(&ev(EventKind::Updated, inc("em-2", e, 5, open)));
        live.apply(&ev(EventKind::Closed, inc("ru-1", r, 2, closed)));
        live.restore(&[(*inc("em-1", e, 4, open)).clone()]);
        live.add_missing(vec![
            (*inc("em-2", e, 5, open)).clone(),
            (*inc("ru-9", r, 1, open)).clone(),
        ]);
        let counts = *live.open.lock().unwrap();
        assert_eq!(counts, [[0, 0, 0, 1, 1], [1, 0, 0, 0, 0]]);
        // The same as counting the view afresh.
        let mut fresh = [[0i64; 5]; 2];
        for i in live.incidents.read().unwrap().values() {
            let (k, s) = crate::metrics::open_cell(i.kind, i.severity);
            fresh[k][s] += 1;
        }
        assert_eq!(counts, fresh);
    }

    #[test]
    fn the_memory_of_announced_ids_is_bounded() {
        let d = StreamDedup::default();
        for i in 0..=DEDUP_CAP {
            assert!(d.first(EventKind::Opened, &format!("em-{i}")));
        }
        // The oldest was forgotten; the newest is remembered.
        assert!(d.first(EventKind::Opened, "em-0"));
        assert!(!d.first(EventKind::Opened, &format!("em-{DEDUP_CAP}")));
        let g = d.seen.lock().unwrap_or_else(|p| p.into_inner());
        assert!(g.order.len() <= DEDUP_CAP && g.set.len() == g.order.len());
    }
}
