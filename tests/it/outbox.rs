//! The durable outbox (redb file) across restarts and crashes, idempotent enqueue, priority
//! lanes, dependencies, pause; and the audit log's tamper detection, library and CLI.

use huiying::respond::audit::{self, AuditAction, AuditLog, Problem, VerifyError};
use huiying::respond::outbox::{ActionKind, JobState, NewJob, Outbox, OutboxStore, Priority};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::Command;

const BODY: &str = "【暴雨红色预警】海淀区今晚有特大暴雨，请减少外出。";

fn lead(notice: &str) -> NewJob {
    NewJob::new(
        notice,
        "bj-haidian-publicity",
        ActionKind::Post,
        Priority::Emergency,
        BODY,
    )
}

fn amplifier(notice: &str, account: &str, lead_id: &str) -> NewJob {
    NewJob::new(notice, account, ActionKind::Repost, Priority::Emergency, "").depends_on(lead_id)
}

/// A plan: a lead, three amplifiers after it, five routine posts of another notice.
fn plan() -> Vec<NewJob> {
    let l = lead("n-flood");
    let lid = l.id();
    let mut v = vec![l];
    for a in ["bj-publicity", "bj-police", "bj-weather"] {
        v.push(amplifier("n-flood", a, &lid));
    }
    for i in 0..5 {
        v.push(NewJob::new(
            "n-routine",
            &format!("acct-{i}"),
            ActionKind::Post,
            Priority::Routine,
            "周末天气晴好。",
        ));
    }
    v
}

fn outbox_path(dir: &Path) -> PathBuf {
    dir.join("outbox.redb")
}

#[test]
fn jobs_survive_reopening_and_an_uncertain_attempt_comes_back() {
    let d = tempfile::tempdir().expect("tempdir");
    let path = outbox_path(d.path());
    let lead_id = lead("n-flood").id();
    {
        let ob = Outbox::open(&path).expect("open");
        let r = ob.enqueue_all(plan(), 1_000).expect("enqueue");
        assert!(r.iter().all(|e| e.created()));
        let due = ob.next_due(1_000, 1).expect("due");
        assert_eq!(due[0].id, lead_id);
        ob.mark_attempting(&lead_id, 1_001).expect("attempting");
        // "Crash" here: the platform call may or may not have happened.
    }
    let ob = Outbox::open(&path).expect("reopen");
    let rec = ob.recover().expect("recover");
    assert_eq!(rec.uncertain.len(), 1, "the attempt is not lost");
    assert_eq!(rec.uncertain[0].id, lead_id);
    assert_eq!(rec.uncertain[0].state, JobState::Attempting);
    assert_eq!(rec.uncertain[0].attempts, 1);
    assert_eq!(rec.blocked.len(), 3, "amplifiers still wait for the lead");
    assert_eq!(rec.runnable.len(), 5);
    assert_eq!(ob.depth().expect("depth"), 9);
    // The uncertain job is neither due again by itself (no duplicate)...
    assert!(ob
        .next_due(10_000, 100)
        .expect("due")
        .iter()
        .all(|j| j.id != lead_id));
    // ...nor can it be attempted twice without a decision.
    assert!(ob.mark_attempting(&lead_id, 10_000).is_err());
    // Re-enqueueing the whole plan after the restart changes nothing.
    let again = ob.enqueue_all(plan(), 10_000).expect("re-enqueue");
    assert!(again.iter().all(|e| !e.created()));
    assert_eq!(ob.jobs_for_notice("n-flood").expect("jobs").len(), 4);
    // The caller checked the account's recent posts and found the post: done, no resend.
    ob.mark_done(&lead_id, "4981234567", 10_001).expect("done");
    let due = ob.next_due(10_001, 100).expect("due");
    let amps: Vec<_> = due.iter().filter(|j| j.notice_id == "n-flood").collect();
    assert_eq!(amps.len(), 3);
    assert!(amps
        .iter()
        .all(|j| j.dependency_post_id.as_deref() == Some("4981234567")));
    assert_eq!(
        ob.oldest_pending_age(11_000).expect("age"),
        Some(std::time::Duration::from_secs(10))
    );
}

/// Runs only as the child of `a_killed_process_loses_nothing`: enqueue, mark attempting, then
/// die without any cleanup (like kill -9).
#[test]
#[ignore = "run as a child process by a_killed_process_loses_nothing"]
fn crash_child() {
    let Some(dir) = std::env::var_os("HUIYING_OUTBOX_CRASH_DIR") else {
        return;
    };
    let ob = Outbox::open(&outbox_path(Path::new(&dir))).expect("open");
    ob.enqueue_all(plan(), 1_000).expect("enqueue");
    ob.mark_attempting(&lead("n-flood").id(), 1_001)
        .expect("attempting");
    let routine = NewJob::new(
        "n-routine",
        "acct-0",
        ActionKind::Post,
        Priority::Routine,
        "x",
    )
    .id();
    ob.mark_attempting(&routine, 1_002).expect("attempting");
    ob.mark_done(&routine, "r-1", 1_003).expect("done");
    std::process::abort();
}

#[test]
fn a_killed_process_loses_nothing() {
    let d = tempfile::tempdir().expect("tempdir");
    let exe = std::env::current_exe().expect("test binary");
    let status = Command::new(exe)
        .args([
            "outbox::crash_child",
            "--exact",
            "--ignored",
            "--test-threads=1",
        ])
        .env("HUIYING_OUTBOX_CRASH_DIR", d.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("child runs");
    assert!(!status.success(), "the child aborts");
    let ob = Outbox::open(&outbox_path(d.path())).expect("reopen after the crash");
    let rec = ob.recover().expect("recover");
    assert_eq!(rec.uncertain.len(), 1);
    assert_eq!(rec.uncertain[0].id, lead("n-flood").id());
    assert_eq!(rec.blocked.len(), 3);
    assert_eq!(rec.runnable.len(), 4);
    let done: Vec<_> = ob
        .jobs_for_notice("n-routine")
        .expect("jobs")
        .into_iter()
        .filter(|j| j.state == JobState::Done)
        .collect();
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].platform_post_id.as_deref(), Some("r-1"));
    assert_eq!(ob.depth().expect("depth"), 8);
}

#[test]
fn enqueue_twice_is_one_job() {
    let d = tempfile::tempdir().expect("tempdir");
    let ob = Outbox::open(&outbox_path(d.path())).expect("open");
    let a = ob.enqueue(lead("n1"), 1).expect("first");
    let b = ob.enqueue(lead("n1"), 2).expect("second");
    assert!(a.created() && !b.created());
    assert_eq!(a.job(), b.job());
    // Also within one batch.
    let r = ob
        .enqueue_all(vec![lead("n2"), lead("n2")], 3)
        .expect("batch");
    assert!(r[0].created() && !r[1].created());
    assert_eq!(ob.depth().expect("depth"), 2);
    // The identity includes the target: two replies to two posts are two jobs.
    let reply = |to: &str| {
        NewJob::new(
            "n1",
            "bj-police",
            ActionKind::Reply,
            Priority::Rebuttal,
            "不实",
        )
        .in_reply_to(to)
    };
    assert!(ob.enqueue(reply("p1"), 4).expect("r1").created());
    assert!(ob.enqueue(reply("p2"), 4).expect("r2").created());
    assert!(!ob.enqueue(reply("p1"), 5).expect("r1 again").created());
    assert_eq!(ob.depth().expect("depth"), 4);
    assert_eq!(a.job().idempotency_key, b.job().idempotency_key);
    assert_eq!(a.job().idempotency_key.len(), 64);
}

#[test]
fn an_emergency_overtakes_a_routine_backlog() {
    let d = tempfile::tempdir().expect("tempdir");
    let ob = Outbox::open(&outbox_path(d.path())).expect("open");
    for i in 0..100 {
        ob.enqueue(
            NewJob::new(
                "n-routine",
                &format!("acct-{i}"),
                ActionKind::Post,
                Priority::Routine,
                "例行发布",
            ),
            i,
        )
        .expect("routine");
    }
    ob.enqueue(
        NewJob::new(
            "n-rumor",
            "bj-police",
            ActionKind::Post,
            Priority::Rebuttal,
            "辟谣",
        ),
        500,
    )
    .expect("rebuttal");
    ob.enqueue(lead("n-flood"), 1_000).expect("emergency");
    let first = ob.next_due(1_000, 1).expect("due");
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].priority, Priority::Emergency);
    let some = ob.next_due(1_000, 5).expect("due");
    let lanes: Vec<_> = some.iter().map(|j| j.priority).collect();
    assert_eq!(
        lanes,
        [
            Priority::Emergency,
            Priority::Rebuttal,
            Priority::Routine,
            Priority::Routine,
            Priority::Routine
        ]
    );
    // Routine ones in the order they came.
    assert_eq!(some[2].account_id, "acct-0");
    assert_eq!(some[3].account_id, "acct-1");
    // A routine job in retry does not jump the emergency lane either.
    let r0 = some[2].id.clone();
    ob.mark_attempting(&r0, 1_001).expect("attempt");
    ob.mark_retry(&r0, 1_002, 1_002, "HTTP 503").expect("retry");
    assert_eq!(
        ob.next_due(2_000, 1).expect("due")[0].priority,
        Priority::Emergency
    );
    assert_eq!(ob.depth().expect("depth"), 102);
}

#[test]
fn an_amplifier_waits_for_its_lead_and_sees_its_post_id() {
    let d = tempfile::tempdir().expect("tempdir");
    let ob = Outbox::open(&outbox_path(d.path())).expect("open");
    let l = ob.enqueue(lead("n-flood"), 0).expect("lead").job().clone();
    let amp = ob
        .enqueue(amplifier("n-flood", "bj-publicity", &l.id), 0)
        .expect("amp")
        .job()
        .clone();
    assert!(amp.is_blocked());
    let due = ob.next_due(100, 10).expect("due");
    assert_eq!(due.len(), 1, "only the lead is due");
    assert_eq!(due[0].id, l.id);
    ob.mark_attempting(&l.id, 100).expect("attempt");
    assert!(ob.next_due(100, 10).expect("due").is_empty());
    ob.mark_retry(&l.id, 101, 200, "HTTP 429").expect("retry");
    assert!(
        ob.next_due(150, 10).expect("due").is_empty(),
        "amplifier still waits while the lead retries"
    );
    ob.mark_attempting(&l.id, 200).expect("attempt 2");
    ob.mark_done(&l.id, "110452", 201).expect("done");
    let due = ob.next_due(201, 10).expect("due");
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].id, amp.id);
    assert_eq!(due[0].dependency_post_id.as_deref(), Some("110452"));
    // An amplifier enqueued after the lead is done sees the id at once.
    let late = ob
        .enqueue(amplifier("n-flood", "bj-fire", &l.id), 300)
        .expect("late")
        .job()
        .clone();
    assert_eq!(late.dependency_post_id.as_deref(), Some("110452"));
    let plan = ob.jobs_for_notice("n-flood").expect("plan");
    assert_eq!(
        plan.iter()
            .map(|j| j.account_id.as_str())
            .collect::<Vec<_>>(),
        ["bj-haidian-publicity", "bj-publicity", "bj-fire"]
    );
}

#[test]
fn pause_stops_everything_and_resume_restores_even_across_restarts() {
    let d = tempfile::tempdir().expect("tempdir");
    let path = outbox_path(d.path());
    {
        let ob = Outbox::open(&path).expect("open");
        ob.enqueue_all(plan(), 0).expect("enqueue");
        assert_eq!(ob.next_due(0, 100).expect("due").len(), 6);
        ob.pause().expect("pause");
        assert!(ob.next_due(0, 100).expect("due").is_empty());
        assert!(ob.mark_attempting(&lead("n-flood").id(), 1).is_err());
    }
    let ob = Outbox::open(&path).expect("reopen");
    assert!(ob.is_paused().expect("flag"), "the pause is persisted");
    assert!(ob.next_due(10, 100).expect("due").is_empty());
    ob.resume().expect("resume");
    assert_eq!(ob.next_due(10, 100).expect("due").len(), 6);
}

// --- audit -----------------------------------------------------------------------------------

fn write_log(path: &Path, n: usize) {
    let mut log = AuditLog::open(path).expect("open");
    let actions = [
        AuditAction::Draft,
        AuditAction::Edit,
        AuditAction::Approve,
        AuditAction::PublishAttempt,
        AuditAction::PublishOk,
        AuditAction::Pause,
        AuditAction::Resume,
    ];
    for i in 0..n {
        let a = actions[i % actions.len()].clone();
        let notice = (!matches!(a, AuditAction::Pause | AuditAction::Resume)).then_some("n-flood");
        log.append(
            1_767_225_600_000 + i as i64,
            if i % 2 == 0 { "op:li" } else { "op:wang" },
            a,
            notice,
            json!({"account": "bj-haidian-publicity", "i": i}),
        )
        .expect("append");
    }
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .expect("read")
        .lines()
        .map(String::from)
        .collect()
}

fn rewrite(path: &Path, lines: &[String]) {
    std::fs::write(path, lines.join("\n") + "\n").expect("write");
}

fn broken_line(e: &VerifyError) -> u64 {
    match e {
        VerifyError::Broken { line, .. } => *line,
        other => panic!("expected tampering, got {other}"),
    }
}

#[test]
fn audit_tampering_is_found_at_the_right_line() {
    let d = tempfile::tempdir().expect("tempdir");
    let p = d.path().join("audit.jsonl");
    write_log(&p, 7);
    let good = lines(&p);
    assert_eq!(audit::verify(&p).expect("good").records, 7);

    // An edited field (who approved).
    let mut l = good.clone();
    l[2] = l[2].replace("op:li", "op:zhang");
    rewrite(&p, &l);
    let e = audit::verify(&p).expect_err("edited");
    assert_eq!(broken_line(&e), 3);
    assert!(matches!(
        e,
        VerifyError::Broken {
            problem: Problem::HashMismatch,
            ..
        }
    ));

    // A deleted line.
    let mut l = good.clone();
    l.remove(4);
    rewrite(&p, &l);
    assert_eq!(broken_line(&audit::verify(&p).expect_err("deleted")), 5);

    // Two lines swapped.
    let mut l = good.clone();
    l.swap(1, 5);
    rewrite(&p, &l);
    assert_eq!(broken_line(&audit::verify(&p).expect_err("swapped")), 2);

    // A torn last line: reported as incomplete, not as tampering, and repaired by open.
    let mut bytes = (good.join("\n") + "\n").into_bytes();
    bytes.extend_from_slice(&good[0].as_bytes()[..40]);
    std::fs::write(&p, &bytes).expect("write");
    let e = audit::verify(&p).expect_err("torn");
    assert!(!e.is_tampering());
    assert!(matches!(
        e,
        VerifyError::Incomplete {
            line: 8,
            intact: 7,
            ..
        }
    ));
    let log = AuditLog::open(&p).expect("open truncates the torn line");
    assert_eq!(log.len(), 7);
    assert_eq!(log.truncated_on_open(), Some(40));
    drop(log);
    assert_eq!(lines(&p), good);
}

fn cli(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_huiying"))
        .args(args)
        .env("RUST_LOG", "off")
        .output()
        .expect("huiying runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn audit_verify_command() {
    let d = tempfile::tempdir().expect("tempdir");
    let p = d.path().join("audit.jsonl");
    write_log(&p, 5);
    let file = p.to_str().expect("utf-8 path");

    let (code, out, err) = cli(&["audit", "verify", file]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("ok — 5 records"), "{out}");
    let head = audit::verify(&p).expect("good").head;
    assert!(
        out.contains(&head),
        "the head is printed for anchoring: {out}"
    );
    let (code, _, err) = cli(&["audit", "verify", file, "--anchor", &head]);
    assert_eq!(code, 0, "{err}");

    let good = lines(&p);
    let mut l = good.clone();
    l[3] = l[3].replace("\"i\":3", "\"i\":33");
    rewrite(&p, &l);
    let (code, out, err) = cli(&["audit", "verify", file]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains(&format!("{file}:4: ")), "{err}");
    assert!(!out.contains("ok"));

    // The last record removed: the chain still verifies, the anchor does not.
    rewrite(&p, &good[..4]);
    let (code, _, _) = cli(&["audit", "verify", file]);
    assert_eq!(code, 0);
    let (code, _, err) = cli(&["audit", "verify", file, "--anchor", &head]);
    assert_eq!(code, 1);
    assert!(err.contains("not found"), "{err}");

    // A torn last line is its own verdict.
    std::fs::write(&p, good.join("\n") + "\n" + &good[0][..20]).expect("write");
    let (code, _, err) = cli(&["audit", "verify", file]);
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains(&format!("{file}:6: incomplete last line")),
        "{err}"
    );

    let (code, _, _) = cli(&["audit", "verify", &format!("{file}.missing")]);
    assert_eq!(code, 2);
}
