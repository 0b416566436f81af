//! Slack incoming webhooks: Block Kit bodies with every event-derived text escaped so it can
//! never form a mention or a link, and about one message per second per webhook.

mod body;

use super::http::{self, header_f64, secs};
use super::{Answer, Free, Gates, Outcome, Pacer, Permit, Platform};
use crate::config::Destination;
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
    fn escape(&self) -> Escape {
        Escape::Slack
    }

    fn body(&self, msg: &Message<'_>) -> Value {
        body::body(msg)
    }

    async fn send(&self, client: &reqwest::Client, dest: &Destination, body: &str) -> Answer {
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
        super::url_key(dest)
    }

    fn pacer(&self, _dest: &Destination, _gates: &Gates) -> Arc<dyn Pacer> {
        let burst = NonZeroU32::new(3).unwrap_or(NonZeroU32::MIN);
        Arc::new(WebhookPacer(RateLimiter::direct(
            Quota::with_period(Duration::from_secs(1)).map_or_else(
                || Quota::per_second(NonZeroU32::MIN),
                |q| q.allow_burst(burst),
            ),
        )))
    }
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

/// About one message per second, short bursts tolerated.
struct WebhookPacer(DefaultDirectRateLimiter);

#[async_trait]
impl Pacer for WebhookPacer {
    async fn acquire(&self) -> Result<Box<dyn Permit>, Duration> {
        match self.0.check() {
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
