//! CAP 1.2 alerts of emergency notices, validated by `xmllint` against the schema written from
//! the standard (`tests/data/cap/CAP-v1.2.xsd`): a first notice, its update and its all-clear
//! (references to the earlier alerts), and the notices that are no alert.

use huiying::linkage::cap::{self, CapError, Sender};
use huiying::respond::notices::Notice;
use huiying::respond::templates::Lang;
use serde_json::json;
use std::path::Path;

/// 2026-12-03 00:00 Beijing time.
const DAY: i64 = 1_796_227_200_000;

fn notice(id: &str, kind: &str, state: &str, purpose: &str, at: i64) -> Notice {
    serde_json::from_value(json!({
        "id": id, "incident_id": "em-hd-flood", "kind": kind, "category": "flood",
        "severity": 4,
        "region": {"code": "110108", "name": "海淀区", "name_en": "Haidian District, Beijing"},
        "texts": {
            "bjhd": {"platform": "weibo", "lang": "zh",
                     "text": "【暴雨积水提醒】海淀区多处路段积水<30cm>，请绕行。市民注意安全 & 减少外出。"},
            "bjhd_en": {"platform": "mastodon", "lang": "en",
                        "text": "Flooding in Haidian District: several roads under water. Avoid them."}
        },
        "plan": {"lead": "bjhd", "co_publishers": ["bjhd_en"], "amplifiers": []},
        "state": state, "approvals": [], "required_approvals": 2, "created_by": "system",
        "created_at": at, "updated_at": at + 60_000, "rejection": null, "jobs": [],
        "purpose": purpose,
        "history": [
            {"at": at, "actor": "system", "action": "draft", "detail": ""},
            {"at": at + 30_000, "actor": "system", "action": "enqueue", "detail": "2 job(s)"}
        ],
    }))
    .expect("a notice")
}

fn sender() -> Sender {
    Sender {
        id: "huiying@bjhd.gov.example".into(),
        name_zh: "北京海淀".into(),
        name_en: "Beijing Haidian".into(),
        status: "Actual",
    }
}

fn event(l: Lang) -> String {
    match l {
        Lang::Zh => "洪涝".into(),
        Lang::En => "Flood".into(),
    }
}

fn schema() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/cap/CAP-v1.2.xsd")
}

/// `xmllint --schema` on `xml`: its verdict and what it said.
fn validate(xml: &str) -> (bool, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = dir.path().join("alert.xml");
    std::fs::write(&f, xml).expect("write");
    let out = std::process::Command::new("xmllint")
        .arg("--noout")
        .arg("--schema")
        .arg(schema())
        .arg(&f)
        .output()
        .expect("xmllint (Debian libxml2-utils; .ci/run installs it)");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_notice_its_update_and_its_all_clear_are_valid_cap_alerts() {
    let first = notice("n-0000000000000001", "emergency", "done", "notice", DAY);
    let update = notice(
        "n-0000000000000002",
        "emergency",
        "done",
        "update",
        DAY + 3_600_000,
    );
    let clear = notice(
        "n-0000000000000003",
        "emergency",
        "publishing",
        "all_clear",
        DAY + 7_200_000,
    );
    let a = cap::alert(&first, &[], &sender(), event).expect("alert");
    let (ok, why) = validate(&a);
    assert!(ok, "{why}\n{a}");
    assert!(a.contains("<msgType>Alert</msgType>"));
    assert!(a.contains("<sent>2026-12-03T00:00:30+08:00</sent>"), "{a}");
    assert!(a.contains("<language>zh-CN</language>") && a.contains("<language>en-US</language>"));
    assert!(a.find("zh-CN") < a.find("en-US"), "Chinese first");
    assert!(a.contains("<category>Met</category>"));
    assert!(
        a.contains("<urgency>Immediate</urgency>") && a.contains("<severity>Severe</severity>")
    );
    assert!(
        a.contains("<value>110108</value>")
            && a.contains("<areaDesc>Haidian District, Beijing</areaDesc>")
    );
    // The text's markup characters are escaped, not markup.
    assert!(
        a.contains("积水&lt;30cm&gt;") && a.contains("&amp; 减少外出"),
        "{a}"
    );
    assert!(!a.contains("<references>"));

    let u = cap::alert(&update, &[&first], &sender(), event).expect("update");
    let (ok, why) = validate(&u);
    assert!(ok, "{why}\n{u}");
    assert!(u.contains("<msgType>Update</msgType>"));
    assert!(u.contains(
        "<references>huiying@bjhd.gov.example,huiying-n-0000000000000001,2026-12-03T00:00:30+08:00</references>"
    ), "{u}");

    let c = cap::alert(&clear, &[&first, &update], &sender(), event).expect("all-clear");
    let (ok, why) = validate(&c);
    assert!(ok, "{why}\n{c}");
    assert!(
        c.contains("<msgType>Cancel</msgType>")
            && c.contains("<responseType>AllClear</responseType>")
    );
    assert!(c.contains("<urgency>Past</urgency>"));
    assert!(c.contains("huiying-n-0000000000000001,") && c.contains("huiying-n-0000000000000002,"));
}

#[test]
fn the_schema_check_is_real_and_some_notices_are_no_alert() {
    let first = notice("n-0000000000000001", "emergency", "done", "notice", DAY);
    let a = cap::alert(&first, &[], &sender(), event).expect("alert");
    // What the schema refuses (so a pass above means something): a status outside the list,
    // a time in UTC "Z", a missing event.
    for bad in [
        a.replace("<status>Actual</status>", "<status>Real</status>"),
        a.replace("+08:00</sent>", "Z</sent>"),
        a.replace("<event>Flood</event>", ""),
    ] {
        assert!(!validate(&bad).0, "{bad}");
    }
    let rebuttal = notice("n-r", "rumor", "done", "notice", DAY);
    assert_eq!(
        cap::alert(&rebuttal, &[], &sender(), event),
        Err(CapError::NotAnAlert("n-r".into()))
    );
    let draft = notice("n-d", "emergency", "draft", "notice", DAY);
    assert!(matches!(
        cap::alert(&draft, &[], &sender(), event),
        Err(CapError::NotPublished(_, "draft"))
    ));
    let mut s = sender();
    s.id = "duty office".into();
    assert!(matches!(
        cap::alert(&first, &[], &s, event),
        Err(CapError::BadSender(_))
    ));
}
