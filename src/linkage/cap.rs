//! An emergency notice as an OASIS **Common Alerting Protocol 1.2** `alert`.
//!
//! One `info` block per language the notice was written in (`zh-CN` first, then `en-US`), each
//! with the CAP category the notice's category maps to ([`cap_category`]), the event's name,
//! urgency / severity / certainty from the notice's severity and its source, the headline (the
//! text's first sentence, at most 160 characters, as CAP advises), the whole text as the
//! description, and the region as the area (`areaDesc` its name, `geocode` its administrative
//! code under the value name `GB/T 2260`).
//!
//! `msgType`: a notice is an `Alert`; an update (`purpose = update`) an `Update`, and an
//! all-clear (`purpose = all_clear`, the incident closed) a `Cancel` with `responseType`
//! `AllClear`, both with `references` naming the earlier alerts (`sender,identifier,sent`).
//! Times carry the Beijing offset (`+08:00`): CAP forbids `Z`.

use crate::incidents::IncidentKind;
use crate::respond::notices::{Notice, NoticeState};
use crate::respond::templates::{Lang, Purpose};

/// Value name of the region codes in `geocode` (the national standard of the codes).
pub const GEOCODE_NAME: &str = "GB/T 2260";
/// CAP advises headlines under 160 characters.
const HEADLINE_CHARS: usize = 160;

/// Who sends the alerts (`[linkage]` settings: the office's CAP sender id and names).
#[derive(Debug, Clone)]
pub struct Sender {
    /// `sender`: an id unique to the office (an e-mail-like name, no spaces or commas).
    pub id: String,
    /// `senderName` in Chinese and English.
    pub name_zh: String,
    pub name_en: String,
    /// `status`: `Actual`, or `Exercise` for a drill's instance.
    pub status: &'static str,
}

/// Why a notice has no CAP alert.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CapError {
    /// Rebuttals of rumors are not alerts.
    #[error("notice {0} is a rumor rebuttal, not an emergency notice: no CAP alert")]
    NotAnAlert(String),
    /// Drafts, held or rejected notices are not published.
    #[error("notice {0} is {1}: only a published notice is an alert")]
    NotPublished(String, &'static str),
    /// A notice with no text.
    #[error("notice {0} has no text")]
    NoText(String),
    /// A sender id CAP refuses.
    #[error("sender {0:?}: CAP forbids spaces, commas, '<' and '&' in it")]
    BadSender(String),
}

/// The CAP category of a huiying category (`rules/categories.toml` ids); `Other` for the rest.
pub fn cap_category(category: &str) -> &'static str {
    match category {
        "flood" | "rainstorm" | "typhoon" | "extreme_weather" => "Met",
        "earthquake" | "landslide" => "Geo",
        "fire" => "Fire",
        "explosion" | "stampede" => "Safety",
        "hazmat_leak" => "CBRNE",
        "collapse" | "missing_person" => "Rescue",
        "traffic_accident" | "rail_accident" | "air_crash" => "Transport",
        "epidemic" | "food_poisoning" => "Health",
        "outage" => "Infra",
        "violent_attack" => "Security",
        _ => "Other",
    }
}

/// `severity` of a notice of severity 1–5.
fn cap_severity(s: u8) -> &'static str {
    match s {
        5 => "Extreme",
        4 => "Severe",
        3 => "Moderate",
        1 | 2 => "Minor",
        _ => "Unknown",
    }
}

/// `urgency`: act now from severity 4, soon at 3; an all-clear's event is past.
fn cap_urgency(n: &Notice) -> &'static str {
    match (n.purpose, n.severity) {
        (Purpose::AllClear, _) => "Past",
        (_, s) if s >= 4 => "Immediate",
        (_, 3) => "Expected",
        _ => "Future",
    }
}

/// When the notice went out: its first `enqueue` (publishing began), else its last change.
pub fn sent_at(n: &Notice) -> i64 {
    n.history
        .iter()
        .find(|h| h.action == "enqueue")
        .map_or(n.updated_at, |h| h.at)
}

/// `ms` as a CAP date-time in Beijing time (`2026-12-05T18:00:00+08:00`).
pub fn cap_time(ms: i64) -> String {
    let off = chrono::FixedOffset::east_opt(8 * 3600).expect("+08:00 is a valid offset");
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .with_timezone(&off)
        .format("%Y-%m-%dT%H:%M:%S%:z")
        .to_string()
}

/// `s` as XML character data: escaped, and without the characters XML 1.0 cannot hold.
pub fn xml(s: &str) -> String {
    let kept: String = s
        .chars()
        .filter(|c| {
            matches!(*c, '\t' | '\n' | '\r') || (*c >= ' ' && *c != '\u{FFFE}' && *c != '\u{FFFF}')
        })
        .collect();
    crate::html_escape(&kept)
}

/// The first sentence of `text` (up to 。！？!? or a line end), at most 160 characters.
pub fn headline(text: &str) -> String {
    let first = text
        .split_inclusive(['。', '！', '？', '!', '?', '\n'])
        .next()
        .unwrap_or(text)
        .trim();
    // With its "…" when cut: 160 at most in all.
    crate::truncate_chars(first, HEADLINE_CHARS - 1)
}

/// Whether `n` is published (its jobs went to the outbox): only those are public, as alerts,
/// in the feeds and in the archive.
pub fn published(n: &Notice) -> bool {
    matches!(n.state, NoticeState::Publishing | NoticeState::Done)
}

/// A notice's texts, one per language, Chinese first (the lead account's text before the
/// others' of its language).
pub fn texts(n: &Notice) -> Vec<(Lang, &str)> {
    let mut out: Vec<(Lang, &str)> = Vec::new();
    for t in n
        .texts
        .get(&n.plan.lead)
        .into_iter()
        .chain(n.texts.values())
    {
        if !out.iter().any(|(l, _)| *l == t.lang) && !t.text.trim().is_empty() {
            out.push((t.lang, t.text.as_str()));
        }
    }
    out.sort_by_key(|(l, _)| *l != Lang::Zh);
    out
}

/// The CAP identifier of a notice (unique for the sender: the notice id).
pub fn identifier(n: &Notice) -> String {
    format!("huiying-{}", n.id)
}

/// `notice` as a CAP 1.2 alert. `earlier`: the alerts it follows (its incident's earlier
/// published notices), named in `references` of an update or all-clear; `event(lang)`: the
/// event's name (the category's name in that language).
pub fn alert(
    n: &Notice,
    earlier: &[&Notice],
    sender: &Sender,
    event: impl Fn(Lang) -> String,
) -> Result<String, CapError> {
    if n.kind != IncidentKind::Emergency {
        return Err(CapError::NotAnAlert(n.id.clone()));
    }
    if !published(n) {
        return Err(CapError::NotPublished(n.id.clone(), n.state.as_str()));
    }
    if sender.id.is_empty()
        || sender
            .id
            .chars()
            .any(|c| c.is_whitespace() || matches!(c, ',' | '<' | '&'))
    {
        return Err(CapError::BadSender(sender.id.clone()));
    }
    let texts = texts(n);
    if texts.is_empty() {
        return Err(CapError::NoText(n.id.clone()));
    }
    let msg_type = match n.purpose {
        Purpose::Notice => "Alert",
        Purpose::Update => "Update",
        Purpose::AllClear => "Cancel",
    };
    let mut x = String::with_capacity(2048);
    x.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    x.push_str("<alert xmlns=\"urn:oasis:names:tc:emergency:cap:1.2\">\n");
    let el = |x: &mut String, indent: &str, name: &str, v: &str| {
        x.push_str(&format!("{indent}<{name}>{}</{name}>\n", xml(v)));
    };
    el(&mut x, "  ", "identifier", &identifier(n));
    el(&mut x, "  ", "sender", &sender.id);
    el(&mut x, "  ", "sent", &cap_time(sent_at(n)));
    el(&mut x, "  ", "status", sender.status);
    el(&mut x, "  ", "msgType", msg_type);
    el(&mut x, "  ", "scope", "Public");
    if n.purpose != Purpose::Notice && !earlier.is_empty() {
        let refs: Vec<String> = earlier
            .iter()
            .map(|e| format!("{},{},{}", sender.id, identifier(e), cap_time(sent_at(e))))
            .collect();
        el(&mut x, "  ", "references", &refs.join(" "));
    }
    el(
        &mut x,
        "  ",
        "incidents",
        &n.incident_id.replace([' ', ','], "_"),
    );
    let certainty = if n.trusted_source.is_some() {
        "Observed"
    } else {
        "Likely"
    };
    for (lang, text) in texts {
        let (code, sender_name) = match lang {
            Lang::Zh => ("zh-CN", &sender.name_zh),
            Lang::En => ("en-US", &sender.name_en),
        };
        x.push_str("  <info>\n");
        el(&mut x, "    ", "language", code);
        el(&mut x, "    ", "category", cap_category(&n.category));
        el(&mut x, "    ", "event", &event(lang));
        if n.purpose == Purpose::AllClear {
            el(&mut x, "    ", "responseType", "AllClear");
        }
        el(&mut x, "    ", "urgency", cap_urgency(n));
        el(&mut x, "    ", "severity", cap_severity(n.severity));
        el(&mut x, "    ", "certainty", certainty);
        if !sender_name.is_empty() {
            el(&mut x, "    ", "senderName", sender_name);
        }
        el(&mut x, "    ", "headline", &headline(text));
        el(&mut x, "    ", "description", text);
        el(
            &mut x,
            "    ",
            "instruction",
            match lang {
                Lang::Zh => "请以官方发布为准，按通知要求做好防范。",
                Lang::En => "Follow official announcements and the precautions in this notice.",
            },
        );
        if let Some(r) = &n.region {
            x.push_str("    <area>\n");
            let desc = match lang {
                Lang::En if !r.name_en.is_empty() => &r.name_en,
                _ => &r.name,
            };
            el(&mut x, "      ", "areaDesc", desc);
            x.push_str("      <geocode>\n");
            el(&mut x, "        ", "valueName", GEOCODE_NAME);
            el(&mut x, "        ", "value", &r.code);
            x.push_str("      </geocode>\n");
            x.push_str("    </area>\n");
        }
        x.push_str("  </info>\n");
    }
    x.push_str("</alert>\n");
    Ok(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_carry_the_beijing_offset() {
        assert_eq!(cap_time(1_796_227_200_000), "2026-12-03T00:00:00+08:00");
    }

    #[test]
    fn headlines_are_first_sentences_and_text_is_escaped() {
        assert_eq!(
            headline("【暴雨预警】今夜有大暴雨。请减少外出。"),
            "【暴雨预警】今夜有大暴雨。"
        );
        assert_eq!(xml("a<b & \u{1}c"), "a&lt;b &amp; c");
        assert_eq!(headline(&"雨".repeat(400)).chars().count(), HEADLINE_CHARS);
    }

    #[test]
    fn every_category_maps_to_a_cap_category() {
        for c in [
            "flood",
            "earthquake",
            "hazmat_leak",
            "air_crash",
            "epidemic",
            "nothing_known",
        ] {
            assert!(
                [
                    "Geo",
                    "Met",
                    "Safety",
                    "Security",
                    "Rescue",
                    "Fire",
                    "Health",
                    "Env",
                    "Transport",
                    "Infra",
                    "CBRNE",
                    "Other"
                ]
                .contains(&cap_category(c)),
                "{c}"
            );
        }
        assert_eq!(cap_category("flood"), "Met");
        assert_eq!(cap_category("nothing_known"), "Other");
    }
}
