//! Cycles, platforms and credentials, and what Debug and serialisation show of a token.

use super::load::find_cycles;
use super::*;
use crate::detect::gazetteer::Level;
use crate::respond::templates::Lang;

#[test]
fn cycles_are_found_with_their_path() {
    // 0 → 1 → 2 → 0, 3 → 3, 4 → 0 (no cycle of its own)
    let edges = vec![vec![1], vec![2], vec![0], vec![3], vec![0]];
    let c = find_cycles(&edges);
    assert_eq!(c, vec![vec![0, 1, 2, 0], vec![3, 3]]);
    assert!(find_cycles(&[vec![1, 2], vec![2], vec![]]).is_empty());
}

#[test]
fn platforms_parse_and_need_credentials() {
    for p in Platform::ALL {
        assert_eq!(Platform::parse(p.as_str()), Some(p));
    }
    assert_eq!(Platform::parse("twitter"), None);
    assert!(Platform::Weibo.needs_token() && !Platform::File.needs_token());
    assert!(!Platform::Weibo.needs_endpoint() && Platform::Webhook.needs_endpoint());
}

#[test]
fn debug_and_serialisation_show_the_source_not_the_token() {
    let a = Account {
        id: AccountId::from("x"),
        name: "X".into(),
        platform: Platform::Weibo,
        handle: "@x".into(),
        region: RegionRef {
            code: "110000".into(),
            name: "北京市".into(),
            name_en: String::new(),
        },
        level: Level::Province,
        function: PUBLICITY.into(),
        lang: Lang::Zh,
        profile: NamedProfile {
            id: "p".into(),
            platform: Platform::Weibo,
            limits: crate::respond::limits::Profile {
                posts_per_hour: 30,
                comments_per_hour: 60,
                reposts_per_hour: 30,
                burst: 1,
            },
        },
        token_source: TokenSource::Env("HUIYING_TEST_MATRIX_SECRET_VAR".into()),
        endpoint: None,
        amplifies: Vec::new(),
    };
    std::env::set_var("HUIYING_TEST_MATRIX_SECRET_VAR", "  s3cr3t-value \n");
    assert_eq!(a.token().expect("token").as_deref(), Some("s3cr3t-value"));
    let dbg = format!("{a:?}");
    assert!(dbg.contains("env:HUIYING_TEST_MATRIX_SECRET_VAR"), "{dbg}");
    assert!(!dbg.contains("s3cr3t"), "{dbg}");
    let json = serde_json::to_string(&a).expect("json");
    assert!(json.contains("\"token_source\":\"env:HUIYING_TEST_MATRIX_SECRET_VAR\""));
    assert!(!json.contains("s3cr3t"), "{json}");
    std::env::remove_var("HUIYING_TEST_MATRIX_SECRET_VAR");
    let e = a.token().expect_err("unset");
    assert!(e
        .to_string()
        .contains("HUIYING_TEST_MATRIX_SECRET_VAR is not set"));
    assert_eq!(a.endpoint(), Some("https://api.weibo.com"));

    let dir = tempfile::tempdir().expect("tempdir");
    let f = dir.path().join("tok");
    std::fs::write(&f, "\n").expect("write");
    let b = Account {
        token_source: TokenSource::File(f.clone()),
        ..a.clone()
    };
    assert!(matches!(b.token(), Err(TokenError::Empty { .. })));
    std::fs::write(&f, "abc\n").expect("write");
    assert_eq!(b.token().expect("token").as_deref(), Some("abc"));
    let c = Account {
        token_source: TokenSource::None,
        platform: Platform::File,
        ..a
    };
    assert_eq!(c.token().expect("none"), None);
}

#[test]
fn a_profile_serialises_as_before_the_limits_were_shared() {
    let p = NamedProfile {
        id: "p".into(),
        platform: Platform::Weibo,
        limits: crate::respond::limits::Profile {
            posts_per_hour: 30,
            comments_per_hour: 60,
            reposts_per_hour: 20,
            burst: 1,
        },
    };
    assert_eq!(
        serde_json::to_string(&p).expect("json"),
        r#"{"id":"p","platform":"weibo","posts_per_hour":30,"comments_per_hour":60,"reposts_per_hour":20}"#
    );
    assert_eq!(p.posts_per_hour, 30);
}
