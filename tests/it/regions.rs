//! Region names need word boundaries: a short form inside other words is not a place
//! (明天全天停水 is not 天全县), full names are taken as they are. Traps from a labelled sample
//! of real Weibo posts (CED dev; see README "Measured").

use super::util::shipped_rules;
use huiying::detect::Analyzer;
use huiying::normalize::parse_mention;
use std::sync::OnceLock;

fn regions(text: &str) -> Vec<String> {
    static A: OnceLock<Analyzer> = OnceLock::new();
    let a = A.get_or_init(Analyzer::new);
    let rules = shipped_rules();
    let line = serde_json::json!({"id": "r", "ts": 1, "text": text}).to_string();
    let m = parse_mention(line.as_bytes()).expect("mention");
    a.analyze(rules, &m)
        .regions
        .iter()
        .map(|r| rules.gazetteer.get(*r).name.clone())
        .collect()
}

#[test]
fn short_region_names_inside_other_words_are_not_places() {
    let none: &[&str] = &[];
    for (text, want) in [
        // The issue's case: 天全 straddles 明天|全天.
        ("明天全天停水", none),
        ("明天全天停水，大家提前储水", none),
        // Inside or across everyday words (all seen in the sample).
        ("我们要知道真相", none),     // 道真 (道真县)
        ("博弈会不会同质化？", none), // 会同 (会同县)
        ("邓小平和菲律宾", none),     // 平和 (平和县)
        ("多大关系", none),           // 大关 (大关县)
        ("朋友们快乐平安", none),     // 乐平 (乐平市)
        ("妈妈和宝宝安息吧", none),   // 宝安 (宝安区)
        ("奥巴马的策略", none),       // 巴马 (巴马县)
        ("党和政府的形象", none),     // 和政 (和政县)
        ("平静安宁", none),           // 静安 (静安区)
        ("她上高中时", none),         // 上高 (上高县)
        ("尼玛，太过分了", none),     // slang, not 尼玛县
        // 中山东路 is a road, not 山东.
        ("中山东路积水严重", none),
    ] {
        assert_eq!(regions(text), want, "{text}");
    }
}

#[test]
fn full_names_and_short_forms_standing_as_words_are_places() {
    for (text, want) in [
        ("天全县暴雨", "天全县"),
        ("天全县明天全天停水", "天全县"),
        ("雅安天全暴雨，道路被冲毁", "天全县"),
        ("海淀区积水严重", "海淀区"),
        ("北京海淀暴雨", "海淀区"),
        ("北京大学门口积水", "北京市"),
        ("甘肃兰州的小朋友", "兰州市"),
        ("阿拉是上海宁", "上海市"),
        ("四川万源市一城管", "万源市"),
        ("七星关区耿官村半坡小学", "七星关区"),
    ] {
        let got = regions(text);
        assert_eq!(
            got.first().map(String::as_str),
            Some(want),
            "{text}: {got:?}"
        );
    }
}
