//! `printbell subscribe` / `unsubscribe`: register this receiver with the all-images.ai API.
//!
//! `POST {base}/v1/api-keys/webhook/subscribe` (header `api-key`, body `{"url", "events"}`,
//! answer 201 `{"webhookId"}`) and `DELETE {base}/v1/api-keys/webhook/unsubscribe/{id}`.
//! all-images.ai documents no request signature, so when `server.secret` is set the URL
//! registered carries `?token=SECRET`. The API key is never printed.

use super::{CommandResult, Failure};
use crate::config::Config;
use crate::domain::EventType;
use reqwest::Url;
use std::io::Write;
use std::time::Duration;

pub const DEFAULT_API_BASE: &str = "https://api.all-images.ai";

fn api() -> Result<(reqwest::Client, String, String), Failure> {
    let key = std::env::var("ALLIMAGES_API_KEY")
        .ok()
        .filter(|k| !k.trim().is_empty())
        .ok_or_else(|| {
            Failure::invalid("ALLIMAGES_API_KEY is not set; it holds your all-images.ai API key")
        })?;
    let base = std::env::var("ALLIMAGES_API_BASE")
        .ok()
        .filter(|b| !b.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_API_BASE.to_string());
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| Failure::runtime(format!("cannot build an HTTP client: {e}")))?;
    Ok((client, base.trim_end_matches('/').to_string(), key))
}

/// The API's error in one sentence: its JSON `message`/`error`, else the start of the body.
async fn api_error(what: &str, resp: reqwest::Response) -> Failure {
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    let detail = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| {
            ["message", "error", "detail"]
                .iter()
                .find_map(|k| v.get(*k).and_then(|m| m.as_str()).map(str::to_string))
        })
        .unwrap_or_else(|| crate::render::text::truncate(text.trim(), 200));
    let hint = match status.as_u16() {
        401 | 403 => " (check ALLIMAGES_API_KEY)",
        _ => "",
    };
    let detail = if detail.is_empty() {
        String::new()
    } else {
        format!(": {detail}")
    };
    Failure::runtime(format!(
        "all-images.ai refused to {what} ({status}){detail}{hint}"
    ))
}

fn send_error(e: reqwest::Error) -> Failure {
    Failure::runtime(format!(
        "cannot reach the all-images.ai API: {}",
        crate::platform::http::describe_error(&e)
    ))
}

/// The URL to register: the public receiver URL, with `?token=` when a secret is set.
pub fn receiver_url(public: &str, config: &Config) -> Result<Url, Failure> {
    let mut url = Url::parse(public)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
        .ok_or_else(|| Failure::invalid(format!("--url {public}: not an http(s) URL")))?;
    // all-images.ai would post where printbell does not listen (404s nobody sees in time).
    // A reverse proxy may mount the receiver under a prefix, so a path ending in the webhook
    // path is fine.
    let path = config.server.webhook_path.as_str();
    if !url.path().ends_with(path) {
        let mut hint = url.clone();
        hint.set_path(path);
        hint.set_query(None);
        return Err(Failure::invalid(format!(
            "--url {public}: its path `{}` is not this receiver's webhook path `{path}`; use {hint} (or change server.webhook_path)",
            url.path()
        )));
    }
    if let Some(secret) = &config.server.secret {
        if !url.query_pairs().any(|(k, _)| k == "token") {
            url.query_pairs_mut().append_pair("token", secret);
        }
    }
    Ok(url)
}

pub async fn subscribe(
    config: &Config,
    public_url: &str,
    events: &[String],
    out: &mut dyn Write,
) -> CommandResult {
    for e in events {
        if EventType::parse(e).is_none() {
            return Err(Failure::invalid(format!(
                "--events: unknown event type `{e}`; expected {}",
                EventType::names().join(", ")
            )));
        }
    }
    let events: Vec<String> = if events.is_empty() {
        EventType::names().iter().map(|s| s.to_string()).collect()
    } else {
        events.to_vec()
    };
    let url = receiver_url(public_url, config)?;
    let (client, base, key) = api()?;
    let resp = client
        .post(format!("{base}/v1/api-keys/webhook/subscribe"))
        .header("api-key", key)
        .json(&serde_json::json!({"url": url.as_str(), "events": events}))
        .send()
        .await
        .map_err(send_error)?;
    if !resp.status().is_success() {
        return Err(api_error("subscribe", resp).await);
    }
    let body: serde_json::Value = resp.json().await.unwrap_or_default();
    let id = body.get("webhookId").and_then(|v| {
        v.as_str()
            .map(str::to_string)
            .or_else(|| Some(v.to_string()))
    });
    let shown = if config.server.secret.is_some() {
        format!("{} (with ?token=…)", public_url)
    } else {
        public_url.to_string()
    };
    writeln!(
        out,
        "subscribed {shown} to {}; webhook id: {}",
        events.join(", "),
        id.unwrap_or_else(|| "(none returned)".into())
    )
    .map_err(|e| Failure::runtime(format!("cannot write output: {e}")))
}

pub async fn unsubscribe(id: &str, out: &mut dyn Write) -> CommandResult {
    if id.trim().is_empty() || id.contains('/') {
        return Err(Failure::invalid(format!("`{id}` is not a webhook id")));
    }
    let (client, base, key) = api()?;
    let resp = client
        .delete(format!("{base}/v1/api-keys/webhook/unsubscribe/{id}"))
        .header("api-key", key)
        .send()
        .await
        .map_err(send_error)?;
    if !resp.status().is_success() {
        return Err(api_error("unsubscribe", resp).await);
    }
    writeln!(out, "unsubscribed webhook {id}")
        .map_err(|e| Failure::runtime(format!("cannot write output: {e}")))
}
