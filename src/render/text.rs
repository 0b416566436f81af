//! Text helpers shared by the platform renderers: escaping untrusted text and truncating to
//! platform limits.
//!
//! Limits are counted in Unicode scalar values (`char`s), the unit Slack and Discord count in,
//! and truncation cuts only at grapheme-cluster boundaries so an emoji, a CJK character or a
//! letter with combining marks is never split.

use unicode_segmentation::UnicodeSegmentation;

pub const ELLIPSIS: char = '…';

/// The number of characters as the platforms count them.
pub fn char_len(s: &str) -> usize {
    s.chars().count()
}

/// Shortens `s` to at most `max` characters, ending in `…` when anything was cut.
pub fn truncate(s: &str, max: usize) -> String {
    if char_len(s) <= max {
        return s.to_string();
    }
    if max == 0 {
        return String::new();
    }
    let budget = max - 1; // room for the ellipsis
    let mut out = String::new();
    let mut used = 0;
    for g in s.graphemes(true) {
        let n = char_len(g);
        if used + n > budget {
            break;
        }
        out.push_str(g);
        used += n;
    }
    // Trailing whitespace before the ellipsis looks like a mistake.
    let trimmed_len = out.trim_end().len();
    out.truncate(trimmed_len);
    out.push(ELLIPSIS);
    out
}

/// [`truncate`] for Slack text that is already escaped: a cut inside `&amp;`, `&lt;` or
/// `&gt;` would leave a stray `&am…` in the channel, so the cut moves before the entity.
pub fn truncate_slack(s: &str, max: usize) -> String {
    let t = truncate(s, max);
    let Some(body) = t.strip_suffix(ELLIPSIS).filter(|_| t != s) else {
        return t;
    };
    match body.rfind('&') {
        Some(amp) if body.len() - amp < "&amp;".len() && !body[amp..].contains(';') => {
            format!("{}{ELLIPSIS}", body[..amp].trim_end())
        }
        _ => t,
    }
}

/// Escapes Slack's three control characters so event text can never form `<!channel>`,
/// `<@U…>`, `<#C…>`, `<!subteam^…>` or `<url|label>`. Slack decodes only these three entities.
/// Runs of three backticks are broken with a zero-width space so event text cannot open a
/// code block that swallows the rest of the message (mrkdwn has no backslash escape).
pub fn escape_slack(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut backticks = 0;
    for c in s.chars() {
        if c == '`' {
            if backticks == 2 {
                out.push('\u{200B}');
                backticks = 0;
            }
            backticks += 1;
        } else {
            backticks = 0;
        }
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

/// Escapes Discord markdown so event text renders literally: no masked links `[x](url)`,
/// no mention syntax `<@…>`, no emphasis, code or quote that could break out of the template's
/// layout, and `@everyone` / `@here` broken with a zero-width space (defence in depth on top of
/// `allowed_mentions: {"parse": []}`).
pub fn escape_discord(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    let mut rest = s;
    while let Some(c) = rest.chars().next() {
        match c {
            '\\' | '*' | '_' | '~' | '`' | '|' | '>' | '<' | '[' | ']' | '#' => {
                out.push('\\');
                out.push(c);
            }
            '@' => {
                out.push('@');
                let after = &rest[1..];
                if after.starts_with("everyone") || after.starts_with("here") {
                    out.push('\u{200B}');
                }
            }
            c => out.push(c),
        }
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// Prefixes every line with `> ` (a quote in both Slack mrkdwn and Discord markdown).
/// The input must already be escaped for the platform.
pub fn quote_lines(escaped: &str) -> String {
    if escaped.trim().is_empty() {
        return String::new();
    }
    escaped
        .lines()
        .map(|l| format!("> {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slack_truncation_never_cuts_an_entity() {
        let escaped = escape_slack("ab <!channel>");
        assert_eq!(escaped, "ab &lt;!channel&gt;");
        for max in 2..escaped.chars().count() {
            let t = truncate_slack(&escaped, max);
            assert!(char_len(&t) <= max, "{t}");
            let cut = t.trim_end_matches(ELLIPSIS);
            assert!(
                !cut.ends_with('&')
                    && !cut.ends_with("&l")
                    && !cut.ends_with("&lt")
                    && !cut.ends_with("&g"),
                "max {max}: {t}"
            );
        }
        assert_eq!(truncate_slack(&escaped, 6), "ab…");
        assert_eq!(truncate_slack("a &amp; b", 100), "a &amp; b");
    }

    #[test]
    fn truncate_keeps_limit_and_marks_the_cut() {
        let s = "a".repeat(10_000);
        let t = truncate(&s, 3000);
        assert_eq!(char_len(&t), 3000);
        assert!(t.ends_with(ELLIPSIS));
        assert_eq!(truncate("short", 10), "short");
    }

    #[test]
    fn truncate_never_splits_a_grapheme() {
        // 'e' + combining acute, family emoji (ZWJ sequence), CJK.
        let s = "e\u{301}".repeat(50) + &"👨‍👩‍👧".repeat(20) + &"漢".repeat(30);
        for max in 1..200 {
            let t = truncate(&s, max);
            assert!(char_len(&t) <= max, "max {max}: {}", char_len(&t));
            let body = t.trim_end_matches(ELLIPSIS);
            assert!(s.starts_with(body));
            assert!(
                !body.ends_with('e') || max >= char_len(&s),
                "split a combining mark at {max}"
            );
        }
    }

    #[test]
    fn slack_escaping_neutralises_control_sequences() {
        let e = escape_slack("<!channel> <@U1> <https://evil|click> & co");
        assert_eq!(
            e,
            "&lt;!channel&gt; &lt;@U1&gt; &lt;https://evil|click&gt; &amp; co"
        );
        assert!(!e.contains('<') && !e.contains('>'));
    }

    #[test]
    fn slack_escaping_breaks_code_fences() {
        let e = escape_slack("a ``` b ```` c");
        assert!(!e.contains("```"), "{e}");
        assert_eq!(e.replace('\u{200B}', ""), "a ``` b ```` c");
    }

    #[test]
    fn discord_escaping_neutralises_links_and_mentions() {
        let e = escape_discord("[click](https://evil) @everyone <@123> **b**");
        assert!(e.contains("\\[click\\](https://evil)"));
        assert!(e.contains("@\u{200B}everyone"));
        assert!(e.contains("\\<@123"));
        assert!(e.contains("\\*\\*b\\*\\*"));
    }
}
