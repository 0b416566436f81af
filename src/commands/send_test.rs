//! `printbell send-test --to DEST`: render a built-in sample event for one destination, post
//! it for real (bypassing the queue), and print the platform's answer. The first thing to run
//! after pasting a webhook URL. Configured mentions are left out: a test should not page anyone.

use super::{load, CommandResult, Failure};
use crate::config::{redact_url, Kind};
use crate::delivery::client;
use crate::render::console;
use crate::routing::Target;
use crate::{event, samples};
use std::io::Write;
use std::path::Path;

pub async fn run(config: &Path, to: &str, event_type: &str, out: &mut dyn Write) -> CommandResult {
    let loaded = load(config)?;
    let c = &loaded.config;
    let Some(dest) = c.destinations.get(to) else {
        let names: Vec<&str> = c.destinations.keys().map(String::as_str).collect();
        let hint = crate::config::nearest(to, names.iter().copied())
            .map(|b| format!("; did you mean `{b}`?"))
            .unwrap_or_else(|| format!("; defined: {}", names.join(", ")));
        return Err(Failure::invalid(format!(
            "--to {to}: no such destination{hint}"
        )));
    };
    let sample = samples::by_name(event_type).ok_or_else(|| {
        Failure::invalid(format!(
            "--event {event_type}: expected one of {}",
            crate::domain::EventType::names().join(", ")
        ))
    })?;
    let ev = event::parse(sample.as_bytes())
        .map_err(|e| Failure::runtime(format!("built-in sample: {e}")))?;
    let route = c
        .routes
        .iter()
        .position(|r| r.to.iter().any(|d| d == to))
        .unwrap_or(usize::MAX);
    let target = Target {
        destination: to.to_string(),
        route,
        mention: Vec::new(),
    };
    let rendered = loaded
        .renderer
        .render(c, &target, &ev)
        .ok_or_else(|| Failure::runtime(format!("cannot render for {to}")))?;
    let io = |e: std::io::Error| Failure::runtime(format!("cannot write output: {e}"));

    if dest.kind == Kind::Console {
        write!(out, "{}", console::format(&rendered.body)).map_err(io)?;
        return Ok(());
    }
    let url = client::post_url(dest).ok_or_else(|| Failure::invalid(format!("{to} has no URL")))?;
    let http = client::build_client(c.delivery.timeout).map_err(|e| {
        Failure::runtime(format!(
            "cannot build an HTTP client: {}",
            client::describe_error(&e)
        ))
    })?;
    writeln!(
        out,
        "posting a sample {event_type} message to {to} ({} {})",
        dest.kind.as_str(),
        redact_url(&url)
    )
    .map_err(io)?;
    let resp = http
        .post(url.clone())
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(rendered.body.to_string())
        .send()
        .await
        .map_err(|e| Failure::runtime(format!("{to}: {}", client::describe_error(&e))))?;
    let status = resp.status();
    let body = resp.text().await.unwrap_or_default();
    writeln!(out, "{to} answered {status}").map_err(io)?;
    if !body.trim().is_empty() {
        writeln!(out, "{}", crate::render::text::truncate(body.trim(), 2000)).map_err(io)?;
    }
    if status.is_success() {
        Ok(())
    } else if status.is_client_error() {
        Err(Failure::invalid(format!(
            "{to} refused the message ({status}); check the webhook URL and `printbell preview`"
        )))
    } else {
        Err(Failure::runtime(format!(
            "{to} failed ({status}); try again later"
        )))
    }
}
