//! `printbell send-test --to DEST`: render a built-in sample event for one destination, post
//! it for real (bypassing the queue), and print the platform's answer. The first thing to run
//! after pasting a webhook URL. Configured mentions are left out: a test should not page anyone.

use super::{load_leaving_out_unset_secrets, CommandResult, Failure};
use crate::platform::{self, http, Action, Outcome};
use crate::routing::Target;
use crate::{event, samples};
use std::io::Write;
use std::path::Path;

pub async fn run(config: &Path, to: &str, event_type: &str, out: &mut dyn Write) -> CommandResult {
    let (loaded, left_out) = load_leaving_out_unset_secrets(config)?;
    let c = &loaded.config;
    if let Some((_, why)) = left_out.iter().find(|(d, _)| d == to) {
        return Err(Failure::invalid(format!("--to {to}: {why}")));
    }
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
        mention_interval: None,
    };
    let rendered = loaded
        .renderer
        .render(c, &target, &ev)
        .ok_or_else(|| Failure::runtime(format!("cannot render for {to}")))?;
    let io = |e: std::io::Error| Failure::runtime(format!("cannot write output: {e}"));

    let http = client(c.delivery.timeout)?;
    if dest.url.is_some() || dest.slack_api.is_some() {
        writeln!(
            out,
            "posting a sample {event_type} message to {to} ({} {})",
            dest.kind,
            dest.shown_address()
        )
        .map_err(io)?;
    }
    post_and_report(&http, dest, &rendered.body.to_string(), out).await
}

pub(super) fn client(timeout: std::time::Duration) -> Result<reqwest::Client, Failure> {
    http::build_client(timeout).map_err(|e| {
        Failure::runtime(format!(
            "cannot build an HTTP client: {}",
            http::describe_error(&e)
        ))
    })
}

/// Posts `body` to `dest` once, bypassing the queue, and prints what the platform answered.
pub(super) async fn post_and_report(
    http: &reqwest::Client,
    dest: &crate::config::Destination,
    body: &str,
    out: &mut dyn Write,
) -> CommandResult {
    let io = |e: std::io::Error| Failure::runtime(format!("cannot write output: {e}"));
    let to = &dest.name;
    out.flush().map_err(io)?;
    let answer = platform::of(dest.kind)
        .send(http, dest, &Action::Post, body)
        .await;
    match answer.outcome {
        Outcome::Done { status, message_id } => {
            if dest.url.is_some() || dest.slack_api.is_some() {
                writeln!(out, "{to} answered {status}").map_err(io)?;
            }
            if let Some(id) = message_id {
                let platform = platform::of(dest.kind);
                writeln!(out, "{}", platform.describe_message(&id)).map_err(io)?;
            }
            Ok(())
        }
        Outcome::RateLimited { status, wait, .. } => Err(Failure::runtime(format!(
            "{to} answered {status}: rate limited; try again in {:.0} s",
            wait.as_secs_f64().ceil()
        ))),
        Outcome::Retry { status, error } => {
            let what = status.map_or("failed".to_string(), |s| format!("answered {s}"));
            writeln!(out, "{to} {what}: {error}").map_err(io)?;
            Err(Failure::runtime(format!("{to} failed; try again later")))
        }
        Outcome::Gone { status, error } => {
            Err(Failure::invalid(format!("{to} answered {status}: {error}")))
        }
        Outcome::Permanent { status, error } => {
            let what = status.map_or("refused it".to_string(), |s| format!("answered {s}"));
            writeln!(out, "{to} {what}: {error}").map_err(io)?;
            Err(Failure::invalid(format!(
                "{to} refused the message; check the webhook URL and `printbell preview`"
            )))
        }
    }
}
