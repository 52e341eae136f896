//! The outbox contract, run against the redb and in-memory stores (the Redis one is checked
//! against a live server in `tests/it/distributed_publish.rs`).

use super::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::HashMap;

fn post(notice: &str, account: &str, p: Priority) -> NewJob {
    NewJob::new(notice, account, ActionKind::Post, p, "暴雨预警：请避免外出")
}

fn stores() -> Vec<(
    &'static str,
    Box<dyn OutboxStore>,
    Option<tempfile::TempDir>,
)> {
    let d = tempfile::tempdir().expect("tempdir");
    let ob = Outbox::open(&d.path().join("outbox.redb")).expect("open");
    vec![
        ("memory", Box::new(MemoryOutbox::new()), None),
        ("redb", Box::new(ob), Some(d)),
    ]
}

#[test]
fn ids_are_deterministic_and_distinct() {
    let a = job_id("n1", "acct", ActionKind::Post, None);
    assert_eq!(a, job_id("n1", "acct", ActionKind::Post, None));
    assert_eq!(a.len(), 33);
    assert_ne!(a, job_id("n1", "acct", ActionKind::Repost, None));
    assert_ne!(a, job_id("n1", "acct", ActionKind::Post, Some("")));
    // No ambiguity from concatenation.
    assert_ne!(
        job_id("a/b", "c", ActionKind::Post, None),
        job_id("a", "b/c", ActionKind::Post, None)
    );
    let k = idempotency_key("n1", "acct", ActionKind::Post, None);
    assert_eq!(k.len(), 64);
    assert!(!k.contains(&a[1..]));
}

#[test]
fn state_machine_on_both_stores() {
    for (name, s, _d) in stores() {
        let j = s
            .enqueue(post("n1", "a", Priority::Routine), 100)
            .expect("enqueue");
        assert!(j.created(), "{name}");
        let id = j.job().id.clone();
        assert!(!s
            .enqueue(post("n1", "a", Priority::Emergency), 200)
            .expect("again")
            .created());
        assert_eq!(s.depth().expect("depth"), 1);
        assert!(matches!(
            s.mark_done(&id, "p1", 101),
            Err(OutboxError::InvalidTransition { .. })
        ));
        assert!(matches!(
            s.mark_retry(&id, 101, 105, "x"),
            Err(OutboxError::InvalidTransition { .. })
        ));
        let a = s.mark_attempting(&id, 110).expect("attempt");
        assert_eq!((a.state, a.attempts), (JobState::Attempting, 1));
        assert!(matches!(
            s.mark_attempting(&id, 111),
            Err(OutboxError::InvalidTransition { .. })
        ));
        assert!(s.next_due(1_000, 10).expect("due").is_empty(), "{name}");
        let r = s.mark_retry(&id, 120, 500, "HTTP 503").expect("retry");
        assert_eq!((r.state, r.next_attempt_at), (JobState::Retry, 500));
        assert!(s.next_due(499, 10).expect("due").is_empty(), "{name}");
        assert_eq!(s.next_due(500, 10).expect("due").len(), 1, "{name}");
        s.mark_attempting(&id, 500).expect("attempt 2");
        let d = s.mark_done(&id, "p-9", 510).expect("done");
        assert_eq!(d.attempts, 2);
        assert_eq!(d.platform_post_id.as_deref(), Some("p-9"));
        assert_eq!(d.last_error, None);
        // Repeating done with the same id is fine; with another it is not.
        s.mark_done(&id, "p-9", 520).expect("idempotent done");
        assert!(s.mark_done(&id, "p-10", 520).is_err());
        assert!(s.mark_failed(&id, 520, "late").is_err());
        assert_eq!(s.depth().expect("depth"), 0);
        assert_eq!(s.oldest_pending_age(1_000).expect("age"), None);
        assert!(matches!(
            s.mark_attempting("nope", 1),
            Err(OutboxError::UnknownJob(_))
        ));
    }
}

#[test]
fn failure_cascades_to_dependants_and_invalid_jobs_are_refused() {
    for (name, s, _d) in stores() {
        let lead = s
            .enqueue(post("n2", "lead", Priority::Emergency), 1)
            .expect("lead")
            .job()
            .id
            .clone();
        let amp =
            NewJob::new("n2", "amp", ActionKind::Repost, Priority::Emergency, "").depends_on(&lead);
        let amp_id = s.enqueue(amp, 1).expect("amp").job().id.clone();
        let amp2 = NewJob::new(
            "n2",
            "amp2",
            ActionKind::Comment,
            Priority::Emergency,
            "转发",
        )
        .depends_on(&amp_id);
        let amp2_id = s.enqueue(amp2, 1).expect("amp2").job().id.clone();
        assert!(matches!(
            s.mark_attempting(&amp_id, 2),
            Err(OutboxError::DependencyNotDone { .. })
        ));
        s.mark_failed(&lead, 3, "HTTP 403: forbidden")
            .expect("fail");
        for id in [&amp_id, &amp2_id] {
            let j = s.get(id).expect("get").expect("exists");
            assert_eq!(j.state, JobState::Failed, "{name}");
            assert!(j.last_error.as_deref().unwrap_or("").contains("403"));
        }
        assert_eq!(s.depth().expect("depth"), 0, "{name}");
        // Enqueued after the lead failed: created failed.
        let late =
            NewJob::new("n2", "late", ActionKind::Repost, Priority::Routine, "").depends_on(&lead);
        assert_eq!(
            s.enqueue(late, 4).expect("late").job().state,
            JobState::Failed
        );
        // Refusals.
        assert!(matches!(
            s.enqueue(
                NewJob::new("n2", "x", ActionKind::Repost, Priority::Routine, "").depends_on("jzz"),
                5
            ),
            Err(OutboxError::UnknownDependency { .. })
        ));
        assert!(matches!(
            s.enqueue(
                NewJob::new("n2", "x", ActionKind::Post, Priority::Routine, " "),
                5
            ),
            Err(OutboxError::Invalid(_))
        ));
        assert!(matches!(
            s.enqueue(
                NewJob::new("n2", "x", ActionKind::Reply, Priority::Routine, "hi"),
                5
            ),
            Err(OutboxError::Invalid(_))
        ));
        // A failing batch changes nothing.
        let before = s.jobs_for_notice("n2").expect("jobs").len();
        assert!(s
            .enqueue_all(
                vec![
                    post("n2", "ok", Priority::Routine),
                    NewJob::new("n2", "", ActionKind::Post, Priority::Routine, "x"),
                ],
                6
            )
            .is_err());
        assert_eq!(
            s.jobs_for_notice("n2").expect("jobs").len(),
            before,
            "{name}"
        );
    }
}

#[test]
fn paused_blocks_attempts() {
    for (name, s, _d) in stores() {
        let id = s
            .enqueue(post("n3", "a", Priority::Emergency), 1)
            .expect("enqueue")
            .job()
            .id
            .clone();
        s.pause().expect("pause");
        assert!(s.is_paused().expect("flag"));
        assert!(s.next_due(10, 10).expect("due").is_empty(), "{name}");
        assert!(matches!(
            s.mark_attempting(&id, 10),
            Err(OutboxError::Paused)
        ));
        s.resume().expect("resume");
        assert_eq!(s.next_due(10, 10).expect("due").len(), 1);
        s.mark_attempting(&id, 10).expect("attempt");
    }
}

#[test]
fn backoff_is_exponential_jittered_capped_and_honours_retry_after() {
    let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(60), 7);
    let mut b2 = Backoff::new(Duration::from_secs(1), Duration::from_secs(60), 7);
    for attempt in 1..=40u32 {
        let at = b.retry_at(attempt, 1_000, None);
        assert_eq!(
            at,
            b2.retry_at(attempt, 1_000, None),
            "same seed, same delays"
        );
        let ceiling = (1_000i64 << (attempt - 1).min(20)).min(60_000);
        assert!(
            (1_000..=1_000 + ceiling).contains(&at),
            "attempt {attempt}: {at}"
        );
    }
    // Full jitter spreads over the whole range.
    let delays: Vec<i64> = (0..2_000).map(|_| b.retry_at(10, 0, None)).collect();
    assert!(delays.iter().any(|&d| d < 10_000));
    assert!(delays.iter().any(|&d| d > 50_000));
    // Retry-After is a floor, even above the cap.
    for _ in 0..100 {
        assert!(b.retry_at(1, 0, Some(Duration::from_secs(30))) >= 30_000);
    }
    assert_eq!(
        b.retry_at(3, 5, Some(Duration::from_secs(3_600))),
        3_600_005
    );
    // No overflow anywhere.
    assert!(b.retry_at(u32::MAX, i64::MAX - 1, None) >= i64::MAX - 1);
}

/// Random operations on both stores give the same results (the redb indexes agree with the
/// plain model).
#[test]
fn redb_and_memory_agree_under_random_operations() {
    let d = tempfile::tempdir().expect("tempdir");
    let disk = Outbox::open(&d.path().join("o.redb")).expect("open");
    let mem = MemoryOutbox::new();
    let stores: [&dyn OutboxStore; 2] = [&mem, &disk];
    let mut rng = StdRng::seed_from_u64(2026);
    let mut ids: Vec<JobId> = Vec::new();
    let prios = [Priority::Emergency, Priority::Rebuttal, Priority::Routine];
    let mut now = 0i64;
    let mut successes: HashMap<i32, u32> = HashMap::new();
    for step in 0..1_500 {
        now += rng.random_range(0..50);
        let op = rng.random_range(0..10);
        let pick = |rng: &mut StdRng| {
            if ids.is_empty() {
                "none".to_string()
            } else {
                ids[rng.random_range(0..ids.len())].clone()
            }
        };
        // Mostly a job in a state where the operation applies (per the model), sometimes any.
        let pick_from = |rng: &mut StdRng, candidates: Vec<Job>| {
            if candidates.is_empty() || rng.random_bool(0.2) {
                pick(rng)
            } else {
                candidates[rng.random_range(0..candidates.len())].id.clone()
            }
        };
        let uncertain = || mem.recover().map(|r| r.uncertain).unwrap_or_default();
        let results: Vec<String> = match op {
            0..=2 => {
                let notice = format!("n{}", rng.random_range(0..4));
                let acct = format!("a{}", rng.random_range(0..6));
                let p = prios[rng.random_range(0..3)];
                let j = if !ids.is_empty() && rng.random_bool(0.4) {
                    let dep = pick(&mut rng);
                    NewJob::new(&notice, &acct, ActionKind::Repost, p, "").depends_on(&dep)
                } else {
                    NewJob::new(&notice, &acct, ActionKind::Post, p, "body")
                };
                let r: Vec<String> = stores
                    .iter()
                    .map(|s| format!("{:?}", s.enqueue(j.clone(), now)))
                    .collect();
                if !ids.contains(&j.id()) && r[0].contains("Created") {
                    ids.push(j.id());
                }
                r
            }
            3 | 4 => {
                let due = mem.next_due(now, 100).unwrap_or_default();
                let id = pick_from(&mut rng, due);
                stores
                    .iter()
                    .map(|s| format!("{:?}", s.mark_attempting(&id, now)))
                    .collect()
            }
            5 => {
                let id = pick_from(&mut rng, uncertain());
                let post = format!("p{step}");
                stores
                    .iter()
                    .map(|s| format!("{:?}", s.mark_done(&id, &post, now)))
                    .collect()
            }
            6 => {
                let id = pick_from(&mut rng, uncertain());
                let at = now + rng.random_range(0..200);
                stores
                    .iter()
                    .map(|s| format!("{:?}", s.mark_retry(&id, now, at, "503")))
                    .collect()
            }
            7 if rng.random_bool(0.3) => {
                let id = pick(&mut rng);
                stores
                    .iter()
                    .map(|s| format!("{:?}", s.mark_failed(&id, now, "403")))
                    .collect()
            }
            7 | 8 => {
                let pause = rng.random_bool(0.2);
                for s in stores {
                    if pause {
                        s.pause().expect("pause");
                    } else {
                        s.resume().expect("resume");
                    }
                }
                vec![String::new(), String::new()]
            }
            _ => stores
                .iter()
                .map(|s| {
                    format!(
                        "{:?} {:?} {:?} {:?}",
                        s.next_due(now, 7),
                        s.depth(),
                        s.oldest_pending_age(now),
                        s.jobs_for_notice("n1")
                    )
                })
                .collect(),
        };
        assert_eq!(results[0], results[1], "step {step} op {op}");
        if results[0].starts_with("Ok(") {
            *successes.entry(op).or_insert(0u32) += 1;
        }
    }
    // Every transition really happened, many times.
    for op in 0..=7 {
        assert!(
            successes.get(&op).copied().unwrap_or(0) >= 5,
            "op {op}: {successes:?}"
        );
    }
    assert_eq!(
        format!("{:?}", mem.recover()),
        format!("{:?}", {
            let mut r = disk.recover().expect("recover");
            r.uncertain.sort_by(|a, b| a.id.cmp(&b.id));
            r.blocked.sort_by(|a, b| a.id.cmp(&b.id));
            Ok::<_, OutboxError>(r)
        })
    );
}

#[test]
fn check_failed_is_finished_and_fails_the_dependants() {
    for (name, s, _d) in stores() {
        let lead = s
            .enqueue(post("n3", "lead", Priority::Emergency), 1)
            .expect("lead")
            .job()
            .id
            .clone();
        let amp =
            NewJob::new("n3", "amp", ActionKind::Repost, Priority::Emergency, "").depends_on(&lead);
        let amp_id = s.enqueue(amp, 1).expect("amp").job().id.clone();
        // Only an attempt in flight can be given up unchecked.
        assert!(matches!(
            s.mark_check_failed(&lead, 2, "x"),
            Err(OutboxError::InvalidTransition { .. })
        ));
        s.mark_attempting(&lead, 2).expect("attempting");
        let j = s.mark_check_failed(&lead, 3, "HTTP 404").expect("give up");
        assert_eq!(j.state, JobState::CheckFailed, "{name}");
        assert_eq!(
            s.mark_check_failed(&lead, 4, "again")
                .expect("no-op")
                .updated_at,
            3
        );
        let a = s.get(&amp_id).expect("get").expect("amp");
        assert_eq!(a.state, JobState::Failed, "{name}");
        assert!(a
            .last_error
            .as_deref()
            .unwrap_or("")
            .contains("could not be checked"));
        assert_eq!(s.depth().expect("depth"), 0, "{name}");
        assert!(s.recover().expect("recover").uncertain.is_empty(), "{name}");
        assert!(matches!(
            s.mark_failed(&lead, 5, "x"),
            Err(OutboxError::InvalidTransition { .. })
        ));
        // Enqueued after: created failed.
        let late =
            NewJob::new("n3", "late", ActionKind::Repost, Priority::Routine, "").depends_on(&lead);
        assert_eq!(
            s.enqueue(late, 6).expect("late").job().state,
            JobState::Failed,
            "{name}"
        );
    }
}
