//! Discord execute-webhook body: one embed (title, description, colour, timestamp, tags,
//! first image) plus up to three image-only embeds sharing its `url`, which Discord shows as one
//! gallery of four. Further images are listed as links in the description.
//!
//! Pings: `allowed_mentions` always starts from `{"parse": []}` and only the route's configured
//! mentions are added, so nothing from an event can notify anyone. Limits (Discord embed docs):
//! content 2000, title 256, description 4096, field value 1024, footer 2048, 6000 in total.

use crate::config::{Destination, Mention};
use crate::domain::EventType;
use crate::render::text::{char_len, escape_discord, truncate};
use crate::render::{attachable_url, Message};
use serde_json::{json, Map, Value};
use std::time::{Duration, UNIX_EPOCH};

const CONTENT_MAX: usize = 2000;
const TITLE_MAX: usize = 256;
const DESCRIPTION_MAX: usize = 4096;
const FIELD_VALUE_MAX: usize = 1024;
const FOOTER_MAX: usize = 2048;
const TOTAL_MAX: usize = 6000;
const URL_MAX: usize = 2048;
const GALLERY_MAX: usize = 4;

/// Colour per event type: created grey, active blue, progress amber, completed green, failed red.
pub fn colour(event_type: Option<EventType>) -> u32 {
    match event_type {
        Some(EventType::Created) | None => 0x95A5A6,
        Some(EventType::Active) => 0x3498DB,
        Some(EventType::Progress) => 0xF1A208,
        Some(EventType::Completed) => 0x2ECC71,
        Some(EventType::Failed) => 0xE74C3C,
    }
}

/// `content` and `allowed_mentions` for the route's mentions.
fn mentions(list: &[Mention]) -> (String, Value) {
    let mut parts = Vec::new();
    let mut users = Vec::new();
    let mut roles = Vec::new();
    let mut everyone = false;
    for m in list {
        match m {
            Mention::User(id) => {
                parts.push(format!("<@{id}>"));
                users.push(id.clone());
            }
            Mention::Role(id) => {
                parts.push(format!("<@&{id}>"));
                roles.push(id.clone());
            }
            Mention::Here => {
                parts.push("@here".into());
                everyone = true;
            }
            Mention::Channel | Mention::Everyone => {
                parts.push("@everyone".into());
                everyone = true;
            }
            // Rejected by config validation for Discord destinations.
            Mention::Group(_) => {}
        }
    }
    parts.dedup();
    users.truncate(100);
    roles.truncate(100);
    let mut allowed = Map::new();
    allowed.insert(
        "parse".into(),
        if everyone {
            json!(["everyone"])
        } else {
            json!([])
        },
    );
    if !users.is_empty() {
        allowed.insert("users".into(), json!(users));
    }
    if !roles.is_empty() {
        allowed.insert("roles".into(), json!(roles));
    }
    (parts.join(" "), Value::Object(allowed))
}

/// The template's title, or the event type when the template gave none.
fn title(msg: &Message<'_>) -> String {
    if msg.title.trim().is_empty() {
        escape_discord(&msg.event.type_name)
    } else {
        msg.title.trim().to_string()
    }
}

/// RFC 3339 time of the event: `created` (Unix seconds), else the generation's `createdAt`.
fn timestamp(msg: &Message<'_>) -> Option<String> {
    if let Some(secs) = msg.event.created.filter(|s| *s > 0.0 && *s < 1e11) {
        let t = UNIX_EPOCH + Duration::from_secs(secs as u64);
        return Some(humantime::format_rfc3339_seconds(t).to_string());
    }
    let created_at = msg.event.generation.created_at.as_deref()?;
    humantime::parse_rfc3339_weak(created_at)
        .ok()
        .map(|t| humantime::format_rfc3339_millis(t).to_string())
}

/// Percent-encodes characters that would end a markdown link early.
fn link_safe(url: &str) -> String {
    url.replace('(', "%28")
        .replace(')', "%29")
        .replace(' ', "%20")
}

/// The template's text, then links to the images the gallery has no room for, within `budget`
/// characters. The links get at least half of the budget, so a long text cannot push them out;
/// the text is what gets truncated.
fn description(text: &str, images: &[String], budget: usize) -> String {
    const SEP: &str = "\n\n";
    let extra = images.get(GALLERY_MAX..).unwrap_or_default();
    if extra.is_empty() {
        return truncate(text, budget);
    }
    let text_wants = if text.is_empty() {
        0
    } else {
        char_len(text) + SEP.len()
    };
    let links_budget = budget.saturating_sub(text_wants.min(budget / 2));
    let mut links = String::from("More images:");
    let mut used = char_len(&links);
    let mut shown = 0;
    for (i, url) in extra.iter().enumerate() {
        let link = format!(" [image {}]({})", i + GALLERY_MAX + 1, link_safe(url));
        let left_after = extra.len() - i - 1;
        // Room for " and N more" unless this is the last link.
        let tail = if left_after > 0 {
            char_len(&format!(" and {left_after} more"))
        } else {
            0
        };
        if used + char_len(&link) + tail > links_budget {
            break;
        }
        used += char_len(&link);
        links.push_str(&link);
        shown += 1;
    }
    if shown < extra.len() {
        links.push_str(&format!(" and {} more", extra.len() - shown));
    }
    if char_len(&links) > budget {
        return truncate(text, budget);
    }
    if text.is_empty() {
        return links;
    }
    let room = budget.saturating_sub(char_len(&links) + SEP.len());
    if room == 0 {
        return links;
    }
    format!("{}{SEP}{links}", truncate(text, room))
}

pub fn body(msg: &Message<'_>) -> Value {
    let g = &msg.event.generation;
    let (content, allowed_mentions) = mentions(msg.mention);
    let images: Vec<String> = msg
        .images()
        .into_iter()
        .filter_map(|img| attachable_url(img.url.as_deref(), URL_MAX))
        .collect();

    let title = truncate(&title(msg), TITLE_MAX);

    let mut fields = Vec::new();
    if !g.tags.is_empty() {
        let tags = escape_discord(&g.tags.join(", "));
        fields.push(
            json!({"name": "Tags", "value": truncate(&tags, FIELD_VALUE_MAX), "inline": true}),
        );
    }
    if matches!(
        msg.event.event_type,
        Some(EventType::Progress | EventType::Active)
    ) {
        let (done, total) = g.progress();
        fields
            .push(json!({"name": "Progress", "value": format!("{done}/{total}"), "inline": true}));
    }
    let footer = truncate(
        &format!("{} · generation {}", msg.event.type_name, g.id),
        FOOTER_MAX,
    );

    // Everything but the description is bounded well under 6000, so the description absorbs
    // whatever the total limit requires.
    let fixed: usize = char_len(&title)
        + char_len(&footer)
        + fields
            .iter()
            .map(|f| {
                char_len(f["name"].as_str().unwrap_or_default())
                    + char_len(f["value"].as_str().unwrap_or_default())
            })
            .sum::<usize>();
    let description = description(
        msg.text.trim(),
        &images,
        DESCRIPTION_MAX.min(TOTAL_MAX.saturating_sub(fixed)),
    );

    let mut main = Map::new();
    main.insert("title".into(), json!(title));
    if !description.is_empty() {
        main.insert("description".into(), json!(description));
    }
    main.insert("color".into(), json!(colour(msg.event.event_type)));
    if let Some(ts) = timestamp(msg) {
        main.insert("timestamp".into(), json!(ts));
    }
    if !fields.is_empty() {
        main.insert("fields".into(), json!(fields));
    }
    main.insert("footer".into(), json!({"text": footer}));
    let mut embeds = vec![];
    // The title links to `url`. Several embeds sharing one `url` are what Discord merges into
    // one gallery, so a message of several images needs one: the link when there is one, else
    // the first image (the only URL there is). Without a link and a gallery, no `url`.
    let shared = match (&msg.link, images.len()) {
        (Some(link), _) => Some(link.clone()),
        (None, n) if n > 1 => images.first().cloned(),
        (None, _) => None,
    };
    if let Some(url) = &shared {
        main.insert("url".into(), json!(url));
    }
    if let Some(first) = images.first() {
        main.insert("image".into(), json!({"url": first}));
    }
    embeds.push(Value::Object(main));
    for url in images.iter().take(GALLERY_MAX).skip(1) {
        embeds.push(json!({"url": shared, "image": {"url": url}}));
    }

    let mut out = Map::new();
    if !content.is_empty() {
        out.insert("content".into(), json!(truncate(&content, CONTENT_MAX)));
    }
    if let Some(u) = &msg.destination.username {
        out.insert("username".into(), json!(u));
    }
    if let Some(a) = &msg.destination.avatar_url {
        out.insert("avatar_url".into(), json!(a));
    }
    out.insert("embeds".into(), Value::Array(embeds));
    out.insert("allowed_mentions".into(), allowed_mentions);
    Value::Object(out)
}

/// The separate message that pages the route's mentions when a failure edits a live message:
/// the mentions and the title, with exactly those mentions allowed.
pub fn ping(msg: &Message<'_>) -> Option<Value> {
    if msg.mention.is_empty() {
        return None;
    }
    Some(notice(msg.destination, msg.mention, &title(msg)))
}

/// A short message of mentions and `text` (escaped), e.g. a ping or a summary of held-back
/// pings: `content` only, and exactly those mentions allowed.
pub fn notice(dest: &Destination, mention: &[Mention], text: &str) -> Value {
    let (content, allowed_mentions) = mentions(mention);
    let content = if content.is_empty() {
        text.to_string()
    } else {
        format!("{content} {text}")
    };
    let mut out = Map::new();
    out.insert("content".into(), json!(truncate(&content, CONTENT_MAX)));
    if let Some(u) = &dest.username {
        out.insert("username".into(), json!(u));
    }
    if let Some(a) = &dest.avatar_url {
        out.insert("avatar_url".into(), json!(a));
    }
    out.insert("allowed_mentions".into(), allowed_mentions);
    Value::Object(out)
}
