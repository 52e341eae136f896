//! The texts sent for cases (`rules/cases/replies.toml`): the acknowledgement and the answer's
//! frame on the platforms, the e-mails to departments on assignment, reminder and escalation —
//! each in Chinese and English, with `{placeholders}` checked at load (`file:line`).

use crate::detect::diagnostics::{line_at, read_toml, Problems};
use crate::detect::RuleErrors;
use crate::respond::templates::Lang;
use serde::Deserialize;
use std::path::Path;
use toml::Spanned;

/// The file under the rules directory.
pub const TEXTS_PATH: &str = "cases/replies.toml";

/// The placeholders a text may use.
const PLACEHOLDERS: [&str; 7] = [
    "id",
    "department",
    "due",
    "answer",
    "text",
    "kind",
    "standing",
];

/// One text in both languages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Text {
    /// Chinese.
    pub zh: String,
    /// English.
    pub en: String,
}

impl Text {
    /// The text in `lang` with `{name}` replaced by its value (unknown names stay as written).
    pub fn render(&self, lang: Lang, vars: &[(&str, &str)]) -> String {
        let t = match lang {
            Lang::En => &self.en,
            Lang::Zh => &self.zh,
        };
        let mut out = String::with_capacity(t.len() + 64);
        let mut rest = t.as_str();
        while let Some(open) = rest.find('{') {
            out.push_str(&rest[..open]);
            let after = &rest[open + 1..];
            match after.find('}') {
                Some(close) => {
                    let name = &after[..close];
                    match vars.iter().find(|(k, _)| *k == name) {
                        Some((_, v)) => out.push_str(v),
                        None => {
                            out.push('{');
                            out.push_str(name);
                            out.push('}');
                        }
                    }
                    rest = &after[close + 1..];
                }
                None => {
                    out.push_str(&rest[open..]);
                    rest = "";
                }
            }
        }
        out.push_str(rest);
        out
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TextDef {
    zh: Spanned<String>,
    en: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TextsFile {
    ack: TextDef,
    answer: TextDef,
    mail_assign: TextDef,
    mail_escalate: TextDef,
}

/// Every text of the cases stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Texts {
    /// The acknowledgement (受理回复).
    pub ack: Text,
    /// The answer's frame (反馈).
    pub answer: Text,
    /// The e-mail to a department on assignment and reminder (first line: subject).
    pub mail_assign: Text,
    /// The e-mail to the supervisor on escalation (first line: subject).
    pub mail_escalate: Text,
}

impl Texts {
    /// Load `rules_dir/cases/replies.toml`.
    pub fn load(rules_dir: &Path) -> Result<Texts, RuleErrors> {
        let path = rules_dir.join(TEXTS_PATH);
        let (src, f) = read_toml::<TextsFile>(&path).map_err(|e| RuleErrors(vec![e]))?;
        let mut p = Problems::new();
        let mut check = |name: &str, d: &TextDef, need: &[&str]| -> Text {
            for s in [&d.zh, &d.en] {
                let line = line_at(&src, s.span().start);
                if s.get_ref().trim().is_empty() {
                    p.at(&path, line, format!("[{name}]: empty text"));
                }
                let mut rest = s.get_ref().as_str();
                while let Some(open) = rest.find('{') {
                    let after = &rest[open + 1..];
                    let Some(close) = after.find('}') else {
                        p.at(&path, line, format!("[{name}]: an unclosed {{"));
                        break;
                    };
                    let ph = &after[..close];
                    if !PLACEHOLDERS.contains(&ph) {
                        p.at(
                            &path,
                            line,
                            format!(
                                "[{name}]: unknown placeholder {{{ph}}} ({})",
                                PLACEHOLDERS.join(", ")
                            ),
                        );
                    }
                    rest = &after[close + 1..];
                }
                for n in need {
                    if !s.get_ref().contains(&format!("{{{n}}}")) {
                        p.at(&path, line, format!("[{name}]: must contain {{{n}}}"));
                    }
                }
            }
            Text {
                zh: d.zh.get_ref().clone(),
                en: d.en.get_ref().clone(),
            }
        };
        let t = Texts {
            ack: check("ack", &f.ack, &["id"]),
            answer: check("answer", &f.answer, &["answer"]),
            mail_assign: check("mail_assign", &f.mail_assign, &["id"]),
            mail_escalate: check("mail_escalate", &f.mail_escalate, &["id"]),
        };
        p.finish()?;
        Ok(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_texts_load_and_render_both_languages() {
        let t = Texts::load(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("rules")
                .as_path(),
        )
        .expect("shipped texts");
        let zh = t.ack.render(
            Lang::Zh,
            &[
                ("id", "20261204-0001"),
                ("department", "水务局"),
                ("due", "2026-12-04 11:00"),
            ],
        );
        assert!(
            zh.contains("20261204-0001") && zh.contains("水务局"),
            "{zh}"
        );
        let en = t.answer.render(
            Lang::En,
            &[
                ("answer", "Water is back."),
                ("id", "x"),
                ("department", "Water"),
            ],
        );
        assert!(en.contains("Water is back."), "{en}");
        assert!(!en.contains('{'), "{en}");
    }

    #[test]
    fn a_bad_placeholder_is_named_at_its_line() {
        let dir = tempfile::tempdir().expect("tmp");
        std::fs::create_dir_all(dir.path().join("cases")).expect("dir");
        let src = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("rules")
                .join(TEXTS_PATH),
        )
        .expect("read")
        .replace("编号 {id}。", "编号 {case}。");
        std::fs::write(dir.path().join(TEXTS_PATH), src).expect("write");
        let e = Texts::load(dir.path()).expect_err("refused").to_string();
        assert!(e.contains("replies.toml:") && e.contains("{case}"), "{e}");
    }
}
