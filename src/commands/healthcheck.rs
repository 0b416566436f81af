//! `printbell healthcheck`: exit 0 when the health URL answers 200, else 1. For container
//! `HEALTHCHECK`s, where no curl is installed.

use super::{CommandResult, Failure};
use std::time::Duration;

/// The default health URL for a listen address: loopback on the configured port.
pub fn default_url(listen: &str) -> String {
    let port = listen
        .rsplit(':')
        .next()
        .and_then(|p| p.parse::<u16>().ok())
        .unwrap_or(8080);
    format!("http://127.0.0.1:{port}/healthz")
}

pub async fn run(url: &str) -> CommandResult {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| Failure::runtime(format!("cannot build an HTTP client: {e}")))?;
    match client.get(url).send().await {
        Ok(r) if r.status() == reqwest::StatusCode::OK => Ok(()),
        Ok(r) => Err(Failure::invalid(format!("{url} answered {}", r.status()))),
        Err(e) => Err(Failure::invalid(format!(
            "{url} did not answer: {}",
            crate::platform::http::describe_error(&e)
        ))),
    }
}
