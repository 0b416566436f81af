//! `printbell send --event FILE or TYPE`: an event through the real routing and templates,
//! posted for real to every destination it reaches (bypassing the queue), one confirmation
//! line per destination. `send-test` tries a destination; this tries a route.

use super::send_test::{client, post_and_report};
use super::{load_leaving_out_unset_secrets, CommandResult, Failure};
use crate::{event, routing, samples};
use std::io::Write;
use std::path::Path;

/// `mention`: also ping the routes' mentions (off by default: trying a route should not page
/// anyone unless asked to).
pub async fn run(
    config: &Path,
    event_arg: &str,
    mention: bool,
    out: &mut dyn Write,
) -> CommandResult {
    let (loaded, _) = load_leaving_out_unset_secrets(config)?;
    let body: Vec<u8> = match samples::by_name(event_arg) {
        Some(s) => s.as_bytes().to_vec(),
        None => std::fs::read(event_arg).map_err(|e| {
            Failure::invalid(format!(
                "--event {event_arg}: not an event type ({}) and not a readable file ({e})",
                crate::domain::EventType::names().join(", ")
            ))
        })?,
    };
    let ev =
        event::parse(&body).map_err(|e| Failure::invalid(format!("--event {event_arg}: {e}")))?;
    let io = |e: std::io::Error| Failure::runtime(format!("cannot write output: {e}"));
    let mut targets = routing::route(&loaded.config, &ev);
    if targets.is_empty() {
        for (route, why) in routing::explain_misses(&loaded.config, &ev) {
            writeln!(out, "{route} does not take it: {why}").map_err(io)?;
        }
        return Err(Failure::invalid(format!(
            "{} {} reaches no destination, so nothing was sent",
            ev.type_name, ev.id
        )));
    }
    if !mention {
        for t in &mut targets {
            t.mention.clear();
        }
    }
    let http = client(loaded.config.delivery.timeout)?;
    let mut failed = Vec::new();
    for t in &targets {
        let (Some(dest), Some(r)) = (
            loaded.config.destinations.get(&t.destination),
            loaded.renderer.render(&loaded.config, t, &ev),
        ) else {
            continue;
        };
        let route = &loaded.config.routes[t.route];
        writeln!(
            out,
            "sending {} {} to {} ({} {}) by {}{}",
            ev.type_name,
            ev.id,
            dest.name,
            dest.kind,
            dest.shown_address(),
            route.label(),
            if t.mention.is_empty() {
                ""
            } else {
                ", with its mentions"
            }
        )
        .map_err(io)?;
        if let Err(f) = post_and_report(&http, dest, &r.body.to_string(), out).await {
            writeln!(out, "{}: not delivered: {}", dest.name, f.message).map_err(io)?;
            failed.push(dest.name.clone());
        }
    }
    match failed.len() {
        0 => Ok(()),
        _ => Err(Failure::runtime(format!(
            "not delivered to {}",
            failed.join(", ")
        ))),
    }
}
