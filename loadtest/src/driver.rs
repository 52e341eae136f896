//! The driver: subscribes to the engine's `/api/stream` (with `mention.assigned` events),
//! records what arrives and when, and samples the engine's `/metrics` and `/proc/PID` every
//! second.

use crate::feed::SharedLog;
use crate::inject::injection_of;
use crate::procstat;
use futures::StreamExt;
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

/// Driver errors.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// The stream could not be opened.
    #[error("stream ws://{addr}/api/stream: {source}")]
    Connect {
        /// Engine address.
        addr: SocketAddr,
        /// Why.
        source: tokio_tungstenite::tungstenite::Error,
    },
    /// An HTTP call to the engine failed.
    #[error("GET http://{addr}{path}: {message}")]
    Http {
        /// Engine address.
        addr: SocketAddr,
        /// Path.
        path: String,
        /// Why.
        message: String,
    },
}

/// An incident as its `incident.opened` event described it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Opened {
    /// Incident id.
    pub id: String,
    /// `emergency` or `rumor`.
    pub kind: String,
    /// Category.
    pub category: String,
    /// Region code.
    pub region: Option<String>,
    /// Event time it opened (ms).
    pub opened_at: i64,
    /// When the event arrived (µs since the start).
    pub recv_us: u64,
    /// Mentions assigned at open.
    pub mentions: u64,
}

/// Everything the stream showed.
#[derive(Debug, Default)]
pub struct Observed {
    /// Opened incidents, in arrival order.
    pub opened: Vec<Opened>,
    /// Incident → injection → injected mentions assigned to it.
    pub injected_in: HashMap<String, BTreeMap<usize, u64>>,
    /// `mention.assigned` latencies of mentions joining an open incident: (second of the run, µs).
    pub assigned_latency: Vec<(u32, u64)>,
    /// Per opened incident: the newest mention's send time → the open event (µs).
    pub open_latency: Vec<u64>,
    /// Events received.
    pub events: u64,
    /// `incident.updated` / `incident.closed` events.
    pub updated: u64,
    /// `incident.closed` events.
    pub closed: u64,
    /// Assigned mentions whose send time is unknown (not ours, or the log lost them).
    pub unknown_ids: u64,
    /// Lines that were not JSON.
    pub bad_lines: u64,
    /// The stream ended (or failed) before the driver was stopped.
    pub ended_early: Option<String>,
    open_burst: HashMap<String, (u64, u64)>,
}

/// Shared handle on [`Observed`].
#[derive(Clone, Default)]
pub struct SharedObserved(Arc<Mutex<Observed>>);

impl SharedObserved {
    /// Lock it.
    pub fn lock(&self) -> MutexGuard<'_, Observed> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The numeric id at the end of a mention id (`123`, `mastodon:host:port:123`).
pub fn seq_of(mention_id: &str) -> Option<u64> {
    mention_id.rsplit(':').next()?.parse().ok()
}

impl Observed {
    fn on_line(&mut self, text: &str, recv_us: u64, log: &SharedLog) {
        self.events += 1;
        let Ok(v) = serde_json::from_str::<serde_json::Value>(text) else {
            self.bad_lines += 1;
            return;
        };
        match v["event"].as_str() {
            Some("incident.opened") => {
                let inc = &v["incident"];
                let id = inc["id"].as_str().unwrap_or_default().to_string();
                let mentions = inc["mentions"].as_u64().unwrap_or(0);
                self.open_burst.insert(id.clone(), (mentions, 0));
                self.opened.push(Opened {
                    id,
                    kind: inc["kind"].as_str().unwrap_or_default().to_string(),
                    category: inc["category"].as_str().unwrap_or_default().to_string(),
                    region: inc["region"]["code"].as_str().map(str::to_string),
                    opened_at: inc["opened_at"].as_i64().unwrap_or_default(),
                    recv_us,
                    mentions,
                });
            }
            Some("incident.updated") => self.updated += 1,
            Some("incident.closed") => self.closed += 1,
            Some("mention.assigned") => {
                let iid = v["incident_id"].as_str().unwrap_or_default();
                let Some(seq) = v["mention_id"].as_str().and_then(seq_of) else {
                    self.unknown_ids += 1;
                    return;
                };
                if let Some((k, _)) = injection_of(seq) {
                    *self
                        .injected_in
                        .entry(iid.to_string())
                        .or_default()
                        .entry(k)
                        .or_default() += 1;
                }
                let Some(sent) = log.lock().sent_us(seq) else {
                    self.unknown_ids += 1;
                    return;
                };
                // The mentions assigned right after `incident.opened` were waiting in the
                // window: their delay is detection, not pipeline latency. The newest of them
                // opened the incident.
                if let Some((left, newest)) = self.open_burst.get_mut(iid) {
                    *newest = (*newest).max(sent);
                    *left = left.saturating_sub(1);
                    if *left == 0 {
                        let newest = *newest;
                        self.open_burst.remove(iid);
                        if let Some(o) = self.opened.iter().rev().find(|o| o.id == iid) {
                            self.open_latency.push(o.recv_us.saturating_sub(newest));
                        }
                    }
                    return;
                }
                self.assigned_latency
                    .push(((recv_us / 1_000_000) as u32, recv_us.saturating_sub(sent)));
            }
            _ => {}
        }
    }
}

/// Connect to the stream; returns once subscribed (the upgrade answered).
pub async fn connect(
    addr: SocketAddr,
    token: &str,
) -> Result<
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    DriverError,
> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let err = |source| DriverError::Connect { addr, source };
    let mut req = format!("ws://{addr}/api/stream?assignments=true")
        .into_client_request()
        .map_err(err)?;
    // The bearer header rather than `?access_token=`: a token in a URL can end up in logs.
    let bearer = format!("Bearer {token}").parse().map_err(
        |e: axum::http::header::InvalidHeaderValue| {
            err(tokio_tungstenite::tungstenite::Error::HttpFormat(e.into()))
        },
    )?;
    req.headers_mut().insert("Authorization", bearer);
    let (ws, _) = tokio_tungstenite::connect_async(req).await.map_err(err)?;
    Ok(ws)
}

/// Read the stream into `obs` until `stop`.
pub async fn watch(
    mut ws: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    start: Instant,
    obs: SharedObserved,
    log: SharedLog,
    stop: CancellationToken,
) {
    loop {
        let msg = tokio::select! {
            _ = stop.cancelled() => break,
            m = ws.next() => m,
        };
        let recv_us = start.elapsed().as_micros() as u64;
        match msg {
            Some(Ok(Message::Text(t))) => obs.lock().on_line(t.as_str(), recv_us, &log),
            Some(Ok(Message::Close(_))) | None => {
                obs.lock().ended_early = Some("the engine closed the stream".into());
                break;
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => {
                obs.lock().ended_early = Some(format!("stream error: {e}"));
                break;
            }
        }
    }
}

/// One per-second sample.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Tick {
    /// Seconds since the start.
    pub t: f64,
    /// Mentions the engine accepted so far (`huiying_ingest_mentions_total`, accepted).
    pub accepted: f64,
    /// Mentions the engine rejected so far.
    pub rejected: f64,
    /// Engine RSS, bytes.
    pub rss_bytes: u64,
    /// Engine CPU time so far, seconds.
    pub cpu_secs: f64,
    /// The harness's own CPU time so far (the load generator must not be the limit).
    pub harness_cpu_secs: f64,
}

/// GET a path of the engine; the body.
pub async fn get(
    client: &reqwest::Client,
    addr: SocketAddr,
    token: &str,
    path: &str,
) -> Result<String, DriverError> {
    let err = |message: String| DriverError::Http {
        addr,
        path: path.to_string(),
        message,
    };
    let r = client
        .get(format!("http://{addr}{path}"))
        .bearer_auth(token)
        .send()
        .await
        .map_err(|e| err(e.to_string()))?;
    if !r.status().is_success() {
        return Err(err(format!("status {}", r.status())));
    }
    r.text().await.map_err(|e| err(e.to_string()))
}

/// Sum of every series of `name` whose labels contain `label` (e.g. `result="accepted"`).
pub fn metric_sum(exposition: &str, name: &str, label: &str) -> f64 {
    exposition
        .lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with('{') && l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Sample the engine every second until `stop`.
pub async fn sample(
    addr: SocketAddr,
    token: String,
    pid: u32,
    start: Instant,
    ticks: Arc<Mutex<Vec<Tick>>>,
    stop: CancellationToken,
) {
    let client = reqwest::Client::new();
    let mut every = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = every.tick() => {}
        }
        let mut t = Tick {
            t: start.elapsed().as_secs_f64(),
            ..Tick::default()
        };
        if let Ok(m) = get(&client, addr, &token, "/metrics").await {
            t.accepted = metric_sum(&m, "huiying_ingest_mentions_total", "result=\"accepted\"");
            t.rejected = metric_sum(&m, "huiying_rejected_mentions_total", "=");
        }
        if let Ok(s) = procstat::sample(pid) {
            t.rss_bytes = s.rss_bytes;
            t.cpu_secs = s.cpu_secs;
        }
        if let Ok(s) = procstat::sample(std::process::id()) {
            t.harness_cpu_secs = s.cpu_secs;
        }
        ticks.lock().unwrap_or_else(|e| e.into_inner()).push(t);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_metrics_parse() {
        assert_eq!(seq_of("4900000000000001"), Some(4_900_000_000_000_001));
        assert_eq!(seq_of("mastodon:127.0.0.1:4000:77"), Some(77));
        assert_eq!(seq_of("at://x/y"), None);
        let m = "# HELP x\nhuiying_ingest_mentions_total{feed=\"a\",result=\"accepted\"} 10\nhuiying_ingest_mentions_total{feed=\"b\",result=\"accepted\"} 5\nhuiying_ingest_mentions_total{feed=\"a\",result=\"rejected\"} 3\n";
        assert_eq!(
            metric_sum(m, "huiying_ingest_mentions_total", "result=\"accepted\""),
            15.0
        );
    }
}
