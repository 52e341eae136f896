//! One contract, every local backend (Redis: `tests/it/cases_store.rs` against a real server).

use super::*;
use crate::cases::model::{Case, Contact, Requester};

fn case(id: &str) -> Case {
    Case::receive(
        id,
        Requester {
            handle: "金凤小王".into(),
            mention_id: "m1".into(),
            at: 1_000,
            target: None,
        },
        "小区停水两天了",
        vec!["complaint".into()],
        Some("water".into()),
        0.8,
        Some("640106".into()),
    )
}

/// The contract every backend keeps.
pub(crate) fn contract(s: &CaseStore) {
    assert_eq!(s.get("20261204-0001").expect("get"), None);
    let mut c = case("20261204-0001");
    s.put(&c, &["src:m1".into()]).expect("put");
    assert_eq!(s.get(&c.id).expect("get").as_ref(), Some(&c));
    assert_eq!(
        s.find("src:m1").expect("find").as_deref(),
        Some("20261204-0001")
    );
    assert_eq!(s.find("post:p9").expect("find"), None);
    c.accept("duty", 2_000).expect("accept");
    s.put(&c, &["post:p9".into()]).expect("put again");
    assert_eq!(
        s.get(&c.id).expect("get").map(|c| c.version),
        Some(c.version)
    );
    assert_eq!(
        s.find("post:p9").expect("find").as_deref(),
        Some("20261204-0001")
    );
    s.put(&case("20261204-0002"), &[]).expect("put 2");
    let ids: Vec<String> = s.all().expect("all").into_iter().map(|c| c.id).collect();
    assert_eq!(ids, ["20261204-0001", "20261204-0002"]);
    // Contacts stay apart from the case.
    let k = Contact {
        email: Some("wang@example.org".into()),
        ..Contact::default()
    };
    s.put_contact(&c.id, "金凤小王", &k).expect("contact");
    assert_eq!(
        s.contacts(&c.id).expect("contacts").get("金凤小王"),
        Some(&k)
    );
    assert!(!serde_json::to_string(&s.get(&c.id).expect("get"))
        .expect("json")
        .contains("wang@example.org"));
    assert!(s.contacts("20261204-0002").expect("none").is_empty());
    // Counters per day.
    assert_eq!(s.next_number("20261204").expect("seq"), 1);
    assert_eq!(s.next_number("20261204").expect("seq"), 2);
    assert_eq!(s.next_number("20261205").expect("seq"), 1);
}

#[test]
fn memory_keeps_the_contract() {
    contract(&CaseStore::memory());
}

#[test]
fn redb_keeps_the_contract_and_survives_a_reopen() {
    let dir = tempfile::tempdir().expect("tmp");
    let p = dir.path().join("cases.redb");
    contract(&CaseStore::open(&p).expect("open"));
    let s = CaseStore::open(&p).expect("reopen");
    assert_eq!(s.all().expect("all").len(), 2);
    assert_eq!(s.next_number("20261204").expect("seq"), 3);
}
