//! Rate limits: one `governor` limiter per (account, kind of action) from the account's platform
//! profile, plus one per-app limiter shared by every account, so that no post is ever sent that
//! the platform would refuse for being over its limit.
//!
//! # The quota, and the bound it guarantees
//!
//! Platforms state limits as "n per hour" (Weibo's normal tier: 30 posts and 60 comments per
//! user per hour), and count them over any hour. governor implements GCRA: a cell every period
//! `T`, with a burst of `b` cells (tolerance `τ = (b−1)·T`). For conforming events
//! `e_1 ≤ … ≤ e_m`, the theoretical arrival time before `e_m` is at least `e_1 + (m−1)·T`, and
//! `e_m` conforms only if `e_m ≥ TAT − τ`, so `e_m − e_1 ≥ (m − b)·T`. Hence in any *closed*
//! window of length `W`:
//!
//! ```text
//! events ≤ b + ⌊W / T⌋
//! ```
//!
//! The obvious `Quota::per_hour(n)` has `T = 3600 s / n` and `b = n`: a full burst at the start of
//! an hour followed by one every `T` puts `2n − 1` posts in a half-open hour (`2n` in a closed
//! one), twice the platform's limit. Even `Quota::with_period(3600 s / n).allow_burst(b)` allows
//! `n + b − 1`. So [`hourly_quota`] solves the bound for `T`: with `k = n − b + 1`,
//!
//! ```text
//! T = (3600 s + margin) / k + 1 ns   ⇒   k·T > 3600 s + margin
//!                                     ⇒   ⌊W / T⌋ ≤ k − 1 = n − b  for W ≤ 3600 s + margin
//!                                     ⇒   events in any closed window of one hour (plus margin) ≤ n
//! ```
//!
//! The `margin` (default [`DEFAULT_MARGIN`], 30 s) absorbs the difference between when we decide
//! and when the platform timestamps the post (latency, queueing). The burst `b` is the profile's
//! (default 1, clamped to `1..=n`): `b` posts may go back to back, but the steady rate becomes
//! `n − b + 1` per hour (+margin). With `b = 1` the steady rate is `n` per `1 h + margin` (0.8 %
//! below the platform's at the default margin) and the first post after a quiet spell still goes
//! at once. The unit test `random_attempts_never_exceed_the_hourly_limit` checks the bound over
//! three simulated hours of random attempts against every sliding window (accounts and app);
//! `saturation_is_tight` checks that greedy use reaches exactly `n` in some hour, so the quota
//! is not stricter than it needs to be.
//!
//! # Both or nothing
//!
//! [`Limits::check`] takes a cell from the account's limiter *and* the app's, or from neither:
//! an account over its limit does not burn the app's budget, and an app over its limit does not
//! burn the account's. governor has no "peek", so the limiters keep their GCRA state in a cell
//! this module can snapshot and restore ([`UndoState`]); decisions are serialised by a mutex.
//!
//! # After a restart
//!
//! The limiters live in memory. A fresh one would allow a full burst at once, although the
//! process that died may have posted a moment ago. So at start, for every (account, kind) that
//! posted within the last hour + margin (the outbox's jobs done or left `attempting` in that time),
//! call [`Limits::exhaust`] (and [`Limits::exhaust_app`] if anything posted): a limiter whose burst
//! is used up *now* is at least as strict as the one that died (its theoretical arrival time was
//! at most `last post + b·T ≤ now + b·T`), so the bound above holds across the restart. The
//! cost is a wait of at most one period `T` after the restart (an hour when `b = n`: another
//! reason to keep bursts small). The test `exhausting_after_a_restart_keeps_the_bound` checks
//! the bound, and that without exhausting a restart can exceed it.
//!
//! Time comes from the injected clock ([`crate::clock`], through governor's clock trait):
//! [`SystemClock`] (monotonic here) in the service, [`crate::clock::ManualClock`] in tests,
//! which advance it instead of sleeping.
//!
//! | file | owns |
//! |---|---|
//! | `mod.rs` | profiles, quotas, the local limiters ([`Limits`]) and the [`SharedLimiter`] trait |
//! | `redis.rs` | [`RedisLimiter`]: the same GCRA, fleet-wide, in a Lua script |
//! | `tests.rs` | the bound, both-or-nothing, restarts |

mod redis;

pub use self::redis::RedisLimiter;

use crate::clock::SystemClock;
use crate::respond::outbox::ActionKind;
use governor::clock::Clock;
use governor::middleware::StateInformationMiddleware;
use governor::nanos::Nanos;
use governor::state::{NotKeyed, StateStore};
use governor::{Quota, RateLimiter};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::num::{NonZeroU32, NonZeroU64};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One hour.
pub const HOUR: Duration = Duration::from_secs(3600);

/// Safety margin added to the hour by default (see the module docs).
pub const DEFAULT_MARGIN: Duration = Duration::from_secs(30);

/// An account's limits as its platform documents them (per user, per hour).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    /// Original posts per hour (0: not allowed).
    pub posts_per_hour: u32,
    /// Comments and replies per hour (0: not allowed).
    pub comments_per_hour: u32,
    /// Reposts (reblogs, shares) per hour (0: not allowed).
    pub reposts_per_hour: u32,
    /// How many actions of one kind may go back to back (default 1). Each extra cell of burst
    /// lowers the steady hourly rate by one (see the module docs).
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub burst: u32,
}

fn one() -> u32 {
    1
}

/// The default burst is left out when serialising (the matrix's profiles never set one).
fn is_one(n: &u32) -> bool {
    *n == 1
}

impl Profile {
    /// The per-hour limit for one kind.
    pub fn per_hour(&self, kind: LimitKind) -> u32 {
        match kind {
            LimitKind::Post => self.posts_per_hour,
            LimitKind::Comment => self.comments_per_hour,
            LimitKind::Repost => self.reposts_per_hour,
        }
    }
}

/// What a platform counts separately.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitKind {
    /// An original post.
    Post,
    /// A comment or reply.
    Comment,
    /// A repost, reblog or share.
    Repost,
}

impl LimitKind {
    /// All kinds.
    pub const ALL: [LimitKind; 3] = [LimitKind::Post, LimitKind::Comment, LimitKind::Repost];

    /// The name (a metric label).
    pub fn as_str(self) -> &'static str {
        match self {
            LimitKind::Post => "post",
            LimitKind::Comment => "comment",
            LimitKind::Repost => "repost",
        }
    }
}

/// The usual mapping of outbox actions: a reply counts as a comment (Weibo's
/// `comments/create`). A publisher whose platform counts replies as posts (Mastodon statuses)
/// passes [`LimitKind::Post`] instead.
impl From<ActionKind> for LimitKind {
    fn from(a: ActionKind) -> Self {
        match a {
            ActionKind::Post | ActionKind::Mail => LimitKind::Post,
            ActionKind::Repost => LimitKind::Repost,
            ActionKind::Reply | ActionKind::Comment => LimitKind::Comment,
        }
    }
}

/// The quota that never lets more than `per_hour` events into any closed window of
/// `1 h + margin`, with a burst of `burst` (clamped to `1..=per_hour`). `None` when `per_hour`
/// is 0. See the module docs for the derivation.
pub fn hourly_quota(per_hour: u32, burst: u32, margin: Duration) -> Option<Quota> {
    let n = NonZeroU32::new(per_hour)?;
    let b = NonZeroU32::new(burst.clamp(1, n.get()))?;
    let k = u128::from(n.get() - b.get() + 1);
    let window = (HOUR + margin).as_nanos();
    let period = u64::try_from(window / k + 1).ok()?;
    Quota::with_period(Duration::from_nanos(period)).map(|q| q.allow_burst(b))
}

/// A GCRA state cell that can be snapshotted and restored (governor's `InMemoryState` cannot).
/// 0 means "never used", as in governor.
#[derive(Debug, Default, Clone)]
pub struct UndoState(Arc<AtomicU64>);

impl UndoState {
    fn snapshot(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }

    fn restore(&self, v: u64) {
        self.0.store(v, Ordering::Release);
    }
}

impl StateStore for UndoState {
    type Key = NotKeyed;

    fn measure_and_replace<T, F, E>(&self, _key: &Self::Key, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        let mut prev = self.0.load(Ordering::Acquire);
        loop {
            let (out, next) = f(NonZeroU64::new(prev).map(|n| Nanos::from(n.get())))?;
            match self.0.compare_exchange_weak(
                prev,
                u64::from(next),
                Ordering::Release,
                Ordering::Acquire,
            ) {
                Ok(_) => return Ok(out),
                Err(p) => prev = p,
            }
        }
    }
}

type Gov<C> = RateLimiter<NotKeyed, UndoState, C, StateInformationMiddleware>;

struct Limiter<C: Clock> {
    gov: Gov<C>,
    cell: UndoState,
    per_hour: u32,
    gcra: Gcra,
}

/// A GCRA's parameters: a cell every `period`, a burst tolerance of `tolerance` ((burst − 1) ×
/// period).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gcra {
    /// The emission interval.
    pub period: Duration,
    /// How far ahead of schedule a cell may be taken.
    pub tolerance: Duration,
}

impl Gcra {
    fn of(q: &Quota) -> Gcra {
        let period = q.replenish_interval();
        Gcra {
            period,
            tolerance: period * q.burst_size().get().saturating_sub(1),
        }
    }
}

/// Why the shared limiter did not give a cell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SharedRefusal {
    /// Over a limit, cluster-wide.
    Wait {
        /// Until a cell is available.
        wait: Duration,
        /// Which limit.
        scope: Scope,
    },
    /// The shared limiter cannot be reached.
    Unavailable(String),
}

/// A limiter shared by every instance of a cluster (Redis: [`RedisLimiter`]),
/// consulted after the local limiters allowed: the local ones are the fast path (a refusal
/// there needs no round trip, since the shared state includes every local take), the shared
/// one is the authority.
pub trait SharedLimiter: Send + Sync {
    /// Take one cell of `account`'s `kind` and, with `app`, one of the app's: both or neither.
    fn take(
        &self,
        account: &str,
        kind: LimitKind,
        acct: Gcra,
        app: Option<Gcra>,
    ) -> Result<(), SharedRefusal>;
}

impl<C: Clock + Clone> Limiter<C> {
    fn new(quota: Quota, per_hour: u32, clock: &C) -> Self {
        let cell = UndoState::default();
        Limiter {
            gcra: Gcra::of(&quota),
            gov: RateLimiter::new(quota, cell.clone(), clock.clone()),
            cell,
            per_hour,
        }
    }

    /// Take a cell, or the wait until one is available.
    fn take(&self, clock: &C) -> Result<u32, Duration> {
        match self.gov.check() {
            Ok(s) => Ok(s.remaining_burst_capacity()),
            Err(nu) => Err(nu.wait_time_from(clock.now())),
        }
    }

    /// Cells available now, without taking one.
    fn available(&self, clock: &C) -> u32 {
        let before = self.cell.snapshot();
        let r = match self.take(clock) {
            Ok(rest) => rest.saturating_add(1),
            Err(_) => 0,
        };
        self.cell.restore(before);
        r
    }
}

/// Which limiter refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The account's own limit for this kind.
    Account,
    /// The app's limit, shared by all accounts.
    App,
}

/// Why an action may not go now.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    /// Over a limit: try again after `wait`.
    #[error("rate limited ({scope:?}): wait {wait:?}")]
    Wait {
        /// How long until a cell is available.
        wait: Duration,
        /// Which limiter refused.
        scope: Scope,
    },
    /// The cluster-wide limiter cannot be asked: nothing may go until it can.
    #[error("the cluster-wide rate limit cannot be checked: {0}")]
    Unavailable(String),
    /// The account is not known to the limiter.
    #[error("no limits for account {0}")]
    UnknownAccount(String),
    /// The account's profile allows none of this kind (0 per hour).
    #[error("account {account} may not {kind:?} (limit 0)")]
    NotAllowed {
        /// The account.
        account: String,
        /// The kind.
        kind: LimitKind,
    },
}

impl LimitError {
    /// The wait, for [`LimitError::Wait`].
    pub fn wait(&self) -> Option<Duration> {
        match self {
            LimitError::Wait { wait, .. } => Some(*wait),
            _ => None,
        }
    }
}

/// What the API shows for one account and kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Remaining {
    /// The kind.
    pub kind: LimitKind,
    /// The platform's per-hour limit.
    pub per_hour: u32,
    /// Actions that may go right now.
    pub now: u32,
    /// When `now` is 0: how long until one may go (ms; the account's limiter or the app's,
    /// whichever is later). After a restart the limiters of accounts that posted in the last
    /// hour start used up, so this is up to one period. 0 when one may go now.
    pub wait_ms: u64,
}

struct Inner<C: Clock> {
    accounts: HashMap<String, [Option<Limiter<C>>; 3]>,
    app: Option<Limiter<C>>,
}

impl<C: Clock> Inner<C> {
    /// The limiter of `account`'s `kind`.
    fn limiter(&self, account: &str, kind: LimitKind) -> Result<&Limiter<C>, LimitError> {
        let slots = self
            .accounts
            .get(account)
            .ok_or_else(|| LimitError::UnknownAccount(account.to_string()))?;
        slots[kind_index(kind)]
            .as_ref()
            .ok_or_else(|| LimitError::NotAllowed {
                account: account.to_string(),
                kind,
            })
    }
}

/// The limiters of every account and of the app. Thread-safe; decisions are serialised.
pub struct Limits<C: Clock = SystemClock> {
    clock: C,
    margin: Duration,
    inner: Mutex<Inner<C>>,
    shared: std::sync::OnceLock<Arc<dyn SharedLimiter>>,
}

impl<C: Clock + Clone> Limits<C> {
    /// No accounts, no app limit, the default margin.
    pub fn new(clock: C) -> Self {
        Self::with_margin(clock, DEFAULT_MARGIN)
    }

    /// The clock the limiters run on.
    pub fn clock(&self) -> &C {
        &self.clock
    }

    /// With a safety margin other than [`DEFAULT_MARGIN`].
    pub fn with_margin(clock: C, margin: Duration) -> Self {
        Limits {
            clock,
            margin,
            inner: Mutex::new(Inner {
                accounts: HashMap::new(),
                app: None,
            }),
            shared: std::sync::OnceLock::new(),
        }
    }

    /// Also ask `shared` (cluster-wide) after the local limiters allowed; set once.
    pub fn share(&self, shared: Arc<dyn SharedLimiter>) {
        let _ = self.shared.set(shared);
    }

    /// Whether a cluster-wide limiter decides too (its state survives a restart of this
    /// process, so the local limiters need no exhausting after one).
    pub fn is_shared(&self) -> bool {
        self.shared.get().is_some()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner<C>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Limit the app (every account together) to `per_hour` actions of any kind, with `burst`;
    /// `per_hour` 0 removes the app limit. Replaces any previous app limit (and its state).
    pub fn set_app_limit(&self, per_hour: u32, burst: u32) {
        let l = hourly_quota(per_hour, burst, self.margin)
            .map(|q| Limiter::new(q, per_hour, &self.clock));
        self.lock().app = l;
    }

    /// Add an account (or replace its profile, which resets its state).
    pub fn add_account(&self, id: &str, profile: Profile) {
        let lims = LimitKind::ALL.map(|k| {
            let n = profile.per_hour(k);
            hourly_quota(n, profile.burst, self.margin).map(|q| Limiter::new(q, n, &self.clock))
        });
        self.lock().accounts.insert(id.to_string(), lims);
    }

    /// True when the account is known.
    pub fn has_account(&self, id: &str) -> bool {
        self.lock().accounts.contains_key(id)
    }

    /// May `account` do one `kind` now? On `Ok` one cell was taken from the account's limiter
    /// and from the app's; on `Err` none was taken from either.
    pub fn check(&self, account: &str, kind: LimitKind) -> Result<(), LimitError> {
        let g = self.lock();
        let lim = g.limiter(account, kind)?;
        let before = lim.cell.snapshot();
        lim.take(&self.clock).map_err(|wait| LimitError::Wait {
            wait,
            scope: Scope::Account,
        })?;
        let app_before = g.app.as_ref().map(|a| a.cell.snapshot());
        if let Some(app) = &g.app {
            if let Err(wait) = app.take(&self.clock) {
                lim.cell.restore(before);
                return Err(LimitError::Wait {
                    wait,
                    scope: Scope::App,
                });
            }
        }
        if let Some(shared) = self.shared.get() {
            let refused = shared.take(account, kind, lim.gcra, g.app.as_ref().map(|a| a.gcra));
            if let Err(r) = refused {
                lim.cell.restore(before);
                if let (Some(app), Some(b)) = (&g.app, app_before) {
                    app.cell.restore(b);
                }
                return Err(match r {
                    SharedRefusal::Wait { wait, scope } => LimitError::Wait { wait, scope },
                    SharedRefusal::Unavailable(m) => LimitError::Unavailable(m),
                });
            }
        }
        Ok(())
    }

    /// Use up the whole burst of `account`'s `kind` limiter now (see "After a restart" in the
    /// module docs). Unknown accounts and disallowed kinds are ignored.
    pub fn exhaust(&self, account: &str, kind: LimitKind) {
        let g = self.lock();
        if let Some(Some(l)) = g.accounts.get(account).map(|s| &s[kind_index(kind)]) {
            while l.take(&self.clock).is_ok() {}
        }
    }

    /// Use up the app limiter's burst now.
    pub fn exhaust_app(&self) {
        if let Some(l) = &self.lock().app {
            while l.take(&self.clock).is_ok() {}
        }
    }

    /// How long until `check(account, kind)` would succeed (zero: now), without taking anything.
    pub fn wait_for(&self, account: &str, kind: LimitKind) -> Result<Duration, LimitError> {
        let g = self.lock();
        let lim = g.limiter(account, kind)?;
        let mut wait = Duration::ZERO;
        for l in std::iter::once(lim).chain(g.app.as_ref()) {
            let before = l.cell.snapshot();
            if let Err(w) = l.take(&self.clock) {
                wait = wait.max(w);
            }
            l.cell.restore(before);
        }
        Ok(wait)
    }

    /// Per kind: the hourly limit and how many may go right now (for `GET /api/accounts`).
    /// `None` for an unknown account.
    pub fn remaining(&self, account: &str) -> Option<Vec<Remaining>> {
        let g = self.lock();
        let slots = g.accounts.get(account)?;
        let app_now = g.app.as_ref().map(|a| a.available(&self.clock));
        // How long until a take would succeed, without taking (snapshot and restore).
        let wait = |l: &Limiter<C>| {
            let before = l.cell.snapshot();
            let w = l.take(&self.clock).err().unwrap_or(Duration::ZERO);
            l.cell.restore(before);
            w
        };
        let app_wait = g.app.as_ref().map_or(Duration::ZERO, wait);
        Some(
            LimitKind::ALL
                .iter()
                .map(|&kind| {
                    let (per_hour, now, w) = match &slots[kind_index(kind)] {
                        Some(l) => (l.per_hour, l.available(&self.clock), wait(l).max(app_wait)),
                        None => (0, 0, Duration::ZERO),
                    };
                    Remaining {
                        kind,
                        per_hour,
                        now: app_now.map_or(now, |a| a.min(now)),
                        wait_ms: u64::try_from(w.as_millis()).unwrap_or(u64::MAX),
                    }
                })
                .collect(),
        )
    }
}

fn kind_index(k: LimitKind) -> usize {
    match k {
        LimitKind::Post => 0,
        LimitKind::Comment => 1,
        LimitKind::Repost => 2,
    }
}

#[cfg(test)]
mod tests;
