//! Console destination: the rendered title and text, printed on stdout as one block per event.
//! Stored as JSON like the chat bodies so the queue treats every destination alike.

use super::{attachable_url, Message};
use crate::config::Mention;
use serde_json::{json, Value};

pub fn body(msg: &Message<'_>) -> Value {
    let images: Vec<String> = msg
        .images()
        .into_iter()
        .filter_map(|i| attachable_url(i.url.as_deref(), 3000))
        .collect();
    let mention: Vec<String> = msg
        .mention
        .iter()
        .map(|m| match m {
            Mention::User(id) => format!("@user:{id}"),
            Mention::Role(id) => format!("@role:{id}"),
            Mention::Group(id) => format!("@group:{id}"),
            Mention::Here => "@here".into(),
            Mention::Channel => "@channel".into(),
            Mention::Everyone => "@everyone".into(),
        })
        .collect();
    json!({
        "event": msg.event.type_name,
        "generation": msg.event.generation.id,
        "tags": msg.event.generation.tags,
        "title": msg.title,
        "text": msg.text,
        "images": images,
        "mention": mention,
    })
}

/// The block printed on stdout for a stored console body.
pub fn format(body: &Value) -> String {
    let s = |k: &str| body.get(k).and_then(Value::as_str).unwrap_or_default();
    let mut out = format!("── {} · generation {} ──\n", s("event"), s("generation"));
    if let Some(m) = body
        .get("mention")
        .and_then(Value::as_array)
        .filter(|m| !m.is_empty())
    {
        let names: Vec<&str> = m.iter().filter_map(Value::as_str).collect();
        out.push_str(&names.join(" "));
        out.push(' ');
    }
    out.push_str(s("title"));
    out.push('\n');
    if !s("text").is_empty() {
        out.push_str(s("text"));
        out.push('\n');
    }
    for url in body
        .get("images")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        out.push_str(&format!("  image: {}\n", url.as_str().unwrap_or_default()));
    }
    if let Some(tags) = body
        .get("tags")
        .and_then(Value::as_array)
        .filter(|t| !t.is_empty())
    {
        let tags: Vec<&str> = tags.iter().filter_map(Value::as_str).collect();
        out.push_str(&format!("  tags: {}\n", tags.join(", ")));
    }
    out
}
