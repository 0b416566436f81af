//! Strict validators for the JSON bodies printbell posts to chat platforms: what the mock chat
//! servers ([`crate::mock_chat`]) use to answer 400, and what the tests and the fuzz target
//! (`fuzz/fuzz_targets/event_pipeline.rs`) check rendered bodies with.
//!
//! * [`slack_problems`]: Slack incoming-webhook body with Block Kit blocks
//!   (reference/chat-platforms.md §1.2, §1.5).
//! * [`discord_problems`]: Discord "Execute Webhook" body
//!   (reference/chat-platforms.md §2.2, §2.4, §2.5 and the official OpenAPI spec,
//!   discord/discord-api-spec `specs/openapi.json`; the subset used here is copied to
//!   `tests/fixtures/discord-webhook-schema.json`, and `tests/api/mock_selftest.rs` checks that
//!   the key lists and limits below still match it).
//! * [`discord_edit_problems`]: Discord "Edit Webhook Message" body.
//!
//! An empty result means "valid". Each problem reads `"<json-pointer>: <what is wrong>"`
//! (the pointer is `(body)` for the whole document), e.g.
//! `"/embeds/0/title: 300 chars, limit 256"`.
//!
//! The validators are deliberately *stricter* than the platforms where a real platform
//! would silently ignore something (unknown keys, e.g. a misspelt `allow_mentions`), because
//! a silently ignored key is a bug in our sender. Lengths are counted in Unicode scalar
//! values (`chars()`); Discord lengths are counted after trimming leading/trailing
//! whitespace, like Discord does.

use serde_json::{Map, Value};
use std::collections::HashSet;
use std::fmt;

/// One validation problem: where (JSON pointer, "" = whole body) and what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub pointer: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.pointer.is_empty() {
            write!(f, "(body): {}", self.message)
        } else {
            write!(f, "{}: {}", self.pointer, self.message)
        }
    }
}

fn strings(problems: Vec<Problem>) -> Vec<String> {
    problems.iter().map(|p| p.to_string()).collect()
}

/// Slack body problems as strings; empty = valid.
pub fn slack_problems(body: &Value) -> Vec<String> {
    strings(slack_problem_list(body))
}

/// Discord execute-webhook body problems as strings; empty = valid.
pub fn discord_problems(body: &Value) -> Vec<String> {
    strings(discord_problem_list(body))
}

/// Discord edit-webhook-message (PATCH) body problems as strings; empty = valid.
pub fn discord_edit_problems(body: &Value) -> Vec<String> {
    strings(discord_edit_problem_list(body))
}

/// Panics with every problem and the pretty-printed body unless `body` is a valid Slack body.
#[track_caller]
pub fn assert_valid_slack(body: &Value) {
    let p = slack_problems(body);
    if !p.is_empty() {
        panic!(
            "invalid Slack body:\n  - {}\nbody: {}",
            p.join("\n  - "),
            serde_json::to_string_pretty(body).unwrap_or_default()
        );
    }
}

/// Panics with every problem and the pretty-printed body unless `body` is a valid Discord body.
#[track_caller]
pub fn assert_valid_discord(body: &Value) {
    let p = discord_problems(body);
    if !p.is_empty() {
        panic!(
            "invalid Discord body:\n  - {}\nbody: {}",
            p.join("\n  - "),
            serde_json::to_string_pretty(body).unwrap_or_default()
        );
    }
}

// ---------------------------------------------------------------------------------------------
// shared helpers
// ---------------------------------------------------------------------------------------------

#[derive(Default)]
struct V {
    problems: Vec<Problem>,
}

impl V {
    fn add(&mut self, pointer: &str, message: impl Into<String>) {
        self.problems.push(Problem {
            pointer: pointer.to_string(),
            message: message.into(),
        });
    }

    /// Reports keys of `obj` not in `allowed`.
    fn keys(&mut self, path: &str, obj: &Map<String, Value>, allowed: &[&str], what: &str) {
        for k in obj.keys() {
            if !allowed.contains(&k.as_str()) {
                self.add(
                    &format!("{path}/{}", escape_pointer(k)),
                    format!(
                        "unknown key {k:?} in {what} (allowed: {})",
                        allowed.join(", ")
                    ),
                );
            }
        }
    }

    fn object<'a>(&mut self, path: &str, v: &'a Value) -> Option<&'a Map<String, Value>> {
        match v {
            Value::Object(m) => Some(m),
            other => {
                self.add(path, format!("expected an object, got {}", kind(other)));
                None
            }
        }
    }

    fn array<'a>(&mut self, path: &str, v: &'a Value) -> Option<&'a Vec<Value>> {
        match v {
            Value::Array(a) => Some(a),
            other => {
                self.add(path, format!("expected an array, got {}", kind(other)));
                None
            }
        }
    }

    fn string<'a>(&mut self, path: &str, v: &'a Value) -> Option<&'a str> {
        match v {
            Value::String(s) => Some(s),
            other => {
                self.add(path, format!("expected a string, got {}", kind(other)));
                None
            }
        }
    }

    fn boolean(&mut self, path: &str, v: &Value) {
        if !v.is_boolean() {
            self.add(path, format!("expected a boolean, got {}", kind(v)));
        }
    }

    fn integer(&mut self, path: &str, v: &Value) -> Option<i128> {
        if let Some(i) = v.as_i64() {
            Some(i as i128)
        } else if let Some(u) = v.as_u64() {
            Some(u as i128)
        } else {
            self.add(path, format!("expected an integer, got {}", kind(v)));
            None
        }
    }

    /// String with `min..=max` chars (counted on `s`, caller decides about trimming).
    fn len(&mut self, path: &str, n: usize, min: usize, max: usize) {
        if n < min {
            if min == 1 {
                self.add(path, "must not be empty");
            } else {
                self.add(path, format!("{n} chars, minimum {min}"));
            }
        } else if n > max {
            self.add(path, format!("{n} chars, limit {max}"));
        }
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn escape_pointer(k: &str) -> String {
    k.replace('~', "~0").replace('/', "~1")
}

fn chars(s: &str) -> usize {
    s.chars().count()
}

fn trimmed_chars(s: &str) -> usize {
    s.trim().chars().count()
}

/// `Some(v)` unless the key is missing or JSON null (Discord treats null as absent).
fn present<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    obj.get(key).filter(|v| !v.is_null())
}

/// Absolute http(s) URL with a host and no raw whitespace.
fn http_url_problem(s: &str, max: usize, allow_attachment: bool) -> Option<String> {
    let n = chars(s);
    if n > max {
        return Some(format!("URL is {n} chars, limit {max}"));
    }
    if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Some(format!("URL {s:?} contains whitespace/control characters"));
    }
    if allow_attachment {
        if let Some(name) = s.strip_prefix("attachment://") {
            return if name.is_empty() {
                Some("attachment:// URL without a file name".into())
            } else {
                None
            };
        }
    }
    match url::Url::parse(s) {
        Ok(u)
            if (u.scheme() == "http" || u.scheme() == "https")
                && u.host_str().is_some_and(|h| !h.is_empty()) =>
        {
            None
        }
        Ok(u) => Some(format!(
            "URL {s:?} must be http(s) with a host{} (scheme {:?})",
            if allow_attachment {
                " or attachment://NAME"
            } else {
                ""
            },
            u.scheme()
        )),
        Err(e) => Some(format!("URL {s:?} does not parse: {e}")),
    }
}

/// RFC 3339 / ISO 8601 date-time as in JSON Schema `format: date-time`:
/// `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`.
pub fn is_rfc3339(s: &str) -> bool {
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| -> Option<u32> {
        if r.end > b.len() || !b[r.clone()].iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(&b[r]).ok()?.parse().ok()
    };
    if b.len() < 20 {
        return false;
    }
    let (Some(y), Some(mo), Some(d), Some(h), Some(mi), Some(sec)) = (
        digits(0..4),
        digits(5..7),
        digits(8..10),
        digits(11..13),
        digits(14..16),
        digits(17..19),
    ) else {
        return false;
    };
    if b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return false;
    }
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let mdays = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if !(1..=12).contains(&mo)
        || d == 0
        || d > mdays[mo as usize - 1]
        || h > 23
        || mi > 59
        || sec > 60
    {
        return false;
    }
    let mut i = 19;
    if b[i] == b'.' {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return false;
        }
    }
    match &b[i..] {
        [b'Z' | b'z'] => true,
        [sign, ..] if *sign == b'+' || *sign == b'-' => {
            b.len() == i + 6
                && b[i + 3] == b':'
                && digits(i + 1..i + 3).is_some_and(|oh| oh <= 23)
                && digits(i + 4..i + 6).is_some_and(|om| om <= 59)
        }
        _ => false,
    }
}

fn is_snowflake(s: &str) -> bool {
    // SnowflakeType: pattern ^(0|[1-9][0-9]*)$, and it must fit in a u64.
    (s == "0" || (!s.starts_with('0') && !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit())))
        && s.parse::<u64>().is_ok()
}

// ---------------------------------------------------------------------------------------------
// Slack
// ---------------------------------------------------------------------------------------------

/// Top-level keys an incoming webhook accepts (chat-platforms.md §1.2).
pub const SLACK_TOP_KEYS: &[&str] = &[
    "text",
    "blocks",
    "attachments",
    "thread_ts",
    "mrkdwn",
    "unfurl_links",
    "unfurl_media",
    "metadata",
    "username",
    "icon_emoji",
    "icon_url",
    "channel",
];
/// Limits from chat-platforms.md §1.5 (docs.slack.dev block reference pages).
pub const SLACK_MAX_TEXT: usize = 40_000;
pub const SLACK_MAX_BLOCKS: usize = 50;
pub const SLACK_MAX_ATTACHMENTS: usize = 100;
pub const SLACK_MAX_BLOCK_ID: usize = 255;
pub const SLACK_MAX_TEXT_OBJECT: usize = 3000;
pub const SLACK_MAX_HEADER: usize = 150;
pub const SLACK_MAX_SECTION_FIELDS: usize = 10;
pub const SLACK_MAX_SECTION_FIELD: usize = 2000;
pub const SLACK_MAX_CONTEXT_ELEMENTS: usize = 10;
pub const SLACK_MAX_IMAGE_URL: usize = 3000;
pub const SLACK_MAX_ALT_TEXT: usize = 2000;
pub const SLACK_MAX_IMAGE_TITLE: usize = 2000;
pub const SLACK_MAX_MARKDOWN_BLOCK: usize = 12_000;
/// Undocumented cumulative cap (`msg_blocks_too_long`, observed ~12–13k; bolt-js #2509/#2867):
/// sum of all text-object texts and markdown-block texts in `blocks` (alt_text not counted).
pub const SLACK_MAX_TOTAL_BLOCK_TEXT: usize = 12_000;

/// Full problem list for a Slack incoming-webhook body.
pub fn slack_problem_list(body: &Value) -> Vec<Problem> {
    let mut v = V::default();
    let Some(top) = v.object("", body) else {
        return v.problems;
    };
    v.keys("", top, SLACK_TOP_KEYS, "the message");

    // text: always required here (fallback for notifications / screen readers; Slack `no_text`).
    match top.get("text") {
        None | Some(Value::Null) => v.add(
            "/text",
            "required (no_text): always send a non-empty fallback `text`",
        ),
        Some(t) => {
            if let Some(s) = v.string("/text", t) {
                if s.trim().is_empty() {
                    v.add("/text", "must not be empty or whitespace-only (no_text)");
                } else if chars(s) > SLACK_MAX_TEXT {
                    v.add(
                        "/text",
                        format!("{} chars, limit {SLACK_MAX_TEXT}", chars(s)),
                    );
                }
            }
        }
    }
    for key in ["mrkdwn", "unfurl_links", "unfurl_media"] {
        if let Some(b) = top.get(key) {
            v.boolean(&format!("/{key}"), b);
        }
    }
    for key in ["thread_ts", "username", "icon_emoji", "channel"] {
        if let Some(s) = top.get(key) {
            if let Some(s) = v.string(&format!("/{key}"), s) {
                if s.trim().is_empty() {
                    v.add(&format!("/{key}"), "must not be empty");
                }
            }
        }
    }
    if let Some(u) = top.get("icon_url") {
        if let Some(s) = v.string("/icon_url", u) {
            if let Some(p) = http_url_problem(s, SLACK_MAX_IMAGE_URL, false) {
                v.add("/icon_url", p);
            }
        }
    }
    if let Some(m) = top.get("metadata") {
        if let Some(m) = v.object("/metadata", m) {
            v.keys("/metadata", m, &["event_type", "event_payload"], "metadata");
            match m.get("event_type") {
                Some(t) => {
                    v.string("/metadata/event_type", t);
                }
                None => v.add("/metadata/event_type", "required"),
            }
            match m.get("event_payload") {
                Some(p) => {
                    v.object("/metadata/event_payload", p);
                }
                None => v.add("/metadata/event_payload", "required"),
            }
        }
    }
    if let Some(a) = top.get("attachments") {
        if let Some(a) = v.array("/attachments", a) {
            if a.len() > SLACK_MAX_ATTACHMENTS {
                v.add(
                    "/attachments",
                    format!(
                        "{} attachments, limit {SLACK_MAX_ATTACHMENTS} (too_many_attachments)",
                        a.len()
                    ),
                );
            }
            for (i, att) in a.iter().enumerate() {
                // Legacy attachments are not validated in depth.
                v.object(&format!("/attachments/{i}"), att);
            }
        }
    }
    if let Some(blocks) = top.get("blocks") {
        if let Some(blocks) = v.array("/blocks", blocks) {
            slack_blocks(&mut v, blocks);
        }
    }
    v.problems
}

fn slack_blocks(v: &mut V, blocks: &[Value]) {
    if blocks.len() > SLACK_MAX_BLOCKS {
        v.add(
            "/blocks",
            format!("{} blocks, limit {SLACK_MAX_BLOCKS}", blocks.len()),
        );
    }
    let mut ids = HashSet::new();
    let mut total = 0usize;
    for (i, b) in blocks.iter().enumerate() {
        let p = format!("/blocks/{i}");
        let Some(b) = v.object(&p, b) else { continue };
        if let Some(id) = b.get("block_id") {
            if let Some(s) = v.string(&format!("{p}/block_id"), id) {
                v.len(&format!("{p}/block_id"), chars(s), 1, SLACK_MAX_BLOCK_ID);
                if !ids.insert(s.to_string()) {
                    v.add(
                        &format!("{p}/block_id"),
                        format!("duplicate block_id {s:?}"),
                    );
                }
            }
        }
        let ty = match b.get("type") {
            Some(Value::String(t)) => t.as_str(),
            Some(other) => {
                v.add(
                    &format!("{p}/type"),
                    format!("expected a string, got {}", kind(other)),
                );
                continue;
            }
            None => {
                v.add(&format!("{p}/type"), "required");
                continue;
            }
        };
        match ty {
            "header" => {
                v.keys(&p, b, &["type", "text", "block_id"], "a header block");
                match b.get("text") {
                    Some(t) => total += text_object(v, &format!("{p}/text"), t, SLACK_MAX_HEADER, &["plain_text"]),
                    None => v.add(&format!("{p}/text"), "required"),
                }
            }
            "section" => {
                v.keys(&p, b, &["type", "text", "fields", "accessory", "block_id", "expand"], "a section block");
                if let Some(t) = b.get("text") {
                    total += text_object(v, &format!("{p}/text"), t, SLACK_MAX_TEXT_OBJECT, &["plain_text", "mrkdwn"]);
                }
                if let Some(f) = b.get("fields") {
                    if let Some(f) = v.array(&format!("{p}/fields"), f) {
                        if f.is_empty() {
                            v.add(&format!("{p}/fields"), "must not be an empty array");
                        }
                        if f.len() > SLACK_MAX_SECTION_FIELDS {
                            v.add(&format!("{p}/fields"), format!("{} fields, limit {SLACK_MAX_SECTION_FIELDS}", f.len()));
                        }
                        for (j, t) in f.iter().enumerate() {
                            total += text_object(v, &format!("{p}/fields/{j}"), t, SLACK_MAX_SECTION_FIELD, &["plain_text", "mrkdwn"]);
                        }
                    }
                }
                if b.get("text").is_none() && b.get("fields").is_none() {
                    v.add(&p, "a section block needs `text` or `fields`");
                }
                if let Some(a) = b.get("accessory") {
                    let ap = format!("{p}/accessory");
                    if let Some(a) = v.object(&ap, a) {
                        if a.get("type").and_then(Value::as_str) == Some("image") {
                            image_element(v, &ap, a);
                        } else {
                            v.add(&format!("{ap}/type"), "only image accessories are supported by this validator");
                        }
                    }
                }
                if let Some(e) = b.get("expand") {
                    v.boolean(&format!("{p}/expand"), e);
                }
            }
            "image" => {
                v.keys(&p, b, &["type", "image_url", "slack_file", "alt_text", "title", "block_id"], "an image block");
                image_source(v, &p, b);
                alt_text(v, &p, b);
                if let Some(t) = b.get("title") {
                    total += text_object(v, &format!("{p}/title"), t, SLACK_MAX_IMAGE_TITLE, &["plain_text"]);
                }
            }
            "context" => {
                v.keys(&p, b, &["type", "elements", "block_id"], "a context block");
                match b.get("elements") {
                    None => v.add(&format!("{p}/elements"), "required"),
                    Some(e) => {
                        if let Some(e) = v.array(&format!("{p}/elements"), e) {
                            if e.is_empty() || e.len() > SLACK_MAX_CONTEXT_ELEMENTS {
                                v.add(&format!("{p}/elements"), format!("{} elements, must be 1..={SLACK_MAX_CONTEXT_ELEMENTS}", e.len()));
                            }
                            for (j, el) in e.iter().enumerate() {
                                let ep = format!("{p}/elements/{j}");
                                let Some(o) = v.object(&ep, el) else { continue };
                                match o.get("type").and_then(Value::as_str) {
                                    Some("image") => image_element(v, &ep, o),
                                    Some("plain_text" | "mrkdwn") => {
                                        total += text_object(v, &ep, el, SLACK_MAX_TEXT_OBJECT, &["plain_text", "mrkdwn"])
                                    }
                                    other => v.add(
                                        &format!("{ep}/type"),
                                        format!("context elements must be image, plain_text or mrkdwn, got {other:?}"),
                                    ),
                                }
                            }
                        }
                    }
                }
            }
            "divider" => v.keys(&p, b, &["type", "block_id"], "a divider block"),
            "markdown" => {
                v.keys(&p, b, &["type", "text", "block_id"], "a markdown block");
                match b.get("text") {
                    None => v.add(&format!("{p}/text"), "required"),
                    Some(t) => {
                        if let Some(s) = v.string(&format!("{p}/text"), t) {
                            if s.trim().is_empty() {
                                v.add(&format!("{p}/text"), "must not be empty");
                            } else {
                                v.len(&format!("{p}/text"), chars(s), 1, SLACK_MAX_MARKDOWN_BLOCK);
                            }
                            total += chars(s);
                        }
                    }
                }
            }
            other => v.add(
                &format!("{p}/type"),
                format!("unknown/unsupported block type {other:?} (known: header, section, image, context, divider, markdown)"),
            ),
        }
    }
    if total > SLACK_MAX_TOTAL_BLOCK_TEXT {
        v.add(
            "/blocks",
            format!("total text in blocks is {total} chars, limit {SLACK_MAX_TOTAL_BLOCK_TEXT} (msg_blocks_too_long)"),
        );
    }
}

/// Validates a text object; returns its char count (0 when invalid) for the cumulative cap.
fn text_object(v: &mut V, p: &str, t: &Value, max: usize, types: &[&str]) -> usize {
    let Some(o) = v.object(p, t) else { return 0 };
    let ty = o.get("type").and_then(Value::as_str);
    match ty {
        Some(ty) if types.contains(&ty) => {}
        Some(ty) => v.add(
            &format!("{p}/type"),
            format!("text object type must be one of {types:?}, got {ty:?}"),
        ),
        None => v.add(&format!("{p}/type"), format!("required, one of {types:?}")),
    }
    v.keys(
        p,
        o,
        &["type", "text", "emoji", "verbatim"],
        "a text object",
    );
    if ty == Some("plain_text") && o.contains_key("verbatim") {
        v.add(&format!("{p}/verbatim"), "not allowed on plain_text");
    }
    if ty == Some("mrkdwn") && o.contains_key("emoji") {
        v.add(&format!("{p}/emoji"), "not allowed on mrkdwn");
    }
    for k in ["emoji", "verbatim"] {
        if let Some(b) = o.get(k) {
            v.boolean(&format!("{p}/{k}"), b);
        }
    }
    match o.get("text") {
        None => {
            v.add(&format!("{p}/text"), "required");
            0
        }
        Some(s) => match v.string(&format!("{p}/text"), s) {
            Some(s) => {
                if s.trim().is_empty() {
                    v.add(&format!("{p}/text"), "must not be empty or whitespace-only");
                } else {
                    v.len(&format!("{p}/text"), chars(s), 1, max);
                }
                chars(s)
            }
            None => 0,
        },
    }
}

fn image_source(v: &mut V, p: &str, o: &Map<String, Value>) {
    match (o.get("image_url"), o.get("slack_file")) {
        (Some(_), Some(_)) => v.add(p, "image_url and slack_file are mutually exclusive"),
        (None, None) => v.add(&format!("{p}/image_url"), "required (or slack_file)"),
        (Some(u), None) => {
            if let Some(s) = v.string(&format!("{p}/image_url"), u) {
                if let Some(msg) = http_url_problem(s, SLACK_MAX_IMAGE_URL, false) {
                    v.add(&format!("{p}/image_url"), msg);
                }
            }
        }
        (None, Some(f)) => {
            if let Some(f) = v.object(&format!("{p}/slack_file"), f) {
                v.keys(&format!("{p}/slack_file"), f, &["url", "id"], "slack_file");
            }
        }
    }
}

fn alt_text(v: &mut V, p: &str, o: &Map<String, Value>) {
    match o.get("alt_text") {
        None => v.add(&format!("{p}/alt_text"), "required"),
        Some(a) => {
            if let Some(s) = v.string(&format!("{p}/alt_text"), a) {
                if s.trim().is_empty() {
                    v.add(&format!("{p}/alt_text"), "must not be empty");
                } else {
                    v.len(&format!("{p}/alt_text"), chars(s), 1, SLACK_MAX_ALT_TEXT);
                }
            }
        }
    }
}

fn image_element(v: &mut V, p: &str, o: &Map<String, Value>) {
    v.keys(
        p,
        o,
        &["type", "image_url", "slack_file", "alt_text"],
        "an image element",
    );
    image_source(v, p, o);
    alt_text(v, p, o);
}

/// Live Slack control sequences (`<!channel>`, `<!here>`, `<!everyone>`, `<!subteam^…>`,
/// `<@U…>`, `<#C…>`, `<http…|…>` links, `<mailto:…>`) found in mrkdwn-rendered text
/// (top-level `text`, mrkdwn text objects, markdown blocks). Each entry: `"<pointer>: <token>"`.
/// Useful to assert that untrusted event text was escaped. plain_text objects are skipped.
pub fn slack_live_tokens(body: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let mut scan = |p: &str, s: &str| {
        let mut rest = s;
        while let Some(i) = rest.find('<') {
            let after = &rest[i + 1..];
            let Some(j) = after.find('>') else { break };
            let inner = &after[..j];
            let live = ["!", "@", "#", "http://", "https://", "mailto:"]
                .iter()
                .any(|pre| inner.starts_with(pre));
            if live && !inner.contains('<') {
                out.push(format!("{p}: <{inner}>"));
            }
            rest = &after[j + 1..];
        }
    };
    if let Some(t) = body.get("text").and_then(Value::as_str) {
        scan("/text", t);
    }
    fn walk(v: &Value, p: &str, scan: &mut dyn FnMut(&str, &str)) {
        match v {
            Value::Object(o) => {
                let ty = o.get("type").and_then(Value::as_str);
                if matches!(ty, Some("mrkdwn" | "markdown")) {
                    if let Some(t) = o.get("text").and_then(Value::as_str) {
                        scan(&format!("{p}/text"), t);
                    }
                }
                for (k, c) in o {
                    walk(c, &format!("{p}/{}", escape_pointer(k)), scan);
                }
            }
            Value::Array(a) => {
                for (i, c) in a.iter().enumerate() {
                    walk(c, &format!("{p}/{i}"), scan);
                }
            }
            _ => {}
        }
    }
    if let Some(b) = body.get("blocks") {
        walk(b, "/blocks", &mut scan);
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Discord
// ---------------------------------------------------------------------------------------------

/// `IncomingWebhookRequestPartial.properties` (execute webhook JSON body).
pub const DISCORD_EXECUTE_KEYS: &[&str] = &[
    "content",
    "embeds",
    "allowed_mentions",
    "components",
    "attachments",
    "poll",
    "tts",
    "flags",
    "username",
    "avatar_url",
    "thread_name",
    "applied_tags",
];
/// `IncomingWebhookUpdateRequestPartial.properties` (edit webhook message JSON body).
pub const DISCORD_EDIT_KEYS: &[&str] = &[
    "content",
    "embeds",
    "allowed_mentions",
    "components",
    "attachments",
    "poll",
    "flags",
];
/// `RichEmbed.properties`.
pub const DISCORD_EMBED_KEYS: &[&str] = &[
    "type",
    "url",
    "title",
    "color",
    "timestamp",
    "description",
    "author",
    "image",
    "thumbnail",
    "footer",
    "fields",
    "provider",
    "video",
];
/// `RichEmbedField.properties` (required: name, value).
pub const DISCORD_FIELD_KEYS: &[&str] = &["name", "value", "inline"];
/// `RichEmbedFooter.properties`.
pub const DISCORD_FOOTER_KEYS: &[&str] = &["text", "icon_url"];
/// `RichEmbedAuthor.properties`.
pub const DISCORD_AUTHOR_KEYS: &[&str] = &["name", "url", "icon_url"];
/// `RichEmbedImage` / `RichEmbedThumbnail` / `RichEmbedVideo` `.properties` (identical).
pub const DISCORD_MEDIA_KEYS: &[&str] = &[
    "url",
    "width",
    "height",
    "placeholder",
    "placeholder_version",
    "is_animated",
    "description",
];
/// `RichEmbedProvider.properties`.
pub const DISCORD_PROVIDER_KEYS: &[&str] = &["name", "url"];
/// `MessageAllowedMentionsRequest.properties`.
pub const DISCORD_ALLOWED_MENTIONS_KEYS: &[&str] = &["parse", "users", "roles", "replied_user"];
/// `AllowedMentionTypes` consts.
pub const DISCORD_MENTION_TYPES: &[&str] = &["users", "roles", "everyone"];
/// `MessageAttachmentRequest.properties` (required: id).
pub const DISCORD_ATTACHMENT_KEYS: &[&str] = &[
    "id",
    "filename",
    "description",
    "duration_secs",
    "waveform",
    "title",
    "is_spoiler",
    "is_remix",
];
/// `PollCreateRequest.properties` (required: question, answers).
pub const DISCORD_POLL_KEYS: &[&str] = &[
    "question",
    "answers",
    "allow_multiselect",
    "layout_type",
    "duration",
];

/// `(schema, property, maxLength/maxItems/maximum)` as in the OpenAPI spec; checked against
/// `tests/fixtures/discord-webhook-schema.json` by the self-tests.
pub const DISCORD_SCHEMA_LIMITS: &[(&str, &str, &str, u64)] = &[
    (
        "IncomingWebhookRequestPartial",
        "content",
        "maxLength",
        2000,
    ),
    ("IncomingWebhookRequestPartial", "embeds", "maxItems", 10),
    (
        "IncomingWebhookRequestPartial",
        "components",
        "maxItems",
        40,
    ),
    (
        "IncomingWebhookRequestPartial",
        "attachments",
        "maxItems",
        10,
    ),
    ("IncomingWebhookRequestPartial", "username", "minLength", 1),
    ("IncomingWebhookRequestPartial", "username", "maxLength", 80),
    (
        "IncomingWebhookRequestPartial",
        "avatar_url",
        "maxLength",
        2048,
    ),
    (
        "IncomingWebhookRequestPartial",
        "thread_name",
        "maxLength",
        100,
    ),
    (
        "IncomingWebhookRequestPartial",
        "applied_tags",
        "maxItems",
        5,
    ),
    ("RichEmbed", "url", "maxLength", 2048),
    ("RichEmbed", "title", "maxLength", 256),
    ("RichEmbed", "description", "maxLength", 4096),
    ("RichEmbed", "color", "maximum", 16_777_215),
    ("RichEmbed", "color", "minimum", 0),
    ("RichEmbed", "fields", "maxItems", 25),
    ("RichEmbedField", "name", "maxLength", 256),
    ("RichEmbedField", "value", "maxLength", 1024),
    ("RichEmbedFooter", "text", "maxLength", 2048),
    ("RichEmbedFooter", "icon_url", "maxLength", 2048),
    ("RichEmbedAuthor", "name", "maxLength", 256),
    ("RichEmbedAuthor", "url", "maxLength", 2048),
    ("RichEmbedAuthor", "icon_url", "maxLength", 2048),
    ("RichEmbedImage", "url", "maxLength", 2048),
    ("RichEmbedImage", "description", "maxLength", 4096),
    ("RichEmbedThumbnail", "url", "maxLength", 2048),
    ("MessageAllowedMentionsRequest", "users", "maxItems", 100),
    ("MessageAllowedMentionsRequest", "roles", "maxItems", 100),
];

pub const DISCORD_MAX_CONTENT: usize = 2000;
pub const DISCORD_MAX_EMBEDS: usize = 10;
pub const DISCORD_MAX_TITLE: usize = 256;
pub const DISCORD_MAX_DESCRIPTION: usize = 4096;
pub const DISCORD_MAX_FIELDS: usize = 25;
pub const DISCORD_MAX_FIELD_NAME: usize = 256;
pub const DISCORD_MAX_FIELD_VALUE: usize = 1024;
pub const DISCORD_MAX_FOOTER: usize = 2048;
pub const DISCORD_MAX_AUTHOR: usize = 256;
pub const DISCORD_MAX_URL: usize = 2048;
pub const DISCORD_MAX_COLOR: i128 = 16_777_215;
/// Not in the spec (docs, message#embed-object-embed-limits): sum over all embeds of
/// title + description + field names + field values + footer.text + author.name.
pub const DISCORD_MAX_EMBED_TOTAL: usize = 6000;
/// Only flags a webhook may set (chat-platforms.md §2.2): SUPPRESS_EMBEDS,
/// SUPPRESS_NOTIFICATIONS, IS_COMPONENTS_V2.
pub const DISCORD_SUPPRESS_EMBEDS: i128 = 1 << 2;
pub const DISCORD_SUPPRESS_NOTIFICATIONS: i128 = 1 << 12;
pub const DISCORD_IS_COMPONENTS_V2: i128 = 1 << 15;

/// Message used for the "empty message" problem (Discord code 50006).
pub const DISCORD_EMPTY_MESSAGE: &str =
    "cannot send an empty message: need non-empty content, embeds, components, poll or attachments";

/// Full problem list for a Discord execute-webhook body.
pub fn discord_problem_list(body: &Value) -> Vec<Problem> {
    discord_body(body, false)
}

/// Full problem list for a Discord edit-webhook-message body.
pub fn discord_edit_problem_list(body: &Value) -> Vec<Problem> {
    discord_body(body, true)
}

fn discord_body(body: &Value, edit: bool) -> Vec<Problem> {
    let mut v = V::default();
    let Some(top) = v.object("", body) else {
        return v.problems;
    };
    v.keys(
        "",
        top,
        if edit {
            DISCORD_EDIT_KEYS
        } else {
            DISCORD_EXECUTE_KEYS
        },
        if edit {
            "an edit-webhook-message body (IncomingWebhookUpdateRequestPartial)"
        } else {
            "an execute-webhook body (IncomingWebhookRequestPartial)"
        },
    );

    let mut has_content = false;
    if let Some(c) = present(top, "content") {
        if let Some(s) = v.string("/content", c) {
            v.len("/content", trimmed_chars(s), 0, DISCORD_MAX_CONTENT);
            has_content = !s.trim().is_empty();
        }
    }
    let mut has_embeds = false;
    if let Some(e) = present(top, "embeds") {
        if let Some(e) = v.array("/embeds", e) {
            has_embeds = !e.is_empty();
            if e.len() > DISCORD_MAX_EMBEDS {
                v.add(
                    "/embeds",
                    format!("{} embeds, limit {DISCORD_MAX_EMBEDS}", e.len()),
                );
            }
            let mut total = 0;
            for (i, emb) in e.iter().enumerate() {
                total += embed(&mut v, &format!("/embeds/{i}"), emb);
            }
            if total > DISCORD_MAX_EMBED_TOTAL {
                v.add(
                    "/embeds",
                    format!("embed text totals {total} chars (title+description+fields+footer+author over all embeds), limit {DISCORD_MAX_EMBED_TOTAL}"),
                );
            }
        }
    }
    if let Some(am) = present(top, "allowed_mentions") {
        allowed_mentions(&mut v, am);
    }
    let mut has_components = false;
    if let Some(c) = present(top, "components") {
        if let Some(c) = v.array("/components", c) {
            has_components = !c.is_empty();
            if c.len() > 40 {
                v.add("/components", format!("{} components, limit 40", c.len()));
            }
            // Components are only shape-checked (printbell does not send them).
            for (i, comp) in c.iter().enumerate() {
                let p = format!("/components/{i}");
                if let Some(o) = v.object(&p, comp) {
                    match o.get("type") {
                        Some(t) => {
                            v.integer(&format!("{p}/type"), t);
                        }
                        None => v.add(&format!("{p}/type"), "required"),
                    }
                }
            }
        }
    }
    let mut has_attachments = false;
    if let Some(a) = present(top, "attachments") {
        if let Some(a) = v.array("/attachments", a) {
            has_attachments = !a.is_empty();
            if a.len() > 10 {
                v.add("/attachments", format!("{} attachments, limit 10", a.len()));
            }
            for (i, att) in a.iter().enumerate() {
                let p = format!("/attachments/{i}");
                let Some(o) = v.object(&p, att) else { continue };
                v.keys(
                    &p,
                    o,
                    DISCORD_ATTACHMENT_KEYS,
                    "an attachment (MessageAttachmentRequest)",
                );
                match o.get("id") {
                    Some(Value::String(s)) if is_snowflake(s) => {}
                    Some(Value::Number(n)) if n.is_u64() => {}
                    Some(other) => v.add(
                        &format!("{p}/id"),
                        format!("must be a snowflake, got {other}"),
                    ),
                    None => v.add(&format!("{p}/id"), "required"),
                }
                if let Some(f) = present(o, "filename") {
                    if let Some(s) = v.string(&format!("{p}/filename"), f) {
                        v.len(&format!("{p}/filename"), chars(s), 1, 1024);
                    }
                }
                for k in ["description", "title"] {
                    if let Some(f) = present(o, k) {
                        if let Some(s) = v.string(&format!("{p}/{k}"), f) {
                            v.len(&format!("{p}/{k}"), chars(s), 0, 1024);
                        }
                    }
                }
                for k in ["is_spoiler", "is_remix"] {
                    if let Some(b) = present(o, k) {
                        v.boolean(&format!("{p}/{k}"), b);
                    }
                }
            }
        }
    }
    let mut has_poll = false;
    if let Some(p) = present(top, "poll") {
        has_poll = true;
        poll(&mut v, p);
    }
    if let Some(t) = present(top, "tts") {
        v.boolean("/tts", t);
    }
    if let Some(f) = present(top, "flags") {
        if let Some(f) = v.integer("/flags", f) {
            let allowed =
                DISCORD_SUPPRESS_EMBEDS | DISCORD_SUPPRESS_NOTIFICATIONS | DISCORD_IS_COMPONENTS_V2;
            if f < 0 || f & !allowed != 0 {
                v.add(
                    "/flags",
                    format!("{f} sets bits a webhook may not set (allowed: SUPPRESS_EMBEDS 4, SUPPRESS_NOTIFICATIONS 4096, IS_COMPONENTS_V2 32768)"),
                );
            }
            if f >= 0 && f & DISCORD_IS_COMPONENTS_V2 != 0 {
                for k in ["content", "embeds", "poll"] {
                    if present(top, k).is_some() {
                        v.add(
                            &format!("/{k}"),
                            "not allowed together with flag IS_COMPONENTS_V2",
                        );
                    }
                }
            }
        }
    }
    if let Some(u) = present(top, "username") {
        if let Some(s) = v.string("/username", u) {
            v.len("/username", trimmed_chars(s), 1, 80);
            let lower = s.to_lowercase();
            for banned in ["clyde", "discord"] {
                if lower.contains(banned) {
                    v.add("/username", format!("must not contain {banned:?}"));
                }
            }
        }
    }
    if let Some(u) = present(top, "avatar_url") {
        if let Some(s) = v.string("/avatar_url", u) {
            if let Some(msg) = http_url_problem(s, DISCORD_MAX_URL, false) {
                v.add("/avatar_url", msg);
            }
        }
    }
    if let Some(t) = present(top, "thread_name") {
        if let Some(s) = v.string("/thread_name", t) {
            v.len("/thread_name", trimmed_chars(s), 0, 100);
        }
    }
    if let Some(t) = present(top, "applied_tags") {
        if let Some(a) = v.array("/applied_tags", t) {
            if a.len() > 5 {
                v.add("/applied_tags", format!("{} tags, limit 5", a.len()));
            }
            for (i, s) in a.iter().enumerate() {
                if !s.as_str().is_some_and(is_snowflake) {
                    v.add(
                        &format!("/applied_tags/{i}"),
                        format!("must be a snowflake string, got {s}"),
                    );
                }
            }
        }
    }
    let non_empty = has_content || has_embeds || has_components || has_poll || has_attachments;
    if !edit && !non_empty {
        v.add("", DISCORD_EMPTY_MESSAGE);
    }
    v.problems
}

/// Validates one embed; returns its contribution to the 6000-char total.
fn embed(v: &mut V, p: &str, e: &Value) -> usize {
    let Some(o) = v.object(p, e) else { return 0 };
    v.keys(p, o, DISCORD_EMBED_KEYS, "an embed (RichEmbed)");
    let mut total = 0;
    let mut has_visible = false;

    let text = |v: &mut V, key: &str, max: usize, has_visible: &mut bool| -> usize {
        match present(o, key) {
            Some(t) => match v.string(&format!("{p}/{key}"), t) {
                Some(s) => {
                    let n = trimmed_chars(s);
                    v.len(&format!("{p}/{key}"), n, 0, max);
                    if n > 0 {
                        *has_visible = true;
                    }
                    n
                }
                None => 0,
            },
            None => 0,
        }
    };
    total += text(v, "title", DISCORD_MAX_TITLE, &mut has_visible);
    total += text(v, "description", DISCORD_MAX_DESCRIPTION, &mut has_visible);

    if let Some(t) = present(o, "type") {
        if let Some(s) = v.string(&format!("{p}/type"), t) {
            if s != "rich" {
                v.add(
                    &format!("{p}/type"),
                    format!("webhook embeds are always \"rich\", got {s:?}"),
                );
            }
        }
    }
    if let Some(u) = present(o, "url") {
        if let Some(s) = v.string(&format!("{p}/url"), u) {
            if let Some(msg) = http_url_problem(s, DISCORD_MAX_URL, false) {
                v.add(&format!("{p}/url"), msg);
            }
        }
    }
    if let Some(c) = present(o, "color") {
        if let Some(c) = v.integer(&format!("{p}/color"), c) {
            if !(0..=DISCORD_MAX_COLOR).contains(&c) {
                v.add(
                    &format!("{p}/color"),
                    format!("{c} out of range 0..=16777215 (0xFFFFFF)"),
                );
            }
        }
    }
    if let Some(t) = present(o, "timestamp") {
        if let Some(s) = v.string(&format!("{p}/timestamp"), t) {
            if !is_rfc3339(s) {
                v.add(
                    &format!("{p}/timestamp"),
                    format!("{s:?} is not an RFC 3339 date-time"),
                );
            }
        }
    }
    if let Some(a) = present(o, "author") {
        let ap = format!("{p}/author");
        if let Some(a) = v.object(&ap, a) {
            has_visible = true;
            v.keys(
                &ap,
                a,
                DISCORD_AUTHOR_KEYS,
                "an embed author (RichEmbedAuthor)",
            );
            match present(a, "name") {
                Some(n) => {
                    if let Some(s) = v.string(&format!("{ap}/name"), n) {
                        let n = trimmed_chars(s);
                        v.len(&format!("{ap}/name"), n, 1, DISCORD_MAX_AUTHOR);
                        total += n;
                    }
                }
                None => v.add(&format!("{ap}/name"), "required"),
            }
            url_prop(v, &ap, a, "url", false);
            url_prop(v, &ap, a, "icon_url", true);
        }
    }
    for key in ["image", "thumbnail", "video"] {
        if let Some(m) = present(o, key) {
            let mp = format!("{p}/{key}");
            if let Some(m) = v.object(&mp, m) {
                has_visible = true;
                v.keys(
                    &mp,
                    m,
                    DISCORD_MEDIA_KEYS,
                    "an embed image/thumbnail/video (RichEmbedImage)",
                );
                if present(m, "url").is_none() {
                    v.add(&format!("{mp}/url"), "required");
                }
                url_prop(v, &mp, m, "url", true);
                for k in ["width", "height", "placeholder_version"] {
                    if let Some(x) = present(m, k) {
                        v.integer(&format!("{mp}/{k}"), x);
                    }
                }
                if let Some(x) = present(m, "is_animated") {
                    v.boolean(&format!("{mp}/is_animated"), x);
                }
                if let Some(x) = present(m, "placeholder") {
                    if let Some(s) = v.string(&format!("{mp}/placeholder"), x) {
                        v.len(&format!("{mp}/placeholder"), chars(s), 0, 64);
                    }
                }
                if let Some(x) = present(m, "description") {
                    if let Some(s) = v.string(&format!("{mp}/description"), x) {
                        v.len(&format!("{mp}/description"), trimmed_chars(s), 0, 4096);
                    }
                }
            }
        }
    }
    if let Some(pr) = present(o, "provider") {
        let pp = format!("{p}/provider");
        if let Some(pr) = v.object(&pp, pr) {
            v.keys(
                &pp,
                pr,
                DISCORD_PROVIDER_KEYS,
                "an embed provider (RichEmbedProvider)",
            );
            if let Some(n) = present(pr, "name") {
                if let Some(s) = v.string(&format!("{pp}/name"), n) {
                    v.len(&format!("{pp}/name"), trimmed_chars(s), 0, 256);
                }
            }
            url_prop(v, &pp, pr, "url", false);
        }
    }
    if let Some(f) = present(o, "footer") {
        let fp = format!("{p}/footer");
        if let Some(f) = v.object(&fp, f) {
            has_visible = true;
            v.keys(
                &fp,
                f,
                DISCORD_FOOTER_KEYS,
                "an embed footer (RichEmbedFooter)",
            );
            match present(f, "text") {
                Some(t) => {
                    if let Some(s) = v.string(&format!("{fp}/text"), t) {
                        let n = trimmed_chars(s);
                        v.len(&format!("{fp}/text"), n, 1, DISCORD_MAX_FOOTER);
                        total += n;
                    }
                }
                None => v.add(&format!("{fp}/text"), "required"),
            }
            url_prop(v, &fp, f, "icon_url", true);
        }
    }
    if let Some(fs) = present(o, "fields") {
        let fsp = format!("{p}/fields");
        if let Some(fs) = v.array(&fsp, fs) {
            if !fs.is_empty() {
                has_visible = true;
            }
            if fs.len() > DISCORD_MAX_FIELDS {
                v.add(
                    &fsp,
                    format!("{} fields, limit {DISCORD_MAX_FIELDS}", fs.len()),
                );
            }
            for (i, f) in fs.iter().enumerate() {
                let fp = format!("{fsp}/{i}");
                let Some(f) = v.object(&fp, f) else { continue };
                v.keys(
                    &fp,
                    f,
                    DISCORD_FIELD_KEYS,
                    "an embed field (RichEmbedField)",
                );
                for (k, max) in [
                    ("name", DISCORD_MAX_FIELD_NAME),
                    ("value", DISCORD_MAX_FIELD_VALUE),
                ] {
                    match f.get(k) {
                        None | Some(Value::Null) => v.add(&format!("{fp}/{k}"), "required"),
                        Some(x) => {
                            if let Some(s) = v.string(&format!("{fp}/{k}"), x) {
                                let n = trimmed_chars(s);
                                v.len(&format!("{fp}/{k}"), n, 1, max);
                                total += n;
                            }
                        }
                    }
                }
                if let Some(b) = present(f, "inline") {
                    v.boolean(&format!("{fp}/inline"), b);
                }
            }
        }
    }
    if !has_visible {
        v.add(
            p,
            "embed is empty: needs a non-blank title, description, fields, image, thumbnail, author or footer",
        );
    }
    total
}

fn url_prop(v: &mut V, p: &str, o: &Map<String, Value>, key: &str, allow_attachment: bool) {
    if let Some(u) = present(o, key) {
        if let Some(s) = v.string(&format!("{p}/{key}"), u) {
            if let Some(msg) = http_url_problem(s, DISCORD_MAX_URL, allow_attachment) {
                v.add(&format!("{p}/{key}"), msg);
            }
        }
    }
}

fn allowed_mentions(v: &mut V, am: &Value) {
    let p = "/allowed_mentions";
    let Some(o) = v.object(p, am) else { return };
    v.keys(
        p,
        o,
        DISCORD_ALLOWED_MENTIONS_KEYS,
        "allowed_mentions (MessageAllowedMentionsRequest)",
    );
    let mut parse: Vec<&str> = Vec::new();
    if let Some(x) = present(o, "parse") {
        if let Some(a) = v.array(&format!("{p}/parse"), x) {
            for (i, t) in a.iter().enumerate() {
                match t.as_str() {
                    Some(s) if DISCORD_MENTION_TYPES.contains(&s) => {
                        if parse.contains(&s) {
                            v.add(&format!("{p}/parse/{i}"), format!("duplicate {s:?}"));
                        }
                        parse.push(s);
                    }
                    _ => v.add(
                        &format!("{p}/parse/{i}"),
                        format!("must be one of \"users\", \"roles\", \"everyone\", got {t}"),
                    ),
                }
            }
        }
    }
    for key in ["users", "roles"] {
        if let Some(x) = present(o, key) {
            let kp = format!("{p}/{key}");
            if let Some(a) = v.array(&kp, x) {
                if a.len() > 100 {
                    v.add(&kp, format!("{} ids, limit 100", a.len()));
                }
                let mut seen = HashSet::new();
                for (i, id) in a.iter().enumerate() {
                    match id.as_str() {
                        Some(s) if is_snowflake(s) => {
                            if !seen.insert(s) {
                                v.add(&format!("{kp}/{i}"), format!("duplicate id {s:?}"));
                            }
                        }
                        _ => v.add(
                            &format!("{kp}/{i}"),
                            format!("must be a snowflake string, got {id}"),
                        ),
                    }
                }
                if parse.contains(&key) {
                    v.add(
                        &kp,
                        format!("\"{key}\" is in parse and {key} lists ids: these are mutually exclusive"),
                    );
                }
            }
        }
    }
    if let Some(b) = present(o, "replied_user") {
        v.boolean(&format!("{p}/replied_user"), b);
    }
}

fn poll(v: &mut V, p: &Value) {
    let pp = "/poll";
    let Some(o) = v.object(pp, p) else { return };
    v.keys(pp, o, DISCORD_POLL_KEYS, "a poll (PollCreateRequest)");
    match o.get("question") {
        Some(q) => {
            if let Some(q) = v.object("/poll/question", q) {
                match q.get("text").and_then(Value::as_str) {
                    Some(s) => v.len("/poll/question/text", trimmed_chars(s), 1, 300),
                    None => v.add("/poll/question/text", "required string"),
                }
            }
        }
        None => v.add("/poll/question", "required"),
    }
    match o.get("answers") {
        Some(a) => {
            if let Some(a) = v.array("/poll/answers", a) {
                if a.is_empty() || a.len() > 10 {
                    v.add(
                        "/poll/answers",
                        format!("{} answers, must be 1..=10", a.len()),
                    );
                }
                for (i, ans) in a.iter().enumerate() {
                    let ap = format!("/poll/answers/{i}");
                    if let Some(ans) = v.object(&ap, ans) {
                        if !ans.get("poll_media").is_some_and(Value::is_object) {
                            v.add(&format!("{ap}/poll_media"), "required object");
                        }
                    }
                }
            }
        }
        None => v.add("/poll/answers", "required"),
    }
    if let Some(d) = present(o, "duration") {
        if let Some(d) = v.integer("/poll/duration", d) {
            if !(1..=768).contains(&d) {
                v.add("/poll/duration", format!("{d} hours, must be 1..=768"));
            }
        }
    }
}

/// Mention tokens that would render as mentions (`@everyone`, `@here`, `<@id>`, `<@!id>`,
/// `<@&id>`) in `content` and in embed title/description/field texts. Each entry:
/// `"<pointer>: <token>"`. Only `content` can actually ping; embeds just render.
pub fn discord_live_mentions(body: &Value) -> Vec<String> {
    fn scan(p: &str, s: &str, out: &mut Vec<String>) {
        for t in ["@everyone", "@here"] {
            if s.contains(t) {
                out.push(format!("{p}: {t}"));
            }
        }
        let mut rest = s;
        while let Some(i) = rest.find("<@") {
            let after = &rest[i + 2..];
            let body = after
                .strip_prefix('!')
                .or_else(|| after.strip_prefix('&'))
                .unwrap_or(after);
            let digits: String = body.chars().take_while(char::is_ascii_digit).collect();
            if !digits.is_empty() && body[digits.len()..].starts_with('>') {
                let prefix_len = after.len() - body.len();
                out.push(format!("{p}: <@{}{}>", &after[..prefix_len], digits));
            }
            rest = after;
        }
    }
    let mut out = Vec::new();
    if let Some(c) = body.get("content").and_then(Value::as_str) {
        scan("/content", c, &mut out);
    }
    if let Some(es) = body.get("embeds").and_then(Value::as_array) {
        for (i, e) in es.iter().enumerate() {
            for k in ["title", "description"] {
                if let Some(s) = e.get(k).and_then(Value::as_str) {
                    scan(&format!("/embeds/{i}/{k}"), s, &mut out);
                }
            }
            if let Some(fs) = e.get("fields").and_then(Value::as_array) {
                for (j, f) in fs.iter().enumerate() {
                    for k in ["name", "value"] {
                        if let Some(s) = f.get(k).and_then(Value::as_str) {
                            scan(&format!("/embeds/{i}/fields/{j}/{k}"), s, &mut out);
                        }
                    }
                }
            }
        }
    }
    out
}

/// Who a Discord message body notifies: the mentions in `content` that its
/// `allowed_mentions` lets through (when it is absent, a webhook's default: users only).
/// Mentions in embeds never notify.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DiscordPings {
    /// User ids, in order of appearance, without duplicates.
    pub users: Vec<String>,
    /// Role ids, in order of appearance, without duplicates.
    pub roles: Vec<String>,
    /// `@everyone` or `@here` pings.
    pub everyone: bool,
}

impl DiscordPings {
    /// True when nobody is notified.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty() && self.roles.is_empty() && !self.everyone
    }
}

/// What [`DiscordPings`] a body (execute or edit) would notify.
pub fn discord_pings(body: &Value) -> DiscordPings {
    let content = body.get("content").and_then(Value::as_str).unwrap_or("");
    let am = body.get("allowed_mentions").filter(|v| v.is_object());
    let list = |key: &str| -> Vec<String> {
        am.and_then(|a| a.get(key))
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    };
    let parse: Vec<String> = match am {
        Some(_) => list("parse"),
        None => vec!["users".to_string()],
    };
    let (allowed_users, allowed_roles) = (list("users"), list("roles"));
    let mut out = DiscordPings::default();
    let mut rest = content;
    while let Some(i) = rest.find("<@") {
        let after = &rest[i + 2..];
        rest = after;
        let (role, ids) = match after.strip_prefix('&') {
            Some(r) => (true, r),
            None => (false, after.strip_prefix('!').unwrap_or(after)),
        };
        let digits: String = ids.chars().take_while(char::is_ascii_digit).collect();
        if digits.is_empty() || !ids[digits.len()..].starts_with('>') {
            continue;
        }
        let (kind, allowed, seen) = if role {
            ("roles", &allowed_roles, &mut out.roles)
        } else {
            ("users", &allowed_users, &mut out.users)
        };
        if (parse.iter().any(|p| p == kind) || allowed.contains(&digits)) && !seen.contains(&digits)
        {
            seen.push(digits);
        }
    }
    out.everyone = parse.iter().any(|p| p == "everyone")
        && (content.contains("@everyone") || content.contains("@here"));
    out
}
