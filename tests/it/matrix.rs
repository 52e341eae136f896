//! The linked-account matrix, notice templates and fan-out plans: the shipped example loads;
//! plans for emergencies and rumors (table-driven); every validation error located at
//! file:line in a broken copy; rendering in Chinese and English within each platform's limit,
//! the short variant, `TooLong`, and no word ever cut.

use super::util::rules_dir;
use huiying::detect::RuleSet;
use huiying::incidents::{Incident, IncidentKind, Rebuttal};
use huiying::respond::matrix::{Matrix, Platform, TokenSource};
use huiying::respond::templates::{
    check_length, text_len, Lang, Purpose, TemplateError, Templates, WEIBO_LIMIT,
};
use std::path::Path;

fn rules() -> &'static RuleSet {
    super::util::shipped_rules()
}

fn matrix() -> &'static Matrix {
    super::util::shipped_matrix()
}

fn templates() -> &'static Templates {
    super::util::shipped_templates()
}

/// 2024-07-01 14:05 in Beijing (06:05 UTC), in milliseconds.
const OPENED_AT: i64 = 1_719_813_900_000;

fn incident(kind: IncidentKind, category: &str, region: Option<&str>) -> Incident {
    let g = &rules().gazetteer;
    let region = region.map(|code| {
        let i = g
            .by_code(code)
            .unwrap_or_else(|| panic!("test region {code}"));
        g.region_ref(i)
    });
    Incident {
        categories: vec![category.into()],
        region,
        first_seen: OPENED_AT - 60_000,
        opened_at: OPENED_AT,
        updated_at: OPENED_AT,
        mentions: 12,
        authors: 9,
        rate_per_min: 3.0,
        baseline_per_min: 0.01,
        severity: 3,
        ..Incident::new(format!("test-{category}"), kind, category, OPENED_AT)
    }
}

fn with_claim(mut inc: Incident, claim_id: &str) -> Incident {
    let c = rules()
        .claims
        .iter()
        .find(|c| &*c.id == claim_id)
        .unwrap_or_else(|| panic!("claim {claim_id}"));
    inc.rebuttal = Some(Rebuttal {
        claim_id: c.id.to_string(),
        zh: c.rebuttal_zh.clone(),
        en: c.rebuttal_en.clone(),
        link: c.link.clone(),
        source: c.source.clone(),
    });
    inc
}

fn ids(v: &[huiying::respond::matrix::AccountId]) -> Vec<&str> {
    v.iter().map(|a| a.as_str()).collect()
}

// ─── The shipped matrix ──────────────────────────────────────────────────────────────────────

#[test]
fn shipped_matrix_loads_with_every_platform_and_no_token_in_it() {
    let m = matrix();
    assert_eq!(m.default_region().code, "110000");
    assert!(m.accounts().len() >= 20, "{}", m.accounts().len());
    for p in Platform::ALL {
        assert!(
            m.accounts().iter().any(|a| a.platform == p),
            "no {p} account in the example"
        );
    }
    let bj = m.account("bj-publicity").expect("北京发布");
    assert_eq!(bj.name, "北京发布");
    assert_eq!(bj.region.code, "110000");
    assert_eq!(bj.profile.posts_per_hour, 30);
    assert_eq!(bj.profile.comments_per_hour, 60);
    assert_eq!(
        bj.token_source,
        TokenSource::Env("HUIYING_TOKEN_BJ_PUBLICITY".into())
    );
    assert_eq!(bj.endpoint(), Some("https://api.weibo.com"));
    let en = m.account("bj-publicity-en").expect("mastodon mirror");
    assert_eq!(en.platform, Platform::Mastodon);
    assert_eq!(en.profile.posts_per_hour, 100);
    assert_eq!(en.lang, Lang::En);
    let drill = m.account("bj-fengtai-publicity").expect("file sink");
    assert_eq!(drill.platform, Platform::File);
    assert_eq!(drill.token_source, TokenSource::None);
    assert!(matches!(
        m.account("zj-emergency")
            .map(|a| (&a.platform, &a.token_source)),
        Some((Platform::Webhook, TokenSource::File(_)))
    ));
    assert!(m.account("nobody").is_none());
    // Every account passes validation: weibo/mastodon/webhook have a token source.
    for a in m.accounts() {
        assert_eq!(
            a.platform.needs_token(),
            a.token_source != TokenSource::None,
            "{}",
            a.id
        );
    }
}

#[test]
fn shipped_templates_load() {
    let t = templates();
    assert!(t.len() >= 11, "{}", t.len());
    for c in [
        "flood",
        "rainstorm",
        "typhoon",
        "earthquake",
        "fire",
        "explosion",
        "hazmat_leak",
        "epidemic",
        "outage",
    ] {
        assert!(t.has_specific(IncidentKind::Emergency, c), "{c}");
    }
    assert!(!t.has_specific(IncidentKind::Emergency, "traffic_accident"));
}

// ─── Plans ───────────────────────────────────────────────────────────────────────────────────

struct PlanCase {
    name: &'static str,
    kind: IncidentKind,
    category: &'static str,
    region: Option<&'static str>,
    plan_region: &'static str,
    lead: &'static str,
    co: &'static [&'static str],
    amp: &'static [&'static str],
}

const BJ_DISTRICTS: [&str; 5] = [
    "bj-chaoyang-publicity",
    "bj-dongcheng-publicity",
    "bj-fengtai-publicity",
    "bj-haidian-publicity",
    "bj-xicheng-publicity",
];

#[test]
fn plans_pick_lead_co_publishers_and_amplifiers() {
    use IncidentKind::{Emergency, Rumor};
    let fire_in_beijing_amp: Vec<&str> = ["bj-police", "bj-publicity", "bj-publicity-en"]
        .into_iter()
        .chain(BJ_DISTRICTS)
        .collect();
    let fire_in_beijing_amp: &'static [&'static str] = fire_in_beijing_amp.leak();
    let cases = [
        PlanCase {
            // The district's own publicity account leads (no fire account at 海淀); 北京消防 and
            // 北京应急 co-publish from the nearest ancestor; the municipality amplifies.
            name: "fire in 海淀区",
            kind: Emergency,
            category: "fire",
            region: Some("110108"),
            plan_region: "110108",
            lead: "bj-haidian-publicity",
            co: &["bj-emergency", "bj-fire"],
            amp: &["bj-publicity", "bj-publicity-en"],
        },
        PlanCase {
            // At the municipality the fire account is found first (lead_function = "fire"):
            // 北京消防 leads, 北京发布 and its English edition amplify with the districts, and
            // 平安北京 amplifies through its explicit `amplifies = ["bj-fire"]`.
            name: "fire in 北京市",
            kind: Emergency,
            category: "fire",
            region: Some("110000"),
            plan_region: "110000",
            lead: "bj-fire",
            co: &["bj-emergency"],
            amp: fire_in_beijing_amp,
        },
        PlanCase {
            name: "flood in 北京市",
            kind: Emergency,
            category: "flood",
            region: Some("110000"),
            plan_region: "110000",
            lead: "bj-publicity",
            co: &["bj-emergency", "bj-publicity-en", "bj-weather"],
            amp: &BJ_DISTRICTS,
        },
        PlanCase {
            name: "rainstorm in 朝阳区 (weather leads only where found first)",
            kind: Emergency,
            category: "rainstorm",
            region: Some("110105"),
            plan_region: "110105",
            lead: "bj-chaoyang-publicity",
            co: &["bj-emergency", "bj-weather"],
            amp: &["bj-publicity", "bj-publicity-en"],
        },
        PlanCase {
            name: "landslide in 东城区 (no link of its own: \"*\")",
            kind: Emergency,
            category: "landslide",
            region: Some("110101"),
            plan_region: "110101",
            lead: "bj-dongcheng-publicity",
            co: &["bj-emergency"],
            amp: &["bj-publicity", "bj-publicity-en"],
        },
        PlanCase {
            name: "rumor (earthquake) in 浙江省",
            kind: Rumor,
            category: "earthquake",
            region: Some("330000"),
            plan_region: "330000",
            lead: "zj-publicity",
            co: &["zj-emergency"],
            amp: &["hz-publicity", "nb-publicity"],
        },
        PlanCase {
            // Rumors are answered by publicity even where an emergency would be led by fire.
            name: "rumor (fire) in 浙江省",
            kind: Rumor,
            category: "fire",
            region: Some("330000"),
            plan_region: "330000",
            lead: "zj-publicity",
            co: &["zj-emergency", "zj-fire"],
            amp: &["hz-publicity", "nb-publicity"],
        },
        PlanCase {
            name: "fire in 西湖区 (co-publishers per function, nearest ancestor)",
            kind: Emergency,
            category: "fire",
            region: Some("330106"),
            plan_region: "330106",
            lead: "hz-xihu-publicity",
            co: &["zj-emergency", "hz-fire"],
            amp: &["hz-publicity"],
        },
        PlanCase {
            name: "fire in 杭州市 (parent, own and child publicity amplify)",
            kind: Emergency,
            category: "fire",
            region: Some("330100"),
            plan_region: "330100",
            lead: "hz-fire",
            co: &["zj-emergency"],
            amp: &["zj-publicity", "hz-publicity", "hz-xihu-publicity"],
        },
        PlanCase {
            name: "traffic accident in 宁波市",
            kind: Emergency,
            category: "traffic_accident",
            region: Some("330200"),
            plan_region: "330200",
            lead: "nb-publicity",
            co: &["nb-police"],
            amp: &["zj-publicity"],
        },
        PlanCase {
            name: "epidemic in 宁波市 (no health account up the chain)",
            kind: Emergency,
            category: "epidemic",
            region: Some("330200"),
            plan_region: "330200",
            lead: "nb-publicity",
            co: &[],
            amp: &["zj-publicity"],
        },
        PlanCase {
            name: "flood with no region → default_region 北京市",
            kind: Emergency,
            category: "flood",
            region: None,
            plan_region: "110000",
            lead: "bj-publicity",
            co: &["bj-emergency", "bj-publicity-en", "bj-weather"],
            amp: &BJ_DISTRICTS,
        },
        PlanCase {
            name: "rumor with no region → default_region",
            kind: Rumor,
            category: "other",
            region: None,
            plan_region: "110000",
            lead: "bj-publicity",
            co: &["bj-emergency", "bj-publicity-en"],
            amp: &BJ_DISTRICTS,
        },
        PlanCase {
            name: "flood in 广州市, outside the matrix → default_region",
            kind: Emergency,
            category: "flood",
            region: Some("440100"),
            plan_region: "110000",
            lead: "bj-publicity",
            co: &["bj-emergency", "bj-publicity-en", "bj-weather"],
            amp: &BJ_DISTRICTS,
        },
    ];
    let m = matrix();
    let mut failures = Vec::new();
    for c in &cases {
        let inc = incident(c.kind, c.category, c.region);
        let p = m.plan(&inc, rules());
        let got = (
            p.region.code.as_str(),
            p.lead.as_str(),
            ids(&p.co_publishers),
            ids(&p.amplifiers),
        );
        let want = (c.plan_region, c.lead, c.co.to_vec(), c.amp.to_vec());
        if got != want {
            failures.push(format!("{}:\n  got  {got:?}\n  want {want:?}", c.name));
        }
        // Deterministic, and no account twice.
        assert_eq!(p, m.plan(&inc, rules()), "{}", c.name);
        let mut all: Vec<&str> = p.accounts().map(|a| a.as_str()).collect();
        let n = all.len();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), n, "{}: an account twice", c.name);
        assert!(all.iter().all(|a| m.account(a).is_some()));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

// ─── Validation errors at file:line ──────────────────────────────────────────────────────────

/// Copy the shipped matrix (or templates) into a temporary directory.
fn copy_dir(from: &Path, to: &Path) {
    for e in std::fs::read_dir(from).expect("dir") {
        let e = e.expect("entry");
        std::fs::copy(e.path(), to.join(e.file_name())).expect("copy");
    }
}

/// 1-based line of the last line containing `marker`.
fn line_of(text: &str, marker: &str) -> usize {
    text.lines()
        .enumerate()
        .filter(|(_, l)| l.contains(marker))
        .map(|(i, _)| i + 1)
        .last()
        .unwrap_or_else(|| panic!("marker {marker:?} not found"))
}

struct Broken {
    file: &'static str,
    from: &'static str,
    to: &'static str,
    /// The line the error must point at: the last line containing this text after the edit.
    marker: &'static str,
    message: &'static str,
}

fn check_broken(what: &str, shipped: &Path, cases: &[Broken], load: impl Fn(&Path) -> String) {
    let mut failures = Vec::new();
    for c in cases {
        let dir = tempfile::tempdir().expect("tempdir");
        copy_dir(shipped, dir.path());
        let path = dir.path().join(c.file);
        let src = std::fs::read_to_string(&path).unwrap_or_default();
        let broken = if c.from.is_empty() {
            format!("{src}{}", c.to)
        } else {
            assert!(
                src.contains(c.from),
                "{}: {:?} not in {}",
                what,
                c.from,
                c.file
            );
            src.replacen(c.from, c.to, 1)
        };
        std::fs::write(&path, &broken).expect("write");
        let err = load(dir.path());
        let want = format!("{}:{}: ", path.display(), line_of(&broken, c.marker));
        let hit = err
            .lines()
            .any(|l| l.starts_with(&want) && l.contains(c.message));
        if !hit {
            failures.push(format!("{what}: want `{want}…{}…`, got:\n{err}", c.message));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

fn load_matrix_err(dir: &Path) -> String {
    match Matrix::load(dir, rules()) {
        Ok(_) => "(loaded without error)".into(),
        Err(e) => e.to_string(),
    }
}

fn load_templates_err(dir: &Path) -> String {
    match Templates::load(dir, rules()) {
        Ok(_) => "(loaded without error)".into(),
        Err(e) => e.to_string(),
    }
}

#[test]
fn matrix_errors_name_file_and_line() {
    let cases = [
        Broken {
            file: "beijing.toml",
            from: "region = \"110108\"",
            to: "region = \"119999\"",
            marker: "119999",
            message: "unknown region code \"119999\"",
        },
        Broken {
            file: "beijing.toml",
            from: "region = \"110101\"\nlevel = \"district\"",
            to: "region = \"110101\"\nlevel = \"city\"",
            marker: "level = \"city\"",
            message: "level \"city\" does not match region 110101 (东城区), which is a district",
        },
        Broken {
            file: "beijing.toml",
            from: "id = \"bj-xicheng-publicity\"",
            to: "id = \"bj-dongcheng-publicity\"",
            marker: "id = \"bj-dongcheng-publicity\"",
            message: "duplicate account id \"bj-dongcheng-publicity\" (first at ",
        },
        Broken {
            file: "beijing.toml",
            from: "profile = \"mastodon-default\"",
            to: "profile = \"mastodon-fast\"",
            marker: "mastodon-fast",
            message: "unknown profile \"mastodon-fast\"",
        },
        Broken {
            file: "beijing.toml",
            from: "platform = \"mastodon\"",
            to: "platform = \"weibo\"",
            marker: "profile = \"mastodon-default\"",
            message: "profile \"mastodon-default\" is for mastodon, but the account is on weibo",
        },
        Broken {
            file: "beijing.toml",
            from: "platform = \"mastodon\"",
            to: "platform = \"twitter\"",
            marker: "twitter",
            message: "unknown platform \"twitter\"",
        },
        Broken {
            file: "zhejiang.toml",
            from: "token_file = \"/run/secrets/huiying/zj-emergency-hook\"\n",
            to: "",
            marker: "id = \"zj-emergency\"",
            message: "account \"zj-emergency\": no credentials source (webhook accounts need token_env or token_file)",
        },
        Broken {
            file: "beijing.toml",
            from: "token_env = \"HUIYING_TOKEN_BJ_PUBLICITY\"\n",
            to: "token_env = \"HUIYING_TOKEN_BJ_PUBLICITY\"\ntoken_file = \"/tmp/x\"\n",
            marker: "token_env = \"HUIYING_TOKEN_BJ_PUBLICITY\"",
            message: "set token_env or token_file, not both",
        },
        Broken {
            file: "zhejiang.toml",
            from: "endpoint = \"https://alert.zj.example/huiying/notices\"\n",
            to: "",
            marker: "id = \"zj-emergency\"",
            message: "webhook accounts need an endpoint",
        },
        Broken {
            file: "matrix.toml",
            from: "category = \"stampede\"",
            to: "category = \"stampede_crush\"",
            marker: "stampede_crush",
            message: "link: unknown category \"stampede_crush\" (a category id or \"*\")",
        },
        Broken {
            file: "matrix.toml",
            from: "category = \"epidemic\"\nfunctions = [\"health\"]",
            to: "category = \"epidemic\"\nfunctions = [\"helth\"]",
            marker: "[\"helth\"]",
            message: "no account has function \"helth\"",
        },
        Broken {
            file: "matrix.toml",
            from: "category = \"stampede\"",
            to: "category = \"fire\"",
            marker: "category = \"fire\"",
            message: "duplicate link for category \"fire\"",
        },
        Broken {
            // 北京消防 now amplifies 平安北京, which amplifies 北京消防.
            file: "beijing.toml",
            from: "token_env = \"HUIYING_TOKEN_BJ_FIRE\"\n",
            to: "token_env = \"HUIYING_TOKEN_BJ_FIRE\"\namplifies = [\"bj-police\"]\n",
            marker: "amplifies = [\"bj-fire\"]",
            message: "amplification cycle: bj-police → bj-fire → bj-police",
        },
        Broken {
            file: "beijing.toml",
            from: "amplifies = [\"bj-fire\"]",
            to: "amplifies = [\"bj-firee\"]",
            marker: "bj-firee",
            message: "amplifies unknown account \"bj-firee\"",
        },
        Broken {
            // A new file: an account in 上海 with no publicity account up its chain.
            file: "shanghai.toml",
            from: "",
            to: "# 上海\n\n[[account]]\nid = \"sh-police\"\nname = \"警民直通车-上海\"\nplatform = \"weibo\"\nhandle = \"@警民直通车-上海\"\nregion = \"310000\"\nlevel = \"province\"\nfunction = \"police\"\nprofile = \"weibo-normal\"\ntoken_env = \"HUIYING_TOKEN_SH_POLICE\"\n",
            marker: "id = \"sh-police\"",
            message: "no publicity account for region 310000 (上海市) or its ancestors",
        },
        Broken {
            file: "matrix.toml",
            from: "default_region = \"110000\"",
            to: "default_region = \"999999\"",
            marker: "999999",
            message: "default_region: unknown region code \"999999\"",
        },
        Broken {
            file: "matrix.toml",
            from: "posts_per_hour = 100",
            to: "posts_per_hour = 0",
            marker: "posts_per_hour = 0",
            message: "profile \"mastodon-default\": posts_per_hour must be at least 1",
        },
        Broken {
            // TOML syntax and unknown fields are reported with their line too.
            file: "zhejiang.toml",
            from: "name = \"宁波消防\"",
            to: "name = \"宁波消防\"\ntoken = \"abc\"",
            marker: "token = \"abc\"",
            message: "unknown field `token`",
        },
    ];
    check_broken(
        "matrix",
        &rules_dir().join("matrix"),
        &cases,
        load_matrix_err,
    );
}

#[test]
fn all_matrix_problems_are_listed_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    copy_dir(&rules_dir().join("matrix"), dir.path());
    let edit = |file: &str, from: &str, to: &str| {
        let p = dir.path().join(file);
        let s = std::fs::read_to_string(&p).expect("read");
        std::fs::write(&p, s.replacen(from, to, 1)).expect("write");
    };
    edit("beijing.toml", "region = \"110108\"", "region = \"119999\"");
    edit(
        "zhejiang.toml",
        "token_env = \"HUIYING_TOKEN_NB_FIRE\"\n",
        "",
    );
    edit(
        "matrix.toml",
        "category = \"stampede\"",
        "category = \"crowd\"",
    );
    let err = load_matrix_err(dir.path());
    assert_eq!(err.lines().count(), 3, "{err}");
    assert!(
        err.contains("beijing.toml:") && err.contains("119999"),
        "{err}"
    );
    assert!(
        err.contains("zhejiang.toml:") && err.contains("nb-fire"),
        "{err}"
    );
    assert!(
        err.contains("matrix.toml:") && err.contains("\"crowd\""),
        "{err}"
    );
    // Sorted by file and line: beijing, matrix, zhejiang.
    let files: Vec<&str> = err
        .lines()
        .map(|l| {
            ["beijing", "matrix.toml", "zhejiang"]
                .into_iter()
                .find(|f| l.contains(f))
                .unwrap_or("?")
        })
        .collect();
    assert_eq!(files, ["beijing", "matrix.toml", "zhejiang"]);
}

#[test]
fn template_errors_name_file_and_line() {
    let cases = [
        Broken {
            file: "emergency.toml",
            from: "{time}，{region}出现{category_zh}情况",
            to: "{time}，{regoin}出现{category_zh}情况",
            marker: "{regoin}",
            message: "zh: unknown placeholder {regoin}",
        },
        Broken {
            file: "emergency.toml",
            from: "Flooding reported in parts of {region_en}.",
            to: "Flooding reported in parts of {region_en}. {claim}",
            marker: "{claim}",
            message: "en: placeholder {claim} is only available in rumor templates",
        },
        Broken {
            file: "emergency.toml",
            from: "category = \"typhoon\"",
            to: "category = \"flood\"",
            marker: "category = \"flood\"",
            message: "duplicate template for emergency / flood (first at ",
        },
        Broken {
            file: "emergency.toml",
            from: "category = \"typhoon\"",
            to: "category = \"hurricane\"",
            marker: "hurricane",
            message: "unknown category \"hurricane\"",
        },
        Broken {
            file: "rumor.toml",
            from: "kind = \"rumor\"",
            to: "kind = \"gossip\"",
            marker: "gossip",
            message: "unknown kind \"gossip\"",
        },
        Broken {
            file: "emergency.toml",
            from: "zh_short = \"【{region}汛情提示】{time}，请{advice_zh}。{link}\"",
            to: "zh_short = \"【{region}汛情提示】{time}，请{advice_zh}。{link}\"\nadvice = \"x\"",
            marker: "advice = \"x\"",
            message: "unknown field `advice`",
        },
        Broken {
            file: "rumor.toml",
            from: "purpose = \"update\"",
            to: "purpose = \"later\"",
            marker: "later",
            message: "unknown purpose \"later\" (notice, update or all_clear)",
        },
        Broken {
            file: "emergency.toml",
            from: "category = \"default\"\npurpose = \"all_clear\"",
            to: "category = \"flood\"\npurpose = \"all_clear\"",
            marker: "category = \"flood\"",
            message: "all_clear templates are one per kind: category = \"default\"",
        },
    ];
    check_broken(
        "templates",
        &rules_dir().join("templates"),
        &cases,
        load_templates_err,
    );
    // A kind without its default.
    let dir = tempfile::tempdir().expect("tempdir");
    copy_dir(&rules_dir().join("templates"), dir.path());
    std::fs::remove_file(dir.path().join("rumor.toml")).expect("rm");
    let err = load_templates_err(dir.path());
    assert!(
        err.contains("no default template for kind \"rumor\""),
        "{err}"
    );
}

#[test]
fn rules_check_validates_matrix_and_templates() {
    let bin = env!("CARGO_BIN_EXE_huiying");
    let ok = std::process::Command::new(bin)
        .args(["rules", "check"])
        .arg(rules_dir())
        .output()
        .expect("run huiying");
    let out = String::from_utf8_lossy(&ok.stdout);
    assert!(
        ok.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let n = matrix().accounts().len();
    assert!(out.contains(&format!(", {n} accounts, ")), "{out}");
    assert!(
        out.contains(&format!("{} templates", templates().len())),
        "{out}"
    );

    // A broken copy: exit 1 with file:line.
    let dir = tempfile::tempdir().expect("tempdir");
    for e in std::fs::read_dir(rules_dir()).expect("rules") {
        let e = e.expect("entry");
        if e.path().is_file() {
            std::fs::copy(e.path(), dir.path().join(e.file_name())).expect("copy");
        }
    }
    for sub in ["matrix", "templates"] {
        std::fs::create_dir(dir.path().join(sub)).expect("mkdir");
        copy_dir(&rules_dir().join(sub), &dir.path().join(sub));
    }
    let f = dir.path().join("matrix/beijing.toml");
    let s = std::fs::read_to_string(&f).expect("read");
    let s = s.replacen("region = \"110108\"", "region = \"119999\"", 1);
    std::fs::write(&f, &s).expect("write");
    let bad = std::process::Command::new(bin)
        .args(["rules", "check"])
        .arg(dir.path())
        .output()
        .expect("run huiying");
    let err = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(bad.status.code(), Some(1), "{err}");
    let want = format!("{}:{}: ", f.display(), line_of(&s, "119999"));
    assert!(err.contains(&want), "{err}");
}

// ─── Rendering ───────────────────────────────────────────────────────────────────────────────

#[test]
fn renders_chinese_and_english_notices() {
    let t = templates();
    type Case = (
        IncidentKind,
        &'static str,
        Option<&'static str>,
        Lang,
        Platform,
        &'static str,
    );
    let cases: [Case; 7] = [
        (
            IncidentKind::Emergency,
            "fire",
            Some("110108"),
            Lang::Zh,
            Platform::Weibo,
            "【海淀区火情通报】14:05，海淀区发生火情，消防救援力量已赶赴现场处置。请周边市民远离现场，关闭门窗，不要围观，为消防车让出通道。发现火情请拨打119。https://www.119.gov.cn",
        ),
        (
            IncidentKind::Emergency,
            "flood",
            Some("110000"),
            Lang::En,
            Platform::Mastodon,
            "[Beijing Flood alert] 14:05 (UTC+8) Flooding reported in parts of Beijing. Avoid flooded roads and underpasses; never wade or drive through water. In danger call 110 or 119. https://www.12379.cn",
        ),
        (
            // The full English text is over 140 on Weibo: the short variant is used.
            IncidentKind::Emergency,
            "flood",
            Some("110000"),
            Lang::En,
            Platform::Weibo,
            "[Beijing Flood] 14:05 (UTC+8) Avoid flooded roads and underpasses; never wade or drive through water. Call 110/119. https://www.12379.cn",
        ),
        (
            // No template of its own: the default, with the category's names.
            IncidentKind::Emergency,
            "traffic_accident",
            Some("110105"),
            Lang::Zh,
            Platform::Weibo,
            "【朝阳区交通事故】14:05，朝阳区出现交通事故情况，相关部门正在处置。请市民远离危险区域，听从现场指挥，以官方发布为准。如遇险情请拨打110/119/120。https://www.12379.cn",
        ),
        (
            // A district: its pinyin name with the official suffix, the province after it in
            // the text (issue 16, item 7: no Chinese name in English text).
            IncidentKind::Emergency,
            "earthquake",
            Some("330106"),
            Lang::En,
            Platform::Mastodon,
            "[Xihu Earthquake] 14:05 (UTC+8) Shaking reported in Xihu District, Zhejiang; official measurements will follow. Drop, cover and hold on, then move calmly to open ground. https://www.cea.gov.cn",
        ),
        (
            IncidentKind::Emergency,
            "rainstorm",
            Some("110108"),
            Lang::En,
            Platform::Mastodon,
            "[Haidian Rainstorm] 14:05 (UTC+8) Heavy rain in Haidian District, Beijing. Stay in; keep away from low ground, basements and billboards. In danger call 110 or 119. https://www.12379.cn",
        ),
        (
            IncidentKind::Emergency,
            "typhoon",
            None,
            Lang::Zh,
            Platform::File,
            "【本地台风提示】14:05，台风影响本地。请市民关好门窗，收好阳台物品，非必要不外出，远离海边和广告牌。如遇险情请拨打110/119。https://www.12379.cn",
        ),
    ];
    for (kind, cat, region, lang, platform, want) in cases {
        let inc = incident(kind, cat, region);
        let got = t
            .render(&inc, lang, platform)
            .unwrap_or_else(|e| panic!("{cat} {lang} {platform}: {e}"));
        assert_eq!(got, want, "{cat} {lang} {platform}");
    }
}

#[test]
fn renders_rumor_rebuttals() {
    let t = templates();
    // A known claim: its rebuttal and link.
    let mut inc = with_claim(
        incident(IncidentKind::Rumor, "earthquake", Some("330000")),
        "earthquake-prediction",
    );
    inc.top_terms = vec![
        "地震局".into(),
        "预测".into(),
        "今晚".into(),
        "大地震".into(),
    ];
    let zh = t
        .render(&inc, Lang::Zh, Platform::Weibo)
        .expect("zh on weibo");
    let r = inc.rebuttal.as_ref().expect("rebuttal");
    assert!(zh.contains(&r.zh), "{zh}");
    assert!(zh.contains("“地震局、预测、今晚”"), "{zh}");
    assert!(zh.ends_with(&r.link), "{zh}");
    assert!(text_len(Platform::Weibo, &zh) <= WEIBO_LIMIT);
    let en = t
        .render(&inc, Lang::En, Platform::Mastodon)
        .expect("en on mastodon");
    assert_eq!(
        en,
        format!(
            "[Fact check] On reports circulating in Zhejiang about 地震局, 预测, 今晚: {} Please rely on official sources. {}",
            r.en, r.link
        )
    );
    // On Weibo the English rebuttal does not fit: the short variant points to the answer.
    let en_weibo = t.render(&inc, Lang::En, Platform::Weibo).expect("short");
    assert_eq!(
        en_weibo,
        format!(
            "[Fact check] On reports circulating in Zhejiang about 地震局, 预测, 今晚: see the official answer at {}",
            r.link
        )
    );
    // An unknown claim: the template's neutral wording and link.
    let inc = incident(IncidentKind::Rumor, "other", Some("110000"));
    let zh = t.render(&inc, Lang::Zh, Platform::Weibo).expect("zh");
    assert_eq!(
        zh,
        "【求证】关于北京市网传“有关信息”的消息：相关部门正在核实，结果将及时发布。请以官方发布为准，不信谣、不传谣。https://www.piyao.org.cn"
    );
    // A caller's link replaces the claim's and the template's.
    let zh = t
        .render_with_link(
            &inc,
            Lang::Zh,
            Platform::Weibo,
            Some("https://www.beijing.gov.cn/n/1"),
        )
        .expect("zh");
    assert!(
        zh.ends_with("不传谣。https://www.beijing.gov.cn/n/1"),
        "{zh}"
    );
}

#[test]
fn every_shipped_template_fits_weibo_and_mastodon() {
    let t = templates();
    let mut failures = Vec::new();
    let mut check = |inc: &Incident| {
        for lang in [Lang::Zh, Lang::En] {
            for platform in [Platform::Weibo, Platform::Mastodon] {
                match t.render(inc, lang, platform) {
                    Ok(s) => {
                        assert!(check_length(platform, &s).is_ok());
                        assert!(!s.contains('{') && !s.contains('}'), "{s}");
                    }
                    Err(e) => failures.push(format!(
                        "{} {} in {:?} ({lang}, {platform}): {e}",
                        inc.kind.as_str(),
                        inc.category,
                        inc.region.as_ref().map(|r| &r.name)
                    )),
                }
                // The follow-ups (update, all-clear) too.
                for purpose in [Purpose::Update, Purpose::AllClear] {
                    if !t.has_followup(inc.kind, purpose) {
                        continue;
                    }
                    match t.render_purpose(inc, purpose, lang, platform, None, OPENED_AT) {
                        Ok(s) => assert!(!s.contains('{') && !s.contains('}'), "{s}"),
                        Err(e) => failures.push(format!(
                            "{} {} {} in {:?} ({lang}, {platform}): {e}",
                            purpose.as_str(),
                            inc.kind.as_str(),
                            inc.category,
                            inc.region.as_ref().map(|r| &r.name)
                        )),
                    }
                }
            }
        }
    };
    assert!(t.has_followup(IncidentKind::Emergency, Purpose::Update));
    assert!(t.has_followup(IncidentKind::Emergency, Purpose::AllClear));
    let long_region = "652300"; // 昌吉回族自治州, a long name
    for c in &rules().categories {
        for region in [Some("110108"), Some("110000"), Some(long_region), None] {
            check(&incident(IncidentKind::Emergency, &c.id, region));
        }
    }
    for claim in &rules().claims {
        let mut inc = with_claim(
            incident(IncidentKind::Rumor, &claim.category, Some("110000")),
            &claim.id,
        );
        inc.top_terms = vec!["网传".into(), "消息".into(), "紧急扩散".into()];
        check(&inc);
    }
    check(&incident(IncidentKind::Rumor, "other", None));
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn over_length_uses_the_short_variant_then_fails_without_cutting() {
    let t = templates();
    let inc = incident(IncidentKind::Emergency, "fire", Some("110108"));
    let full = t
        .render(&inc, Lang::Zh, Platform::Weibo)
        .expect("full fits");
    // A long link pushes the full text over 140; the short variant still fits.
    let link = format!(
        "https://www.bjhd.gov.cn/notices/2024/07/01/{}",
        "x".repeat(27)
    );
    let got = t
        .render_with_link(&inc, Lang::Zh, Platform::Weibo, Some(&link))
        .expect("short variant");
    assert_ne!(got, full.replace("https://www.119.gov.cn", &link));
    assert_eq!(
        got,
        format!(
            "【海淀区火情通报】14:05，消防救援力量正在处置。请远离现场，关闭门窗，不要围观，为消防车让出通道。{link}"
        )
    );
    assert!(text_len(Platform::Weibo, &got) <= WEIBO_LIMIT);
    // On Mastodon a link counts 23 whatever its length, so the full text is used.
    let masto = t
        .render_with_link(&inc, Lang::Zh, Platform::Mastodon, Some(&link))
        .expect("mastodon");
    assert!(masto.contains("发现火情请拨打119"), "{masto}");

    // Too long even when short: TooLong with the short variant's length; nothing is cut.
    let huge = format!("https://www.bjhd.gov.cn/{}", "y".repeat(150));
    match t.render_with_link(&inc, Lang::Zh, Platform::Weibo, Some(&huge)) {
        Err(TemplateError::TooLong {
            platform,
            len,
            limit,
        }) => {
            assert_eq!((platform, limit), (Platform::Weibo, 140));
            let short = format!(
                "【海淀区火情通报】14:05，消防救援力量正在处置。请远离现场，关闭门窗，不要围观，为消防车让出通道。{huge}"
            );
            assert_eq!(len, short.chars().count());
        }
        other => panic!("expected TooLong, got {other:?}"),
    }
    // A rumor with a long Chinese rebuttal has no variant that fits Weibo.
    let mut r = with_claim(
        incident(IncidentKind::Rumor, "other", Some("110000")),
        "tap-water-poisoned",
    );
    if let Some(x) = r.rebuttal.as_mut() {
        x.zh = "经核实".repeat(50);
    }
    let e = t
        .render(&r, Lang::Zh, Platform::Weibo)
        .expect_err("too long");
    assert!(
        e.to_string().contains("notice too long for weibo: ")
            && e.to_string().contains("limit 140"),
        "{e}"
    );
}

#[test]
fn a_long_english_word_is_never_cut() {
    let t = templates();
    let word = "Pneumonoultramicroscopicsilicovolcanoconiosis";
    for repeat in [1usize, 4, 7, 12] {
        let long_word = word.repeat(repeat);
        let mut inc = with_claim(
            incident(IncidentKind::Rumor, "other", Some("110000")),
            "crayfish-corpses",
        );
        if let Some(r) = inc.rebuttal.as_mut() {
            r.en = format!("The claim is false: {long_word} is not involved.");
        }
        for platform in [Platform::Weibo, Platform::Mastodon] {
            match t.render(&inc, Lang::En, platform) {
                Ok(s) => {
                    // The word is there whole, or (short variant) not at all.
                    let whole = s.contains(&long_word);
                    let none = !s.contains(&word[..8]);
                    assert!(whole || none, "{platform} ×{repeat}: {s}");
                    assert!(check_length(platform, &s).is_ok());
                }
                Err(TemplateError::TooLong { len, limit, .. }) => assert!(len > limit),
                Err(e) => panic!("{e}"),
            }
        }
        // Mastodon takes the whole word while the full text fits, then the short variant
        // (which has no rebuttal text) is used instead.
        let m = t
            .render(&inc, Lang::En, Platform::Mastodon)
            .expect("mastodon");
        if repeat <= 7 {
            assert!(m.contains(&long_word), "{m}");
        } else {
            assert!(
                m.contains("see the official answer") && !m.contains(&word[..8]),
                "{m}"
            );
        }
    }
}
