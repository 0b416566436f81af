//! Slack incoming-webhook body: `text` fallback plus Block Kit blocks (header, section, one
//! image block per image, context).
//!
//! Limits (docs.slack.dev Block Kit reference): 50 blocks, header ≤150, section text ≤3000,
//! image_url ≤3000, alt_text ≤2000, context ≤10 elements, and an observed cap of ~12,000
//! characters of text over all blocks (`msg_blocks_too_long`). Alt texts and image titles are
//! kept short so 47 image blocks still fit under that cap.

use crate::config::{Mention, Mode};
use crate::domain::EventType;
use crate::render::text::{escape_slack, truncate_slack};
use crate::render::{attachable_url, Message};
use serde_json::{json, Value};

const MAX_BLOCKS: usize = 50;
const HEADER_MAX: usize = 150;
const SECTION_MAX: usize = 3000;
const IMAGE_URL_MAX: usize = 3000;
const IMAGE_LABEL_MAX: usize = 80;
const FALLBACK_MAX: usize = 3000;
const CONTEXT_ELEMENTS_MAX: usize = 10;

fn mention_text(m: &Mention) -> String {
    match m {
        Mention::User(id) => format!("<@{id}>"),
        Mention::Group(id) => format!("<!subteam^{id}>"),
        Mention::Here => "<!here>".into(),
        Mention::Channel => "<!channel>".into(),
        Mention::Everyone => "<!everyone>".into(),
        // Rejected by config validation for Slack destinations.
        Mention::Role(_) => String::new(),
    }
}

/// The route's mentions as Slack writes them.
fn mentions(msg: &Message<'_>) -> Vec<String> {
    msg.mention
        .iter()
        .map(mention_text)
        .filter(|m| !m.is_empty())
        .collect()
}

/// A checked URL as the target of a `<url|label>` link: `|` would end it early, and `&<>`
/// are Slack's control characters.
fn link_target(url: &str) -> String {
    escape_slack(&url.replace('|', "%7C"))
}

/// The template's title, or the event type when the template gave none.
fn title(msg: &Message<'_>) -> String {
    if msg.title.trim().is_empty() {
        escape_slack(&msg.event.type_name)
    } else {
        msg.title.clone()
    }
}

pub fn body(msg: &Message<'_>) -> Value {
    let g = &msg.event.generation;
    let mentions = mentions(msg);
    let mention_line = mentions.join(" ");
    let mention_prefix = if mentions.is_empty() {
        String::new()
    } else {
        format!("{mention_line} ")
    };
    let title = title(msg);

    // A header cannot link (plain text only): with a link the title is a bold mrkdwn link.
    let mut blocks = vec![match &msg.link {
        None => json!({
            "type": "header",
            "text": {"type": "plain_text", "text": truncate_slack(&title, HEADER_MAX), "emoji": true},
        }),
        Some(url) => json!({
            "type": "section",
            "text": {"type": "mrkdwn", "text": format!(
                "*<{}|{}>*",
                link_target(url),
                truncate_slack(&title, HEADER_MAX)
            )},
        }),
    }];
    // Mentions on a line of their own so a template starting with a `> ` quote stays a quote.
    let section = match (mention_line.is_empty(), msg.text.is_empty()) {
        (true, _) => msg.text.clone(),
        (false, true) => mention_line.clone(),
        (false, false) => format!("{mention_line}\n{}", msg.text),
    };
    if !section.trim().is_empty() {
        blocks.push(json!({
            "type": "section",
            "text": {"type": "mrkdwn", "text": truncate_slack(section.trim_end(), SECTION_MAX)},
        }));
    }

    let images: Vec<_> = msg
        .images()
        .into_iter()
        .filter_map(|img| attachable_url(img.url.as_deref(), IMAGE_URL_MAX).map(|u| (img, u)))
        .collect();
    // One message per event (`each`): a progress message's images come again, full size, in
    // the completion message, so here they are small context images (≤10 elements).
    let thumbnails =
        msg.event.event_type == Some(EventType::Progress) && msg.destination.mode == Mode::Each;
    let room = if thumbnails {
        CONTEXT_ELEMENTS_MAX
    } else {
        MAX_BLOCKS - blocks.len() - 1 // keep one block for the context line
    };
    let total = images.len();
    let mut small = Vec::new();
    for (n, (img, url)) in images.iter().take(room).enumerate() {
        let label = match img
            .title
            .as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty())
        {
            Some(t) => escape_slack(t),
            None => format!("Image {} of {total}", n + 1),
        };
        let label = truncate_slack(&label, IMAGE_LABEL_MAX);
        if thumbnails {
            small.push(json!({"type": "image", "image_url": url, "alt_text": label}));
            continue;
        }
        blocks.push(json!({
            "type": "image",
            "image_url": url,
            "alt_text": label,
            "title": {"type": "plain_text", "text": label, "emoji": true},
        }));
    }

    if !small.is_empty() {
        blocks.push(json!({"type": "context", "elements": small}));
    }

    let mut context = format!(
        "{} · generation {}",
        escape_slack(&msg.event.type_name),
        escape_slack(&g.id)
    );
    if !g.tags.is_empty() {
        context.push_str(&format!(" · tags: {}", escape_slack(&g.tags.join(", "))));
    }
    if total > room {
        context.push_str(&format!(" · {} more images not shown", total - room));
    }
    blocks.push(json!({
        "type": "context",
        "elements": [{"type": "mrkdwn", "text": truncate_slack(&context, 300)}],
    }));

    json!({
        "text": truncate_slack(&format!("{mention_prefix}{title}"), FALLBACK_MAX),
        "blocks": blocks,
        "unfurl_links": false,
        "unfurl_media": false,
    })
}

/// The thread reply that pages the route's mentions when a failure edits a live message.
pub fn ping(msg: &Message<'_>) -> Option<Value> {
    if mentions(msg).is_empty() {
        return None;
    }
    Some(notice(msg.mention, &title(msg)))
}

/// A short message of mentions and `text` (escaped), e.g. a ping or a summary of held-back
/// pings: `text` only.
pub fn notice(mention: &[Mention], text: &str) -> Value {
    let mut parts: Vec<String> = mention
        .iter()
        .map(mention_text)
        .filter(|m| !m.is_empty())
        .collect();
    parts.push(text.to_string());
    json!({ "text": truncate_slack(&parts.join(" "), FALLBACK_MAX) })
}
