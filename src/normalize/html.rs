//! HTML to plain text, for posts that arrive as HTML (Mastodon statuses): tags stripped,
//! `<br>` and paragraph ends as newlines, character references decoded.

/// Mastodon's status HTML as plain text: tags stripped, `<br>` and paragraph ends as newlines,
/// character references decoded.
pub fn html_to_text(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut rest = html;
    while let Some(i) = rest.find(['<', '&']) {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        if rest.starts_with('<') {
            let Some(end) = tag_end(rest) else {
                // A lone `<`: text.
                out.push('<');
                rest = &rest[1..];
                continue;
            };
            let inner = &rest[1..end];
            let name = inner
                .trim_start_matches('/')
                .split(|c: char| !c.is_ascii_alphanumeric())
                .next()
                .unwrap_or("")
                .to_ascii_lowercase();
            let block = matches!(name.as_str(), "p" | "li" | "blockquote" | "pre");
            if name == "br" {
                out.push('\n');
            } else if block && !out.is_empty() && !out.ends_with('\n') {
                // Before an opening and after a closing block: a line break.
                out.push('\n');
            }
            rest = &rest[end + 1..];
        } else {
            let (c, len) = entity(rest).unwrap_or(('&', 1));
            out.push(c);
            rest = &rest[len..];
        }
    }
    out.push_str(rest);
    out.trim().to_string()
}

/// Index of the `>` closing the tag that starts `s` (quote aware), if it is a tag at all.
fn tag_end(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    // `<` followed by a letter, `/`, or `!` starts a tag; anything else is text.
    match b.get(1) {
        Some(c) if c.is_ascii_alphabetic() || *c == b'/' || *c == b'!' => {}
        _ => return None,
    }
    let mut quote = None;
    for (i, &c) in b.iter().enumerate().skip(1) {
        match (quote, c) {
            (None, b'"' | b'\'') => quote = Some(c),
            (Some(q), _) if c == q => quote = None,
            (None, b'>') => return Some(i),
            _ => {}
        }
    }
    None
}

/// Decode the character reference at the start of `s` (which starts with `&`): the character
/// and the length consumed.
fn entity(s: &str) -> Option<(char, usize)> {
    let semi = s.as_bytes().iter().take(12).position(|&c| c == b';')?;
    let name = &s[1..semi];
    let c = if let Some(num) = name.strip_prefix('#') {
        let code = match num.strip_prefix(['x', 'X']) {
            Some(hex) => u32::from_str_radix(hex, 16).ok()?,
            None => num.parse::<u32>().ok()?,
        };
        match char::from_u32(code) {
            Some(c) if code != 0 => c,
            _ => '\u{FFFD}',
        }
    } else {
        match name {
            "amp" => '&',
            "lt" => '<',
            "gt" => '>',
            "quot" => '"',
            "apos" => '\'',
            "nbsp" => ' ',
            _ => return None,
        }
    };
    Some((c, semi + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_to_text_cases() {
        let cases = [
            ("plain", "plain"),
            ("<p>北京海淀区暴雨</p>", "北京海淀区暴雨"),
            (
                r#"<p>北京海淀区暴雨，<a href="https://social.example/tags/暴雨" class="mention hashtag" rel="tag">#<span>暴雨</span></a> 积水严重</p>"#,
                "北京海淀区暴雨，#暴雨 积水严重",
            ),
            ("<p>第一段</p><p>第二段</p>", "第一段\n第二段"),
            ("<p>一<br>二<br />三</p>", "一\n二\n三"),
            (
                "<p>a &amp; b &lt;c&gt; &quot;d&quot; &#39;e&#39; &apos;</p>",
                "a & b <c> \"d\" 'e' '",
            ),
            ("&#26292;&#x96E8;", "暴雨"),
            ("&#0; &#xD800;", "\u{FFFD} \u{FFFD}"),
            ("&unknown; & alone &amp", "&unknown; & alone &amp"),
            ("1 < 2 and 3 > 2", "1 < 2 and 3 > 2"),
            ("<p>x<", "x<"),
            (r#"<a title="a>b" href="x">link</a>"#, "link"),
            (
                r#"<p><span class="h-card"><a href="https://gov.example/@bj" class="u-url mention">@<span>bj</span></a></span> 积水</p>"#,
                "@bj 积水",
            ),
            (
                r#"<p><a href="https://example.com/very/long/path" rel="nofollow noopener" target="_blank"><span class="invisible">https://</span><span class="ellipsis">example.com/very/lon</span><span class="invisible">g/path</span></a></p>"#,
                "https://example.com/very/long/path",
            ),
            ("<p>  </p>", ""),
            ("", ""),
        ];
        for (html, want) in cases {
            assert_eq!(html_to_text(html), want, "{html:?}");
        }
    }
}
