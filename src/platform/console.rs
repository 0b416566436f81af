//! Console destination: the rendered title and text, printed on stdout as one block per event.
//! Stored as JSON like the chat bodies so the queue treats every destination alike.

use super::{Action, Answer, Free, Gates, Outcome, Pacer, Permit, Platform, Reach};
use crate::config::{Destination, Mention};
use crate::render::templates::Escape;
use crate::render::{attachable_url, Message};
use async_trait::async_trait;
use serde_json::{json, Value};
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

pub struct Console;

#[async_trait]
impl Platform for Console {
    fn reach(&self) -> Reach {
        Reach::Nowhere
    }

    fn takes_key(&self, _key: &str) -> bool {
        false
    }

    fn mention_problem(&self, _mention: &Mention) -> Option<String> {
        None
    }

    fn escape(&self) -> Escape {
        Escape::Plain
    }

    fn body(&self, msg: &Message<'_>) -> Value {
        body(msg)
    }

    fn ping_body(&self, _msg: &Message<'_>) -> Option<Value> {
        None
    }

    fn notice_body(&self, _dest: &Destination, mention: &[Mention], text: &str) -> Value {
        json!({
            "event": "printbell",
            "generation": "",
            "title": text,
            "mention": mention_names(mention),
        })
    }

    fn can_edit(&self, _dest: &Destination) -> bool {
        false
    }

    async fn send(
        &self,
        _client: &reqwest::Client,
        _dest: &Destination,
        _action: &Action<'_>,
        body: &str,
    ) -> Answer {
        Answer::of(print(body))
    }

    fn pacing_key(&self, _dest: &Destination) -> String {
        String::new()
    }

    fn pacer(&self, _dest: &Destination, _gates: &Gates) -> Arc<dyn Pacer> {
        Arc::new(Unpaced)
    }
}

/// Prints a stored body on stdout.
fn print(body: &str) -> Outcome {
    let body: Value = match serde_json::from_str(body) {
        Ok(b) => b,
        Err(e) => {
            return Outcome::Permanent {
                status: None,
                error: format!("stored body is not JSON: {e}"),
            }
        }
    };
    // `print!` would panic on a closed stdout (a pipe whose reader went away).
    match write!(std::io::stdout().lock(), "{}", format(&body)) {
        Ok(()) => Outcome::Done {
            status: 200,
            message_id: None,
        },
        Err(e) => Outcome::Retry {
            status: None,
            error: format!("cannot write to standard output: {e}"),
        },
    }
}

struct Unpaced;

#[async_trait]
impl Pacer for Unpaced {
    async fn acquire(&self, _action: &Action<'_>) -> Result<Box<dyn Permit>, Duration> {
        Ok(Box::new(Free))
    }
}

fn body(msg: &Message<'_>) -> Value {
    let images: Vec<String> = msg
        .images()
        .into_iter()
        .filter_map(|i| attachable_url(i.url.as_deref(), 3000))
        .collect();
    let mention = mention_names(msg.mention);
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

/// Mentions as the console shows them (`@user:1`): nobody is notified on stdout.
fn mention_names(mention: &[Mention]) -> Vec<String> {
    mention.iter().map(|m| format!("@{m}")).collect()
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
