//! The HTTP plumbing the adapters share: one client, one POST of a JSON body, the status-based
//! classification every platform starts from, and transport errors without URLs (reqwest puts
//! the webhook URL, a secret, in its errors).

use super::{Answer, Outcome};
use reqwest::header::HeaderMap;
use reqwest::{Client, StatusCode, Url};
use std::time::Duration;

pub const USER_AGENT: &str = concat!(
    "DiscordBot (https://github.com/printbell/printbell, ",
    env!("CARGO_PKG_VERSION"),
    ") printbell/",
    env!("CARGO_PKG_VERSION")
);

pub fn build_client(timeout: Duration) -> Result<Client, reqwest::Error> {
    Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .user_agent(USER_AGENT)
        .pool_idle_timeout(Duration::from_secs(60))
        .build()
}

/// An HTTP answer, read whole.
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

/// POSTs a JSON body. `Err` is a transport failure, already an [`Answer`] to retry.
pub async fn post_json(client: &Client, url: Url, body: &str) -> Result<Reply, Answer> {
    send_json(client, reqwest::Method::POST, url, body).await
}

/// Sends a JSON body with `method`. `Err` is a transport failure, already an [`Answer`].
pub async fn send_json(
    client: &Client,
    method: reqwest::Method,
    url: Url,
    body: &str,
) -> Result<Reply, Answer> {
    let sent = client
        .request(method, url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body.to_string())
        .send()
        .await;
    let resp = sent.map_err(|e| {
        Answer::of(Outcome::Retry {
            status: None,
            error: describe_error(&e),
        })
    })?;
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = match resp.text().await {
        Ok(t) => t,
        Err(e) if status.is_success() => {
            // The platform said yes; a body cut short does not change that.
            tracing::debug!(error = %describe_error(&e), "could not read a success body");
            String::new()
        }
        Err(e) => describe_error(&e),
    };
    Ok(Reply {
        status,
        headers,
        body,
    })
}

/// The classification every platform shares for an answer that is not a success or a 429:
/// 5xx and 408 are retried, any other status is permanent. `error`: the platform's text.
pub fn failure(status: StatusCode, error: String) -> Outcome {
    let code = status.as_u16();
    if status.is_server_error() || status == StatusCode::REQUEST_TIMEOUT {
        Outcome::Retry {
            status: Some(code),
            error,
        }
    } else {
        Outcome::Permanent {
            status: Some(code),
            error,
        }
    }
}

/// A non-negative number of a header.
pub fn header_f64(headers: &HeaderMap, name: &str) -> Option<f64> {
    headers
        .get(name)?
        .to_str()
        .ok()?
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v >= 0.0)
}

/// Seconds as a duration, bounded so a hostile or broken header cannot park a lane for ever.
pub fn secs(v: f64) -> Duration {
    Duration::from_secs_f64(v.clamp(0.0, 3600.0))
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

/// An error body shortened for `deliveries list`.
pub fn plain_error(body: &str) -> String {
    let body = body.trim();
    if body.is_empty() {
        return "no error text".into();
    }
    crate::render::text::truncate(body, 500)
}
