//! The bound of the module docs, checked over simulated hours of random attempts; both-or-nothing;
//! exhausting after a restart.

use super::*;
use crate::clock::ManualClock;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn profile(posts: u32, comments: u32, reposts: u32, burst: u32) -> Profile {
    Profile {
        posts_per_hour: posts,
        comments_per_hour: comments,
        reposts_per_hour: reposts,
        burst,
    }
}

/// The largest number of events in any closed window `[t, t + w]`.
fn max_in_window(times: &[u64], w: u64) -> usize {
    let mut best = 0;
    let mut j = 0;
    for i in 0..times.len() {
        if j < i {
            j = i;
        }
        while j < times.len() && times[j] - times[i] <= w {
            j += 1;
        }
        best = best.max(j - i);
    }
    best
}

fn now(c: &ManualClock) -> u64 {
    c.now().as_u64()
}

#[test]
fn naive_per_hour_quota_allows_twice_the_limit() {
    // Why hourly_quota exists: governor's per_hour(n) lets 2n − 1 through in one hour.
    let n = 30;
    let clock = ManualClock::default();
    let q = Quota::per_hour(NonZeroU32::new(n).expect("n > 0"));
    let lim = RateLimiter::direct_with_clock(q, clock.clone());
    let mut times = Vec::new();
    while now(&clock) < HOUR.as_nanos() as u64 {
        match lim.check() {
            Ok(()) => times.push(now(&clock)),
            Err(nu) => clock.advance(nu.wait_time_from(clock.now())),
        }
    }
    let half_open = times
        .iter()
        .filter(|&&t| t < HOUR.as_nanos() as u64)
        .count();
    assert_eq!(half_open, 2 * n as usize - 1);
}

#[test]
fn quota_arithmetic() {
    assert!(hourly_quota(0, 1, DEFAULT_MARGIN).is_none());
    let q = hourly_quota(30, 1, Duration::ZERO).expect("quota");
    assert_eq!(q.burst_size().get(), 1);
    assert_eq!(
        q.replenish_interval(),
        Duration::from_nanos(120_000_000_001)
    );
    let q = hourly_quota(30, 5, DEFAULT_MARGIN).expect("quota");
    assert_eq!(q.burst_size().get(), 5);
    // k = 26: 3630 s / 26 + 1 ns.
    assert_eq!(
        q.replenish_interval(),
        Duration::from_nanos(3_630_000_000_000 / 26 + 1)
    );
    // Burst clamped to n.
    assert_eq!(
        hourly_quota(3, 10, DEFAULT_MARGIN)
            .expect("quota")
            .burst_size()
            .get(),
        3
    );
}

/// Three simulated hours of random attempts by several accounts, each kind and burst; no
/// closed one-hour window (sliding over every allowed event) holds more than the limit, for
/// accounts and for the app; and greedy attempts reach the limit exactly.
#[test]
fn random_attempts_never_exceed_the_hourly_limit() {
    let hour = HOUR.as_nanos() as u64;
    for seed in 0..12u64 {
        let mut rng = StdRng::seed_from_u64(seed);
        let clock = ManualClock::default();
        let limits = Limits::new(clock.clone());
        let app_limit = if seed % 3 == 0 { 0 } else { 120 };
        limits.set_app_limit(app_limit, 4);
        let accounts: Vec<(String, Profile)> = (0..4)
            .map(|i| {
                let burst = [1, 3, 10, 60][(seed as usize + i) % 4];
                (
                    format!("acct-{i}"),
                    profile(30 + 7 * i as u32, 60, 1 + 50 * i as u32, burst),
                )
            })
            .collect();
        for (id, p) in &accounts {
            limits.add_account(id, *p);
        }
        let mut allowed: HashMap<(usize, LimitKind), Vec<u64>> = HashMap::new();
        let mut app_times = Vec::new();
        let greedy = seed % 2 == 0;
        while now(&clock) < 3 * hour {
            let a = rng.random_range(0..accounts.len());
            let kind = LimitKind::ALL[rng.random_range(0..3)];
            match limits.check(&accounts[a].0, kind) {
                Ok(()) => {
                    allowed.entry((a, kind)).or_default().push(now(&clock));
                    app_times.push(now(&clock));
                }
                Err(LimitError::Wait { wait, .. }) => {
                    assert!(wait > Duration::ZERO);
                    if greedy && rng.random_bool(0.5) {
                        // Come back exactly when allowed: the limiter's edge case.
                        clock.advance(wait);
                        continue;
                    }
                }
                Err(e) => panic!("{e}"),
            }
            let gap = match rng.random_range(0..10) {
                0..=3 => 0,
                4..=7 => rng.random_range(0..20_000_000_000u64),
                _ => rng.random_range(0..900_000_000_000u64),
            };
            clock.advance(Duration::from_nanos(gap));
        }
        for ((a, kind), times) in &allowed {
            let n = accounts[*a].1.per_hour(*kind) as usize;
            let m = max_in_window(times, hour);
            assert!(
                m <= n,
                "seed {seed}: {} {kind:?} had {m} in an hour, limit {n}",
                accounts[*a].0
            );
        }
        if app_limit > 0 {
            let m = max_in_window(&app_times, hour);
            assert!(
                m <= app_limit as usize,
                "seed {seed}: app {m} > {app_limit}"
            );
        }
    }
}

#[test]
fn saturation_is_tight() {
    // Always retry the moment we are allowed: every closed hour holds at most n, and some
    // hold exactly n (the quota is not needlessly strict).
    let hour = HOUR.as_nanos() as u64;
    for (n, b) in [(30, 1), (30, 5), (60, 60), (1, 1), (7, 3)] {
        let clock = ManualClock::default();
        let limits = Limits::new(clock.clone());
        limits.add_account("a", profile(n, 0, 0, b));
        let mut times = Vec::new();
        while now(&clock) < 3 * hour {
            match limits.check("a", LimitKind::Post) {
                Ok(()) => times.push(now(&clock)),
                Err(e) => clock.advance(e.wait().expect("a wait")),
            }
        }
        let m = max_in_window(&times, hour);
        assert_eq!(m, n as usize, "n={n} b={b}");
        // The margin holds too: n even in a window of 1 h + margin.
        assert!(max_in_window(&times, (HOUR + DEFAULT_MARGIN).as_nanos() as u64) <= n as usize);
        // And b really go back to back.
        assert_eq!(times.iter().take_while(|&&t| t == 0).count(), b as usize);
    }
}

#[test]
fn account_refusal_does_not_burn_the_app_and_vice_versa() {
    let clock = ManualClock::default();
    let limits = Limits::new(clock.clone());
    limits.set_app_limit(3, 3);
    limits.add_account("a", profile(1, 0, 0, 1));
    limits.add_account("b", profile(10, 0, 0, 10));
    assert_eq!(limits.check("a", LimitKind::Post), Ok(()));
    // "a" is limited now; hammering it must not touch the app's remaining 2.
    for _ in 0..10 {
        let e = limits.check("a", LimitKind::Post).expect_err("limited");
        assert!(matches!(
            e,
            LimitError::Wait {
                scope: Scope::Account,
                ..
            }
        ));
    }
    assert_eq!(limits.check("b", LimitKind::Post), Ok(()));
    assert_eq!(limits.check("b", LimitKind::Post), Ok(()));
    // The app is exhausted; "b" has 8 left, and refusals by the app must not take them.
    for _ in 0..10 {
        let e = limits.check("b", LimitKind::Post).expect_err("app limited");
        assert!(matches!(
            e,
            LimitError::Wait {
                scope: Scope::App,
                ..
            }
        ));
    }
    let r = limits.remaining("b").expect("known");
    assert_eq!(r[0].per_hour, 10);
    assert_eq!(r[0].now, 0, "app-bound");
    // Once the app has a cell again, "b" still has its 8 (minus time refill, capped at 10).
    clock.advance(limits.wait_for("b", LimitKind::Post).expect("known"));
    assert_eq!(limits.check("b", LimitKind::Post), Ok(()));
}

/// Greedy-ish posting for four hours with random restarts; returns (posts, max per hour).
fn with_restarts(n: u32, b: u32, exhaust: bool, seed: u64) -> (usize, usize) {
    let hour = HOUR.as_nanos() as u64;
    let window = (HOUR + DEFAULT_MARGIN).as_nanos() as u64;
    let mut rng = StdRng::seed_from_u64(seed);
    let clock = ManualClock::default();
    let mut limits = Limits::new(clock.clone());
    limits.add_account("a", profile(n, 0, 0, b));
    let mut times: Vec<u64> = Vec::new();
    while now(&clock) < 4 * hour {
        if rng.random_bool(0.05) {
            // The process dies and a new one starts; it exhausts if the old one posted
            // within the hour + margin.
            limits = Limits::new(clock.clone());
            limits.add_account("a", profile(n, 0, 0, b));
            if exhaust && times.last().is_some_and(|&t| now(&clock) - t <= window) {
                limits.exhaust("a", LimitKind::Post);
            }
        }
        match limits.check("a", LimitKind::Post) {
            Ok(()) => times.push(now(&clock)),
            Err(e) => {
                let w = e.wait().expect("a wait");
                let extra = rng.random_range(0..w.as_nanos() as u64 / 4 + 1);
                clock.advance(w + Duration::from_nanos(extra));
            }
        }
    }
    (times.len(), max_in_window(&times, hour))
}

#[test]
fn exhausting_after_a_restart_keeps_the_bound() {
    let mut unsafe_exceeded = false;
    for (n, b) in [(30, 1), (30, 6), (10, 10), (2, 1), (60, 20)] {
        for seed in 0..4 {
            let (posts, max) = with_restarts(n, b, true, seed);
            // Still live: a restart costs at most one period T, so about the steady rate
            // of n − b + 1 per hour remains.
            let k = (n - b + 1) as usize;
            assert!(posts >= 2 * k, "n={n} b={b}: only {posts} posts");
            assert!(
                max <= n as usize,
                "n={n} b={b} seed {seed}: {max} in an hour"
            );
            // Without exhausting, a restart lets a fresh burst through.
            unsafe_exceeded |= with_restarts(n, b, false, seed).1 > n as usize;
        }
    }
    assert!(unsafe_exceeded, "the test must be able to see a violation");
}

#[test]
fn default_clock_and_sharing() {
    fn shared<T: Send + Sync>(_: &T) {}
    let limits: Limits = Limits::new(SystemClock);
    shared(&limits);
    limits.add_account("a", profile(30, 60, 30, 1));
    assert!(limits.has_account("a"));
    assert_eq!(limits.check("a", LimitKind::Post), Ok(()));
    assert!(limits.check("a", LimitKind::Post).is_err());
}

#[test]
fn unknown_disabled_and_wait_for() {
    let clock = ManualClock::default();
    let limits = Limits::new(clock.clone());
    limits.add_account("a", profile(2, 0, 1, 1));
    assert_eq!(
        limits.check("zz", LimitKind::Post),
        Err(LimitError::UnknownAccount("zz".into()))
    );
    assert!(matches!(
        limits.check("a", LimitKind::Comment),
        Err(LimitError::NotAllowed { .. })
    ));
    assert_eq!(
        limits.wait_for("a", LimitKind::Post).expect("known"),
        Duration::ZERO
    );
    assert_eq!(limits.check("a", LimitKind::Post), Ok(()));
    let w = limits.wait_for("a", LimitKind::Post).expect("known");
    assert_eq!(w, Duration::from_nanos(3_630_000_000_000 / 2 + 1));
    // wait_for takes nothing.
    assert_eq!(limits.wait_for("a", LimitKind::Post).expect("known"), w);
    clock.advance(w - Duration::from_nanos(1));
    assert!(limits.check("a", LimitKind::Post).is_err());
    clock.advance(Duration::from_nanos(1));
    assert_eq!(limits.check("a", LimitKind::Post), Ok(()));
    // Kinds are separate.
    assert_eq!(limits.check("a", LimitKind::Repost), Ok(()));
    assert_eq!(LimitKind::from(ActionKind::Reply), LimitKind::Comment);
}

/// After a restart the limiters start used up: `remaining` says how long the account waits
/// (one period, about 36 s at 100 posts/hour), which the console shows as "waiting for limit
/// until …"; once the clock passed it, nothing is waited for.
#[test]
fn remaining_shows_the_wait_after_a_restart() {
    let clock = ManualClock::default();
    let limits = Limits::new(clock.clone());
    limits.add_account("a", profile(100, 100, 100, 1));
    let post = |l: &Limits<ManualClock>| {
        l.remaining("a")
            .expect("known")
            .into_iter()
            .find(|r| r.kind == LimitKind::Post)
            .expect("post")
    };
    assert_eq!(post(&limits).wait_ms, 0);
    limits.exhaust("a", LimitKind::Post);
    let r = post(&limits);
    assert_eq!(r.now, 0);
    let period_ms = (3_600_000 + DEFAULT_MARGIN.as_millis() as u64) / 100;
    assert!(
        r.wait_ms > 0 && r.wait_ms <= period_ms + 1,
        "{} ms, period {period_ms} ms",
        r.wait_ms
    );
    assert_eq!(
        limits
            .wait_for("a", LimitKind::Post)
            .expect("wait")
            .as_millis() as u64,
        r.wait_ms
    );
    clock.advance(Duration::from_millis(r.wait_ms + 1));
    assert_eq!(post(&limits).wait_ms, 0);
    assert_eq!(limits.check("a", LimitKind::Post), Ok(()));
}
