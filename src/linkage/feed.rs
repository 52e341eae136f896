//! Published notices as feeds for portals and newsrooms: Atom 1.0 (RFC 4287) and RSS 2.0, newest
//! first. Each entry is one notice (an emergency notice or a rumor rebuttal): its headline as
//! the title, its texts (Chinese first, then English) as the content, its category and region
//! as categories; an emergency notice links its CAP alert (`rel="alternate"`,
//! `type="application/cap+xml"`, `{base}/cap/{id}.xml`), as CAP-over-Atom feeds do.

use super::cap;
use crate::incidents::IncidentKind;
use crate::respond::notices::Notice;

/// What a feed says of itself.
#[derive(Debug, Clone)]
pub struct FeedMeta {
    /// The public base URL links are made from (`https://portal.example/huiying`, no trailing
    /// slash).
    pub base: String,
    /// This feed's own path and query (`/feeds/notices.atom?region=110108`).
    pub self_path: String,
    /// The publisher's name (Chinese / English).
    pub name: String,
    /// The WebSub hubs subscribers may subscribe at (`rel="hub"`).
    pub hubs: Vec<String>,
}

/// The Atom feed's path (and the WebSub topic), and the RSS feed's.
pub const ATOM_PATH: &str = "/feeds/notices.atom";
pub const RSS_PATH: &str = "/feeds/notices.rss";

/// A notice's headline: the first sentence of its first text (Chinese first), if it has text.
pub fn headline(n: &Notice) -> Option<String> {
    cap::texts(n).first().map(|(_, t)| cap::headline(t))
}

fn title(n: &Notice) -> String {
    headline(n).unwrap_or_else(|| n.id.clone())
}

/// The feed's own URL and its WebSub hubs, as `<{tag} rel=…>` (`link` in Atom, `atom:link` in
/// RSS): what WebSub discovery reads.
fn discovery(o: &mut String, tag: &str, media_type: &str, meta: &FeedMeta) {
    let x = cap::xml;
    o.push_str(&format!(
        "  <{tag} rel=\"self\" type=\"{media_type}\" href=\"{}\"/>\n",
        x(&format!("{}{}", meta.base, meta.self_path))
    ));
    for h in &meta.hubs {
        o.push_str(&format!("  <{tag} rel=\"hub\" href=\"{}\"/>\n", x(h)));
    }
}

fn content(n: &Notice) -> String {
    cap::texts(n)
        .iter()
        .map(|(_, t)| t.trim())
        .collect::<Vec<_>>()
        .join("\n\n")
}

/// The CAP alert of an emergency notice (`{base}/cap/{id}.xml`); rebuttals have none.
pub fn cap_url(n: &Notice, base: &str) -> Option<String> {
    (n.kind == IncidentKind::Emergency).then(|| format!("{base}/cap/{}.xml", n.id))
}

/// The feed's `updated`: its newest entry's, or `now` when empty.
fn newest(notices: &[&Notice], now: i64) -> i64 {
    notices.iter().map(|n| cap::sent_at(n)).max().unwrap_or(now)
}

/// An Atom 1.0 feed of `notices` (already filtered and sorted newest first).
pub fn atom(notices: &[&Notice], meta: &FeedMeta, now: i64) -> String {
    let x = cap::xml;
    let mut o = String::with_capacity(4096);
    o.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    o.push_str("<feed xmlns=\"http://www.w3.org/2005/Atom\" xml:lang=\"zh-CN\">\n");
    o.push_str(&format!(
        "  <id>{}</id>\n",
        x(&format!("{}{}", meta.base, meta.self_path))
    ));
    o.push_str(&format!(
        "  <title>{} 官方通告 Official notices</title>\n",
        x(&meta.name)
    ));
    o.push_str(&format!(
        "  <updated>{}</updated>\n",
        cap::cap_time(newest(notices, now))
    ));
    o.push_str(&format!(
        "  <author><name>{}</name></author>\n",
        x(&meta.name)
    ));
    discovery(&mut o, "link", "application/atom+xml", meta);
    o.push_str("  <generator>huiying</generator>\n");
    for n in notices {
        let at = cap::cap_time(cap::sent_at(n));
        o.push_str("  <entry>\n");
        o.push_str(&format!("    <id>urn:huiying:notice:{}</id>\n", x(&n.id)));
        o.push_str(&format!("    <title>{}</title>\n", x(&title(n))));
        o.push_str(&format!(
            "    <updated>{at}</updated>\n    <published>{at}</published>\n"
        ));
        o.push_str(&format!(
            "    <content type=\"text\">{}</content>\n",
            x(&content(n))
        ));
        o.push_str(&format!(
            "    <category term=\"{}\" label=\"{}\"/>\n",
            x(&n.category),
            match n.kind {
                IncidentKind::Rumor => "辟谣 rebuttal",
                _ => "通告 notice",
            }
        ));
        if let Some(r) = &n.region {
            o.push_str(&format!(
                "    <category term=\"{}\" scheme=\"urn:gb:t2260\" label=\"{}\"/>\n",
                x(&r.code),
                x(&r.name)
            ));
        }
        if let Some(u) = cap_url(n, &meta.base) {
            o.push_str(&format!(
                "    <link rel=\"alternate\" type=\"application/cap+xml\" href=\"{}\"/>\n",
                x(&u)
            ));
        }
        o.push_str("  </entry>\n");
    }
    o.push_str("</feed>\n");
    o
}

/// An RSS 2.0 feed of `notices` (already filtered and sorted newest first).
pub fn rss(notices: &[&Notice], meta: &FeedMeta, now: i64) -> String {
    let x = cap::xml;
    let date = |ms: i64| {
        chrono::DateTime::from_timestamp_millis(ms)
            .unwrap_or_default()
            .to_rfc2822()
    };
    let mut o = String::with_capacity(4096);
    o.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<rss version=\"2.0\" xmlns:atom=\"http://www.w3.org/2005/Atom\">\n<channel>\n");
    o.push_str(&format!(
        "  <title>{} 官方通告 Official notices</title>\n",
        x(&meta.name)
    ));
    o.push_str(&format!("  <link>{}</link>\n", x(&meta.base)));
    discovery(&mut o, "atom:link", "application/rss+xml", meta);
    o.push_str("  <description>官方通告与辟谣 Official notices and rebuttals</description>\n");
    o.push_str("  <language>zh-cn</language>\n");
    o.push_str(&format!(
        "  <lastBuildDate>{}</lastBuildDate>\n",
        date(newest(notices, now))
    ));
    for n in notices {
        o.push_str("  <item>\n");
        o.push_str(&format!("    <title>{}</title>\n", x(&title(n))));
        o.push_str(&format!(
            "    <description>{}</description>\n",
            x(&content(n))
        ));
        o.push_str(&format!(
            "    <guid isPermaLink=\"false\">urn:huiying:notice:{}</guid>\n",
            x(&n.id)
        ));
        o.push_str(&format!(
            "    <pubDate>{}</pubDate>\n",
            date(cap::sent_at(n))
        ));
        o.push_str(&format!("    <category>{}</category>\n", x(&n.category)));
        if let Some(u) = cap_url(n, &meta.base) {
            o.push_str(&format!("    <link>{}</link>\n", x(&u)));
        }
        o.push_str("  </item>\n");
    }
    o.push_str("</channel>\n</rss>\n");
    o
}
