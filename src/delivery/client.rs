//! One HTTP post of a stored body to Slack or Discord, and what its answer means.
//!
//! Every answer is classified into an [`Outcome`]: done, retry later, rate limited (wait
//! exactly as told), or permanent (never resend: Discord bans clients that repeat invalid
//! requests). Errors never carry the webhook URL: reqwest includes it by default, so it is
//! stripped before any text leaves this module.

use crate::config::{Destination, Kind};
use reqwest::header::HeaderMap;
use reqwest::{Client, StatusCode};
use std::time::Duration;

pub const USER_AGENT: &str = concat!(
    "DiscordBot (https://github.com/printbell/printbell, ",
    env!("CARGO_PKG_VERSION"),
    ") printbell/",
    env!("CARGO_PKG_VERSION")
);

#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Done {
        status: u16,
        message_id: Option<String>,
    },
    /// Network error, timeout or 5xx: try again with backoff.
    Retry { status: Option<u16>, error: String },
    /// 429: wait `wait`, not counted as a failed attempt. `global` = Discord's global limit.
    RateLimited {
        status: u16,
        wait: Duration,
        global: bool,
    },
    /// The platform refused this message or webhook for good.
    Permanent { status: u16, error: String },
}

/// Discord's per-webhook bucket as the last answer described it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateHeaders {
    pub remaining: Option<u32>,
    pub reset_after: Option<Duration>,
}

pub fn build_client(timeout: Duration) -> Result<Client, reqwest::Error> {
    Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .user_agent(USER_AGENT)
        .pool_idle_timeout(Duration::from_secs(60))
        .build()
}

/// The URL a body is posted to: Discord gets `?wait=true` (so a 2xx means the message was
/// stored, and returns its id) and `thread_id` when configured.
pub fn post_url(dest: &Destination) -> Option<reqwest::Url> {
    let mut url = dest.url.clone()?;
    if dest.kind == Kind::Discord {
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
    }
    Some(url)
}

/// Posts `body` (JSON text) to the destination.
pub async fn post(
    client: &Client,
    dest: &Destination,
    body: &str,
) -> (Outcome, Option<RateHeaders>) {
    let Some(url) = post_url(dest) else {
        return (
            Outcome::Permanent {
                status: 0,
                error: "destination has no URL".into(),
            },
            None,
        );
    };
    let sent = client
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body.to_string())
        .send()
        .await;
    let resp = match sent {
        Ok(r) => r,
        Err(e) => {
            return (
                Outcome::Retry {
                    status: None,
                    error: describe_error(&e),
                },
                None,
            )
        }
    };
    let status = resp.status();
    let headers = resp.headers().clone();
    let rate = (dest.kind == Kind::Discord).then(|| rate_headers(&headers));
    let text = match resp.text().await {
        Ok(t) => t,
        Err(e) if status.is_success() => {
            // The platform said yes; a body cut short does not change that.
            tracing::debug!(error = %describe_error(&e), "could not read a success body");
            String::new()
        }
        Err(e) => describe_error(&e),
    };
    (classify(dest.kind, status, &headers, &text), rate)
}

/// Turns an answer into an [`Outcome`].
pub fn classify(kind: Kind, status: StatusCode, headers: &HeaderMap, body: &str) -> Outcome {
    let code = status.as_u16();
    if status.is_success() {
        let message_id = (kind == Kind::Discord)
            .then(|| serde_json::from_str::<serde_json::Value>(body).ok())
            .flatten()
            .and_then(|v| v.get("id").and_then(|id| id.as_str()).map(str::to_string));
        return Outcome::Done {
            status: code,
            message_id,
        };
    }
    if status == StatusCode::TOO_MANY_REQUESTS {
        let (wait, global) = rate_limit_wait(kind, headers, body);
        return Outcome::RateLimited {
            status: code,
            wait,
            global,
        };
    }
    let error = platform_error(body);
    if status.is_server_error() || status == StatusCode::REQUEST_TIMEOUT {
        return Outcome::Retry {
            status: Some(code),
            error,
        };
    }
    Outcome::Permanent {
        status: code,
        error,
    }
}

fn header_f64(headers: &HeaderMap, name: &str) -> Option<f64> {
    headers
        .get(name)?
        .to_str()
        .ok()?
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v >= 0.0)
}

fn secs(v: f64) -> Duration {
    // Bounded so a hostile or broken header cannot park a lane for ever.
    Duration::from_secs_f64(v.clamp(0.0, 3600.0))
}

/// How long a 429 asks to wait: Discord's JSON `retry_after` (float seconds), else
/// `X-RateLimit-Reset-After`, else `Retry-After`; Slack's `Retry-After` header.
fn rate_limit_wait(kind: Kind, headers: &HeaderMap, body: &str) -> (Duration, bool) {
    let json: Option<serde_json::Value> = serde_json::from_str(body).ok();
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
    let wait = match kind {
        // v10 sends seconds; older API versions (an unversioned webhook URL may land on one)
        // send milliseconds. A JSON value far above the headers' seconds is milliseconds.
        Kind::Discord => match (from_json, from_headers) {
            (Some(j), Some(h)) if j > (h + 1.0) * 100.0 => Some(j / 1000.0),
            (Some(j), _) => Some(j),
            (None, h) => h,
        },
        _ => header_f64(headers, "retry-after").or(from_json),
    };
    (secs(wait.unwrap_or(1.0)), global)
}

pub fn rate_headers(headers: &HeaderMap) -> RateHeaders {
    RateHeaders {
        remaining: header_f64(headers, "x-ratelimit-remaining").map(|v| v as u32),
        reset_after: header_f64(headers, "x-ratelimit-reset-after").map(secs),
    }
}

/// The platform's error text: Discord's `message` and `code`, or Slack's plain string.
fn platform_error(body: &str) -> String {
    let body = body.trim();
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(body) {
        if let Some(m) = v.get("message").and_then(|m| m.as_str()) {
            return match v.get("code") {
                Some(c) => format!("{m} (code {c})"),
                None => m.to_string(),
            };
        }
    }
    if body.is_empty() {
        return "no error text".into();
    }
    crate::render::text::truncate(body, 500)
}

/// A transport error in one sentence, without the URL (it carries the webhook token).
pub fn describe_error(e: &reqwest::Error) -> String {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else if e.is_body() || e.is_decode() {
        "the answer was cut off"
    } else if e.is_request() {
        "the connection failed"
    } else {
        "request failed"
    };
    let mut detail = String::new();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        detail = s.to_string();
        source = s.source();
    }
    if detail.is_empty() || detail.contains("://") {
        what.to_string()
    } else {
        format!("{what}: {detail}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn discord_429_uses_json_retry_after() {
        let mut h = HeaderMap::new();
        h.insert("retry-after", HeaderValue::from_static("2"));
        let o = classify(
            Kind::Discord,
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
    fn discord_429_in_milliseconds_is_recognised() {
        let mut h = HeaderMap::new();
        h.insert("retry-after", HeaderValue::from_static("2"));
        let o = classify(
            Kind::Discord,
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
    fn slack_429_uses_retry_after_header() {
        let mut h = HeaderMap::new();
        h.insert("retry-after", HeaderValue::from_static("30"));
        let o = classify(
            Kind::Slack,
            StatusCode::TOO_MANY_REQUESTS,
            &h,
            "rate_limited",
        );
        assert!(matches!(o, Outcome::RateLimited { wait, .. } if wait == Duration::from_secs(30)));
    }

    #[test]
    fn permanent_and_retryable() {
        let h = HeaderMap::new();
        let o = classify(
            Kind::Discord,
            StatusCode::NOT_FOUND,
            &h,
            r#"{"message": "Unknown Webhook", "code": 10015}"#,
        );
        assert_eq!(
            o,
            Outcome::Permanent {
                status: 404,
                error: "Unknown Webhook (code 10015)".into()
            }
        );
        let o = classify(Kind::Slack, StatusCode::GONE, &h, "channel_is_archived");
        assert!(
            matches!(o, Outcome::Permanent { status: 410, ref error } if error == "channel_is_archived")
        );
        let o = classify(
            Kind::Slack,
            StatusCode::INTERNAL_SERVER_ERROR,
            &h,
            "rollup_error",
        );
        assert!(matches!(
            o,
            Outcome::Retry {
                status: Some(500),
                ..
            }
        ));
    }
}
