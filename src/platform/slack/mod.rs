//! Slack: Block Kit bodies with every event-derived text escaped so it can never form a
//! mention or a link, sent to an incoming webhook (one message per event, about one per second
//! per webhook) or through the Web API with a bot token ([`web_api`]: posts and edits, about one
//! post per second per channel and 50 edits per minute).

mod body;
pub mod web_api;

use super::http::{self, header_f64, secs};
use super::{Action, Answer, Free, Gates, Outcome, Pacer, Permit, Platform, Reach};
use crate::config::{Destination, Mention};
use crate::render::templates::Escape;
use crate::render::Message;
use async_trait::async_trait;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use reqwest::header::HeaderMap;
use reqwest::StatusCode;
use serde_json::Value;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

pub struct Slack;

#[async_trait]
impl Platform for Slack {
    fn reach(&self) -> Reach {
        Reach::WebhookOrBot
    }

    fn takes_key(&self, key: &str) -> bool {
        matches!(key, "token" | "token_file" | "channel" | "api_url")
    }

    fn check_key(&self, key: &str, value: &str) -> Result<(), &'static str> {
        if matches!(key, "token" | "channel")
            && (value.is_empty() || value.chars().any(char::is_whitespace))
        {
            return Err("must not be empty or contain spaces");
        }
        Ok(())
    }

    fn mention_problem(&self, mention: &Mention) -> Option<String> {
        matches!(mention, Mention::Role(_)).then(|| "does not exist on slack".into())
    }

    fn escape(&self) -> Escape {
        Escape::Slack
    }

    fn body(&self, msg: &Message<'_>) -> Value {
        body::body(msg)
    }

    fn ping_body(&self, msg: &Message<'_>) -> Option<Value> {
        body::ping(msg)
    }

    fn notice_body(&self, _dest: &Destination, mention: &[Mention], text: &str) -> Value {
        body::notice(mention, text)
    }

    fn can_edit(&self, dest: &Destination) -> bool {
        dest.slack_api.is_some()
    }

    fn share_link(&self, body: &Value) -> Option<String> {
        // Slack's Block Kit Builder reads the URL-encoded `{"blocks": [...]}` after the `#`.
        let blocks = serde_json::json!({ "blocks": body.get("blocks")? }).to_string();
        let encoded =
            percent_encoding::utf8_percent_encode(&blocks, percent_encoding::NON_ALPHANUMERIC);
        Some(format!(
            "https://app.slack.com/block-kit-builder/#{encoded}"
        ))
    }

    fn describe_message(&self, id: &str) -> String {
        match id.split_once(' ') {
            Some((channel, ts)) => format!("message ts {ts} in channel {channel}"),
            None => format!("message {id}"),
        }
    }

    fn example_message_id(&self) -> &'static str {
        // Slack names a message by channel and ts.
        "C0123456789 1700000000.000100"
    }

    fn wire_body(
        &self,
        dest: &Destination,
        action: &Action<'_>,
        stored: &str,
    ) -> Result<Value, String> {
        match &dest.slack_api {
            Some(api) => {
                let api = web_api::Api {
                    base: &api.base,
                    token: &api.token,
                    channel: &api.channel,
                };
                web_api::request(&api, action, stored)
                    .map(|(_, body)| body)
                    .map_err(|o| format!("{o:?}"))
            }
            None => {
                serde_json::from_str(stored).map_err(|e| format!("stored body is not JSON: {e}"))
            }
        }
    }

    async fn send(
        &self,
        client: &reqwest::Client,
        dest: &Destination,
        action: &Action<'_>,
        body: &str,
    ) -> Answer {
        if let Some(api) = &dest.slack_api {
            let api = web_api::Api {
                base: &api.base,
                token: &api.token,
                channel: &api.channel,
            };
            return web_api::send(client, &api, action, body).await;
        }
        let Some(url) = dest.url.clone() else {
            return Answer::of(Outcome::Permanent {
                status: None,
                error: "destination has no URL".into(),
            });
        };
        match http::post_json(client, url, body).await {
            Ok(reply) => Answer::of(classify(reply.status, &reply.headers, &reply.body)),
            Err(failed) => failed,
        }
    }

    fn pacing_key(&self, dest: &Destination) -> String {
        match &dest.slack_api {
            // chat.postMessage is limited per channel; the token names the app and workspace.
            Some(api) => format!("{} {}", api.base, api.channel),
            None => super::url_key(dest),
        }
    }

    fn pacer(&self, _dest: &Destination, _gates: &Gates) -> Arc<dyn Pacer> {
        Arc::new(SlackPacer {
            posts: limiter(Duration::from_secs(1), 3),
            // Tier 3: about 50 a minute.
            edits: limiter(Duration::from_millis(1200), 5),
        })
    }
}

fn limiter(period: Duration, burst: u32) -> DefaultDirectRateLimiter {
    let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
    RateLimiter::direct(Quota::with_period(period).map_or_else(
        || Quota::per_second(NonZeroU32::MIN),
        |q| q.allow_burst(burst),
    ))
}

/// Turns an incoming webhook's answer into an [`Outcome`]: Slack's errors are plain strings
/// (`invalid_payload`, `channel_is_archived`, …); a 429 says how long in `Retry-After`.
pub fn classify(status: StatusCode, headers: &HeaderMap, body: &str) -> Outcome {
    if status.is_success() {
        return Outcome::Done {
            status: status.as_u16(),
            message_id: None,
        };
    }
    if status == StatusCode::TOO_MANY_REQUESTS {
        return Outcome::RateLimited {
            status: status.as_u16(),
            wait: secs(header_f64(headers, "retry-after").unwrap_or(1.0)),
            global: false,
        };
    }
    http::failure(status, http::plain_error(body))
}

/// About one message per second, short bursts tolerated; edits (Web API only) on their own
/// budget.
struct SlackPacer {
    posts: DefaultDirectRateLimiter,
    edits: DefaultDirectRateLimiter,
}

#[async_trait]
impl Pacer for SlackPacer {
    async fn acquire(&self, action: &Action<'_>) -> Result<Box<dyn Permit>, Duration> {
        let limiter = match action {
            Action::Edit { .. } => &self.edits,
            Action::Post | Action::Repost | Action::Ping { .. } => &self.posts,
        };
        match limiter.check() {
            Ok(()) => Ok(Box::new(Free)),
            Err(not_until) => Err(not_until.wait_time_from(governor::clock::Clock::now(
                &governor::clock::DefaultClock::default(),
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn a_429_uses_the_retry_after_header() {
        let mut h = HeaderMap::new();
        h.insert("retry-after", HeaderValue::from_static("30"));
        let o = classify(StatusCode::TOO_MANY_REQUESTS, &h, "rate_limited");
        assert!(matches!(o, Outcome::RateLimited { wait, .. } if wait == Duration::from_secs(30)));
    }

    #[test]
    fn permanent_and_retryable() {
        let h = HeaderMap::new();
        let o = classify(StatusCode::GONE, &h, "channel_is_archived");
        assert!(
            matches!(o, Outcome::Permanent { status: Some(410), ref error } if error == "channel_is_archived")
        );
        let o = classify(StatusCode::INTERNAL_SERVER_ERROR, &h, "rollup_error");
        assert!(matches!(
            o,
            Outcome::Retry {
                status: Some(500),
                ..
            }
        ));
    }
}
