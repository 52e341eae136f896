//! Alerting the people on duty (值班提醒): when a severe incident opens (or rises to a new
//! severity) and when a notice has waited for approval too long, a message goes to the IM group
//! bots (`[[respond.bots]]`: WeCom, DingTalk, Feishu) and e-mail addresses its rule names,
//! through the outbox (one job per trigger and target: exactly once, within each bot's limit),
//! each with the link to the console page; the console raises a browser notification with a
//! sound for the same alerts (`GET /api/alerts`).
//!
//! ```toml
//! [alerts]
//! console_url = "https://duty.example.gov.cn"   # the links' base; default http://{listen}
//! notice_wait_minutes = 10                       # a draft waiting this long is an alert
//!
//! [[alerts.rule]]
//! min_severity = 4                # incidents at or above
//! regions = ["110000"]            # where (a code covers everything under it); none: anywhere
//! kinds = ["emergency"]           # none: emergencies and rumors
//! to = ["duty-wecom", "mail:duty@example.gov.cn"]   # bot ids, mail:address
//! waiting = true                  # also notices of matching incidents left waiting
//! ```
//!
//! | file | owns |
//! |---|---|
//! | `mod.rs` | [`AlertsConfig`], [`AlertRule`], the [`Alert`] and its text |
//! | `stage.rs` | the task (incident events, the waiting check) and `GET /api/alerts` |

pub mod stage;

use crate::detect::gazetteer::code_covers;
use crate::incidents::{Incident, IncidentKind};
use serde::{Deserialize, Serialize};

/// `[alerts]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsConfig {
    /// The base of the console links in messages (`https://duty.example.gov.cn`); none: the
    /// service's own `http://{listen}`.
    pub console_url: Option<String>,
    /// A draft notice waiting this long for approval is an alert.
    pub notice_wait_minutes: u32,
    /// `[[alerts.rule]]`.
    pub rule: Vec<AlertRule>,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            console_url: None,
            notice_wait_minutes: 10,
            rule: Vec::new(),
        }
    }
}

/// `[[alerts.rule]]`: which incidents alert whom.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertRule {
    /// Incidents at or above this severity (1–5).
    #[serde(default = "default_min_severity")]
    pub min_severity: u8,
    /// Region codes; an incident in one of them or under it matches. Empty: anywhere.
    #[serde(default)]
    pub regions: Vec<String>,
    /// `emergency`, `rumor`; empty: both.
    #[serde(default)]
    pub kinds: Vec<IncidentKind>,
    /// Bot ids of `[[respond.bots]]` and `mail:<address>`.
    pub to: Vec<String>,
    /// Also alert when a notice of a matching incident waits for approval too long.
    #[serde(default = "yes")]
    pub waiting: bool,
}

fn default_min_severity() -> u8 {
    4
}

fn yes() -> bool {
    true
}

impl AlertRule {
    /// Whether the incident is one this rule alerts for.
    pub fn matches(&self, inc: &Incident) -> bool {
        inc.severity >= self.min_severity
            && (self.kinds.is_empty() || self.kinds.contains(&inc.kind))
            && (self.regions.is_empty()
                || inc
                    .region
                    .as_ref()
                    .is_some_and(|r| self.regions.iter().any(|c| code_covers(c, &r.code))))
    }
}

/// Where one alert goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A bot of `[[respond.bots]]` (its outbox account `bot:<id>`).
    Bot(String),
    /// An e-mail address (through `[respond.smtp]`).
    Mail(String),
}

impl AlertsConfig {
    /// Check the rules against the bots there are and whether e-mail is on: every problem,
    /// named by rule (1-based) and field.
    pub fn check(&self, bots: &[String], mail: bool) -> Result<(), String> {
        let mut errors = Vec::new();
        for (i, r) in self.rule.iter().enumerate() {
            let n = i + 1;
            if !(1..=5).contains(&r.min_severity) {
                errors.push(format!(
                    "[[alerts.rule]] {n}: min_severity {} (1 to 5)",
                    r.min_severity
                ));
            }
            if r.to.is_empty() {
                errors.push(format!("[[alerts.rule]] {n}: to is empty"));
            }
            for c in &r.regions {
                if c.len() != 6 || !c.bytes().all(|b| b.is_ascii_digit()) {
                    errors.push(format!(
                        "[[alerts.rule]] {n}: regions: {c:?} is not a 6-digit region code"
                    ));
                }
            }
            for t in &r.to {
                match parse_target(t) {
                    Target::Mail(a) if !mail => errors.push(format!(
                        "[[alerts.rule]] {n}: to: mail:{a} needs [respond.smtp]"
                    )),
                    Target::Mail(a) if !a.contains('@') => errors.push(format!(
                        "[[alerts.rule]] {n}: to: {t:?} is not an e-mail address"
                    )),
                    Target::Bot(b) if !bots.contains(&b) => errors.push(format!(
                        "[[alerts.rule]] {n}: to: unknown bot {b:?} (bots: {})",
                        if bots.is_empty() {
                            "none in [[respond.bots]]".to_string()
                        } else {
                            bots.join(", ")
                        }
                    )),
                    _ => {}
                }
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("\n"))
        }
    }
}

/// `mail:<address>` or a bot id.
pub fn parse_target(t: &str) -> Target {
    match t.strip_prefix("mail:") {
        Some(a) => Target::Mail(a.trim().to_string()),
        None => Target::Bot(t.trim().to_string()),
    }
}

/// What an alert is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// A severe incident opened, or rose to a new severity.
    Incident,
    /// A notice has waited for approval too long.
    Waiting,
}

/// One alert, as the console shows it and the messages say it.
#[derive(Debug, Clone, Serialize)]
pub struct Alert {
    /// `incident:<id>:<severity>` or `waiting:<notice id>`: one alert per trigger.
    pub id: String,
    /// When it was raised (ms).
    pub at: i64,
    /// What it is about.
    pub trigger: Trigger,
    /// The incident.
    pub incident_id: String,
    /// The waiting notice.
    pub notice_id: Option<String>,
    /// The incident's severity.
    pub severity: u8,
    /// Title, Chinese.
    pub title_zh: String,
    /// Title, English.
    pub title_en: String,
    /// The console page.
    pub link: String,
}

impl Alert {
    /// The message: the Chinese title, the English one, the link.
    pub fn text(&self) -> String {
        format!(
            "【回应提醒】{}\n[huiying alert] {}\n{}",
            self.title_zh, self.title_en, self.link
        )
    }
}

/// Chinese and English names of what an incident is (category and region).
pub fn describe(inc: &Incident, cat_zh: &str, cat_en: &str) -> (String, String) {
    let (rz, re) = match &inc.region {
        Some(r) => (
            r.name.clone(),
            if r.name_en.is_empty() {
                r.name.clone()
            } else {
                r.name_en.clone()
            },
        ),
        None => ("未定位".to_string(), "no region".to_string()),
    };
    let kind_zh = match inc.kind {
        IncidentKind::Emergency => "突发",
        IncidentKind::Rumor => "谣言",
        IncidentKind::Emerging => "新动向",
    };
    (
        format!("{kind_zh} {cat_zh} · {rz}"),
        format!("{} {cat_en} · {re}", inc.kind.as_str()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn region_codes_cover_what_is_under_them() {
        assert!(code_covers("110000", "110108") && !code_covers("110000", "120101"));
        assert!(code_covers("110100", "110108") && !code_covers("110100", "110201"));
        assert!(code_covers("110108", "110108") && !code_covers("110108", "110105"));
        assert!(code_covers("100000", "101010") && !code_covers("100000", "110000"));
    }

    #[test]
    fn rules_name_their_problems() {
        let cfg: AlertsConfig = toml::from_str(
            r#"
[[rule]]
min_severity = 7
regions = ["11"]
to = ["nope", "mail:duty@example.gov.cn", "mail:bad"]
"#,
        )
        .expect("parses");
        let e = cfg
            .check(&["duty".to_string()], true)
            .expect_err("problems");
        assert!(
            e.contains("[[alerts.rule]] 1: min_severity 7 (1 to 5)"),
            "{e}"
        );
        assert!(
            e.contains("regions: \"11\" is not a 6-digit region code"),
            "{e}"
        );
        assert!(e.contains("unknown bot \"nope\" (bots: duty)"), "{e}");
        assert!(e.contains("\"mail:bad\" is not an e-mail address"), "{e}");
        let e = cfg.check(&[], false).expect_err("no mail");
        assert!(
            e.contains("mail:duty@example.gov.cn needs [respond.smtp]"),
            "{e}"
        );
        let ok: AlertsConfig = toml::from_str("[[rule]]\nto = [\"duty\"]\n").expect("parses");
        assert!(ok.check(&["duty".to_string()], false).is_ok());
        assert_eq!(ok.rule[0].min_severity, 4);
        assert!(ok.rule[0].waiting);
    }
}
