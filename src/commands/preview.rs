//! `printbell preview`: which destinations an event reaches and the exact JSON body each
//! would receive. No network, no store.

use super::{load_leaving_out_unset_secrets, CommandResult, Failure};
use crate::config::Mode;
use crate::platform::{self, Action};
use crate::{event, routing, samples};
use std::io::Write;
use std::path::Path;

/// `event` is a file path or an event type (built-in sample).
pub fn run(config: &Path, event_arg: &str, links: bool, out: &mut dyn Write) -> CommandResult {
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
    let targets = routing::route(&loaded.config, &ev);
    let io = |e: std::io::Error| Failure::runtime(format!("cannot write output: {e}"));
    let tags = if ev.generation.tags.is_empty() {
        "no tags".to_string()
    } else {
        format!("tags: {}", ev.generation.tags.join(", "))
    };
    writeln!(
        out,
        "{} {} ({tags}) → {} destination(s)",
        ev.type_name,
        ev.id,
        targets.len()
    )
    .map_err(io)?;
    for (route, why) in routing::explain_misses(&loaded.config, &ev) {
        writeln!(out, "{route} does not take it: {why}").map_err(io)?;
    }
    for t in &targets {
        let Some(r) = loaded.renderer.render(&loaded.config, t, &ev) else {
            continue;
        };
        let Some(dest) = loaded.config.destinations.get(&r.destination) else {
            continue;
        };
        let platform = platform::of(dest.kind);
        let pretty = |v: &serde_json::Value| {
            serde_json::to_string_pretty(v).map_err(|e| Failure::runtime(e.to_string()))
        };
        let wire = |action: &Action<'_>, body: &serde_json::Value| {
            platform
                .wire_body(dest, action, &body.to_string())
                .map_err(|e| Failure::runtime(format!("{}: {e}", r.destination)))
        };
        // The header and the body that is posted first come as they always did, so scripts
        // reading `== NAME (KIND) ==` + JSON keep working; live mode adds what follows.
        writeln!(
            out,
            "\n== {} ({}) ==\n{}",
            r.destination,
            r.kind,
            pretty(&wire(&Action::Post, &r.body)?)?
        )
        .map_err(io)?;
        if links {
            if let Some(link) = platform.share_link(&r.body) {
                writeln!(out, "-- {}: see it drawn: {link}", r.destination).map_err(io)?;
            }
        }
        if let (Mode::Live, Some(quiet)) = (&r.mode, &r.quiet_body) {
            let example = platform.example_message_id();
            writeln!(
                out,
                "-- {}: live mode, so later events of the generation edit that message, with: --\n{}",
                r.destination,
                pretty(&wire(&Action::Edit { message: example }, quiet)?)?,
            )
            .map_err(io)?;
            if let Some(ping) = &r.ping_body {
                writeln!(
                    out,
                    "-- {}: and when this failure edits a message that already exists, a separate ping: --\n{}",
                    r.destination,
                    pretty(&wire(&Action::Ping { message: example }, ping)?)?
                )
                .map_err(io)?;
            }
        }
        if let (Some(hold), Some(quiet)) = (&r.holdable, &r.quiet_body) {
            let every = humantime::format_duration(hold.every);
            writeln!(
                out,
                "-- {}: {} pings at most once per {every} (mention_interval of {}); within an interval this message goes without mentions: --\n{}",
                r.destination,
                hold.key,
                loaded.config.routes.get(t.route).map(|r| r.label()).unwrap_or_default(),
                pretty(&wire(&Action::Post, quiet)?)?
            )
            .map_err(io)?;
            let example = [ev
                .generation
                .name
                .clone()
                .unwrap_or_else(|| ev.generation.id.clone())];
            let summary = crate::render::summary::body(dest, &t.mention, 1, &example, hold.every);
            writeln!(
                out,
                "-- {}: and when the interval ends, one summary pings for those held back, e.g.: --\n{}",
                r.destination,
                pretty(&wire(&Action::Post, &summary)?)?
            )
            .map_err(io)?;
        }
        for w in &r.warnings {
            writeln!(out, "warning: {w}").map_err(io)?;
        }
    }
    Ok(())
}
