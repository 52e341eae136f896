//! Weibo intake: the mentions of one account (`GET /2/statuses/mentions.json`) and the
//! comments to it (`GET /2/comments/to_me.json`), polled over the open API v2 with the
//! account's access token, each becoming a [`Mention`] with `to` = the account.
//!
//! **Within Weibo's limits.** One request per poll, the two endpoints in turn (a walk down a
//! burst first), spaced evenly so that no hour holds more than `requests_per_hour` (default 150,
//! Weibo's per-user limit for an app). A rate-limit answer (HTTP 429, `error_code`
//! 10022/10023/10024) waits for the top of the next hour (Weibo's limits are per clock hour);
//! an expired or revoked token (21327, 21332, …) stops the feed, unhealthy in `GET /api/feeds`,
//! with no further request; any other failure backs off with jitter.
//!
//! **Nothing skipped, nothing twice.** Each endpoint asks for what is newer than the newest id
//! fetched (`since_id`), pages back with `max_id` while pages are full ([`cursor`]) and keeps
//! that position in the store as the feed's state after the page's mentions were queued, so a
//! restart resumes from it. On the very first start only the last `lookback_secs` are fetched.
//!
//! **Bad items.** An item that cannot be read (no id, no time, …) is counted
//! (`huiying_feed_messages_total{kind="malformed"}` and the ingest's rejection reason) and
//! skipped; the others of its page are delivered. An item Weibo marks deleted is passed on as a
//! deletion.
//!
//! Time is an input: [`WeiboFeed::poll_once`] takes `now` and says when to poll next; [`run`]
//! reads an injected [`Clock`]. Files: `api.rs` (the request and what an answer means),
//! `item.rs` (statuses and comments as mentions, their ids), `cursor.rs` (since/max ids).

pub mod api;
pub mod cursor;
pub mod item;

use self::api::{Answer, Endpoint, Query};
use self::cursor::{PageSeen, State};
use super::config::FeedConfigError;
use super::health::FeedHealth;
use super::{load_state, save_state, FeedConfig, Ingest};
use crate::clock::Clock;
use crate::store::Store;
use rand::Rng;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Requests per hour when the config does not say (Weibo's per-user limit for an app).
pub const DEFAULT_REQUESTS_PER_HOUR: u32 = 150;
/// Items per request when the config does not say (Weibo's maximum).
pub const DEFAULT_COUNT: u32 = 200;
/// How far before the first start the first polls reach, when the config does not say.
pub const DEFAULT_LOOKBACK_SECS: u64 = 3600;
/// The longest wait between failed requests (before the poll interval is added).
const MAX_BACKOFF_MS: i64 = 15 * 60 * 1000;
const HOUR_MS: i64 = 3_600_000;

/// Why a Weibo feed cannot start.
#[derive(Debug, thiserror::Error)]
pub enum WeiboError {
    /// The feed's settings.
    #[error(transparent)]
    Config(#[from] FeedConfigError),
    /// The HTTP client cannot be built.
    #[error("feed {feed}: HTTP client: {message}")]
    Client {
        /// The feed.
        feed: String,
        /// The cause.
        message: String,
    },
}

/// When to poll again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// At this time (unix ms).
    At(i64),
    /// Never: the token no longer works (the feed is unhealthy) or the pipeline is gone.
    Stop,
}

/// One Weibo account's intake.
pub struct WeiboFeed {
    feed: String,
    base: String,
    token: String,
    /// The account's handle, set as `to`.
    account: String,
    count: u32,
    /// Between two requests, ms.
    interval_ms: i64,
    lookback_ms: i64,
    client: reqwest::Client,
    state: State,
    /// The state last written to the store.
    persisted: Option<Vec<u8>>,
    store: Arc<dyn Store>,
    ingest: Ingest,
    health: Arc<FeedHealth>,
    /// The endpoint polled next when no walk is in progress.
    turn: usize,
    /// No request before this (unix ms).
    not_before: i64,
    /// Failed requests in a row.
    failures: u32,
    stopped: bool,
}

/// Never shows the token.
impl std::fmt::Debug for WeiboFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WeiboFeed")
            .field("feed", &self.feed)
            .field("base", &self.base)
            .field("token", &"<redacted>")
            .field("account", &self.account)
            .field("interval_ms", &self.interval_ms)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl WeiboFeed {
    /// A feed for `cfg` polling with `token`, resuming from the state kept in `store`.
    pub async fn open(
        cfg: &FeedConfig,
        token: String,
        store: Arc<dyn Store>,
        ingest: Ingest,
        health: Arc<FeedHealth>,
    ) -> Result<WeiboFeed, WeiboError> {
        cfg.validate()?;
        let client = super::http::client_builder()
            .build()
            .map_err(|e| WeiboError::Client {
                feed: cfg.name.clone(),
                message: e.to_string(),
            })?;
        let mut feed = WeiboFeed {
            feed: cfg.name.clone(),
            base: cfg.url.trim_end_matches('/').to_string(),
            token,
            account: cfg.account.as_deref().unwrap_or("").trim().to_string(),
            count: cfg.count.unwrap_or(DEFAULT_COUNT),
            interval_ms: interval_ms(cfg.requests_per_hour.unwrap_or(DEFAULT_REQUESTS_PER_HOUR)),
            lookback_ms: i64::try_from(cfg.lookback_secs.unwrap_or(DEFAULT_LOOKBACK_SECS))
                .unwrap_or(i64::MAX / 2_000)
                .saturating_mul(1000),
            client,
            state: State::default(),
            persisted: None,
            store,
            ingest,
            health,
            turn: 0,
            not_before: i64::MIN,
            failures: 0,
            stopped: false,
        };
        if let Some(bytes) = load_state(&feed.store, &feed.feed).await {
            match serde_json::from_slice::<State>(&bytes) {
                Ok(s) => {
                    tracing::info!(feed = %feed.feed, mentions_since = ?s.mentions.since, comments_since = ?s.comments.since, "Weibo feed resumes from its stored ids.");
                    feed.state = s;
                    feed.persisted = Some(bytes);
                }
                Err(e) => {
                    tracing::warn!(feed = %feed.feed, error = %e, "Unreadable Weibo feed state; starting afresh.")
                }
            }
        }
        Ok(feed)
    }

    /// The time between two requests, ms (an hour over `requests_per_hour`, rounded up).
    pub fn interval_ms(&self) -> i64 {
        self.interval_ms
    }

    /// Where each endpoint stands.
    pub fn state(&self) -> &State {
        &self.state
    }

    /// Make one request if one is due at `now` (a walk down a burst first, else the endpoints
    /// in turn), deliver what it brought, keep the new position, and say when to poll next.
    pub async fn poll_once(&mut self, now: i64) -> Next {
        if self.stopped {
            return Next::Stop;
        }
        if now < self.not_before {
            return Next::At(self.not_before);
        }
        if self.state.floor_ms.is_none() {
            self.state.floor_ms = Some(now.saturating_sub(self.lookback_ms));
        }
        let ep = match Endpoint::ALL
            .into_iter()
            .find(|e| self.state.cursor(*e).walking())
        {
            Some(e) => e,
            None => {
                let e = Endpoint::ALL[self.turn % Endpoint::ALL.len()];
                self.turn = (self.turn + 1) % Endpoint::ALL.len();
                e
            }
        };
        let (since_id, max_id) = self.state.cursor(ep).query();
        let q = Query {
            count: self.count,
            since_id,
            max_id,
        };
        let next = match api::fetch(&self.client, &self.base, &self.token, ep, q).await {
            Answer::Page(items) => {
                self.failures = 0;
                self.health.set_connected(true);
                if !self.take_page(ep, &items).await {
                    self.stopped = true;
                    return Next::Stop;
                }
                now + self.interval_ms
            }
            Answer::RateLimited(msg) => {
                self.health.message("rate_limited", None);
                self.health.set_connected(false);
                let at = now - now.rem_euclid(HOUR_MS) + HOUR_MS;
                tracing::warn!(feed = %self.feed, endpoint = ep.path(), error = %msg, resume_at = at, "Weibo rate limit reached; waiting for the next hour.");
                at
            }
            Answer::TokenExpired(msg) => {
                self.health.message("error", None);
                self.health.set_failed("token_expired");
                self.stopped = true;
                tracing::error!(feed = %self.feed, endpoint = ep.path(), error = %msg, "Weibo access token expired or revoked; feed stopped until it is renewed and huiying restarted.");
                return Next::Stop;
            }
            Answer::Failed(msg) => {
                self.health.message("error", None);
                self.health.set_connected(false);
                self.failures = self.failures.saturating_add(1);
                let delay = self.backoff_ms();
                tracing::warn!(feed = %self.feed, endpoint = ep.path(), error = %msg, failures = self.failures, retry_in_ms = delay, "Weibo request failed.");
                now + delay
            }
        };
        self.not_before = next;
        Next::At(next)
    }

    /// The poll interval plus full jitter over a capped exponential backoff (at least the
    /// interval: a failure never makes the feed poll faster than its budget).
    fn backoff_ms(&self) -> i64 {
        let exp = self.failures.saturating_sub(1).min(20);
        let cap = self
            .interval_ms
            .saturating_mul(1i64 << exp)
            .min(MAX_BACKOFF_MS);
        self.interval_ms + rand::rng().random_range(0..=cap.max(1))
    }

    /// Deliver a page of `ep` (oldest first), count what was refused, move the cursor and keep
    /// it. False when the pipeline is gone.
    async fn take_page(&mut self, ep: Endpoint, items: &[serde_json::Value]) -> bool {
        let cursor = self.state.cursor(ep).clone();
        let floor = self.state.floor_ms.unwrap_or(i64::MIN);
        let mut seen = PageSeen {
            full: items.len() >= self.count as usize,
            ..PageSeen::default()
        };
        let (mut mentions, mut deleted) = (Vec::new(), Vec::new());
        for v in items {
            let Some(id) = item::id_of(v) else {
                self.refuse(("missing_field", "an item without a numeric id".into()));
                continue;
            };
            if !cursor.wants(id) {
                continue;
            }
            seen.newest = Some(seen.newest.map_or(id, |n| n.max(id)));
            seen.oldest = Some(seen.oldest.map_or(id, |o| o.min(id)));
            if item::is_deleted(v) {
                self.health.message("deleted", None);
                deleted.push(item::mention_id(ep, id));
                continue;
            }
            match item::mention(ep, id, v, &self.account) {
                Ok(m) if m.ts < floor => seen.below_floor = true,
                Ok(m) => mentions.push((id, m)),
                Err(r) => self.refuse(r),
            }
        }
        mentions.sort_by_key(|(id, _)| *id);
        let n = mentions.len();
        for (_, m) in mentions {
            self.health.message(ep.kind(), Some(m.ts));
            if !self.ingest.send(m).await {
                return false;
            }
        }
        if !deleted.is_empty() && !self.ingest.delete(&deleted).await {
            return false;
        }
        self.state.cursor_mut(ep).advance(&seen);
        tracing::debug!(feed = %self.feed, endpoint = ep.path(), items = items.len(), delivered = n, since = ?self.state.cursor(ep).since, walking = self.state.cursor(ep).walking(), "Weibo page.");
        self.keep().await;
        true
    }

    /// Count and log an item that cannot be read.
    fn refuse(&self, (label, message): item::Reject) {
        self.health.message("malformed", None);
        self.ingest.rejected(label);
        tracing::debug!(feed = %self.feed, reason = label, error = %message, "Malformed Weibo item.");
    }

    /// Write the state if it changed (a failed write is retried after the next page).
    async fn keep(&mut self) {
        let Ok(bytes) = serde_json::to_vec(&self.state) else {
            return;
        };
        if self.persisted.as_ref() == Some(&bytes) {
            return;
        }
        if save_state(self.store.clone(), self.feed.clone(), bytes.clone()).await {
            self.persisted = Some(bytes);
        }
    }
}

/// The time between two requests for `per_hour` requests an hour, ms: rounded up, so that
/// requests this far apart never put more than `per_hour` in any hour.
fn interval_ms(per_hour: u32) -> i64 {
    let n = i64::from(per_hour.max(1));
    (HOUR_MS + n - 1) / n
}

/// Run a Weibo feed until `cancel` fires or its token stops working, reading time from `clock`.
pub async fn run(
    cfg: FeedConfig,
    token: Option<String>,
    store: Arc<dyn Store>,
    ingest: Ingest,
    health: Arc<FeedHealth>,
    clock: Arc<dyn Clock>,
    cancel: CancellationToken,
) {
    let Some(token) = token.filter(|t| !t.trim().is_empty()) else {
        tracing::error!(feed = %cfg.name, "Weibo feed without an access token; feed stopped.");
        health.set_failed("no_token");
        return;
    };
    let mut feed = match WeiboFeed::open(&cfg, token, store, ingest, health.clone()).await {
        Ok(f) => f,
        Err(e) => {
            tracing::error!(feed = %cfg.name, error = %e, "Invalid Weibo feed; feed stopped.");
            health.set_failed("invalid_config");
            return;
        }
    };
    tracing::info!(feed = %cfg.name, interval_ms = feed.interval_ms(), "Weibo feed polling.");
    loop {
        let next = tokio::select! {
            _ = cancel.cancelled() => break,
            n = feed.poll_once(clock.now_ms()) => n,
        };
        let Next::At(at) = next else { break };
        let wait = Duration::from_millis(u64::try_from(at - clock.now_ms()).unwrap_or(0));
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep(wait) => {}
        }
    }
    health.set_connected(false);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interval_spreads_the_budget_over_the_hour() {
        // (requests per hour, interval ms): never more than the budget in any hour.
        for (per_hour, want) in [
            (150, 24_000),
            (7, 514_286),
            (3600, 1000),
            (1, HOUR_MS),
            (0, HOUR_MS),
        ] {
            let got = interval_ms(per_hour);
            assert_eq!(got, want, "{per_hour}/h");
            assert!(got * i64::from(per_hour.max(1)) >= HOUR_MS, "{per_hour}/h");
        }
    }
}
