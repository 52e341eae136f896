//! Changes written into the rules files by the service (an operator promoting an emerging
//! incident): keywords added to a category of `categories.toml`, a known claim appended to
//! `claims.toml`. A change is checked on a copy of the whole directory before the real file
//! is replaced (atomically), so a bad change leaves the rules in force untouched.

use super::RuleSet;
use crate::normalize::Normalizer;
use std::path::{Path, PathBuf};

/// Why a change was refused.
#[derive(Debug, thiserror::Error)]
pub enum EditError {
    /// The request names something that is not there or is not allowed.
    #[error("{0}")]
    Invalid(String),
    /// Reading or writing failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// A known claim to append.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
pub struct NewClaim {
    /// Stable id (kebab-case).
    pub id: String,
    /// A category id or "other".
    pub category: String,
    /// Official rebuttal, Chinese.
    pub rebuttal_zh: String,
    /// Official rebuttal, English.
    pub rebuttal_en: String,
    /// Link to the official debunk.
    pub link: String,
    /// Who debunked it.
    #[serde(default)]
    pub source: Option<String>,
}

/// A TOML basic string (JSON string escapes are valid TOML escapes).
fn quoted(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

/// Clean terms: trimmed, lower case, non-empty, at most 40 characters, no control
/// characters, each once.
pub fn clean_terms(terms: &[String]) -> Result<Vec<String>, EditError> {
    let mut out: Vec<String> = Vec::new();
    for t in terms {
        let t = t.trim().to_lowercase();
        if t.is_empty() {
            continue;
        }
        if t.chars().count() > 40 || t.chars().any(char::is_control) {
            return Err(EditError::Invalid(format!(
                "term {:?} is longer than 40 characters or holds control characters",
                crate::truncate_chars(&t, 40)
            )));
        }
        if !out.contains(&t) {
            out.push(t);
        }
    }
    if out.is_empty() {
        return Err(EditError::Invalid("no terms to add".into()));
    }
    Ok(out)
}

/// `categories.toml` text with `terms` added to the keywords of `category` (those it has
/// already left out), under a comment saying where they came from. The new text and the
/// terms added.
pub fn add_keywords(
    src: &str,
    category: &str,
    terms: &[String],
    note: &str,
) -> Result<(String, Vec<String>), EditError> {
    let id_line = format!("id = {}", quoted(category));
    let lines: Vec<&str> = src.lines().collect();
    let start = lines
        .iter()
        .position(|l| l.trim() == id_line)
        .ok_or_else(|| {
            EditError::Invalid(format!("no category {category:?} in categories.toml"))
        })?;
    let end = lines[start + 1..]
        .iter()
        .position(|l| l.trim() == "[[category]]")
        .map_or(lines.len(), |p| start + 1 + p);
    let kw = (start..end)
        .find(|&i| lines[i].trim_start().starts_with("keywords = ["))
        .ok_or_else(|| {
            EditError::Invalid(format!(
                "category {category:?} has no `keywords = [` line to add to"
            ))
        })?;
    let block = lines[start..end].join("\n");
    let add: Vec<String> = terms
        .iter()
        .filter(|t| !block.contains(&quoted(t)))
        .cloned()
        .collect();
    if add.is_empty() {
        return Err(EditError::Invalid(format!(
            "category {category:?} has every one of these terms already"
        )));
    }
    let mut out: Vec<String> = lines[..=kw].iter().map(|l| l.to_string()).collect();
    out.push(format!("  # {}", note.replace('\n', " ")));
    out.push(format!(
        "  {},",
        add.iter().map(|t| quoted(t)).collect::<Vec<_>>().join(", ")
    ));
    out.extend(lines[kw + 1..].iter().map(|l| l.to_string()));
    let mut text = out.join("\n");
    if src.ends_with('\n') {
        text.push('\n');
    }
    Ok((text, add))
}

/// `claims.toml` text with a new claim of `phrases` appended.
pub fn add_claim(src: &str, claim: &NewClaim, phrases: &[String], note: &str) -> String {
    let mut text = src.to_string();
    if !text.ends_with('\n') && !text.is_empty() {
        text.push('\n');
    }
    text.push_str(&format!("\n# {}\n", note.replace('\n', " ")));
    text.push_str("[[claim]]\n");
    text.push_str(&format!("id = {}\n", quoted(&claim.id)));
    text.push_str(&format!("category = {}\n", quoted(&claim.category)));
    text.push_str(&format!(
        "phrases = [{}]\n",
        phrases
            .iter()
            .map(|p| quoted(p))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    text.push_str("require = []\n");
    text.push_str(&format!("rebuttal_zh = {}\n", quoted(&claim.rebuttal_zh)));
    text.push_str(&format!("rebuttal_en = {}\n", quoted(&claim.rebuttal_en)));
    text.push_str(&format!("link = {}\n", quoted(&claim.link)));
    if let Some(s) = &claim.source {
        text.push_str(&format!("source = {}\n", quoted(s)));
    }
    text
}

fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        let p = e.path();
        if p.is_dir() {
            copy_tree(&p, &to.join(e.file_name()))?;
        } else if p.is_file() {
            std::fs::copy(&p, to.join(e.file_name()))?;
        }
    }
    Ok(())
}

/// Check `dir` with `file` (a top-level rules file) replaced by `text`, on a copy: the rule
/// set as loaded from it (the caller audits the change, [`write`]s it and puts the set in
/// force). Diagnostics name the real file.
pub fn check(
    dir: &Path,
    file: &str,
    text: &str,
    normalizer: &Normalizer,
) -> Result<RuleSet, EditError> {
    let stage: PathBuf = std::env::temp_dir().join(format!(
        "huiying-rules-{}-{}",
        std::process::id(),
        chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default()
    ));
    let checked = (|| {
        copy_tree(dir, &stage)?;
        std::fs::write(stage.join(file), text)?;
        RuleSet::load(&stage, normalizer).map_err(|e| {
            let msg = e
                .to_string()
                .replace(&stage.display().to_string(), &dir.display().to_string());
            EditError::Invalid(format!("the changed rules do not load:\n{msg}"))
        })
    })();
    let _ = std::fs::remove_dir_all(&stage);
    let mut rs = checked?;
    rs.dir = dir.to_path_buf();
    Ok(rs)
}

/// Replace `file` in `dir` by `text` atomically (a rename: the watcher never reads half).
pub fn write(dir: &Path, file: &str, text: &str) -> Result<(), EditError> {
    let tmp = dir.join(format!(".{file}.tmp"));
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, dir.join(file))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const CATS: &str = "[[category]]\nid = \"fire\"\nname_zh = \"火灾\"\nkeywords = [\n  \"火灾\",\n]\n\n[[category]]\nid = \"flood\"\nkeywords = [\"洪水\"]\n";

    #[test]
    fn keywords_go_to_the_named_category_once() {
        let (t, added) = add_keywords(
            CATS,
            "flood",
            &["洪水".into(), "abflood".into()],
            "promoted",
        )
        .expect("added");
        assert_eq!(added, ["abflood"]);
        let flood = &t[t.find("id = \"flood\"").expect("flood")..];
        assert!(flood.contains("keywords = [\"洪水\"]\n  # promoted\n  \"abflood\","));
        assert!(!t[..t.find("id = \"flood\"").expect("flood")].contains("abflood"));
        assert!(add_keywords(CATS, "fire", &["火灾".into()], "x").is_err());
        assert!(add_keywords(CATS, "meteor", &["陨石".into()], "x").is_err());
    }

    #[test]
    fn terms_are_cleaned_and_checked() {
        assert_eq!(
            clean_terms(&[" Meteor ".into(), "meteor".into(), "".into()]).expect("ok"),
            ["meteor"]
        );
        assert!(clean_terms(&["a\u{7}".into()]).is_err());
        assert!(clean_terms(&[]).is_err());
        assert!(clean_terms(&["长".repeat(41)]).is_err());
    }

    #[test]
    fn a_claim_is_appended_with_its_phrases() {
        let c = NewClaim {
            id: "meteor-hoax".into(),
            category: "other".into(),
            rebuttal_zh: "不实\"说法\"".into(),
            rebuttal_en: "false".into(),
            link: "https://www.piyao.org.cn/".into(),
            source: None,
        };
        let t = add_claim(
            "[[claim]]\nid = \"a\"\n",
            &c,
            &["陨石砸中".into()],
            "promoted",
        );
        assert!(t.ends_with("link = \"https://www.piyao.org.cn/\"\n"));
        assert!(t.contains("rebuttal_zh = \"不实\\\"说法\\\"\""));
        assert!(t.contains("phrases = [\"陨石砸中\"]"));
    }
}
