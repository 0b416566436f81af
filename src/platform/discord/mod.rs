//! Discord webhooks: embeds with a gallery, `allowed_mentions` that only config can widen,
//! `?wait=true` so a 2xx means the message is stored (and says its id), and the
//! `X-RateLimit-*` bucket honoured before sending.

mod body;

pub use body::colour;

use super::http::{self, header_f64, secs};
use super::{Action, Answer, Bucket, Gate, Gates, Outcome, Pacer, Permit, Platform, Reach};
use crate::config::{Destination, Mention};
use crate::render::templates::Escape;
use crate::render::Message;
use async_trait::async_trait;
use reqwest::header::HeaderMap;
use reqwest::{StatusCode, Url};
use serde_json::Value;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub struct Discord;

#[async_trait]
impl Platform for Discord {
    fn reach(&self) -> Reach {
        Reach::Webhook
    }

    fn takes_key(&self, key: &str) -> bool {
        matches!(key, "username" | "avatar_url" | "thread_id")
    }

    fn check_key(&self, key: &str, value: &str) -> Result<(), &'static str> {
        let lower = value.to_lowercase();
        let n = value.chars().count();
        match key {
            "username"
                if !(1..=80).contains(&n)
                    || lower.contains("clyde")
                    || lower.contains("discord") =>
            {
                Err("must be 1 to 80 characters and may not contain \"clyde\" or \"discord\"")
            }
            "avatar_url" if !crate::config::is_http_url(value) || value.len() > 2048 => {
                Err("must be an http(s) URL of at most 2048 characters")
            }
            "thread_id" if value.is_empty() || !value.chars().all(|c| c.is_ascii_digit()) => {
                Err("must be a Discord id (digits)")
            }
            _ => Ok(()),
        }
    }

    fn webhook_url(&self, mut url: Url) -> Result<Url, String> {
        // The legacy host (v10 is not served there and it has an extra global limit) and the
        // ptb/canary client hosts Discord's "Copy Webhook URL" may give are one API: use its
        // canonical host, so rate limits are tracked once.
        const ALIASES: [&str; 5] = [
            "discordapp.com",
            "ptb.discordapp.com",
            "canary.discordapp.com",
            "ptb.discord.com",
            "canary.discord.com",
        ];
        if url.host_str().is_some_and(|h| ALIASES.contains(&h)) {
            url.set_host(Some("discord.com"))
                .map_err(|e| e.to_string())?;
        }
        if !url.path().contains("/webhooks/") {
            return Err(
                "a Discord webhook URL looks like https://discord.com/api/webhooks/ID/TOKEN".into(),
            );
        }
        Ok(url)
    }

    fn mention_problem(&self, mention: &Mention) -> Option<String> {
        match mention {
            Mention::Group(_) => Some("does not exist on discord".into()),
            // Discord ids are snowflakes; a Slack-style `U…` id would silently ping nobody.
            Mention::User(id) | Mention::Role(id) if !id.chars().all(|c| c.is_ascii_digit()) => {
                Some("is not a Discord id, which is all digits (Developer Mode → Copy ID)".into())
            }
            _ => None,
        }
    }

    fn escape(&self) -> Escape {
        Escape::Discord
    }

    fn body(&self, msg: &Message<'_>) -> Value {
        body::body(msg)
    }

    fn ping_body(&self, msg: &Message<'_>) -> Option<Value> {
        body::ping(msg)
    }

    fn notice_body(&self, dest: &Destination, mention: &[Mention], text: &str) -> Value {
        body::notice(dest, mention, text)
    }

    fn can_edit(&self, dest: &Destination) -> bool {
        dest.url.is_some()
    }

    fn share_link(&self, body: &Value) -> Option<String> {
        use base64::Engine;
        // Discohook reads unpadded base64url of `{"messages": [{"data": BODY}]}`; its `targets`
        // (which would hold the webhook URL) stay empty.
        let data = serde_json::json!({ "messages": [{ "data": body }] }).to_string();
        let encoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data);
        Some(format!("https://discohook.app/?data={encoded}"))
    }

    fn wire_body(
        &self,
        _dest: &Destination,
        action: &Action<'_>,
        stored: &str,
    ) -> Result<Value, String> {
        let body = match action {
            Action::Edit { .. } => edit_body(stored).map_err(|o| format!("{o:?}"))?,
            _ => stored.to_string(),
        };
        serde_json::from_str(&body).map_err(|e| format!("stored body is not JSON: {e}"))
    }

    async fn send(
        &self,
        client: &reqwest::Client,
        dest: &Destination,
        action: &Action<'_>,
        body: &str,
    ) -> Answer {
        let sent = match action {
            Action::Post | Action::Repost | Action::Ping { .. } => {
                let Some(url) = post_url(dest) else {
                    return Answer::of(no_url());
                };
                http::post_json(client, url, body).await
            }
            Action::Edit { message } => {
                let Some(url) = edit_url(dest, message) else {
                    return Answer::of(no_url());
                };
                let body = match edit_body(body) {
                    Ok(b) => b,
                    Err(outcome) => return Answer::of(outcome),
                };
                http::send_json(client, reqwest::Method::PATCH, url, &body).await
            }
        };
        match sent {
            Ok(reply) => Answer {
                outcome: classify(reply.status, &reply.headers, &reply.body),
                bucket: Some(bucket(&reply.headers)),
            },
            Err(failed) => failed,
        }
    }

    fn pacing_key(&self, dest: &Destination) -> String {
        super::url_key(dest)
    }

    fn pacer(&self, dest: &Destination, gates: &Gates) -> Arc<dyn Pacer> {
        let host = dest
            .url
            .as_ref()
            .and_then(|u| u.host_str().map(str::to_string))
            .unwrap_or_default();
        Arc::new(WebhookPacer {
            bucket: Arc::new(tokio::sync::Mutex::new(None)),
            global: gates.get(&format!("discord {host}")),
        })
    }
}

fn no_url() -> Outcome {
    Outcome::Permanent {
        status: None,
        error: "destination has no URL".into(),
    }
}

/// The URL a body is posted to: `?wait=true` (so a 2xx means the message was stored, and
/// returns its id) and `thread_id` when configured.
pub fn post_url(dest: &Destination) -> Option<Url> {
    let mut url = dest.url.clone()?;
    let keep: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(k, _)| k != "wait" && k != "thread_id")
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    {
        let mut q = url.query_pairs_mut();
        q.clear();
        for (k, v) in &keep {
            q.append_pair(k, v);
        }
        q.append_pair("wait", "true");
        if let Some(t) = &dest.thread_id {
            q.append_pair("thread_id", t);
        }
    }
    Some(url)
}

/// `PATCH …/webhooks/{id}/{token}/messages/{message_id}`, with `thread_id` when configured.
pub fn edit_url(dest: &Destination, message: &str) -> Option<Url> {
    let mut url = dest.url.clone()?;
    url.set_query(None);
    url.path_segments_mut()
        .ok()?
        .pop_if_empty()
        .extend(["messages", message]);
    if let Some(t) = &dest.thread_id {
        url.query_pairs_mut().append_pair("thread_id", t);
    }
    Some(url)
}

/// An edit carries what the message shows, never the webhook's identity (an edit cannot
/// change `username`/`avatar_url`), and `allowed_mentions` again: Discord does not keep it
/// from the post and would otherwise parse the edit with its default, which pings users.
pub fn edit_body(stored: &str) -> Result<String, Outcome> {
    let mut body: serde_json::Map<String, Value> =
        serde_json::from_str(stored).map_err(|e| Outcome::Permanent {
            status: None,
            error: format!("stored body is not a JSON object: {e}"),
        })?;
    body.remove("username");
    body.remove("avatar_url");
    body.entry("allowed_mentions")
        .or_insert_with(|| serde_json::json!({"parse": []}));
    Ok(Value::Object(body).to_string())
}

/// Turns an answer into an [`Outcome`].
pub fn classify(status: StatusCode, headers: &HeaderMap, body: &str) -> Outcome {
    if status.is_success() {
        let message_id = serde_json::from_str::<Value>(body)
            .ok()
            .and_then(|v| v.get("id").and_then(|id| id.as_str()).map(str::to_string));
        return Outcome::Done {
            status: status.as_u16(),
            message_id,
        };
    }
    if status == StatusCode::TOO_MANY_REQUESTS {
        let (wait, global) = rate_limit_wait(headers, body);
        return Outcome::RateLimited {
            status: status.as_u16(),
            wait,
            global,
        };
    }
    // 10008 Unknown Message: the message was deleted; 10015 Unknown Webhook stays permanent.
    if status == StatusCode::NOT_FOUND && error_code(body) == Some(10008) {
        return Outcome::Gone {
            status: status.as_u16(),
            error: error_text(body),
        };
    }
    http::failure(status, error_text(body))
}

fn error_code(body: &str) -> Option<u64> {
    serde_json::from_str::<Value>(body.trim())
        .ok()?
        .get("code")?
        .as_u64()
}

/// How long a 429 asks to wait: the JSON `retry_after` (float seconds), else
/// `X-RateLimit-Reset-After`, else `Retry-After`; and whether the limit is global.
fn rate_limit_wait(headers: &HeaderMap, body: &str) -> (Duration, bool) {
    let json: Option<Value> = serde_json::from_str(body).ok();
    let global = json
        .as_ref()
        .and_then(|v| v.get("global"))
        .and_then(|g| g.as_bool())
        .unwrap_or(false)
        || headers
            .get("x-ratelimit-global")
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"true"));
    let from_json = json
        .as_ref()
        .and_then(|v| v.get("retry_after"))
        .and_then(|r| r.as_f64());
    let from_headers = header_f64(headers, "x-ratelimit-reset-after")
        .or_else(|| header_f64(headers, "retry-after"));
    // v10 sends seconds; older API versions (an unversioned webhook URL may land on one)
    // send milliseconds. A JSON value far above the headers' seconds is milliseconds.
    let wait = match (from_json, from_headers) {
        (Some(j), Some(h)) if j > (h + 1.0) * 100.0 => Some(j / 1000.0),
        (Some(j), _) => Some(j),
        (None, h) => h,
    };
    (secs(wait.unwrap_or(1.0)), global)
}

fn bucket(headers: &HeaderMap) -> Bucket {
    Bucket {
        remaining: header_f64(headers, "x-ratelimit-remaining").map(|v| v as u32),
        reset_after: header_f64(headers, "x-ratelimit-reset-after").map(secs),
    }
}

/// Discord's `message` and `code`, else the body as text.
fn error_text(body: &str) -> String {
    if let Ok(v) = serde_json::from_str::<Value>(body.trim()) {
        if let Some(m) = v.get("message").and_then(|m| m.as_str()) {
            return match v.get("code") {
                Some(c) => format!("{m} (code {c})"),
                None => m.to_string(),
            };
        }
    }
    http::plain_error(body)
}

/// One post at a time per webhook: the bucket's lock is held for the whole post, so the
/// X-RateLimit-* headers of each answer describe the bucket exactly. The bucket's value: empty
/// until this instant. `global`: the host's global limit.
struct WebhookPacer {
    bucket: Arc<tokio::sync::Mutex<Option<Instant>>>,
    global: Arc<Gate>,
}

#[async_trait]
impl Pacer for WebhookPacer {
    async fn acquire(&self, _action: &Action<'_>) -> Result<Box<dyn Permit>, Duration> {
        let bucket = self.bucket.clone().lock_owned().await;
        let now = Instant::now();
        let own = bucket.filter(|t| *t > now).map(|t| t - now);
        match own.max(self.global.wait()) {
            Some(wait) => Err(wait),
            None => Ok(Box::new(WebhookPermit {
                bucket,
                global: self.global.clone(),
            })),
        }
    }
}

struct WebhookPermit {
    bucket: tokio::sync::OwnedMutexGuard<Option<Instant>>,
    global: Arc<Gate>,
}

impl Permit for WebhookPermit {
    fn record(&mut self, answer: &Answer) {
        // With nothing remaining, posts wait for the reset.
        if let Some(Bucket {
            remaining: Some(0),
            reset_after: Some(reset),
        }) = answer.bucket
        {
            *self.bucket = Some(Instant::now() + reset);
        }
        if let Outcome::RateLimited { wait, global, .. } = answer.outcome {
            let until = Instant::now() + wait;
            if global {
                self.global.close_until(until);
            } else {
                *self.bucket = Some(until);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn a_429_uses_json_retry_after() {
        let mut h = HeaderMap::new();
        h.insert("retry-after", HeaderValue::from_static("2"));
        let o = classify(
            StatusCode::TOO_MANY_REQUESTS,
            &h,
            r#"{"message":"You are being rate limited.","retry_after":1.5,"global":true}"#,
        );
        assert_eq!(
            o,
            Outcome::RateLimited {
                status: 429,
                wait: Duration::from_millis(1500),
                global: true
            }
        );
    }

    #[test]
    fn a_429_in_milliseconds_is_recognised() {
        let mut h = HeaderMap::new();
        h.insert("retry-after", HeaderValue::from_static("2"));
        let o = classify(
            StatusCode::TOO_MANY_REQUESTS,
            &h,
            r#"{"retry_after": 1500, "global": false}"#,
        );
        assert!(
            matches!(o, Outcome::RateLimited { wait, .. } if wait == Duration::from_millis(1500)),
            "{o:?}"
        );
    }

    #[test]
    fn unknown_webhook_is_permanent_with_its_code() {
        let o = classify(
            StatusCode::NOT_FOUND,
            &HeaderMap::new(),
            r#"{"message": "Unknown Webhook", "code": 10015}"#,
        );
        assert_eq!(
            o,
            Outcome::Permanent {
                status: Some(404),
                error: "Unknown Webhook (code 10015)".into()
            }
        );
    }

    #[test]
    fn a_deleted_message_is_gone_not_dead() {
        let o = classify(
            StatusCode::NOT_FOUND,
            &HeaderMap::new(),
            r#"{"message": "Unknown Message", "code": 10008}"#,
        );
        assert!(matches!(o, Outcome::Gone { status: 404, .. }), "{o:?}");
    }

    #[test]
    fn edits_drop_the_identity_and_keep_allowed_mentions() {
        let body = edit_body(r#"{"username": "u", "avatar_url": "https://a/b.png", "embeds": []}"#)
            .expect("edit body");
        let v: Value = serde_json::from_str(&body).expect("json");
        assert_eq!(
            v,
            serde_json::json!({"embeds": [], "allowed_mentions": {"parse": []}})
        );
    }

    #[test]
    fn a_success_says_the_message_id() {
        let o = classify(
            StatusCode::OK,
            &HeaderMap::new(),
            r#"{"id": "123", "type": 0}"#,
        );
        assert_eq!(
            o,
            Outcome::Done {
                status: 200,
                message_id: Some("123".into())
            }
        );
    }
}
