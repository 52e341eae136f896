//! Metrics: one process-wide Prometheus registry. Names are `huiying_<thing>_<unit>[_total]`;
//! labels come from small fixed sets (feed names from the config, reasons, kinds, stages) and
//! never from ids, handles or keywords.

use crate::incidents::IncidentKind;
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};
use std::sync::OnceLock;

pub mod cases;
pub mod evaluation;
pub mod respond;

/// The `severity` label values of `huiying_incidents_open`.
const SEVERITIES: [&str; 5] = ["1", "2", "3", "4", "5"];

/// The `kind` label values of `huiying_incidents_open` (an emerging incident counts as an
/// emergency), indexed as [`open_cell`] gives them; also the kinds whose opened and closed
/// series exist from the start.
const OPEN_KINDS: [&str; 2] = ["emergency", "rumor"];

/// The series of `huiying_incidents_open` an incident counts in: (kind: 0 emergency, 1
/// rumor; severity 1–5 as 0–4, out-of-range severities clamped).
pub fn open_cell(kind: IncidentKind, severity: u8) -> (usize, usize) {
    (
        usize::from(kind == IncidentKind::Rumor),
        usize::from(severity.clamp(1, 5)) - 1,
    )
}

/// The `op` label values of `huiying_store_errors_total` (every `StoreError` names one).
const STORE_OPS: [&str; 5] = ["open", "read", "write", "encode", "decode"];

/// Every metric the engine exports.
pub struct Metrics {
    /// The registry `/metrics` renders.
    pub registry: Registry,
    /// Mentions received, by feed and result (`accepted`, `rejected`).
    pub ingest: IntCounterVec,
    /// Rejected input, by reason.
    pub rejects: IntCounterVec,
    /// Duplicate mention ids dropped.
    pub duplicates: IntCounter,
    /// Mentions that arrived later than the allowed lateness.
    pub late: IntCounter,
    /// Terms the emerging detector follows exactly (at most `max_candidates`).
    pub emerging_terms: IntGauge,
    /// Rising terms not followed because `max_candidates` were (the memory bound at work).
    pub emerging_overflow: IntCounter,
    /// Claim groups (cascades) dropped, the longest idle first, because the table was full.
    pub claim_groups_evicted: IntCounter,
    /// Per-stage latency: `parse`, `analyze`, `cluster` (per batch) and `end_to_end` (mention
    /// arrival to the incident event it caused).
    pub stage_seconds: HistogramVec,
    /// Incidents open now, by kind and severity (`1`..`5`), set from the live view.
    pub incidents_open: IntGaugeVec,
    /// Incidents opened, by kind.
    pub incidents_opened: IntCounterVec,
    /// Incidents closed, by kind.
    pub incidents_closed: IntCounterVec,
    /// Rule reloads by result (`ok`, `error`).
    pub rules_reloads: IntCounterVec,
    /// Times a feed had to wait because the pipeline was full.
    pub backpressure: IntCounterVec,
    /// Connected `/api/stream` clients.
    pub stream_clients: IntGauge,
    /// Stream clients disconnected for being too slow.
    pub stream_slow_disconnects: IntCounter,
    /// Stream clients refused because `max_stream_clients` were connected.
    pub stream_refused: IntCounter,
    /// Store errors by operation.
    pub store_errors: IntCounterVec,
    /// Feed connection state (1 connected), by feed.
    pub feed_connected: IntGaugeVec,
    /// Feed reconnects, by feed.
    pub feed_reconnects: IntCounterVec,
    /// Mentions per batch handed to the workers.
    pub batch_size: Histogram,
    /// 1 while Redis answers (distributed mode only; 1 otherwise).
    pub redis_up: IntGauge,
    /// Feed messages by feed and kind (`update`, `delete`, `commit`, `malformed`, `oversize`, …).
    pub feed_messages: IntCounterVec,
}

fn counter_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    r.register(Box::new(c.clone())).expect("unique metric");
    c
}

impl Metrics {
    fn new() -> Self {
        let r = Registry::new();
        let ingest = counter_vec(
            &r,
            "huiying_ingest_mentions_total",
            "Mentions received, by feed and result.",
            &["feed", "result"],
        );
        let rejects = counter_vec(
            &r,
            "huiying_rejected_mentions_total",
            "Rejected input lines or objects, by reason.",
            &["reason"],
        );
        for reason in crate::normalize::RejectReason::ALL {
            rejects.with_label_values(&[reason]);
        }
        let duplicates = IntCounter::new(
            "huiying_duplicate_mentions_total",
            "Duplicate mention ids dropped.",
        )
        .expect("valid");
        r.register(Box::new(duplicates.clone())).expect("unique");
        let late = IntCounter::new(
            "huiying_late_mentions_total",
            "Mentions older than the allowed lateness.",
        )
        .expect("valid");
        r.register(Box::new(late.clone())).expect("unique");
        let emerging_terms = IntGauge::new(
            "huiying_emerging_terms_followed",
            "Terms the emerging-incident detector follows by distinct author.",
        )
        .expect("valid");
        r.register(Box::new(emerging_terms.clone()))
            .expect("unique");
        let emerging_overflow = IntCounter::new(
            "huiying_emerging_overflow_total",
            "Rising terms not followed because the emerging detector's table was full.",
        )
        .expect("valid");
        r.register(Box::new(emerging_overflow.clone()))
            .expect("unique");
        let claim_groups_evicted = IntCounter::new(
            "huiying_claim_groups_evicted_total",
            "Claim groups (cascades) dropped, the longest idle first, because the table was full.",
        )
        .expect("valid");
        r.register(Box::new(claim_groups_evicted.clone()))
            .expect("unique");
        let stage_seconds = HistogramVec::new(
            HistogramOpts::new(
                "huiying_stage_duration_seconds",
                "Latency per pipeline stage.",
            )
            .buckets(vec![
                0.000_01, 0.000_05, 0.000_1, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05,
                0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
            &["stage"],
        )
        .expect("valid");
        r.register(Box::new(stage_seconds.clone())).expect("unique");
        for s in ["parse", "analyze", "cluster", "end_to_end"] {
            stage_seconds.with_label_values(&[s]);
        }
        let incidents_open = IntGaugeVec::new(
            Opts::new(
                "huiying_incidents_open",
                "Incidents open now, by kind and severity.",
            ),
            &["kind", "severity"],
        )
        .expect("valid");
        r.register(Box::new(incidents_open.clone()))
            .expect("unique");
        let incidents_opened = counter_vec(
            &r,
            "huiying_incidents_opened_total",
            "Incidents opened, by kind.",
            &["kind"],
        );
        let incidents_closed = counter_vec(
            &r,
            "huiying_incidents_closed_total",
            "Incidents closed, by kind.",
            &["kind"],
        );
        for k in OPEN_KINDS {
            for sev in SEVERITIES {
                incidents_open.with_label_values(&[k, sev]);
            }
            incidents_opened.with_label_values(&[k]);
            incidents_closed.with_label_values(&[k]);
        }
        let rules_reloads = counter_vec(
            &r,
            "huiying_rules_reloads_total",
            "Rule reloads, by result.",
            &["result"],
        );
        for k in ["ok", "error"] {
            rules_reloads.with_label_values(&[k]);
        }
        let backpressure = counter_vec(
            &r,
            "huiying_ingest_backpressure_total",
            "Times a feed waited because the pipeline was full.",
            &["feed"],
        );
        let stream_clients =
            IntGauge::new("huiying_stream_clients", "Connected /api/stream clients.")
                .expect("valid");
        r.register(Box::new(stream_clients.clone()))
            .expect("unique");
        let stream_slow_disconnects = IntCounter::new(
            "huiying_stream_slow_disconnects_total",
            "Stream clients dropped for being too slow.",
        )
        .expect("valid");
        r.register(Box::new(stream_slow_disconnects.clone()))
            .expect("unique");
        let stream_refused = IntCounter::new(
            "huiying_stream_refused_total",
            "Stream clients refused because max_stream_clients were connected.",
        )
        .expect("valid");
        r.register(Box::new(stream_refused.clone()))
            .expect("unique");
        let store_errors = counter_vec(
            &r,
            "huiying_store_errors_total",
            "Store errors, by operation.",
            &["op"],
        );
        for op in STORE_OPS {
            store_errors.with_label_values(&[op]);
        }
        let feed_connected = IntGaugeVec::new(
            Opts::new("huiying_feed_connected", "1 when the feed is connected."),
            &["feed"],
        )
        .expect("valid");
        r.register(Box::new(feed_connected.clone()))
            .expect("unique");
        let feed_reconnects = counter_vec(
            &r,
            "huiying_feed_reconnects_total",
            "Feed reconnects, by feed.",
            &["feed"],
        );
        let batch_size = Histogram::with_opts(
            HistogramOpts::new(
                "huiying_batch_mentions",
                "Mentions per batch handed to the analysis workers.",
            )
            .buckets(vec![1.0, 4.0, 16.0, 64.0, 256.0, 1024.0]),
        )
        .expect("valid");
        r.register(Box::new(batch_size.clone())).expect("unique");
        let feed_messages = counter_vec(
            &r,
            "huiying_feed_messages_total",
            "Feed messages received, by feed and kind.",
            &["feed", "kind"],
        );
        let redis_up = IntGauge::new(
            "huiying_redis_up",
            "1 while Redis answers (always 1 without Redis).",
        )
        .expect("valid");
        redis_up.set(1);
        r.register(Box::new(redis_up.clone())).expect("unique");
        Metrics {
            redis_up,
            feed_messages,
            registry: r,
            ingest,
            rejects,
            duplicates,
            late,
            emerging_terms,
            emerging_overflow,
            claim_groups_evicted,
            stage_seconds,
            incidents_open,
            incidents_opened,
            incidents_closed,
            rules_reloads,
            backpressure,
            stream_clients,
            stream_slow_disconnects,
            stream_refused,
            store_errors,
            feed_connected,
            feed_reconnects,
            batch_size,
        }
    }

    /// Count an opened incident. (The open gauge follows the live view: see
    /// [`Metrics::set_incidents_open`]; severity rises while an incident is open.)
    pub fn incident_opened(&self, kind: IncidentKind) {
        self.incidents_opened
            .with_label_values(&[kind.as_str()])
            .inc();
    }

    /// Count a closed incident.
    pub fn incident_closed(&self, kind: IncidentKind) {
        self.incidents_closed
            .with_label_values(&[kind.as_str()])
            .inc();
    }

    /// Set the series of `huiying_incidents_open` of (`kind`, `severity`) to `n` (the live view
    /// counts them; every series exists from the start at 0).
    pub fn set_incidents_open(&self, kind: IncidentKind, severity: u8, n: i64) {
        let (k, s) = open_cell(kind, severity);
        self.incidents_open
            .with_label_values(&[OPEN_KINDS[k], SEVERITIES[s]])
            .set(n);
    }

    /// Create the series of an input (a configured feed, or `http`) at zero, so dashboards
    /// and alerts see them before the first mention, rejection or wait.
    pub fn init_input(&self, feed: &str) {
        for result in ["accepted", "rejected"] {
            self.ingest.with_label_values(&[feed, result]);
        }
        self.backpressure.with_label_values(&[feed]);
    }

    /// [`Metrics::init_input`] plus the connection series of a configured feed (disconnected
    /// until it connects).
    pub fn init_feed(&self, feed: &str) {
        self.init_input(feed);
        self.feed_connected.with_label_values(&[feed]);
        self.feed_reconnects.with_label_values(&[feed]);
    }

    /// Mentions accepted so far, over every feed (the wall's global rate is its derivative).
    pub fn accepted_total(&self) -> u64 {
        use prometheus::core::Collector;
        self.ingest
            .collect()
            .iter()
            .flat_map(|f| f.get_metric())
            .filter(|m| {
                m.get_label()
                    .iter()
                    .any(|l| l.name() == "result" && l.value() == "accepted")
            })
            .map(|m| m.get_counter().get_value() as u64)
            .sum()
    }

    /// A rejected input, counted under its feed and reason.
    pub fn rejected(&self, feed: &str, reason: &str) {
        self.ingest.with_label_values(&[feed, "rejected"]).inc();
        self.rejects.with_label_values(&[reason]).inc();
    }

    /// An accepted mention.
    pub fn accepted(&self, feed: &str, n: u64) {
        self.ingest.with_label_values(&[feed, "accepted"]).inc_by(n);
    }

    /// Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let enc = TextEncoder::new();
        if enc.encode(&self.registry.gather(), &mut buf).is_err() {
            return String::new();
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}

/// The process-wide metrics.
pub fn global() -> &'static Metrics {
    static M: OnceLock<Metrics> = OnceLock::new();
    M.get_or_init(Metrics::new)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_incidents_follow_kind_and_severity_and_empty_levels_read_zero() {
        let m = Metrics::new();
        let get = |k: &str, s: &str| m.incidents_open.with_label_values(&[k, s]).get();
        m.set_incidents_open(IncidentKind::Emergency, 4, 2);
        m.set_incidents_open(IncidentKind::Rumor, 2, 1);
        assert_eq!((get("emergency", "4"), get("rumor", "2")), (2, 1));
        // Severities out of range count at the nearest level.
        m.set_incidents_open(IncidentKind::Emergency, 9, 3);
        m.set_incidents_open(IncidentKind::Rumor, 0, 7);
        assert_eq!((get("emergency", "5"), get("rumor", "1")), (3, 7));
        assert_eq!(get("emergency", "3"), 0);
        let text = m.render();
        assert_eq!(
            text.lines()
                .filter(|l| l.starts_with("huiying_incidents_open{"))
                .count(),
            10,
            "{text}"
        );
    }

    #[test]
    fn accepted_total_sums_every_feed() {
        let m = Metrics::new();
        m.init_input("http");
        m.accepted("http", 3);
        m.accepted("feed-a", 4);
        m.rejected("feed-a", "invalid_json");
        assert_eq!(m.accepted_total(), 7);
    }
}
