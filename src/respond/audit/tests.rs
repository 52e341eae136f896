//! The file log: appends, the chain, torn lines, tampering, anchors, the lock, the command.

use super::record::write_canonical;
use super::*;
use serde_json::json;

fn tmp() -> (tempfile::TempDir, PathBuf) {
    let d = tempfile::tempdir().expect("tempdir");
    let p = d.path().join("audit.jsonl");
    (d, p)
}

fn write_n(p: &Path, n: u64) -> AuditLog {
    let mut log = AuditLog::open(p).expect("open");
    for i in 0..n {
        log.append(
            1_000 + i as i64,
            "op:li",
            AuditAction::Approve,
            Some("n-1"),
            json!({"i": i, "b": {"z": 1, "a": [1, "二"]}}),
        )
        .expect("append");
    }
    log
}

fn lines(p: &Path) -> Vec<String> {
    std::fs::read_to_string(p)
        .expect("read")
        .lines()
        .map(String::from)
        .collect()
}

fn write_lines(p: &Path, l: &[String]) {
    let mut s = l.join("\n");
    s.push('\n');
    std::fs::write(p, s).expect("write");
}

#[test]
fn appends_chain_and_reopen_continues() {
    let (_d, p) = tmp();
    let log = write_n(&p, 3);
    assert_eq!(log.len(), 3);
    let head = log.head().to_string();
    drop(log);
    let mut log = AuditLog::open(&p).expect("reopen");
    assert_eq!(log.len(), 3);
    assert_eq!(log.head(), head);
    let r = log
        .append(5_000, "system", AuditAction::Pause, None, Value::Null)
        .expect("append");
    assert_eq!(r.seq, 4);
    assert_eq!(r.prev, head);
    assert_eq!(r.detail, json!({}));
    let rep = verify(&p).expect("verifies");
    assert_eq!(rep.records, 4);
    assert_eq!(rep.head, log.head());
    let all = read_all(&p).expect("read_all");
    assert_eq!(all.len(), 4);
    assert_eq!(all[0].prev, GENESIS);
    assert_eq!(all[3], r);
}

#[test]
fn first_record_shape() {
    let (_d, p) = tmp();
    let mut log = AuditLog::open(&p).expect("open");
    let r = log
        .append(
            7,
            "op:wang",
            AuditAction::Draft,
            Some("n-9"),
            json!({"b": 2, "a": 1}),
        )
        .expect("append");
    let l = lines(&p);
    assert_eq!(l.len(), 1);
    assert!(
        l[0].starts_with(
            r#"{"seq":1,"at":7,"actor":"op:wang","action":"draft","notice":"n-9","detail":{"a":1,"b":2},"prev":"0000"#
        ),
        "{}",
        l[0]
    );
    assert!(l[0].ends_with(&format!(r#","hash":"{}"}}"#, r.hash)));
}

#[test]
fn canonical_sorts_nested_keys() {
    let mut out = Vec::new();
    write_canonical(
        &json!({"b": {"y": 1, "x": [ {"d":1,"c":2} ]}, "a": null}),
        &mut out,
    )
    .expect("canonical");
    assert_eq!(
        String::from_utf8(out).expect("utf-8"),
        r#"{"a":null,"b":{"x":[{"c":2,"d":1}],"y":1}}"#
    );
}

#[test]
fn edited_field_is_detected_at_its_line() {
    let (_d, p) = tmp();
    drop(write_n(&p, 5));
    let mut l = lines(&p);
    l[2] = l[2].replace("\"actor\":\"op:li\"", "\"actor\":\"op:xx\"");
    write_lines(&p, &l);
    let e = verify(&p).expect_err("tampered");
    assert_eq!(e.line(), Some(3));
    assert!(e.is_tampering());
    assert!(matches!(
        e,
        VerifyError::Broken {
            problem: Problem::HashMismatch,
            ..
        }
    ));
    // And the log refuses to append.
    assert!(matches!(AuditLog::open(&p), Err(AuditError::Broken { .. })));
}

#[test]
fn rehashed_edit_breaks_the_next_line() {
    let (_d, p) = tmp();
    drop(write_n(&p, 4));
    let mut l = lines(&p);
    let mut r: Record = serde_json::from_str(&l[1]).expect("record");
    r.actor = "op:mallory".into();
    r.hash = r.compute_hash().expect("hash");
    l[1] = String::from_utf8(r.line().expect("line")).expect("utf-8");
    write_lines(&p, &l);
    let e = verify(&p).expect_err("tampered");
    assert_eq!(e.line(), Some(3));
    assert!(matches!(
        e,
        VerifyError::Broken {
            problem: Problem::PrevMismatch,
            ..
        }
    ));
}

#[test]
fn deleted_and_swapped_lines() {
    let (_d, p) = tmp();
    drop(write_n(&p, 5));
    let orig = lines(&p);
    let mut l = orig.clone();
    l.remove(1);
    write_lines(&p, &l);
    let e = verify(&p).expect_err("deleted");
    assert_eq!(e.line(), Some(2));
    assert!(
        matches!(
            e,
            VerifyError::Broken {
                problem: Problem::SeqMismatch {
                    expected: 2,
                    found: 3
                },
                ..
            }
        ),
        "{e}"
    );
    let mut l = orig.clone();
    l.swap(2, 3);
    write_lines(&p, &l);
    let e = verify(&p).expect_err("swapped");
    assert_eq!(e.line(), Some(3));
    assert!(e.is_tampering());
}

#[test]
fn extra_field_whitespace_and_garbage() {
    let (_d, p) = tmp();
    drop(write_n(&p, 2));
    let orig = lines(&p);
    let mut l = orig.clone();
    l[1] = l[1].replacen('{', "{\"extra\":1,", 1);
    write_lines(&p, &l);
    let e = verify(&p).expect_err("extra field");
    assert!(matches!(
        e,
        VerifyError::Broken {
            line: 2,
            problem: Problem::Malformed(_)
        }
    ));
    let mut l = orig.clone();
    l[1] = l[1].replacen(",\"at\"", ", \"at\"", 1);
    write_lines(&p, &l);
    let e = verify(&p).expect_err("spacing");
    assert!(matches!(
        e,
        VerifyError::Broken {
            line: 2,
            problem: Problem::NotCanonical
        }
    ));
    let mut l = orig;
    l.insert(1, String::new());
    write_lines(&p, &l);
    let e = verify(&p).expect_err("empty line");
    assert!(matches!(
        e,
        VerifyError::Broken {
            line: 2,
            problem: Problem::EmptyLine
        }
    ));
}

#[test]
fn torn_last_line_is_distinct_and_open_truncates_it() {
    let (_d, p) = tmp();
    drop(write_n(&p, 3));
    let good = std::fs::read(&p).expect("read");
    let mut torn = good.clone();
    torn.extend_from_slice(b"{\"seq\":4,\"at\":12");
    std::fs::write(&p, &torn).expect("write");
    let e = verify(&p).expect_err("torn");
    assert!(!e.is_tampering());
    assert!(
        matches!(
            e,
            VerifyError::Incomplete {
                line: 4,
                bytes: 16,
                intact: 3
            }
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("incomplete last line"));
    let mut log = AuditLog::open(&p).expect("open repairs");
    assert_eq!(log.truncated_on_open(), Some(16));
    assert_eq!(log.len(), 3);
    assert_eq!(std::fs::read(&p).expect("read"), good);
    log.append(1, "system", AuditAction::Resume, None, json!({}))
        .expect("append after repair");
    assert_eq!(verify(&p).expect("ok").records, 4);
}

#[test]
fn anchors() {
    let (_d, p) = tmp();
    let log = write_n(&p, 3);
    let anchor = log.head().to_string();
    drop(log);
    let mut log = AuditLog::open(&p).expect("open");
    log.append(9, "op:li", AuditAction::Reject, Some("n-2"), json!({}))
        .expect("append");
    drop(log);
    assert_eq!(verify_anchored(&p, &anchor).expect("anchored").records, 4);
    // Rewrite the whole file from scratch with different content: the chain verifies, the
    // anchor does not.
    std::fs::remove_file(&p).expect("rm");
    let mut log = AuditLog::open(&p).expect("open");
    for _ in 0..4 {
        log.append(1, "op:mallory", AuditAction::Approve, None, json!({}))
            .expect("append");
    }
    drop(log);
    assert!(verify(&p).is_ok());
    let e = verify_anchored(&p, &anchor).expect_err("rewritten");
    assert!(matches!(e, VerifyError::AnchorNotFound { records: 4, .. }));
}

#[test]
fn second_writer_is_refused_and_bad_input_rejected() {
    let (_d, p) = tmp();
    let mut log = AuditLog::open(&p).expect("open");
    assert!(matches!(AuditLog::open(&p), Err(AuditError::Locked(_))));
    assert!(matches!(
        log.append(1, " ", AuditAction::Edit, None, json!({})),
        Err(AuditError::Invalid(_))
    ));
    assert!(matches!(
        log.append(1, "a", AuditAction::Edit, None, json!([1])),
        Err(AuditError::Invalid(_))
    ));
    let r = log
        .append(
            1,
            "a",
            AuditAction::Other("recover_uncertain".into()),
            None,
            json!({}),
        )
        .expect("custom action");
    assert_eq!(r.action, "recover_uncertain");
    assert_eq!(log.len(), 1);
}

#[test]
fn empty_log_verifies() {
    let (_d, p) = tmp();
    drop(AuditLog::open(&p).expect("open"));
    let r = verify(&p).expect("ok");
    assert_eq!(r.records, 0);
    assert_eq!(r.head, GENESIS);
    assert!(matches!(
        verify(&p.with_extension("missing")),
        Err(VerifyError::Io { .. })
    ));
}

#[test]
fn tail_checks_only_the_records_appended_since_the_last_call() {
    let (_d, p) = tmp();
    let mut log = write_n(&p, 1_500);
    let v = log.tail(200).expect("tail");
    assert_eq!((v.total, v.checked, v.records.len()), (1_500, 1_500, 200));
    assert_eq!(v.records[0].seq, 1_500, "newest first");
    let v = log.tail(200).expect("tail");
    assert_eq!(
        (v.total, v.checked),
        (1_500, 0),
        "nothing new: nothing read"
    );
    log.append(9, "op:wang", AuditAction::Pause, None, json!({}))
        .expect("append");
    let v = log.tail(5_000).expect("tail");
    assert_eq!((v.total, v.checked), (1_501, 1));
    assert_eq!(v.records.len(), MAX_TAIL, "at most MAX_TAIL");
    assert_eq!(v.records[0].actor, "op:wang");
}

#[test]
fn tail_finds_a_forged_new_record_and_a_log_that_shrank() {
    let (_d, p) = tmp();
    let mut log = write_n(&p, 3);
    log.tail(10).expect("tail");
    // Another writer appends a line that does not chain.
    let mut l = lines(&p);
    let forged = l[2].replace("\"seq\":3", "\"seq\":4");
    l.push(forged);
    write_lines(&p, &l);
    let e = log.tail(10).expect_err("forged");
    assert!(e.is_tampering() && e.line() == Some(4), "{e}");
    // The file is cut back: records already verified are gone.
    write_lines(&p, &l[..2]);
    let e = log.tail(10).expect_err("shrunk");
    assert!(matches!(e, VerifyError::Shrunk { verified: 3 }), "{e}");
}

#[test]
fn an_injected_failure_writes_nothing_and_marks_the_log_unwritable_until_an_append_succeeds() {
    let (_d, p) = tmp();
    let mut log = write_n(&p, 1);
    let status = log.status();
    status.inject_failure_after(1);
    log.append(2, "op:li", AuditAction::Edit, Some("n-1"), json!({}))
        .expect("one more append goes through");
    let e = log
        .append(3, "op:li", AuditAction::Edit, Some("n-1"), json!({}))
        .expect_err("injected");
    assert!(matches!(e, AuditError::Io { .. }), "{e}");
    assert!(!status.writable());
    assert_eq!(lines(&p).len(), 2, "nothing written");
    status.inject_failure(false);
    log.append(4, "op:li", AuditAction::Edit, Some("n-1"), json!({}))
        .expect("writable again");
    assert!(status.writable());
    assert_eq!(verify(&p).expect("verifies").records, 3);
}
