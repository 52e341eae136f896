//! Rule tests: what the rules see in one mention (table-driven, Chinese and English), rule
//! validation errors located at file:line, and hot reload keeping the old rules on error.

use super::util::rules_dir;
use huiying::detect::reload::reload;
use huiying::detect::{Analysis, Analyzer, RuleSet};
use huiying::normalize::parse_mention;
use std::path::Path;
use std::sync::OnceLock;

fn setup() -> &'static (Analyzer, RuleSet) {
    static S: OnceLock<(Analyzer, RuleSet)> = OnceLock::new();
    S.get_or_init(|| {
        let a = Analyzer::new();
        let r = RuleSet::load(&rules_dir(), &a.normalizer)
            .unwrap_or_else(|e| panic!("shipped rules invalid:\n{e}"));
        (a, r)
    })
}

fn see(line: &str) -> (Analysis, serde_json::Value) {
    let (a, r) = setup();
    let m = parse_mention(line.as_bytes()).expect("test line parses");
    let an = a.analyze(r, &m);
    let d = r.describe(&m.id, &an);
    (an, d)
}

fn strings(v: &serde_json::Value, key: &str) -> Vec<String> {
    v[key]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

fn region_codes(v: &serde_json::Value) -> Vec<String> {
    v["regions"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x["code"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

struct Case {
    text: &'static str,
    categories: &'static [&'static str],
    /// Expected primary (first) region code, or "" for none.
    region: &'static str,
    cues: bool,
    claim: &'static str,
    request: &'static str,
    excluded: bool,
}

const fn c(text: &'static str, categories: &'static [&'static str], region: &'static str) -> Case {
    Case {
        text,
        categories,
        region,
        cues: false,
        claim: "",
        request: "",
        excluded: false,
    }
}

#[test]
fn what_the_rules_see() {
    let cases = [
        // Chinese emergencies with regions.
        c("北京朝阳区着火了，浓烟滚滚", &["fire"], "110105"),
        c("吉林朝阳区暴雨", &["rainstorm"], "220104"),
        c("南京鼓楼区发生车祸", &["traffic_accident"], "320106"),
        c("海淀区学院路积水太深，车被淹了", &["flood"], "110108"),
        c("内蒙地震了吗", &["earthquake"], "150000"),
        // Informal Chinese (issue 12): how people say it, not how a bulletin does.
        c("刚才地动了，好吓人", &["earthquake"], ""),
        c("整条街都淹了，水漫金山", &["flood"], ""),
        c("隔壁厨房起火了", &["fire"], ""),
        c(
            "四川九寨沟发生7级地震，房屋倒塌",
            &["collapse", "earthquake"],
            "513225",
        ),
        c("化工厂泄漏，刺鼻气味，大家关好门窗", &["hazmat_leak"], ""),
        // Ambiguous district with no province or city: left unresolved.
        c("朝阳区着火了", &["fire"], ""),
        // Traditional characters and full-width forms.
        // 救命 is also a plea for help (a request cue).
        Case {
            request: "help",
            ..c("發生火災，有人被困，救命", &["fire"], "")
        },
        c(
            "ＦＬＯＯＤ warning: Brisbane flooding, people trapped",
            &["flood"],
            "",
        ),
        // English crisis tweets.
        c(
            "Tornado rips through Moore, Oklahoma",
            &["extreme_weather"],
            "",
        ),
        c(
            "Hurricane Sandy: power outages across New Jersey",
            &["outage", "typhoon"],
            "",
        ),
        c(
            "Massive explosion at fertilizer plant in West, Texas",
            &["explosion"],
            "",
        ),
        // Everyday language that must not hit.
        c("今晚吃火锅，大火收汁", &[], ""),
        c("流量洪水一样的明星", &[], ""),
        c("这个视频火爆全网", &[], ""),
        c("That song is fire", &[], ""),
        c("his new album is the bomb", &[], ""),
        c("I use firefox every day", &[], ""),
        // A rejected English match does not hide a shorter one inside it.
        c("Heavy rainstorm tonight", &["rainstorm"], ""),
        // A district name that is an everyday word needs its city.
        c("东区停电了", &["outage"], ""),
        c("香港东区停电了", &["outage"], "810000"),
    ];
    for case in &cases {
        let line = serde_json::json!({"id": "t", "ts": 1, "text": case.text}).to_string();
        let (_, d) = see(&line);
        let mut cats = strings(&d, "categories");
        cats.sort();
        let mut want: Vec<String> = case.categories.iter().map(|s| s.to_string()).collect();
        want.sort();
        // Expected categories must all be present; nothing may hit when none is expected.
        if want.is_empty() {
            assert!(
                cats.is_empty(),
                "{}: expected no category, got {cats:?}",
                case.text
            );
        } else {
            for w in &want {
                assert!(
                    cats.contains(w),
                    "{}: expected {w}, got {cats:?}",
                    case.text
                );
            }
        }
        let codes = region_codes(&d);
        assert_eq!(
            codes.first().map(String::as_str).unwrap_or(""),
            case.region,
            "{}: regions {codes:?}",
            case.text
        );
        assert_eq!(
            !strings(&d, "rumor_cues").is_empty(),
            case.cues,
            "{}: cues",
            case.text
        );
        assert_eq!(
            strings(&d, "known_claims")
                .first()
                .map(String::as_str)
                .unwrap_or(""),
            case.claim,
            "{}",
            case.text
        );
        assert_eq!(
            strings(&d, "request")
                .first()
                .map(String::as_str)
                .unwrap_or(""),
            case.request,
            "{}",
            case.text
        );
        let _ = case.excluded;
    }
}

#[test]
fn exclusions_are_reported() {
    for text in ["今晚吃火锅，大火收汁", "流量洪水一样的明星"] {
        let line = serde_json::json!({"id": "t", "ts": 1, "text": text}).to_string();
        let (_, d) = see(&line);
        assert!(!strings(&d, "excluded").is_empty(), "{text}: {d}");
    }
}

#[test]
fn rumor_cues_claims_and_requests() {
    let table: [(&str, u8, &str, &str); 8] = [
        ("网传明天停水，是真的吗？求证", 0b101, "", ""),
        ("这是谣言，官方已辟谣", 0b010, "", ""),
        ("Is this true? Can anyone confirm?", 0b001, "", ""),
        (
            "吃碘盐能防辐射，赶紧去抢盐",
            0,
            "iodized-salt-radiation",
            "",
        ),
        ("求助：海淀区积水太深，车熄火了", 0, "", "help"),
        ("投诉：小区停电三天了没人管", 0, "", "complaint"),
        ("请问鼓楼区怎么走", 0, "", "inquiry"),
        ("Please help, my father is missing", 0, "", "help"),
    ];
    for (text, cue_bits, claim, request) in table {
        let line = serde_json::json!({"id": "t", "ts": 1, "text": text}).to_string();
        let (a, d) = see(&line);
        if cue_bits != 0 {
            assert_eq!(
                a.cues.0 & cue_bits,
                cue_bits,
                "{text}: cues {:?} {d}",
                a.cues
            );
        }
        if !claim.is_empty() {
            assert!(
                strings(&d, "known_claims").contains(&claim.to_string()),
                "{text}: {d}"
            );
            assert!(a.sketch.is_some(), "{text}: a claim gets a sketch");
        }
        if !request.is_empty() {
            assert!(
                strings(&d, "request").contains(&request.to_string()),
                "{text}: {d}"
            );
        }
    }
}

#[test]
fn explicit_region_field_wins_and_accepts_names() {
    let (_, d) = see(r#"{"id":"1","ts":1,"text":"小区停电了","region":"310115"}"#);
    assert_eq!(region_codes(&d).first().map(String::as_str), Some("310115"));
    let (_, d) = see(r#"{"id":"1","ts":1,"text":"小区停电了","region":"海淀区"}"#);
    assert_eq!(region_codes(&d).first().map(String::as_str), Some("110108"));
    let (_, d) = see(r#"{"id":"1","ts":1,"text":"小区停电了","region":"999999"}"#);
    assert!(region_codes(&d).is_empty());
}

#[test]
fn tokens_only_when_something_hit() {
    let (a, _) = see(r#"{"id":"1","ts":1,"text":"今天天气不错，适合出去走走"}"#);
    assert!(a.terms.is_empty() && a.sketch.is_none());
    let (a, _) = see(r#"{"id":"1","ts":1,"text":"海淀区暴雨，路口积水严重"}"#);
    assert!(a.terms.iter().any(|t| t == "积水"), "{:?}", a.terms);
}

fn copy_rules(to: &Path) {
    for e in std::fs::read_dir(rules_dir()).expect("rules dir") {
        let e = e.expect("entry");
        if e.path().is_file() {
            std::fs::copy(e.path(), to.join(e.file_name())).expect("copy");
        }
    }
}

#[test]
fn rule_errors_name_file_and_line() {
    let (a, _) = setup();
    let dir = tempfile::tempdir().expect("tempdir");
    copy_rules(dir.path());
    let cats = dir.path().join("categories.toml");
    let src = std::fs::read_to_string(&cats).expect("read");
    // A severity out of range, on a known line.
    let broken = src.replacen("severity = ", "severity = 9 #", 1);
    let line = broken
        .lines()
        .position(|l| l.contains("severity = 9"))
        .expect("line")
        + 1;
    std::fs::write(&cats, &broken).expect("write");
    let err = RuleSet::load(dir.path(), &a.normalizer)
        .expect_err("must fail")
        .to_string();
    assert!(err.contains(&format!("categories.toml:{line}:")), "{err}");
    assert!(err.contains("severity 9"), "{err}");
    // A TOML syntax error.
    std::fs::write(&cats, format!("{src}\n[[category]\n")).expect("write");
    let err = RuleSet::load(dir.path(), &a.normalizer)
        .expect_err("must fail")
        .to_string();
    let last = src.lines().count() + 2;
    assert!(err.contains(&format!("categories.toml:{last}:")), "{err}");
    // A claim naming an unknown category, and an unknown field.
    std::fs::write(&cats, &src).expect("write");
    let claims = dir.path().join("claims.toml");
    let csrc = std::fs::read_to_string(&claims).expect("read");
    std::fs::write(
        &claims,
        csrc.replacen("category = \"", "category = \"nonsense", 1),
    )
    .expect("write");
    let err = RuleSet::load(dir.path(), &a.normalizer)
        .expect_err("must fail")
        .to_string();
    assert!(
        err.contains("claims.toml:") && err.contains("unknown category"),
        "{err}"
    );
    std::fs::write(
        &claims,
        format!("{csrc}\n[[claim]]\nid = \"x\"\ncategory = \"fire\"\nphrase = [\"x\"]\n"),
    )
    .expect("write");
    let err = RuleSet::load(dir.path(), &a.normalizer)
        .expect_err("must fail")
        .to_string();
    assert!(err.contains("unknown field `phrase`"), "{err}");
}

#[test]
fn invalid_reload_keeps_the_old_rules() {
    let (a, _) = setup();
    let dir = tempfile::tempdir().expect("tempdir");
    copy_rules(dir.path());
    let shared =
        arc_swap::ArcSwap::from_pointee(RuleSet::load(dir.path(), &a.normalizer).expect("valid"));
    let before = shared.load_full();
    let probe =
        parse_mention(r#"{"id":"1","ts":1,"text":"北京朝阳区着火了"}"#.as_bytes()).expect("parse");
    assert_eq!(a.analyze(&before, &probe).categories.len(), 1);

    // Break the rules: the reload fails with file:line and the old set stays in place.
    let rumor = dir.path().join("rumor.toml");
    let good = std::fs::read_to_string(&rumor).expect("read");
    std::fs::write(&rumor, format!("{good}\nspreading = [\"dup\"]\n")).expect("write");
    let err = reload(&shared, dir.path(), &a.normalizer).expect_err("invalid reload");
    assert!(err.to_string().contains("rumor.toml:"), "{err}");
    assert!(
        std::sync::Arc::ptr_eq(&before, &shared.load_full()),
        "old rules kept"
    );
    assert_eq!(a.analyze(&shared.load(), &probe).categories.len(), 1);

    // A valid change is picked up.
    std::fs::write(&rumor, good).expect("write");
    let cats = dir.path().join("categories.toml");
    let src = std::fs::read_to_string(&cats).expect("read");
    std::fs::write(
        &cats,
        src.replacen("keywords = [", "keywords = [\"冒烟的奶茶店\", ", 1),
    )
    .expect("write");
    reload(&shared, dir.path(), &a.normalizer).expect("valid reload");
    assert!(!std::sync::Arc::ptr_eq(&before, &shared.load_full()));
    let m =
        parse_mention(r#"{"id":"2","ts":1,"text":"楼下冒烟的奶茶店"}"#.as_bytes()).expect("parse");
    assert_eq!(a.analyze(&shared.load(), &m).categories.len(), 1);
}

/// A mention with a request cue becomes a `mention.request` event only for an engine that a
/// stage asked for them (the citizen-request stage); the replay engine emits none.
#[test]
fn request_mentions_reach_the_bus_only_when_asked_for() {
    use huiying::incidents::{Engine, Event};
    let analyzer = Analyzer::new();
    let rules = std::sync::Arc::new(
        RuleSet::load(&rules_dir(), &analyzer.normalizer).expect("shipped rules"),
    );
    let m = parse_mention(
        r#"{"id":"r1","ts":1700000000000,"author":"u1","text":"我要投诉小区物业乱收费，一直没解决"}"#
            .as_bytes(),
    )
    .expect("mention");
    let a = analyzer.analyze(&rules, &m);
    let mut events = Vec::new();
    Engine::new().process(&rules, &m, &a, &mut events);
    assert!(events.iter().all(|e| !matches!(e, Event::Request { .. })));
    events.clear();
    Engine::new()
        .emitting_requests()
        .process(&rules, &m, &a, &mut events);
    let kinds: Vec<String> = events
        .iter()
        .filter_map(|e| match e {
            Event::Request { mention, kinds, .. } if mention.id == "r1" => {
                Some(kinds.iter().map(|k| k.to_string()).collect::<Vec<_>>())
            }
            _ => None,
        })
        .flatten()
        .collect();
    assert_eq!(kinds, ["complaint"]);
    assert!(events[0]
        .to_json()
        .starts_with(r#"{"event":"mention.request","#));
}

/// Issue 16, item 7: every region of the shipped gazetteer has an English display name in
/// Latin letters with its official suffix, and the name shown with its province.
#[test]
fn every_region_has_an_english_name() {
    let g = &crate::util::shipped_rules().gazetteer;
    assert!(g.len() > 3000);
    for i in 0..g.len() as u32 {
        let r = g.get(i);
        assert!(
            !r.name_en.is_empty() && r.name_en.is_ascii(),
            "{} {}: English name {:?}",
            r.code,
            r.name,
            r.name_en
        );
    }
    let name = |code: &str| g.english_name(g.by_code(code).expect(code));
    assert_eq!(name("110108"), "Haidian District, Beijing");
    assert_eq!(name("110105"), "Chaoyang District, Beijing");
    assert_eq!(name("110000"), "Beijing");
    assert_eq!(name("320300"), "Xuzhou, Jiangsu");
    assert_eq!(name("140400"), "Changzhi, Shanxi");
    assert_eq!(name("341500"), "Lu'an, Anhui");
    assert_eq!(name("422800"), "Enshi Autonomous Prefecture, Hubei");
    assert_eq!(name("330106"), "Xihu District, Zhejiang");
    let r = g.region_ref(g.by_code("110108").expect("海淀"));
    assert_eq!(r.name_en, "Haidian District, Beijing");
}
