//! The feed server: a websocket server on 127.0.0.1:0 that the engine connects to as one of its
//! `[[feeds]]`, and the sender that emits mentions on it at the scenario's rate, stamping each
//! with the wall clock. Every frame's send time is logged ([`SendLog`]) so the driver can turn a
//! `mention.assigned` event into an end-to-end latency.

use crate::gen::{GenConfig, Generator};
use crate::inject::{self, Planned};
use crate::scenario::{FeedFormat, Scenario};
use futures::{SinkExt, StreamExt};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;
use tokio_util::sync::CancellationToken;

/// Background mentions per generic frame, at most (a frame is also cut every tick).
const FRAME_MAX: u64 = 256;
/// Background mentions generated per tick at most, so a sender far behind (the engine pushing
/// back) catches up in bounded steps instead of building one huge backlog in memory.
const TICK_MAX: u64 = 16 * FRAME_MAX;
/// The sender's tick.
const TICK: Duration = Duration::from_millis(2);

/// Feed server errors.
#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    /// Binding the listener failed.
    #[error("feed server: bind 127.0.0.1:0: {0}")]
    Bind(std::io::Error),
    /// The engine never connected.
    #[error("feed server: the engine did not connect within {0:?}")]
    NoConnection(Duration),
}

/// When each frame went out.
#[derive(Debug, Default)]
pub struct SendLog {
    /// Background frames: (first id, mentions, µs since start), ids ascending.
    frames: Vec<(u64, u32, u64)>,
    /// Injected mentions: id → (µs since start, event time ms).
    injected: HashMap<u64, (u64, i64)>,
    /// Mentions sent per second of the run.
    pub per_sec: Vec<u64>,
    /// Mentions sent.
    pub sent: u64,
    /// Largest delay of the sender behind its schedule (ms): the engine pushing back.
    pub max_behind_ms: u64,
    /// Times the engine (re)connected.
    pub connections: u32,
    /// The traffic is over (the connection stays open until the run stops the sender).
    pub finished: bool,
}

impl SendLog {
    /// µs since the start at which mention `seq` was sent.
    pub fn sent_us(&self, seq: u64) -> Option<u64> {
        if let Some((us, _)) = self.injected.get(&seq) {
            return Some(*us);
        }
        let i = self.frames.partition_point(|f| f.0 <= seq);
        let (first, n, us) = *self.frames.get(i.checked_sub(1)?)?;
        (seq < first + u64::from(n)).then_some(us)
    }

    /// Send time and event time of an injected mention.
    pub fn injected(&self, seq: u64) -> Option<(u64, i64)> {
        self.injected.get(&seq).copied()
    }

    fn count(&mut self, at_us: u64, n: u64) {
        let s = (at_us / 1_000_000) as usize;
        if self.per_sec.len() <= s {
            self.per_sec.resize(s + 1, 0);
        }
        self.per_sec[s] += n;
        self.sent += n;
    }
}

/// Shared handle on the log.
#[derive(Clone, Default)]
pub struct SharedLog(Arc<Mutex<SendLog>>);

impl SharedLog {
    /// Lock it (a poisoned lock still holds valid counts).
    pub fn lock(&self) -> MutexGuard<'_, SendLog> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A bound feed server, waiting for the engine.
pub struct FeedServer {
    listener: TcpListener,
    /// Its address.
    pub addr: SocketAddr,
}

impl FeedServer {
    /// Bind 127.0.0.1:0.
    pub async fn bind() -> Result<FeedServer, FeedError> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(FeedError::Bind)?;
        let addr = listener.local_addr().map_err(FeedError::Bind)?;
        Ok(FeedServer { listener, addr })
    }

    /// The URL the engine's feed config points at.
    pub fn url(&self, format: FeedFormat) -> String {
        match format {
            FeedFormat::Generic => format!("ws://{}/feed", self.addr),
            FeedFormat::Mastodon => format!("ws://{}/api/v1/streaming", self.addr),
        }
    }

    /// Accept connections and hand each upgraded one to the sender.
    pub fn spawn_accept(self) -> tokio::sync::mpsc::Receiver<WebSocketStream<TcpStream>> {
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::spawn(async move {
            loop {
                let Ok((s, _)) = self.listener.accept().await else {
                    continue;
                };
                let _ = s.set_nodelay(true);
                match tokio_tungstenite::accept_async(s).await {
                    Ok(ws) => {
                        if tx.send(ws).await.is_err() {
                            break;
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "Feed server: handshake failed."),
                }
            }
        });
        rx
    }
}

/// Renders mentions in the scenario's wire format.
struct Encoder {
    format: FeedFormat,
    host: String,
}

impl Encoder {
    /// One generic-format mention object.
    fn generic(p: &Planned, ts: i64) -> serde_json::Value {
        let mut v = serde_json::json!({
            "id": p.seq.to_string(), "ts": ts, "author": p.author, "text": p.text,
        });
        if let Some(r) = p.repost_of {
            v["repost_of"] = r.to_string().into();
        }
        if let Some(r) = p.reply_to {
            v["reply_to"] = r.to_string().into();
        }
        v
    }

    /// A Mastodon `update` frame for a generic-format mention object.
    fn mastodon(&self, m: &serde_json::Value) -> String {
        let id = m["id"].as_str().unwrap_or_default();
        let author = m["author"].as_str().unwrap_or("anon");
        let text = m["text"].as_str().unwrap_or_default();
        let ts = m["ts"].as_i64().unwrap_or_default();
        let created = chrono::DateTime::from_timestamp_millis(ts)
            .unwrap_or_default()
            .format("%Y-%m-%dT%H:%M:%S%.3fZ")
            .to_string();
        let html = format!(
            "<p>{}</p>",
            text.replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;")
        );
        let account = serde_json::json!({"id": author, "acct": author, "username": author,
            "display_name": author, "followers_count": 42});
        let host = &self.host;
        let mut status = serde_json::json!({
            "id": id, "created_at": created, "content": html, "visibility": "public",
            "language": "zh", "url": format!("http://{host}/@{author}/{id}"),
            "account": account, "reblog": null,
            "in_reply_to_id": m.get("reply_to").cloned().unwrap_or(serde_json::Value::Null),
        });
        if let Some(r) = m.get("repost_of") {
            // A reblog: the outer status wraps the original (whose text is repeated here).
            status["reblog"] = serde_json::json!({
                "id": r, "created_at": created, "content": html,
                "account": {"acct": "orig", "username": "orig"},
            });
        }
        serde_json::json!({"stream": ["public:local"], "event": "update",
            "payload": status.to_string()})
        .to_string()
    }

    /// Frames for background lines (generic JSON Lines bytes, newline-terminated).
    fn background(&self, lines: &[u8], out: &mut Vec<String>) {
        match self.format {
            FeedFormat::Generic => {
                let mut s = String::with_capacity(lines.len() + 2);
                s.push('[');
                // Lines are valid UTF-8 JSON objects; join them into one array.
                let body = String::from_utf8_lossy(lines);
                for (i, l) in body.lines().enumerate() {
                    if i > 0 {
                        s.push(',');
                    }
                    s.push_str(l);
                }
                s.push(']');
                out.push(s);
            }
            FeedFormat::Mastodon => {
                for l in lines.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(l) {
                        out.push(self.mastodon(&v));
                    }
                }
            }
        }
    }

    fn injected(&self, ps: &[(&Planned, i64)], out: &mut Vec<String>) {
        let objs: Vec<serde_json::Value> =
            ps.iter().map(|(p, ts)| Encoder::generic(p, *ts)).collect();
        match self.format {
            FeedFormat::Generic => out.push(serde_json::Value::Array(objs).to_string()),
            FeedFormat::Mastodon => out.extend(objs.iter().map(|o| self.mastodon(o))),
        }
    }
}

/// Everything the sender needs.
pub struct SenderConfig {
    /// The scenario.
    pub scenario: Scenario,
    /// Seconds of traffic (the scenario's, or the `--duration` bound).
    pub duration_secs: f64,
    /// Where the run started (all offsets are from here).
    pub start: Instant,
    /// Host name used in Mastodon URLs.
    pub host: String,
}

/// Send the scenario's traffic on the connections `conns` delivers until the duration is
/// over or `cancel` is set. Waits up to `connect_wait` for the first connection.
pub async fn send(
    cfg: SenderConfig,
    mut conns: tokio::sync::mpsc::Receiver<WebSocketStream<TcpStream>>,
    log: SharedLog,
    cancel: CancellationToken,
    connect_wait: Duration,
) -> Result<(), FeedError> {
    let sc = &cfg.scenario;
    let mut ws = match tokio::time::timeout(connect_wait, conns.recv()).await {
        Ok(Some(ws)) => ws,
        _ => return Err(FeedError::NoConnection(connect_wait)),
    };
    log.lock().connections += 1;
    let mut gen = Generator::new(GenConfig {
        count: u64::MAX,
        seed: sc.seed,
        authors: sc.authors.max(1),
        emergency_share: sc.emergency_share,
        rumor_share: sc.rumor_share,
        ..GenConfig::default()
    });
    let mut planned: Vec<Planned> = sc
        .inject
        .iter()
        .enumerate()
        .flat_map(|(k, i)| inject::plan(k, i))
        .collect();
    planned.sort_by_key(|p| p.at_ms);
    let enc = Encoder {
        format: sc.feed,
        host: cfg.host.clone(),
    };
    let mut next_inj = 0usize;
    let mut sent_bg: u64 = 0;
    let mut lines = Vec::with_capacity(64 * 1024);
    let mut frames: Vec<String> = Vec::new();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        let t = cfg.start.elapsed().as_secs_f64();
        if cancel.is_cancelled() || t >= cfg.duration_secs {
            break;
        }
        let now_ms = chrono::Utc::now().timestamp_millis();
        let t_ms = (t * 1000.0) as u64;
        // Injections due now go first, in one frame (generic) so their order is kept.
        let mut due_inj: Vec<(&Planned, i64)> = Vec::new();
        while next_inj < planned.len() && planned[next_inj].at_ms <= t_ms {
            due_inj.push((&planned[next_inj], now_ms));
            next_inj += 1;
        }
        frames.clear();
        let inj_n = due_inj.len() as u64;
        if !due_inj.is_empty() {
            enc.injected(&due_inj, &mut frames);
        }
        let due = sc.profile.as_ref().map_or(0, |p| p.due(t) as u64);
        let behind_ms = sc.profile.as_ref().map_or(0.0, |p| {
            (due.saturating_sub(sent_bg)) as f64 / p.rate(t).max(1.0) * 1e3
        }) as u64;
        let mut bg_frames: Vec<(u64, u32)> = Vec::new();
        let due = due.min(sent_bg + TICK_MAX);
        while sent_bg < due {
            let n = (due - sent_bg).min(FRAME_MAX);
            let first = gen.next_id();
            lines.clear();
            for _ in 0..n {
                gen.next_line_at(now_ms, &mut lines);
            }
            let before = frames.len();
            enc.background(&lines, &mut frames);
            if frames.len() > before {
                bg_frames.push((first, n as u32));
            }
            sent_bg += n;
        }
        if frames.is_empty() {
            continue;
        }
        // Feed every frame, then flush once: few syscalls per tick.
        let mut ok = true;
        for f in frames.drain(..) {
            if ws.feed(Message::text(f)).await.is_err() {
                ok = false;
                break;
            }
        }
        if ok {
            ok = ws.flush().await.is_ok();
        }
        let at_us = cfg.start.elapsed().as_micros() as u64;
        {
            let mut l = log.lock();
            for (p, ts) in &due_inj {
                l.injected.insert(p.seq, (at_us, *ts));
            }
            let bg: u64 = bg_frames.iter().map(|f| u64::from(f.1)).sum();
            l.frames
                .extend(bg_frames.iter().map(|&(first, n)| (first, n, at_us)));
            l.count(at_us, bg + inj_n);
            l.max_behind_ms = l.max_behind_ms.max(behind_ms);
        }
        if !ok {
            // The engine dropped the connection: wait for it to come back (its reconnect loop
            // backs off), counting what was in flight as sent.
            tracing::warn!("Feed connection lost; waiting for the engine to reconnect.");
            match tokio::time::timeout(connect_wait, conns.recv()).await {
                Ok(Some(w)) => {
                    ws = w;
                    log.lock().connections += 1;
                }
                _ => return Err(FeedError::NoConnection(connect_wait)),
            }
        }
        // Drain whatever the engine sent (subscriptions, pings) so pongs go out.
        while let Some(Some(Ok(_))) = futures::FutureExt::now_or_never(ws.next()) {}
    }
    // Keep the connection (answering pings) while the run drains, so the engine does not
    // reconnect in the middle of the measurement.
    log.lock().finished = true;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            m = ws.next() => if !matches!(m, Some(Ok(_))) { break },
        }
    }
    let _ = ws.close(None).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use huiying::feeds::websocket::{Generic, Protocol};

    fn planned(seq: u64, text: &str, repost_of: Option<u64>, reply_to: Option<u64>) -> Planned {
        Planned {
            seq,
            at_ms: 0,
            author: format!("a{seq}"),
            text: text.into(),
            repost_of,
            reply_to,
        }
    }

    /// What the encoder sends, read back by the engine's own protocols.
    #[test]
    fn frames_parse_with_the_engines_protocols() {
        let ps = [
            planned(7, "北京暴雨 <b>&</b> 积水", None, None),
            planned(8, "速转！", Some(7), None),
            planned(9, "真的吗？", None, Some(7)),
        ];
        let stamped: Vec<(&Planned, i64)> = ps.iter().map(|p| (p, 1_780_000_000_123)).collect();
        let mut frames = Vec::new();
        let enc = Encoder {
            format: FeedFormat::Generic,
            host: "127.0.0.1:9".into(),
        };
        enc.injected(&stamped, &mut frames);
        assert_eq!(frames.len(), 1, "one array frame");
        let f = Generic { url: String::new() }.on_text(&frames[0]);
        assert_eq!(f.mentions.len(), 3, "{:?}", f.rejects);
        assert_eq!(f.mentions[1].repost_of.as_deref(), Some("7"));
        assert_eq!(f.mentions[2].reply_to.as_deref(), Some("7"));
        assert_eq!(f.mentions[0].ts, 1_780_000_000_123);

        let enc = Encoder {
            format: FeedFormat::Mastodon,
            host: "127.0.0.1:9".into(),
        };
        frames.clear();
        enc.injected(&stamped, &mut frames);
        assert_eq!(frames.len(), 3, "one update per status");
        let cfg = huiying::feeds::FeedConfig {
            name: "t".into(),
            kind: huiying::feeds::FeedKind::Mastodon,
            url: "ws://127.0.0.1:9/api/v1/streaming".into(),
            ..Default::default()
        };
        let mut m = huiying::feeds::mastodon::Mastodon::new(&cfg, None).expect("protocol");
        let got: Vec<_> = frames.iter().flat_map(|f| m.on_text(f).mentions).collect();
        assert_eq!(got.len(), 3);
        assert_eq!(got[0].text, "北京暴雨 <b>&</b> 积水", "HTML round trip");
        assert_eq!(driver_seq(&got[0].id), Some(7));
        assert_eq!(got[1].repost_of.as_deref().and_then(driver_seq), Some(7));
        assert_eq!(got[2].reply_to.as_deref().and_then(driver_seq), Some(7));
        assert_eq!(got[0].ts, 1_780_000_000_123);
    }

    fn driver_seq(id: &str) -> Option<u64> {
        crate::driver::seq_of(id)
    }

    #[test]
    fn send_log_finds_frames_and_injections() {
        let mut l = SendLog::default();
        l.frames.push((100, 10, 5));
        l.frames.push((110, 5, 9));
        l.injected.insert(inject::INJ_BASE, (7, 0));
        assert_eq!(l.sent_us(99), None);
        assert_eq!(l.sent_us(100), Some(5));
        assert_eq!(l.sent_us(109), Some(5));
        assert_eq!(l.sent_us(114), Some(9));
        assert_eq!(l.sent_us(115), None);
        assert_eq!(l.sent_us(inject::INJ_BASE), Some(7));
    }
}
